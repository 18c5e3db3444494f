"""The usage ledger: one row per settled model call in Table Storage (finance reads it: :mod:`shared.finance`).

Rows are append-only and keyed by request id (PartitionKey = UTC day, RowKey = request id), so writing a
row twice cannot double-count it, and every instance writes its own rows without coordination: totals are
exact across any number of instances. A day's rows share a partition, so a date-range query reads whole
partitions, and each instance writes its rows in batches (one transaction per day, up to 100 rows, at most
half a second late). Rows hold counts, identifiers and cost only, never prompt or completion text.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared import telemetry

log = logging.getLogger(__name__)

WRITE_ATTEMPTS = 3
BATCH_LIMIT = 100  # a Table Storage transaction holds at most 100 operations, all in one partition
FLUSH_SECONDS = 0.5


def day_partition(day: date | datetime) -> str:
    """The ledger partition of a UTC day: ``2026-11-30``."""
    return day.strftime("%Y-%m-%d")


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

    def entity(self) -> dict[str, Any]:
        entity = {
            "PartitionKey": day_partition(self.at),
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
        }
        if self.cost_usd is not None:
            entity["CostUsd"] = self.cost_usd
        return entity


class UsageLedger:
    """Rows are queued and written in Table transactions (one day's partition, at most 100 rows each) within
    ``flush_seconds``: one storage round trip per batch instead of one per call."""

    def __init__(self, table: TableClient, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._table = table
        self._flush_seconds = flush_seconds
        self._queue: list[UsageRecord] = []
        self._timer: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()

    async def record(self, record: UsageRecord) -> None:
        self._queue.append(record)
        if len(self._queue) >= BATCH_LIMIT:
            await self.flush()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self._flush_seconds)
        await self.flush()

    async def flush(self) -> None:
        """Write everything queued so far (also called on shutdown)."""
        async with self._writing:
            queued, self._queue = self._queue, []
            by_day: dict[str, list[UsageRecord]] = defaultdict(list)
            for record in queued:
                by_day[day_partition(record.at)].append(record)
            for records in by_day.values():
                for start in range(0, len(records), BATCH_LIMIT):
                    await self._write(records[start : start + BATCH_LIMIT])

    async def _write(self, records: list[UsageRecord]) -> None:
        """One transaction, retried; if storage stays down the counts go to the error log to be replayed."""
        operations = [("upsert", r.entity(), {"mode": UpdateMode.REPLACE}) for r in records]
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                await self._table.submit_transaction(operations)
                return
            except Exception as exc:  # any storage failure: retry, then report
                if attempt == WRITE_ATTEMPTS:
                    telemetry.record_ledger_write_failure(len(records))
                    for record in records:
                        log.error(
                            "usage row for %s NOT written (%s); counts: %s",
                            record.request_id,
                            type(exc).__name__,
                            {k: v for k, v in record.entity().items() if k != "At"},
                        )
                    return
                await asyncio.sleep(0.2 * attempt)
