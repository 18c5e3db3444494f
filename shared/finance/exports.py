"""What finance downloads: CSV of usage summaries and a FOCUS-style cost export, both written line by line so
a large range streams instead of being built in memory.

Every CSV line goes through :func:`shared.finance.usage_report.csv_line`, the one place the injection rule
lives. Money is exact decimal text (``0.00001575``), never a float's ``1.575e-05``.

FOCUS (FinOps Open Cost & Usage Specification, https://focus.finops.org/) columns let the export sit beside an
Azure Cost Management export: one row per day x caller x deployment x token kind (input, cached input, output)
with that kind's list unit price per million tokens; ``BilledCost`` and ``EffectiveCost`` are the gateway's
exact cost (no discounts apply). A day whose row mixes price versions, or whose version is unknown, is one row
of all its tokens without a unit price, so the export always sums to the daily table exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from shared.accounting.prices import Price
from shared.finance.daily import Totals, daily_totals
from shared.finance.usage_report import Summary, chargeback, csv_line

SERVICE_NAME = "Azure OpenAI (AI gateway)"
FOCUS_COLUMNS = (
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "BillingCurrency",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeDescription",
    "ServiceName",
    "ServiceCategory",
    "ResourceId",
    "ResourceName",
    "SubAccountId",
    "SubAccountName",
    "ConsumedQuantity",
    "ConsumedUnit",
    "PricingQuantity",
    "PricingUnit",
    "ListUnitPrice",
    "Tags",
    "x_CostCenter",
    "x_Owner",
    "x_Department",
    "x_Requests",
    "x_PriceVersion",
)


def summary_csv(summary: Summary) -> Iterable[str]:
    """The summary's rows, then a totals row (its group columns say ``TOTAL``)."""
    totals = {**summary.totals.to_json()}
    columns = list(summary.rows[0]) if summary.rows else [*_group_columns(summary.groups), *totals]
    yield csv_line(columns)
    for row in summary.rows:
        yield csv_line(_flat(row.get(c)) for c in columns)
    total_row = {c: "TOTAL" if i == 0 else "" for i, c in enumerate(columns) if c not in totals}
    yield csv_line(_flat({**total_row, **totals}.get(c, "")) for c in columns)


def _group_columns(groups: tuple[str, ...]) -> list[str]:
    columns = []
    for group in groups:
        columns += ["caller_id", "caller_name"] if group == "caller" else [group]
    return columns or ["total"]


def _flat(value: object) -> object:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return value


async def focus_csv(
    rows: AsyncIterator[Mapping[str, Any]], price_of: Callable[[str], Price | None]
) -> AsyncIterator[str]:
    """The FOCUS export of daily table rows, streamed."""
    yield csv_line(FOCUS_COLUMNS)
    async for row in rows:
        for record in focus_records(row, price_of):
            yield csv_line(record.get(c) for c in FOCUS_COLUMNS)


def focus_records(row: Mapping[str, Any], price_of: Callable[[str], Price | None]) -> list[dict[str, Any]]:
    """One daily row as FOCUS records: per token kind when one known price version applies, else one record."""
    totals = daily_totals(row)
    day = date.fromisoformat(str(row.get("Day") or row["PartitionKey"]))
    attributes = chargeback(row)
    tags = {k: v for k, v in attributes.items() if k != "tags" and v}
    tags.update(attributes["tags"])
    common: dict[str, Any] = {
        "BillingCurrency": ",".join(sorted(totals.currencies)),
        "ChargePeriodStart": f"{day.isoformat()}T00:00:00Z",
        "ChargePeriodEnd": f"{(day + timedelta(days=1)).isoformat()}T00:00:00Z",
        "ChargeCategory": "Usage",
        "ServiceName": SERVICE_NAME,
        "ServiceCategory": "AI and Machine Learning",
        "ResourceId": f"deployments/{row.get('Deployment', '')}",
        "ResourceName": row.get("Deployment", ""),
        "SubAccountId": row.get("CallerId", ""),
        "SubAccountName": row.get("CallerName", ""),
        "ConsumedUnit": "Tokens",
        "PricingUnit": "1M Tokens",
        "Tags": tags,
        "x_CostCenter": attributes["cost_center"],
        "x_Owner": attributes["owner"],
        "x_Department": attributes["department"],
    }
    split = _by_token_kind(totals, price_of)
    if split is None:
        return [
            {
                **common,
                "BilledCost": totals.cost,
                "EffectiveCost": totals.cost,
                "ListCost": totals.cost,
                "ChargeDescription": "Tokens (several or unknown price versions)"
                if totals.price_versions
                else "Tokens (unpriced)",
                "ConsumedQuantity": totals.total_tokens,
                "PricingQuantity": Decimal(totals.total_tokens) / 1_000_000,
                "x_Requests": totals.requests,
                "x_PriceVersion": ",".join(sorted(totals.price_versions)),
            }
        ]
    version, kinds = split
    return [
        {
            **common,
            "BilledCost": cost,
            "EffectiveCost": cost,
            "ListCost": cost,
            "ChargeDescription": f"{description} tokens",
            "ConsumedQuantity": tokens,
            "PricingQuantity": Decimal(tokens) / 1_000_000,
            "ListUnitPrice": unit_price,
            "x_Requests": totals.requests if index == 0 else 0,
            "x_PriceVersion": version,
        }
        for index, (description, tokens, unit_price, cost) in enumerate(kinds)
    ]


def _by_token_kind(
    totals: Totals, price_of: Callable[[str], Price | None]
) -> tuple[str, list[tuple[str, int, Decimal, Decimal]]] | None:
    if len(totals.price_versions) != 1:
        return None
    version = next(iter(totals.price_versions))
    price = price_of(version)
    if price is None or totals.cached_tokens > totals.prompt_tokens:
        return None
    kinds = [
        ("Input", totals.prompt_tokens - totals.cached_tokens, Decimal(price.input)),
        ("Cached input", totals.cached_tokens, Decimal(price.cached_input)),
        ("Output", totals.completion_tokens, Decimal(price.output)),
    ]
    priced = [(name, tokens, unit, tokens * unit / 1_000_000) for name, tokens, unit in kinds]
    if sum((cost for *_, cost in priced), Decimal()) != totals.cost:  # e.g. a row with cached > prompt tokens
        return None
    return version, priced
