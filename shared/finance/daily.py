"""The daily usage table finance reads directly: one row per UTC day x caller x deployment, derived from the ledger.

Why a table of its own: the ledger has one row per call (a month at 100 requests/s is ~260 million rows), far too
many for Excel, Power BI or ``/api/usage`` to sum. The rollup reads one day of the ledger (every shard of every
hour), counts each request id once, and replaces that day's rows in ``gatewayUsageDaily``: the same ledger gives
the same rows however often it runs (no run time or counter is stored), so it is idempotent, and a late ledger
row is picked up by the next run for its day (docs/finance.md, "Freshness"). Rows a previous run wrote for a
group that no longer exists are deleted, so a rebuild is exact.

Money is summed as :class:`~decimal.Decimal` from the ledger's exact ``Cost`` text; the table stores it exactly
(``CostExact``, a decimal string) and as a number (``Cost``) for spreadsheets. Token sums are Int64.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from typing import Any

from azure.data.tables import EdmType, EntityProperty, UpdateMode
from azure.data.tables.aio import TableClient

from shared.accounting.ledger import BATCH_LIMIT, day_partition, day_range_filter
from shared.accounting.prices import money_text
from shared.policy.callers import CallerPolicy, CallerPolicyStore
from shared.storage.tables import table_key

LEDGER_COLUMNS = [
    "RowKey",
    "CallerId",
    "CallerName",
    "Deployment",
    "Status",
    "PromptTokens",
    "CompletionTokens",
    "CachedTokens",
    "ReasoningTokens",
    "Estimated",
    "Cost",
    "CostUsd",
    "Currency",
    "PriceVersion",
]
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")
COUNT_FIELDS = ("requests", "failed_requests", "estimated_requests", "unpriced_requests", *TOKEN_FIELDS)
LEGACY_PRICE_VERSION = "legacy-float"  # ledger rows written before exact costs (CostUsd only)


def integer(value: Any) -> int:
    """A Table integer as read back (Int64 values come wrapped in an EntityProperty)."""
    if isinstance(value, EntityProperty):
        value = value.value
    return int(value or 0)


def int64(value: int) -> EntityProperty:
    return EntityProperty(value, EdmType.INT64)


@dataclass
class Totals:
    """Sums over ledger rows (or over daily rows): counts, tokens and exact cost."""

    requests: int = 0
    failed_requests: int = 0
    estimated_requests: int = 0
    unpriced_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal = field(default_factory=Decimal)
    currencies: set[str] = field(default_factory=set)
    price_versions: set[str] = field(default_factory=set)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add_ledger_row(self, row: Mapping[str, Any]) -> None:
        self.requests += 1
        self.failed_requests += 0 if 200 <= integer(row.get("Status")) < 300 else 1
        self.estimated_requests += 1 if row.get("Estimated") else 0
        prompt, completion = integer(row.get("PromptTokens")), integer(row.get("CompletionTokens"))
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cached_tokens += integer(row.get("CachedTokens"))
        self.reasoning_tokens += integer(row.get("ReasoningTokens"))
        if row.get("Cost") is not None:
            self.cost += Decimal(str(row["Cost"]))
            if row.get("Currency"):
                self.currencies.add(str(row["Currency"]))
            if row.get("PriceVersion"):
                self.price_versions.add(str(row["PriceVersion"]))
        elif row.get("CostUsd") is not None:  # written before exact costs: the float's shortest decimal text
            self.cost += Decimal(repr(float(row["CostUsd"])))
            self.currencies.add("USD")
            self.price_versions.add(LEGACY_PRICE_VERSION)
        elif prompt + completion:
            self.unpriced_requests += 1

    def add(self, other: Totals) -> None:
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cost += other.cost
        self.currencies |= other.currencies
        self.price_versions |= other.price_versions

    def to_json(self) -> dict[str, Any]:
        """Counts and tokens as numbers, money as exact decimal text."""
        return {
            "requests": self.requests,
            "failed_requests": self.failed_requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "estimated_requests": self.estimated_requests,
            "unpriced_requests": self.unpriced_requests,
            "cost": money_text(self.cost),
            "currency": ",".join(sorted(self.currencies)),
            "price_versions": sorted(self.price_versions),
        }


@dataclass
class DailyGroup:
    day: date
    caller_id: str
    caller_name: str
    deployment: str
    totals: Totals


def aggregate(day: date, rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], DailyGroup]:
    """Ledger rows of one day per (caller, deployment), each request id counted once (a replay after a shard
    change could have written it to two partitions)."""
    seen: set[str] = set()
    groups: dict[tuple[str, str], DailyGroup] = {}
    for row in rows:
        request_id = str(row["RowKey"])
        if request_id in seen:
            continue
        seen.add(request_id)
        key = (str(row["CallerId"]), str(row["Deployment"]))
        group = groups.get(key)
        if group is None:
            group = groups[key] = DailyGroup(day, key[0], str(row.get("CallerName", "")), key[1], Totals())
        group.totals.add_ledger_row(row)
    return groups


def daily_row_key(caller_id: str, deployment: str) -> str:
    return f"{table_key(caller_id)}|{table_key(deployment)}"


def daily_entity(group: DailyGroup, policy: CallerPolicy) -> dict[str, Any]:
    """One row of the daily table (schema: docs/finance.md)."""
    t = group.totals
    return {
        "PartitionKey": day_partition(group.day),
        "RowKey": daily_row_key(group.caller_id, group.deployment),
        "Date": datetime.combine(group.day, clock(), tzinfo=UTC),
        "Day": group.day.isoformat(),
        "Month": group.day.strftime("%Y-%m"),
        "CallerId": group.caller_id,
        "CallerName": group.caller_name,
        "Deployment": group.deployment,
        "Requests": int64(t.requests),
        "FailedRequests": int64(t.failed_requests),
        "EstimatedRequests": int64(t.estimated_requests),
        "UnpricedRequests": int64(t.unpriced_requests),
        "PromptTokens": int64(t.prompt_tokens),
        "CompletionTokens": int64(t.completion_tokens),
        "TotalTokens": int64(t.total_tokens),
        "CachedTokens": int64(t.cached_tokens),
        "ReasoningTokens": int64(t.reasoning_tokens),
        "Cost": float(t.cost),
        "CostExact": money_text(t.cost),
        "Currency": ",".join(sorted(t.currencies)),
        "PriceVersions": ",".join(sorted(t.price_versions)),
        "CostCenter": policy.cost_center,
        "Owner": policy.owner,
        "Department": policy.department,
        "Tags": json.dumps(dict(sorted(policy.tags.items())), ensure_ascii=False) if policy.tags else "",
    }


@dataclass
class RollupReport:
    day: date
    ledger_rows: int = 0
    daily_rows: int = 0
    deleted_rows: int = 0
    read_requests: int = 0  # storage round trips (query pages) reading the ledger and the old daily rows
    write_requests: int = 0  # storage round trips (transactions) writing and deleting daily rows
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "ledger_rows": self.ledger_rows,
            "daily_rows": self.daily_rows,
            "deleted_rows": self.deleted_rows,
            "read_requests": self.read_requests,
            "write_requests": self.write_requests,
            "seconds": round(self.seconds, 3),
        }


async def _pages(
    table: TableClient, query: str, parameters: dict[str, Any], select: list[str], report: RollupReport
) -> AsyncIterator[dict[str, Any]]:
    pages = table.query_entities(query, parameters=parameters, select=select, results_per_page=1000).by_page()
    async for page in pages:
        report.read_requests += 1
        async for entity in page:
            yield entity


async def rollup_day(ledger: TableClient, daily: TableClient, policies: CallerPolicyStore, day: date) -> RollupReport:
    """Derive ``day``'s rows of the daily table from the ledger and replace them (idempotent)."""
    started = time.perf_counter()
    report = RollupReport(day)
    query, parameters = day_range_filter(day, day)
    rows = []
    async for row in _pages(ledger, query, parameters, LEDGER_COLUMNS, report):
        rows.append(row)
    report.ledger_rows = len(rows)
    groups = aggregate(day, rows)
    entities = [daily_entity(group, await policies.get(group.caller_id)) for group in groups.values()]
    partition = day_partition(day)
    existing = [
        str(e["RowKey"]) async for e in _pages(daily, "PartitionKey eq @day", {"day": partition}, ["RowKey"], report)
    ]
    keep = {e["RowKey"] for e in entities}
    operations: list[tuple[str, Any, dict[str, Any]]] = [
        ("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in entities
    ]
    stale: list[tuple[str, Any, dict[str, Any]]] = [
        ("delete", {"PartitionKey": partition, "RowKey": key}, {}) for key in existing if key not in keep
    ]
    operations += stale
    for start in range(0, len(operations), BATCH_LIMIT):
        await daily.submit_transaction(operations[start : start + BATCH_LIMIT])
        report.write_requests += 1
    report.daily_rows, report.deleted_rows = len(entities), len(stale)
    report.seconds = time.perf_counter() - started
    return report


def days_to_roll_up(now: datetime) -> list[date]:
    """What the timer rolls up at ``now``: today on every run; yesterday on the runs that start in 00:10-00:15
    and 06:00-06:05 UTC, after rows settled before midnight but written late (writer retries, journal replay
    within ~7 minutes) have reached the ledger."""
    now = now.astimezone(UTC)
    today = now.date()
    minute_of_day = now.hour * 60 + now.minute
    late_window = 10 <= minute_of_day < 15 or 360 <= minute_of_day < 365
    return [today - timedelta(days=1), today] if late_window else [today]
