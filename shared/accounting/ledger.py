"""The usage ledger: one row per settled model call in Table Storage (finance reads it: :mod:`shared.finance`).

Rows are append-only and keyed by request id (RowKey = request id), so writing a row twice cannot double-count
it, and every instance writes its own rows without coordination: totals are exact across any number of
instances. Table Storage serves about 2,000 entities per second per partition, so a day is spread over
``LEDGER_SHARDS`` partitions per UTC hour (PartitionKey ``2026-11-30T14-05``: day, hour, shard). A gateway
process writes all the rows of one flush interval to one shard, and the next interval's to the next shard (D56), so
its half-second of rows is one transaction of up to 100 rows instead of one small transaction per shard, and over a
few seconds every process spreads evenly over the shards. The shard follows from the row's time and the process's
offset, which the journal's header records, so a replay lands on the same row. Partition keys sort by time, so a
date-range query is one key range over every shard (``ge '2026-11-30' and lt '2026-12-01'``, which also covers the older
one-partition-per-day rows). Each instance writes its rows in batches (one transaction per partition, up to 100
rows, at most half a second late). Rows hold counts, identifiers and cost only, never
prompt or completion text; the cost is an exact decimal string at the price version in force at settle time,
and that version's id is on the row (docs/finance.md).

No served call may go missing (docs/durability.md): a row is appended to the instance's journal
(:mod:`shared.accounting.journal`) before it is queued, a batch that fails is retried with backoff until
storage answers (never dropped), and the queue is bounded: past ``max_backlog_rows`` rows or a row older
than ``max_backlog_seconds``, :meth:`UsageLedger.admit` refuses new model calls (503 ``ledger_backlog``)
instead of serving calls the gateway cannot record.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import secrets
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import HttpResponseError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared import telemetry
from shared.errors import GatewayError
from shared.storage.batch import upsert_entities

if TYPE_CHECKING:
    from shared.accounting.journal import Journal, JournalEntry, ReplayReport

log = logging.getLogger(__name__)

BATCH_LIMIT = 100  # a Table Storage transaction holds at most 100 operations, all in one partition
FLUSH_SECONDS = 0.5
WRITE_TIMEOUT_SECONDS = 15.0  # one transaction attempt; a hung connection must not stall the queue
# The ledger retries on its own schedule (backoff capped at BACKOFF_MAX_SECONDS, so rows flow again within
# seconds of storage returning), not the SDK's, whose growing backoff could hold a batch for minutes.
BACKOFF_FIRST_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 2.0
MAX_BACKLOG_ROWS = 10_000
MAX_BACKLOG_SECONDS = 60.0
RETRY_AFTER_SECONDS = 5
# Partitions per UTC hour. Changing it is safe: readers query key ranges, and the daily rollup counts a request id
# once even if a replay after a change wrote it under a second partition.
LEDGER_SHARDS = 8


# Hours that got a ledger row after the hour had ended (the writer after an outage, a journal replay, the replay CLI)
# are marked in this partition of the ledger table (RowKey ``2026-11-30T14``), so the rollup timer re-derives them
# (shared.finance.daily). It sorts after every day's partitions, so a date-range query never reads it.
LATE_PARTITION = "late-hours"


def day_partition(day: date | datetime) -> str:
    """The UTC day of a ledger partition, and the prefix of all its shards: ``2026-11-30``."""
    return day.strftime("%Y-%m-%d")


def shard_at(at: datetime, offset: int, period_seconds: float) -> int:
    """The ledger shard a process with ``offset`` writes at ``at``: the next shard every ``period_seconds`` (D56).
    A function of the row's own time, so a replay finds the same shard from the journal's header."""
    return (offset + int(at.timestamp() // period_seconds)) % LEDGER_SHARDS


def ledger_partition(at: datetime, request_id: str, shard: int | None = None) -> str:
    """The partition of one ledger row: UTC day, hour and shard (``2026-11-30T14-05``); rows journaled before rows
    carried their writer's shard take one from the request id."""
    if shard is None or not 0 <= shard < LEDGER_SHARDS:
        shard = zlib.crc32(request_id.encode()) % LEDGER_SHARDS
    return f"{at.astimezone(UTC):%Y-%m-%dT%H}-{shard:02d}"


def day_range_filter(first: date, last: date) -> tuple[str, dict[str, Any]]:
    """A query over every ledger partition of the UTC days ``first``..``last`` (all shards, old and new keys)."""
    return "PartitionKey ge @first and PartitionKey lt @after", {
        "first": day_partition(first),
        "after": day_partition(last + timedelta(days=1)),
    }


def late_hours(records: list[UsageRecord], now: datetime | None = None) -> set[str]:
    """The UTC hours (``2026-11-30T14``) of rows written after their hour had ended (a comparison per row; the
    hour's text only for the rare late ones)."""
    hour_start = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return {r.at.astimezone(UTC).strftime("%Y-%m-%dT%H") for r in records if r.at < hour_start}


async def mark_late_hours(table: TableClient, records: list[UsageRecord], now: datetime | None = None) -> None:
    """Mark the hours of rows just written late, for the rollup timer to re-derive (docs/finance.md, "Late rows").
    An upsert per hour: every writer may mark the same hour; the rollup deletes a marker only if it is unchanged."""
    for hour in sorted(late_hours(records, now)):
        entity = {"PartitionKey": LATE_PARTITION, "RowKey": hour, "MarkedAt": datetime.now(UTC)}
        await table.upsert_entity(entity, mode=UpdateMode.REPLACE)


@dataclass(frozen=True)
class UsageRecord:
    request_id: str
    at: datetime
    caller_id: str
    caller_name: str
    tenant: str | None
    auth_method: str
    key_id: str | None
    operation: str
    deployment: str
    stream: bool
    status: int
    outcome: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    estimated: bool
    cost_usd: float | None
    duration_ms: int
    backend: str | None = None  # label of the upstream backend that served the call
    # The exact cost (a decimal string in ``currency``) and the id of the price version it was computed with.
    cost: str | None = None
    currency: str | None = None
    price_version: str | None = None
    # The caller's chargeback attributes when the call settled (the caller policy then): fixed on the row, so a
    # rebuild reproduces history instead of re-attributing it from today's policy. ``None`` (rows written before
    # the columns existed): the rollup takes the policy at rollup time and flags it (docs/finance.md).
    cost_center: str | None = None
    owner: str | None = None
    department: str | None = None
    tags: str | None = None  # a JSON object, sorted keys ("" when the caller has none)
    # Images and audio (shared.protocol.media): the unit the call is counted in (tokens, images, audio_seconds,
    # characters), the quantity as decimal text, the ``size/quality`` of per-image prices, and the token kinds Azure
    # reports apart (parts of prompt/completion tokens). None on text operations and on rows written before.
    unit: str | None = None
    units: str | None = None
    image_variant: str | None = None
    audio_input_tokens: int | None = None
    audio_output_tokens: int | None = None
    image_input_tokens: int | None = None
    image_output_tokens: int | None = None
    # The writing process's shard (D56). Not on the journal's lines, which older versions must still read: a
    # replay derives it from the journal header's shard layout and the row's time.
    shard: int | None = None

    @property
    def partition(self) -> str:
        return ledger_partition(self.at, self.request_id, self.shard)

    def entity(self) -> dict[str, Any]:
        entity = {
            "PartitionKey": self.partition,
            "RowKey": self.request_id,
            "At": self.at,
            "CallerId": self.caller_id,
            "CallerName": self.caller_name,
            "Tenant": self.tenant or "",
            "AuthMethod": self.auth_method,
            "KeyId": self.key_id or "",
            "Operation": self.operation,
            "Deployment": self.deployment,
            "Stream": self.stream,
            "Status": self.status,
            "Outcome": self.outcome,
            "PromptTokens": self.prompt_tokens,
            "CompletionTokens": self.completion_tokens,
            "CachedTokens": self.cached_tokens,
            "ReasoningTokens": self.reasoning_tokens,
            "Estimated": self.estimated,
            "DurationMs": self.duration_ms,
            "Backend": self.backend or "",
        }
        if self.cost_usd is not None:
            entity["CostUsd"] = self.cost_usd
        if self.cost is not None:
            entity["Cost"] = self.cost
            entity["Currency"] = self.currency or ""
            entity["PriceVersion"] = self.price_version or ""
        if self.unit is not None:
            entity["Unit"] = self.unit
            entity["Units"] = self.units or "0"
            entity["ImageVariant"] = self.image_variant or ""
            entity["AudioInputTokens"] = self.audio_input_tokens or 0
            entity["AudioOutputTokens"] = self.audio_output_tokens or 0
            entity["ImageInputTokens"] = self.image_input_tokens or 0
            entity["ImageOutputTokens"] = self.image_output_tokens or 0
        if self.cost_center is not None:
            entity["CostCenter"] = self.cost_center
            entity["Owner"] = self.owner or ""
            entity["Department"] = self.department or ""
            entity["Tags"] = self.tags or ""
        return entity

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object (the journal's line format)."""
        data = {name: getattr(self, name) for name in _JOURNAL_FIELDS}  # flat fields: no deep copy (asdict's)
        data["at"] = self.at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsageRecord:
        """Inverse of :meth:`to_json`; raises ValueError/KeyError/TypeError on anything else."""
        fields = dataclasses.fields(cls)
        required = {f.name for f in fields if f.default is dataclasses.MISSING}
        if not required <= set(data):  # lines journaled before an optional column existed still replay
            raise ValueError("not a usage record")
        at = datetime.fromisoformat(data["at"])
        if at.tzinfo is None:
            raise ValueError("usage record time without a time zone")
        # Fields this version does not know (a newer version's journal) are left out, never a reason to drop the row.
        return cls(**{**{name: data[name] for name in _JOURNAL_FIELDS if name in data}, "at": at})


_JOURNAL_FIELDS = tuple(f.name for f in dataclasses.fields(UsageRecord) if f.name != "shard")


@dataclass(frozen=True)
class BacklogLimits:
    """How much unwritten usage an instance may hold before it stops serving model calls."""

    max_rows: int = MAX_BACKLOG_ROWS
    max_seconds: float = MAX_BACKLOG_SECONDS


@dataclass(eq=False)
class _Pending:
    record: UsageRecord
    partition: str
    queued: float  # time.monotonic() when queued
    entry: JournalEntry | None


class UsageLedger:
    """Rows are journaled, queued and written by one writer task in Table transactions (one day's partition, at
    most 100 rows each) within ``flush_seconds``: one storage round trip per batch instead of one per call.
    A batch stays queued until storage confirms it; failures are retried with backoff, never dropped."""

    def __init__(
        self,
        table: TableClient,
        *,
        journal: Journal | None = None,
        flush_seconds: float = FLUSH_SECONDS,
        limits: BacklogLimits | None = None,
    ) -> None:
        self._table = table
        self.journal = journal
        self._shard_offset = secrets.randbelow(LEDGER_SHARDS)
        if journal is not None:  # so a replay of this process's journal writes each row to the same shard
            journal.header_fields.update(shard_offset=self._shard_offset, shard_seconds=flush_seconds)
        self._flush_seconds = flush_seconds
        self.limits = limits or BacklogLimits()
        self._pending: dict[int, _Pending] = {}  # insertion order = age order
        self._next = 0
        self._flush_mark = 0  # rows queued before this number are written without waiting
        self._wake = asyncio.Event()
        self._written = asyncio.Condition()
        self._writer: asyncio.Task[None] | None = None
        self.failures = 0  # consecutive failed attempts
        self.last_error: str | None = None
        self.journal_errors = 0
        self.rejected = 0

    # --- the request path --------------------------------------------------------------------------------

    def shard_at(self, at: datetime) -> int:
        """The partition of the hour this process writes a row of time ``at`` to (D56): one per flush interval, so
        a flush is one transaction, the next shard each interval, so over a few seconds every process spreads its
        rows evenly over all the shards (a partition's ~2,000 entities/s is shared by all processes alike)."""
        return shard_at(at, self._shard_offset, self._flush_seconds)

    def admit(self) -> None:
        """Refuse a model call (503, fail-closed) while this instance holds more unwritten usage than it may."""
        reason = self.over_limit()
        if reason is not None:
            raise GatewayError(
                503,
                f"The gateway cannot record usage right now ({reason}); retry shortly.",
                code="ledger_backlog",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )

    async def record(self, record: UsageRecord) -> None:
        """Journal the row, then queue it; the writer task writes it (this never waits for storage)."""
        entry = None
        if self.journal is not None:
            try:
                entry = self.journal.append(record)
            except OSError as exc:
                self.journal_errors += 1
                if self.journal_errors == 1 or self.journal_errors % 100 == 0:
                    log.error("%d usage rows not journaled (%s); queued in memory only", self.journal_errors, exc)
        self._pending[self._next] = _Pending(record, record.partition, time.monotonic(), entry)
        self._next += 1
        if len(self._pending) == 1 or len(self._pending) >= BATCH_LIMIT:
            self._wake.set()  # the writer sleeps until a first row arrives, then until it is due or a batch is full
        self._start_writer()

    # --- state -------------------------------------------------------------------------------------------

    @property
    def backlog_rows(self) -> int:
        return len(self._pending)

    def oldest_seconds(self) -> float:
        """Age of the oldest row not yet in the table (0 when none waits)."""
        if not self._pending:
            return 0.0
        return time.monotonic() - next(iter(self._pending.values())).queued

    def over_limit(self) -> str | None:
        rows, oldest = len(self._pending), self.oldest_seconds()
        if rows >= self.limits.max_rows:
            return f"{rows} usage rows wait for Table Storage, the limit is {self.limits.max_rows}"
        if oldest >= self.limits.max_seconds:
            return f"usage has waited {oldest:.0f} s for Table Storage, the limit is {self.limits.max_seconds:g} s"
        return None

    def status(self) -> dict[str, Any]:
        """For /api/ready: not ok while model calls are refused."""
        reason = self.over_limit()
        status: dict[str, Any] = {
            "ok": reason is None,
            "backlog_rows": len(self._pending),
            "oldest_unwritten_seconds": round(self.oldest_seconds(), 3),
            "max_backlog_rows": self.limits.max_rows,
            "max_backlog_seconds": self.limits.max_seconds,
            "journal": self.journal is not None,
        }
        if self.failures:
            status["failing_writes"] = self.failures
            status["last_error"] = self.last_error
        if self.journal_errors:
            status["journal_errors"] = self.journal_errors
        if reason is not None:
            status["error"] = f"Model calls are refused: {reason}."
        return status

    # --- flushing and shutdown ---------------------------------------------------------------------------

    async def flush(self, within: float | None = None) -> bool:
        """Write every row queued so far now; True once they are in the table, False if ``within`` s ran out."""
        mark = self._next
        self._flush_mark = max(self._flush_mark, mark)
        self._wake.set()
        self._start_writer()
        async with self._written:
            try:
                await asyncio.wait_for(self._written.wait_for(lambda: self._oldest_key() >= mark), within)
            except TimeoutError:
                return False
        return True

    async def close(self, within: float = 10.0) -> None:
        """On shutdown: flush for up to ``within`` seconds; rows still unwritten stay in the journal for replay."""
        written = await self.flush(within)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if self.journal is not None:
            self.journal.close()
        if not written:
            log.warning(
                "%d usage rows were not written before shutdown (%s); %s",
                len(self._pending),
                self.last_error,
                "they stay in the ledger journal and are replayed"
                if self.journal is not None
                else "NO JOURNAL: they are lost",
            )

    async def recover(self, *, every_file: bool = False) -> ReplayReport:
        """Replay orphaned journal files (other processes' leftovers) into the table."""
        from shared.accounting.journal import ReplayReport, replay

        if self.journal is None:
            return ReplayReport()
        return await replay(self.journal.directory, self._table, every_file=every_file, exclude=self.journal)

    # --- the writer task ---------------------------------------------------------------------------------

    def _oldest_key(self) -> int:
        return next(iter(self._pending), self._next)

    def _start_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                if not self._pending:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                wait = self._flush_seconds - self.oldest_seconds()
                if wait > 0 and len(self._pending) < BATCH_LIMIT and self._oldest_key() >= self._flush_mark:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                    continue
                await self._write_batch(self._take_batch())
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop the ledger: the rows stay queued and journaled
                log.exception("usage ledger writer failed; retrying")
                await asyncio.sleep(1.0)

    def _take_batch(self) -> list[int]:
        """The oldest row's partition: up to 100 of its rows, oldest first."""
        partition = next(iter(self._pending.values())).partition
        keys = []
        for key, pending in self._pending.items():
            if pending.partition == partition:
                keys.append(key)
                if len(keys) == BATCH_LIMIT:
                    break
        return keys

    async def _write_batch(self, keys: list[int]) -> None:
        rows = [self._pending[key] for key in keys]
        entities = [p.record.entity() for p in rows]
        while True:
            try:
                await asyncio.wait_for(upsert_entities(self._table, entities, retry_total=0), WRITE_TIMEOUT_SECONDS)
                await self._mark_late([p.record for p in rows])
                break
            except HttpResponseError as exc:
                if _refused(exc):
                    await self._write_one_by_one(keys)  # storage refuses the batch itself: find the row it refuses
                    return
                await self._failed(exc, len(rows))
            except Exception as exc:  # unreachable, timed out, throttled: wait and retry the same batch
                await self._failed(exc, len(rows))
        await self._written_ok(keys)

    async def _write_one_by_one(self, keys: list[int]) -> None:
        done = []
        for key in keys:
            pending = self._pending[key]
            while True:
                try:
                    await asyncio.wait_for(
                        self._table.upsert_entity(pending.record.entity(), mode=UpdateMode.REPLACE, retry_total=0),
                        WRITE_TIMEOUT_SECONDS,
                    )
                    done.append(key)
                    break
                except HttpResponseError as exc:
                    if _refused(exc):
                        # Storage will never take this row: it leaves the queue but stays in the journal file,
                        # which keeps it for an operator (docs/durability.md, "Replay").
                        self.rejected += 1
                        log.error(
                            "usage row %s refused by Table Storage (%s %s); kept in the ledger journal",
                            pending.record.request_id,
                            exc.status_code,
                            type(exc).__name__,
                        )
                        self._pending.pop(key)
                        break
                    await self._failed(exc, 1)
                except Exception as exc:
                    await self._failed(exc, 1)
        await self._mark_late([self._pending[key].record for key in done])  # raises: the rows stay queued
        await self._written_ok(done)

    async def _mark_late(self, records: list[UsageRecord]) -> None:
        """After a write: mark the hours of rows that arrive after their hour ended (rare: after an outage). A failed
        mark is retried with the rows (writing them again is harmless), so a late hour is never left unmarked."""
        if late_hours(records):
            await asyncio.wait_for(mark_late_hours(self._table, records), WRITE_TIMEOUT_SECONDS)

    async def _failed(self, exc: BaseException, rows: int) -> None:
        telemetry.record_ledger_write_failure(rows)  # rows whose write failed this attempt (they are retried)
        self.failures += 1
        self.last_error = type(exc).__name__
        if self.failures == 1 or self.failures % 20 == 0:
            log.warning(
                "usage ledger: writing %d rows failed %d times in a row (%s); %d rows queued, retrying",
                rows,
                self.failures,
                self.last_error,
                len(self._pending),
            )
        delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** min(self.failures - 1, 10))
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _written_ok(self, keys: list[int]) -> None:
        if self.failures:
            log.warning("usage ledger: Table Storage answers again after %d failed attempts", self.failures)
            self.failures = 0
        entries = [entry for key in keys if (entry := self._pending.pop(key).entry) is not None]
        if self.journal is not None and entries:
            self.journal.confirm(entries)
        async with self._written:
            self._written.notify_all()


def _refused(exc: HttpResponseError) -> bool:
    """Storage answered that it will never take this (a 4xx other than timeout/throttling): retrying cannot help."""
    status = exc.status_code
    return status is not None and 400 <= status < 500 and status not in (408, 429)
