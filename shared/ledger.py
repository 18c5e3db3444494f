"""The usage ledger: one row per settled model call in Table Storage, and finance's view of it.

Rows are append-only and keyed by request id (PartitionKey = UTC day, RowKey = request id), so writing a
row twice cannot double-count it, and every instance writes its own rows without coordination: totals are
exact across any number of instances. A day's rows share a partition, so a date-range query reads whole
partitions, and each instance writes its rows in batches (one transaction per day, up to 100 rows, at most
half a second late). Rows hold counts, identifiers and cost only, never prompt or completion text.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.errors import bad_request

log = logging.getLogger(__name__)

MAX_QUERY_DAYS = 92
GROUPINGS = ("caller", "deployment", "day", "operation")
WRITE_ATTEMPTS = 3
BATCH_LIMIT = 100  # a Table Storage transaction holds at most 100 operations, all in one partition
FLUSH_SECONDS = 0.5


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
            "PartitionKey": self.at.strftime("%Y-%m-%d"),
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
                by_day[record.at.strftime("%Y-%m-%d")].append(record)
            for records in by_day.values():
                for start in range(0, len(records), BATCH_LIMIT):
                    await self._write(records[start:start + BATCH_LIMIT])

    async def _write(self, records: list[UsageRecord]) -> None:
        """One transaction, retried; if storage stays down the counts go to the error log to be replayed."""
        operations = [("upsert", r.entity(), {"mode": UpdateMode.REPLACE}) for r in records]
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                await self._table.submit_transaction(operations)
                return
            except Exception as exc:  # any storage failure: retry, then report
                if attempt == WRITE_ATTEMPTS:
                    for record in records:
                        log.error("usage row for %s NOT written (%s); counts: %s", record.request_id,
                                  type(exc).__name__, {k: v for k, v in record.entity().items() if k != "At"})
                    return
                await asyncio.sleep(0.2 * attempt)

    async def rows(self, first: date, last: date, caller_id: str | None = None) -> list[dict[str, Any]]:
        query = "PartitionKey ge @first and PartitionKey le @last"
        parameters: dict[str, Any] = {"first": first.isoformat(), "last": last.isoformat()}
        if caller_id:
            query += " and CallerId eq @caller"
            parameters["caller"] = caller_id
        return [dict(e) async for e in self._table.query_entities(query, parameters=parameters)]


def parse_range(start: str | None, end: str | None) -> tuple[date, date]:
    today = datetime.now(UTC).date()
    try:
        last = date.fromisoformat(end) if end else today
        first = date.fromisoformat(start) if start else last.replace(day=1)
    except ValueError:
        raise bad_request("'from' and 'to' must be dates like 2026-11-01.", code="invalid_date") from None
    if first > last:
        raise bad_request("'from' must not be after 'to'.", code="invalid_date")
    if (last - first) > timedelta(days=MAX_QUERY_DAYS - 1):
        raise bad_request(f"Query at most {MAX_QUERY_DAYS} days at a time.", code="range_too_long")
    return first, last


def parse_grouping(value: str | None) -> tuple[str, ...]:
    groups = tuple(g.strip() for g in (value or "caller,deployment").split(",") if g.strip())
    if not groups or not set(groups) <= set(GROUPINGS):
        raise bad_request(f"'group_by' takes a comma-separated subset of {', '.join(GROUPINGS)}.",
                          param="group_by")
    return groups


def summarize(rows: list[dict[str, Any]], groups: tuple[str, ...]) -> list[dict[str, Any]]:
    """Totals per group: requests, tokens, cost; estimated and unpriced rows are counted so finance sees them."""
    key_of = {
        "caller": lambda r: r["CallerId"],
        "deployment": lambda r: r["Deployment"],
        "day": lambda r: r["PartitionKey"],
        "operation": lambda r: r["Operation"],
    }
    totals: dict[tuple, dict[str, Any]] = defaultdict(lambda: {
        "requests": 0, "failed_requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
        "cached_tokens": 0, "estimated_requests": 0, "cost_usd": 0.0, "unpriced_requests": 0})
    names: dict[str, str] = {}
    for row in rows:
        key = tuple(key_of[g](row) for g in groups)
        total = totals[key]
        total["requests"] += 1
        total["failed_requests"] += 0 if 200 <= row["Status"] < 300 else 1
        total["prompt_tokens"] += row["PromptTokens"]
        total["completion_tokens"] += row["CompletionTokens"]
        total["total_tokens"] += row["PromptTokens"] + row["CompletionTokens"]
        total["cached_tokens"] += row["CachedTokens"]
        total["estimated_requests"] += 1 if row["Estimated"] else 0
        if row.get("CostUsd") is None:
            total["unpriced_requests"] += 1 if row["PromptTokens"] + row["CompletionTokens"] else 0
        else:
            total["cost_usd"] += row["CostUsd"]
        names[row["CallerId"]] = row["CallerName"]
    result = []
    for key, total in sorted(totals.items()):
        entry: dict[str, Any] = dict(zip(groups, key, strict=True))
        if "caller" in entry:
            entry = {"caller_id": entry.pop("caller"), "caller_name": names[key[groups.index("caller")]], **entry}
        result.append({**entry, **total, "cost_usd": round(total["cost_usd"], 10)})
    return result


def to_csv(summary: list[dict[str, Any]]) -> str:
    if not summary:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(summary[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in summary)
    return out.getvalue()


def _cell(value: Any) -> Any:
    # Names come from identity providers; a leading = + - @ would be a formula in a spreadsheet.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
