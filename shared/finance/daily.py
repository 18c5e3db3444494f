"""The daily usage table finance reads directly: one row per UTC day x caller x deployment, derived from the ledger.

Why a table of its own: the ledger has one row per call (a month at 100 requests/s is ~260 million rows), far too
many for Excel, Power BI or ``/api/usage`` to sum. The rollup works hour by hour, because re-reading a whole day
every 5 minutes does not scale (scripts/bench.py rollup): it reads one UTC hour of the ledger (every shard),
counts each request id once, and replaces that hour's partial sums in the internal ``gatewayUsageHourly`` table;
then it sums the day's partials into ``gatewayUsageDaily``. The timer re-derives only the current hour (and the
previous one early in an hour, plus any hour never derived); a rebuild and the after-midnight runs re-derive all
24 hours. The same ledger gives the same rows however often it runs (no run time or counter is stored), so it
is idempotent, and a late ledger row is picked up by the next run that covers its hour (docs/finance.md,
"Freshness"). Rows a previous run wrote for a group that no longer exists are deleted, so a rebuild is exact.

Money is summed as :class:`~decimal.Decimal` from the ledger's exact ``Cost`` text; the table stores it exactly
(``CostExact``, a decimal string) and as a number (``Cost``) for spreadsheets. Token sums are Int64.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal, InvalidOperation
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, UpdateMode
from azure.data.tables.aio import TableClient

from shared.accounting.ledger import BATCH_LIMIT, LATE_PARTITION, LEDGER_SHARDS, day_partition
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
    "Unit",
    "Units",
    "ImageVariant",
    "AudioInputTokens",
    "AudioOutputTokens",
    "ImageInputTokens",
    "ImageOutputTokens",
    "CostCenter",
    "Owner",
    "Department",
    "Tags",
]
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")
# Images and audio (shared.protocol.media): units and the token kinds Azure reports apart; audio in milliseconds.
MEDIA_FIELDS = (
    "images",
    "audio_ms",
    "characters",
    "audio_input_tokens",
    "audio_output_tokens",
    "image_input_tokens",
    "image_output_tokens",
)
COUNT_FIELDS = (
    "requests",
    "failed_requests",
    "estimated_requests",
    "unpriced_requests",
    *TOKEN_FIELDS,
    *MEDIA_FIELDS,
)
_MEDIA_COLUMNS = {
    "audio_input_tokens": "AudioInputTokens",
    "audio_output_tokens": "AudioOutputTokens",
    "image_input_tokens": "ImageInputTokens",
    "image_output_tokens": "ImageOutputTokens",
}
LEGACY_PRICE_VERSION = "legacy-float"  # ledger rows written before exact costs (CostUsd only)
CHARGEBACK_COLUMNS = ("CostCenter", "Owner", "Department", "Tags")
# Where a row's chargeback attributes come from: fixed on the ledger rows when the calls settled, or (ledger rows
# written before the attributes were recorded) the caller policy when the day was derived.
ATTRIBUTED_AT_SETTLEMENT = "settlement"
ATTRIBUTED_AT_ROLLUP = "policy-at-rollup"


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
    images: int = 0
    audio_ms: int = 0
    characters: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    image_input_tokens: int = 0
    image_output_tokens: int = 0
    image_variants: dict[str, int] = field(default_factory=dict)  # images per ``size/quality`` (per-image prices)
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
        units = self._add_media(row)
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
        elif prompt + completion or units:
            self.unpriced_requests += 1

    def _add_media(self, row: Mapping[str, Any]) -> bool:
        """The units of an image or audio row (None on text rows); True if it counted any."""
        unit = row.get("Unit")
        if not unit:
            return False
        for name, column in _MEDIA_COLUMNS.items():
            setattr(self, name, getattr(self, name) + integer(row.get(column)))
        try:
            quantity = Decimal(str(row.get("Units") or "0"))
        except InvalidOperation:
            return False
        if unit == "images":
            self.images += int(quantity)
            variant = str(row.get("ImageVariant") or "")
            self.image_variants[variant] = self.image_variants.get(variant, 0) + int(quantity)
        elif unit == "audio_seconds":
            self.audio_ms += int(quantity * 1000)
        elif unit == "characters":
            self.characters += int(quantity)
        return unit != "tokens" and quantity > 0

    def add(self, other: Totals) -> None:
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for variant, count in other.image_variants.items():
            self.image_variants[variant] = self.image_variants.get(variant, 0) + count
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
            **self.media_json(),
            "estimated_requests": self.estimated_requests,
            "unpriced_requests": self.unpriced_requests,
            "cost": money_text(self.cost),
            "currency": ",".join(sorted(self.currencies)),
            "price_versions": sorted(self.price_versions),
        }

    def media_json(self) -> dict[str, Any]:
        """Images and audio, only where there are any (text-only usage keeps its earlier shape)."""
        if not any(getattr(self, name) for name in MEDIA_FIELDS):
            return {}
        return {
            "images": self.images,
            "image_variants": dict(sorted(self.image_variants.items())),
            "audio_seconds": money_text(Decimal(self.audio_ms) / 1000),
            "characters": self.characters,
            "audio_input_tokens": self.audio_input_tokens,
            "audio_output_tokens": self.audio_output_tokens,
            "image_input_tokens": self.image_input_tokens,
            "image_output_tokens": self.image_output_tokens,
        }


Chargeback = tuple[str, str, str, str]  # cost center, owner, department, tags (JSON text, "" when none)


def ledger_chargeback(row: Mapping[str, Any]) -> Chargeback | None:
    """The chargeback attributes fixed on a ledger (or partial) row, None if the row has none (older rows)."""
    if row.get("CostCenter") is None:
        return None
    return (
        str(row.get("CostCenter") or ""),
        str(row.get("Owner") or ""),
        str(row.get("Department") or ""),
        str(row.get("Tags") or ""),
    )


def ledger_price_version(row: Mapping[str, Any]) -> str:
    """The price version a ledger row was priced with ("" when unpriced)."""
    if row.get("Cost") is not None:
        return str(row.get("PriceVersion") or "")
    return LEGACY_PRICE_VERSION if row.get("CostUsd") is not None else ""


@dataclass
class DailyGroup:
    """One row of the daily table: a day, caller and deployment, one price version and one set of chargeback
    attributes (a price change or an attribute change during the day starts a second row)."""

    day: date
    caller_id: str
    caller_name: str
    deployment: str
    totals: Totals
    chargeback: Chargeback | None = None  # None: not fixed on the ledger rows, taken from the policy at rollup
    price_version: str = ""

    @property
    def key(self) -> str:
        return daily_row_key(self.caller_id, self.deployment, self.price_version, self.chargeback)


class Aggregation:
    """Ledger rows of one day summed per (caller, deployment) as they are read, each request id counted once (a
    replay after a shard change could have written it to two partitions). Rows are added one by one as their
    pages arrive and never kept: an hour of a busy gateway is hundreds of thousands of rows."""

    def __init__(self, day: date) -> None:
        self.day = day
        self.rows = 0  # rows added, duplicates included (the hour's marker row records it)
        self.groups: dict[tuple[str, str, str, Chargeback | None], DailyGroup] = {}
        self._seen: set[str] = set()

    def add(self, row: Mapping[str, Any]) -> None:
        self.rows += 1
        request_id = str(row["RowKey"])
        if request_id in self._seen:
            return
        self._seen.add(request_id)
        chargeback, version = ledger_chargeback(row), ledger_price_version(row)
        key = (str(row["CallerId"]), str(row["Deployment"]), version, chargeback)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = DailyGroup(
                self.day, key[0], str(row.get("CallerName", "")), key[1], Totals(), chargeback, version
            )
        group.totals.add_ledger_row(row)


def daily_totals(row: Mapping[str, Any]) -> Totals:
    """A daily (or hourly partial) row as Totals, its exact cost from ``CostExact``."""
    try:
        cost = Decimal(str(row.get("CostExact") or "0"))
    except InvalidOperation:
        cost = Decimal(repr(float(row.get("Cost") or 0.0)))
    return Totals(
        requests=integer(row.get("Requests")),
        failed_requests=integer(row.get("FailedRequests")),
        estimated_requests=integer(row.get("EstimatedRequests")),
        unpriced_requests=integer(row.get("UnpricedRequests")),
        prompt_tokens=integer(row.get("PromptTokens")),
        completion_tokens=integer(row.get("CompletionTokens")),
        cached_tokens=integer(row.get("CachedTokens")),
        reasoning_tokens=integer(row.get("ReasoningTokens")),
        images=integer(row.get("Images")),
        audio_ms=integer(row.get("AudioMs")),
        characters=integer(row.get("Characters")),
        audio_input_tokens=integer(row.get("AudioInputTokens")),
        audio_output_tokens=integer(row.get("AudioOutputTokens")),
        image_input_tokens=integer(row.get("ImageInputTokens")),
        image_output_tokens=integer(row.get("ImageOutputTokens")),
        image_variants=_variants(row.get("ImageVariants")),
        cost=cost,
        currencies={c for c in str(row.get("Currency") or "").split(",") if c},
        price_versions={v for v in str(row.get("PriceVersions") or "").split(",") if v},
    )


def totals_columns(t: Totals) -> dict[str, Any]:
    return {
        "Requests": int64(t.requests),
        "FailedRequests": int64(t.failed_requests),
        "EstimatedRequests": int64(t.estimated_requests),
        "UnpricedRequests": int64(t.unpriced_requests),
        "PromptTokens": int64(t.prompt_tokens),
        "CompletionTokens": int64(t.completion_tokens),
        "TotalTokens": int64(t.total_tokens),
        "CachedTokens": int64(t.cached_tokens),
        "ReasoningTokens": int64(t.reasoning_tokens),
        **_media_columns(t),
        "Cost": float(t.cost),
        "CostExact": money_text(t.cost),
        "Currency": ",".join(sorted(t.currencies)),
        "PriceVersions": ",".join(sorted(t.price_versions)),
    }


def _media_columns(t: Totals) -> dict[str, Any]:
    """Image and audio columns of a daily row, only where it has any (text rows keep their earlier columns)."""
    if not any(getattr(t, name) for name in MEDIA_FIELDS):
        return {}
    return {
        "Images": int64(t.images),
        "AudioMs": int64(t.audio_ms),
        "Characters": int64(t.characters),
        **{column: int64(getattr(t, name)) for name, column in _MEDIA_COLUMNS.items()},
        "ImageVariants": json.dumps(dict(sorted(t.image_variants.items()))),
    }


def _variants(raw: Any) -> dict[str, int]:
    try:
        value = json.loads(str(raw or "{}"))
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}


def daily_row_key(
    caller_id: str, deployment: str, price_version: str = "", chargeback: Chargeback | None = None
) -> str:
    """``{caller}|{deployment}|{variant}``: the variant is a digest of the price version and the chargeback
    attributes, so a day with a price or attribute change keeps one row per version and attribute set."""
    variant = json.dumps([price_version, chargeback], ensure_ascii=False)
    digest = hashlib.sha256(variant.encode()).hexdigest()[:12]
    return f"{table_key(caller_id)}|{table_key(deployment)}|{digest}"


def chargeback_columns(chargeback: Chargeback | None, policy: CallerPolicy | None = None) -> dict[str, str]:
    """The chargeback columns of a daily row: the attributes fixed at settlement, else the policy's (flagged)."""
    if chargeback is None:
        policy = policy or CallerPolicy("")
        tags = json.dumps(dict(sorted(policy.tags.items())), ensure_ascii=False) if policy.tags else ""
        chargeback, source = (policy.cost_center, policy.owner, policy.department, tags), ATTRIBUTED_AT_ROLLUP
    else:
        source = ATTRIBUTED_AT_SETTLEMENT
    return {**dict(zip(CHARGEBACK_COLUMNS, chargeback, strict=True)), "Attribution": source}


def daily_entity(group: DailyGroup, policy: CallerPolicy | None) -> dict[str, Any]:
    """One row of the daily table (schema: docs/finance.md)."""
    return {
        "PartitionKey": day_partition(group.day),
        "RowKey": group.key,
        "Date": datetime.combine(group.day, clock(), tzinfo=UTC),
        "Day": group.day.isoformat(),
        "Month": group.day.strftime("%Y-%m"),
        "CallerId": group.caller_id,
        "CallerName": group.caller_name,
        "Deployment": group.deployment,
        **totals_columns(group.totals),
        **chargeback_columns(group.chargeback, policy),
    }


@dataclass
class RollupReport:
    day: date
    hours: list[str] = field(default_factory=list)  # the hours re-derived from the ledger ("legacy": unsharded rows)
    ledger_rows: int = 0
    daily_rows: int = 0
    deleted_rows: int = 0
    read_requests: int = 0  # storage round trips reading (query pages, policy reads)
    write_requests: int = 0  # storage round trips writing (transactions)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "hours": self.hours,
            "ledger_rows": self.ledger_rows,
            "daily_rows": self.daily_rows,
            "deleted_rows": self.deleted_rows,
            "read_requests": self.read_requests,
            "write_requests": self.write_requests,
            "seconds": round(self.seconds, 3),
        }


ALL_HOURS = tuple(range(24))
LEGACY_HOUR = "legacy"  # ledger rows written before sharding: PartitionKey is the bare day


class DailyRollup:
    """Derives the daily usage table from the ledger, through hourly partial sums."""

    def __init__(
        self, ledger: TableClient, hourly: TableClient, daily: TableClient, policies: CallerPolicyStore
    ) -> None:
        self._ledger, self._hourly, self._daily, self._policies = ledger, hourly, daily, policies

    async def day(
        self, day: date, hours: Collection[int] | None = None, *, unsharded: bool = False, write_daily: bool = True
    ) -> RollupReport:
        """Re-derive ``hours`` of ``day`` (None: all of them, and the unsharded rows; ``unsharded``: the unsharded
        rows too) plus any hour of the day up to the latest one asked for that was never derived, then rewrite the day's
        rows of the daily table (unless ``write_daily`` is False: a rebuild job's steps before the day's last)."""
        started = time.perf_counter()
        report = RollupReport(day)
        partition = day_partition(day)
        partials = await self._entities(self._hourly, partition, None, report)
        derived = {str(e["RowKey"]) for e in partials if "|" not in str(e["RowKey"])}
        if hours is None:
            wanted: list[str] = [f"{h:02d}" for h in ALL_HOURS] + [LEGACY_HOUR]
        else:
            latest = max(hours, default=-1)
            wanted = [f"{h:02d}" for h in ALL_HOURS if h in hours or (h <= latest and f"{h:02d}" not in derived)]
            wanted += [LEGACY_HOUR] if unsharded else []
        # Rows written before sharding sit in the bare day's partition; a replay after the upgrade can have written
        # the same request id again under an hour's partition: the unsharded copy counts, the other is skipped.
        legacy = [
            row
            async for row in _pages(self._ledger, "PartitionKey eq @day", {"day": partition}, LEDGER_COLUMNS, report)
        ]
        legacy_ids = {str(row["RowKey"]) for row in legacy}
        fresh: list[dict[str, Any]] = []
        for hour in wanted:
            existing = [e for e in partials if str(e["RowKey"]).split("|")[0] == hour]
            rows = legacy if hour == LEGACY_HOUR else None
            fresh += await self._derive_hour(day, hour, existing, rows, legacy_ids, report)
        report.hours = wanted
        if not write_daily:
            report.seconds = time.perf_counter() - started
            return report
        partials = [e for e in partials if str(e["RowKey"]).split("|")[0] not in wanted] + fresh
        groups: dict[str, DailyGroup] = {}
        for entity in partials:
            row_key = str(entity["RowKey"])
            if "|" not in row_key:
                continue
            key = row_key.split("|", 1)[1]  # the daily row's key (the group's caller, deployment and variant)
            if key not in groups:
                groups[key] = DailyGroup(
                    day,
                    str(entity["CallerId"]),
                    str(entity.get("CallerName", "")),
                    str(entity["Deployment"]),
                    Totals(),
                    ledger_chargeback(entity),
                    str(entity.get("PriceVersions") or ""),
                )
            groups[key].totals.add(daily_totals(entity))
        # Only rows without attributes of their own (written before they were recorded) read today's policies.
        unattributed = {g.caller_id for g in groups.values() if g.chargeback is None}
        policies = await self._chargeback(unattributed, report) if unattributed else {}
        entities = [{**daily_entity(g, policies.get(g.caller_id)), "RowKey": key} for key, g in sorted(groups.items())]
        existing = await self._entities(self._daily, partition, ["RowKey"], report)
        report.deleted_rows = await self._replace(self._daily, partition, entities, existing, report)
        report.daily_rows = len(entities)
        report.seconds = time.perf_counter() - started
        return report

    async def on_timer(self, now: datetime) -> list[RollupReport]:
        """The timer's run: :func:`timer_plan` plus every hour a writer marked as having received rows after it had
        ended (shared.accounting.ledger.mark_late_hours), so late rows reach the daily table without a rebuild.
        A marker is deleted after its hour was re-derived, and only if no writer marked it again meanwhile."""
        markers = [e async for e in self._ledger.query_entities("PartitionKey eq @p", parameters={"p": LATE_PARTITION})]
        plans = merge_plans(timer_plan(now), [hour for e in markers if (hour := _marked_hour(e)) is not None])
        reports = [await self.day(plan.day, plan.hours) for plan in plans]
        for marker in markers:
            with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
                await self._ledger.delete_entity(
                    LATE_PARTITION,
                    str(marker["RowKey"]),
                    etag=marker.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        return reports

    async def _derive_hour(
        self,
        day: date,
        hour: str,
        existing: list[dict[str, Any]],
        rows: list[dict[str, Any]] | None,
        skip: set[str],
        report: RollupReport,
    ) -> list[dict[str, Any]]:
        """Replace one hour's partial sums (and its marker row) with sums of the ledger's rows of that hour."""
        partition = day_partition(day)
        aggregation = Aggregation(day)
        if rows is None:
            await self._read_hour(f"{partition}T{hour}", f"{partition}T{int(hour) + 1:02d}", skip, report, aggregation)
        else:
            for row in rows:
                aggregation.add(row)
        report.ledger_rows += aggregation.rows
        entities: list[dict[str, Any]] = [
            {
                "PartitionKey": partition,
                "RowKey": f"{hour}|{g.key}",
                "CallerId": g.caller_id,
                "CallerName": g.caller_name,
                "Deployment": g.deployment,
                **totals_columns(g.totals),
                **(dict(zip(CHARGEBACK_COLUMNS, g.chargeback, strict=True)) if g.chargeback is not None else {}),
            }
            for g in aggregation.groups.values()
        ]
        entities.append({"PartitionKey": partition, "RowKey": hour, "LedgerRows": int64(aggregation.rows)})
        await self._replace(self._hourly, partition, entities, existing, report)
        return entities

    async def _read_hour(self, first: str, after: str, skip: set[str], report: RollupReport, into: Aggregation) -> None:
        """Add the ledger rows with keys in [first, after) to ``into`` as their pages arrive: one query per shard's
        key range, run concurrently, because each partition is served on its own (the ranges cover every key,
        whatever the shard count was)."""
        bounds = [first, *(f"{first}-{shard:02d}" for shard in range(1, LEDGER_SHARDS)), after]

        async def read(low: str, high: str) -> None:
            query, parameters = "PartitionKey ge @low and PartitionKey lt @high", {"low": low, "high": high}
            async for row in _pages(self._ledger, query, parameters, LEDGER_COLUMNS, report):
                if str(row["RowKey"]) not in skip:
                    into.add(row)

        await asyncio.gather(*(read(low, high) for low, high in itertools.pairwise(bounds)))

    async def _chargeback(self, callers: set[str], report: RollupReport) -> dict[str, CallerPolicy]:
        known = await self._policies.chargeback_all()
        report.read_requests += 1 + len(known) // 1000
        return {caller: known.get(caller) or CallerPolicy(caller) for caller in callers}

    @staticmethod
    async def _entities(
        table: TableClient, partition: str, select: list[str] | None, report: RollupReport
    ) -> list[dict[str, Any]]:
        query, parameters = "PartitionKey eq @p", {"p": partition}
        return [e async for e in _pages(table, query, parameters, select, report)]

    @staticmethod
    async def _replace(
        table: TableClient,
        partition: str,
        entities: list[dict[str, Any]],
        existing: Iterable[Mapping[str, Any]],
        report: RollupReport,
    ) -> int:
        """Upsert ``entities`` and delete the ``existing`` rows they do not replace (one partition, 100 a batch)."""
        keep = {e["RowKey"] for e in entities}
        operations: list[tuple[str, Any, dict[str, Any]]] = [
            ("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in entities
        ]
        stale = [str(e["RowKey"]) for e in existing if e["RowKey"] not in keep]
        operations += [("delete", {"PartitionKey": partition, "RowKey": key}, {}) for key in stale]
        for start in range(0, len(operations), BATCH_LIMIT):
            await table.submit_transaction(operations[start : start + BATCH_LIMIT])
            report.write_requests += 1
        return len(stale)


async def _pages(
    table: TableClient, query: str, parameters: dict[str, Any], select: list[str] | None, report: RollupReport
) -> AsyncIterator[dict[str, Any]]:
    pages = table.query_entities(query, parameters=parameters, select=select, results_per_page=1000).by_page()
    async for page in pages:
        report.read_requests += 1
        async for entity in page:
            yield dict(entity)


@dataclass(frozen=True)
class RollupPlan:
    day: date
    hours: frozenset[int] | None  # None: the whole day


def _marked_hour(entity: Mapping[str, Any]) -> tuple[date, int] | None:
    key = str(entity.get("RowKey", ""))
    try:
        day, hour = date.fromisoformat(key[:10]), int(key[11:13])
    except ValueError:
        return None
    return (day, hour) if len(key) == 13 and key[10] == "T" and 0 <= hour < 24 else None


def merge_plans(plans: list[RollupPlan], hours: Iterable[tuple[date, int]]) -> list[RollupPlan]:
    """``plans`` plus the given (day, hour)s, one plan per day, oldest day first."""
    by_day: dict[date, frozenset[int] | None] = {plan.day: plan.hours for plan in plans}
    for day, hour in hours:
        if day in by_day and by_day[day] is None:
            continue  # the whole day is re-derived anyway
        by_day[day] = (by_day.get(day) or frozenset()) | {hour}
    return [RollupPlan(day, by_day[day]) for day in sorted(by_day)]


def timer_plan(now: datetime) -> list[RollupPlan]:
    """What the timer rolls up at ``now``: today's current hour on every run (and the previous hour in the first
    15 minutes of an hour, for rows written late: writer retries, journal replay within ~7 minutes); all of
    yesterday on the runs that start in 00:10-00:15 and 06:00-06:05 UTC."""
    now = now.astimezone(UTC)
    today = now.date()
    hours = {now.hour, now.hour - 1} if now.minute < 15 and now.hour > 0 else {now.hour}
    plan = [RollupPlan(today, frozenset(hours))]
    minute_of_day = now.hour * 60 + now.minute
    if 10 <= minute_of_day < 15 or 360 <= minute_of_day < 365:
        plan.insert(0, RollupPlan(today - timedelta(days=1), None))
    return plan
