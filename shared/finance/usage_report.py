"""Finance's view of the usage ledger: usage and cost per caller, deployment, day or operation over UTC days,
as JSON or CSV."""

from __future__ import annotations

import csv
import io
import unicodedata
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from azure.data.tables.aio import TableClient

from shared.accounting.ledger import day_partition
from shared.errors import bad_request

MAX_QUERY_DAYS = 92
GROUPINGS = ("caller", "deployment", "day", "operation")


async def ledger_rows(
    table: TableClient, first: date, last: date, caller_id: str | None = None
) -> list[dict[str, Any]]:
    query = "PartitionKey ge @first and PartitionKey le @last"
    parameters: dict[str, Any] = {"first": day_partition(first), "last": day_partition(last)}
    if caller_id:
        query += " and CallerId eq @caller"
        parameters["caller"] = caller_id
    return [dict(e) async for e in table.query_entities(query, parameters=parameters)]


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
        raise bad_request(f"'group_by' takes a comma-separated subset of {', '.join(GROUPINGS)}.", param="group_by")
    return groups


def summarize(rows: list[dict[str, Any]], groups: tuple[str, ...]) -> list[dict[str, Any]]:
    """Totals per group: requests, tokens, cost; estimated and unpriced rows are counted so finance sees them."""
    key_of = {
        "caller": lambda r: r["CallerId"],
        "deployment": lambda r: r["Deployment"],
        "day": lambda r: r["PartitionKey"],
        "operation": lambda r: r["Operation"],
    }
    totals: dict[tuple[str, ...], dict[str, Any]] = defaultdict(
        lambda: {
            "requests": 0,
            "failed_requests": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cached_tokens": 0,
            "estimated_requests": 0,
            "cost_usd": 0.0,
            "unpriced_requests": 0,
        }
    )
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
    """The summary as CSV that a spreadsheet opens as data, never as formulas.

    Every field is quoted; control characters (``\\r``, ``\\n``, tabs, NUL, DEL, C1, Unicode line separators)
    become spaces, so a field is one line; and a text field that a spreadsheet would read as a formula (starting
    with ``= + - @``, after any leading spaces) is prefixed with ``'`` (OWASP's CSV injection advice).
    """
    if not summary:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=[csv_cell(k) for k in summary[0]], lineterminator="\r\n", quoting=csv.QUOTE_ALL
    )
    writer.writeheader()
    writer.writerows({csv_cell(k): csv_cell(v) for k, v in row.items()} for row in summary)
    return out.getvalue()


_FORMULA_STARTS = ("=", "+", "-", "@")


def csv_cell(value: Any) -> Any:
    """One CSV field: numbers as they are, text on one line and inert (see :func:`to_csv`)."""
    if not isinstance(value, str):
        return value
    text = "".join(" " if _is_line_breaking_or_control(ch) else ch for ch in value)
    if text.lstrip().startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def _is_line_breaking_or_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp")
