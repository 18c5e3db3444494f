"""Finance's questions answered from the daily usage table: usage and cost over whole UTC days, filtered by caller,
deployment and cost center, grouped by caller, deployment, day, month and/or cost center, with a totals row.

Why the daily table and not the ledger: a month of the ledger at 100 requests/s is ~260 million rows; the daily
table holds one row per day x caller x deployment, derived exactly from the ledger (:mod:`shared.finance.daily`),
so the sums here equal the ledger's to the token and to the last decimal of the cost. Rows are aggregated as
they are read (memory grows with the number of groups, not of rows).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from azure.data.tables.aio import TableClient

from shared.accounting.ledger import day_partition, day_range_filter
from shared.accounting.prices import money_text
from shared.auth.identity import canonical_caller_id
from shared.errors import bad_request
from shared.finance.daily import Totals, daily_totals
from shared.text import well_formed

MAX_QUERY_DAYS = 366
# Days a query or a rebuild may name: far enough either way for any real question, and far from date.min/max so
# date arithmetic (the month's last day, a range's length) cannot overflow.
EARLIEST_DAY, LATEST_DAY = date(1970, 1, 1), date(8999, 12, 31)
GROUPINGS = ("caller", "deployment", "day", "month", "cost_center", "department", "owner")
TAG_GROUP = "tag:"  # group_by=tag:<name>: by the value of one of the callers' tags
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")  # as caller policies allow (shared.policy.callers)
DEFAULT_GROUPING = ("caller", "deployment")
CHARGEBACK_COLUMNS = ("cost_center", "owner", "department", "tags")
# One naming scheme: the daily table's column names are the CSV's headers and the FOCUS export's x_ columns;
# JSON uses the same names in snake_case (docs/finance.md, "Column names").
TABLE_NAMES = {
    "caller_id": "CallerId",
    "caller_name": "CallerName",
    "deployment": "Deployment",
    "day": "Day",
    "month": "Month",
    "cost_center": "CostCenter",
    "owner": "Owner",
    "department": "Department",
    "tags": "Tags",
    "requests": "Requests",
    "failed_requests": "FailedRequests",
    "prompt_tokens": "PromptTokens",
    "completion_tokens": "CompletionTokens",
    "total_tokens": "TotalTokens",
    "cached_tokens": "CachedTokens",
    "reasoning_tokens": "ReasoningTokens",
    "estimated_requests": "EstimatedRequests",
    "unpriced_requests": "UnpricedRequests",
    "cost": "Cost",
    "currency": "Currency",
    "price_versions": "PriceVersions",
    "total": "Total",
}


def table_name(json_name: str) -> str:
    """The daily table's name of a JSON field (``tag:app`` groups: ``Tag:app``)."""
    if json_name.startswith("tag:"):
        return "Tag:" + json_name[4:]
    return TABLE_NAMES.get(json_name, json_name)


FORMULA_STARTS = ("=", "+", "-", "@")


async def ledger_rows(
    table: TableClient, first: date, last: date, caller_id: str | None = None
) -> list[dict[str, Any]]:
    """Every ledger row of the UTC days ``first``..``last`` across all shards (reconciliation and tests)."""
    query, parameters = day_range_filter(first, last)
    if caller_id:
        query += " and CallerId eq @caller"
        parameters["caller"] = caller_id
    return [dict(e) async for e in table.query_entities(query, parameters=parameters)]


@dataclass(frozen=True)
class UsageQuery:
    first: date
    last: date
    groups: tuple[str, ...] = DEFAULT_GROUPING
    caller_id: str | None = None
    deployment: str | None = None
    cost_center: str | None = None
    department: str | None = None
    owner: str | None = None
    tag: tuple[str, str] | None = None  # (name, value): callers whose tag has that value

    def to_json(self) -> dict[str, Any]:
        filters = {
            "caller_id": self.caller_id,
            "deployment": self.deployment,
            "cost_center": self.cost_center,
            "department": self.department,
            "owner": self.owner,
            "tag": f"{self.tag[0]}:{self.tag[1]}" if self.tag else None,
        }
        return {
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "group_by": list(self.groups),
            "filters": {k: v for k, v in filters.items() if v is not None},
        }


def parse_query(params: Mapping[str, str]) -> UsageQuery:
    first, last = parse_range(params.get("from"), params.get("to"), params.get("month"))
    filters = {}
    for name, value in (
        ("caller_id", params.get("caller_id") or params.get("caller")),
        ("deployment", params.get("deployment")),
        ("cost_center", params.get("cost_center")),
        ("department", params.get("department")),
        ("owner", params.get("owner")),
    ):
        if name != "caller_id" and value is not None and (len(value) > 512 or not value.isprintable()):
            raise bad_request(f"'{name}' must be printable text of at most 512 characters.", param=name)
        if name == "caller_id" and value:
            value = canonical_caller_id(value)  # ids are stored canonical (lower-case GUIDs): compare the same way
            if value is None:
                raise bad_request(
                    "'caller_id' must be a caller id '<tenant id>/<object id>'.", code="invalid_caller_id", param=name
                )
        filters[name] = value or None
    return UsageQuery(
        first, last, parse_grouping(params.get("group_by")), **filters, tag=_tag_filter(params.get("tag"))
    )


def _tag_filter(value: str | None) -> tuple[str, str] | None:
    """``tag=app:chat``: callers whose tag ``app`` is ``chat``."""
    if not value:
        return None
    name, _, tag = value.partition(":")
    if not _TAG_NAME.fullmatch(name) or not _ or len(tag) > 256 or not tag.isprintable():
        raise bad_request("'tag' must be '<tag name>:<value>', e.g. app:chat.", param="tag")
    return name, tag


def parse_range(start: str | None, end: str | None, month: str | None = None) -> tuple[date, date]:
    """``from``/``to`` (inclusive UTC days), or ``month`` (``2026-11``); by default this month so far."""
    today = datetime.now(UTC).date()
    if month is not None:
        if start or end:
            raise bad_request("Give either 'month' or 'from'/'to', not both.", code="invalid_date", param="month")
        try:
            first = date.fromisoformat(f"{month}-01") if len(month) == 7 else None
        except ValueError:
            first = None
        if first is None or not EARLIEST_DAY <= first <= LATEST_DAY:
            raise bad_request(
                f"'month' must be a month like 2026-11, from {EARLIEST_DAY:%Y-%m} to {LATEST_DAY:%Y-%m}.",
                code="invalid_date",
                param="month",
            )
        return first, (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    try:
        last = _day(end) if end else today
        first = _day(start) if start else last.replace(day=1)
    except ValueError:
        raise bad_request(
            f"'from' and 'to' must be dates like 2026-11-01, from {EARLIEST_DAY} to {LATEST_DAY}.", code="invalid_date"
        ) from None
    if first > last:
        raise bad_request("'from' must not be after 'to'.", code="invalid_date")
    if (last - first) > timedelta(days=MAX_QUERY_DAYS - 1):
        raise bad_request(f"Query at most {MAX_QUERY_DAYS} days at a time.", code="range_too_long")
    return first, last


def _day(text: str) -> date:
    if len(text) != 10:  # date.fromisoformat also takes 20261101 and week dates
        raise ValueError(text)
    day = date.fromisoformat(text)
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise ValueError(text)
    return day


def parse_grouping(value: str | None) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_GROUPING
    groups = tuple(g.strip() for g in value.split(",") if g.strip())
    known = all(
        g in GROUPINGS or (g.startswith(TAG_GROUP) and _TAG_NAME.fullmatch(g[len(TAG_GROUP) :])) for g in groups
    )
    if not known or len(set(groups)) != len(groups):
        raise bad_request(
            f"'group_by' takes a comma-separated subset of {', '.join(GROUPINGS)} and tag:<tag name> "
            "(empty: one totals row).",
            param="group_by",
        )
    return groups


async def daily_rows(table: TableClient, query: UsageQuery) -> AsyncIterator[dict[str, Any]]:
    """The daily table's rows for the query's days and filters (filtered by the service, read page by page).

    Strings are made well-formed as they are read: a name stored with a lone surrogate (before names were cleaned
    where they enter) would otherwise break the JSON and CSV encoders of every view that shows the row."""
    text = "PartitionKey ge @first and PartitionKey le @last"
    parameters: dict[str, Any] = {"first": day_partition(query.first), "last": day_partition(query.last)}
    for name, column, value in (
        ("caller", "CallerId", query.caller_id),
        ("deployment", "Deployment", query.deployment),
        ("cost_center", "CostCenter", query.cost_center),
        ("department", "Department", query.department),
        ("owner", "Owner", query.owner),
    ):
        if value is not None:
            text += f" and {column} eq @{name}"
            parameters[name] = value
    async for entity in table.query_entities(text, parameters=parameters, results_per_page=1000):
        if query.tag is None or _tags(entity).get(query.tag[0]) == query.tag[1]:
            yield well_formed(dict(entity))


def _tags(row: Mapping[str, Any]) -> dict[str, Any]:
    try:
        tags = json.loads(row.get("Tags") or "{}")
    except ValueError:
        return {}
    return well_formed(tags) if isinstance(tags, dict) else {}  # JSON text may escape a lone surrogate


def chargeback(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "cost_center": row.get("CostCenter", ""),
        "owner": row.get("Owner", ""),
        "department": row.get("Department", ""),
        "tags": _tags(row),
    }


@dataclass
class Summary:
    """Groups in a stable order, and the totals row over everything the query matched."""

    groups: tuple[str, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)


async def summarize(rows: AsyncIterator[Mapping[str, Any]], groups: tuple[str, ...]) -> Summary:
    keyed: dict[tuple[str, ...], tuple[dict[str, Any], Totals]] = {}
    summary = Summary(groups)
    async for row in rows:
        key_values = {
            "caller": str(row.get("CallerId", "")),
            "deployment": str(row.get("Deployment", "")),
            "day": str(row.get("Day") or row.get("PartitionKey", "")),
            "month": str(row.get("Month") or str(row.get("PartitionKey", ""))[:7]),
            "cost_center": str(row.get("CostCenter", "")),
            "department": str(row.get("Department", "")),
            "owner": str(row.get("Owner", "")),
        }
        for group in groups:
            if group.startswith(TAG_GROUP):
                key_values[group] = str(_tags(row).get(group[len(TAG_GROUP) :], ""))
        key = tuple(key_values[g] for g in groups)
        totals = daily_totals(row)
        summary.totals.add(totals)
        if key not in keyed:
            keyed[key] = (_labels(groups, key_values, row), Totals())
        labels, group_totals = keyed[key]
        group_totals.add(totals)
        if "caller" in groups and str(row.get("Day", "")) >= labels.get("_latest", ""):
            labels.update(caller_name=row.get("CallerName", ""), _latest=str(row.get("Day", "")))
            labels.update(_caller_attributes(groups, row))
    for key in sorted(keyed):
        labels, totals = keyed[key]
        labels.pop("_latest", None)
        summary.rows.append({**labels, **totals.to_json()})
    return summary


def _caller_attributes(groups: tuple[str, ...], row: Mapping[str, Any]) -> dict[str, Any]:
    """A caller's chargeback attributes for its group's labels, except those the grouping already has."""
    return {k: v for k, v in chargeback(row).items() if k not in groups}


def _labels(groups: tuple[str, ...], values: Mapping[str, str], row: Mapping[str, Any]) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    for group in groups:
        if group == "caller":
            labels.update(caller_id=values["caller"], caller_name=row.get("CallerName", ""))
            labels.update(_caller_attributes(groups, row))
        else:
            labels[group] = values[group]
    return labels


# --- CSV: the one place the injection rule lives ------------------------------------------------------------------
# Caller names come from identity providers and admins; a spreadsheet must never run them: every field is quoted,
# control characters (tabs and line breaks included) become spaces, and a field starting with = + - @ (a formula
# in Excel, LibreOffice, Google Sheets; leading spaces ignored) is prefixed with '. Every line of every export
# goes through csv_line.


def csv_field(value: object) -> str:
    """One field, injection-safe and quoted (None: empty; Decimal: plain decimal text)."""
    if value is None:
        text = ""
    elif isinstance(value, Decimal):
        text = money_text(value)
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    else:
        text = str(value)
    text = well_formed(text)  # a lone surrogate would abort the UTF-8 stream mid-way
    # The same rule as the hardening work's csv_cell: control characters and Unicode line/paragraph separators
    # become spaces (a field stays one line), and a formula start counts after leading spaces.
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)
    if text.lstrip().startswith(FORMULA_STARTS):
        text = "'" + text
    return '"' + text.replace('"', '""') + '"'


def csv_line(values: Iterable[object]) -> str:
    """One CSV record (RFC 4180 line ending) of injection-safe, quoted fields."""
    return ",".join(csv_field(v) for v in values) + "\r\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    """Rows of one shape as CSV text (a header line, then one line per row)."""
    if not rows:
        return ""
    columns = list(rows[0])
    return "".join([csv_line(columns), *(csv_line(row.get(c) for c in columns) for row in rows)])
