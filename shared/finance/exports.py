"""What finance downloads: CSV of usage summaries and a FOCUS 1.2 cost export, both written line by line so
a large range streams instead of being built in memory.

Every CSV line goes through :func:`shared.finance.usage_report.csv_line`, the one place the injection rule
lives. Money is exact decimal text (``0.00001575``), never a float's ``1.575e-05``.

The FOCUS export conforms to FOCUS 1.2 (FinOps Open Cost & Usage Specification, https://focus.finops.org/): every
mandatory column, with the rules docs/finance.md cites column by column. One record per day x caller x deployment x
price version x chargeback attributes x token kind (input, cached input, output) with that kind's list unit price
per million tokens; ``BilledCost``, ``EffectiveCost``, ``ListCost`` and ``ContractedCost`` are the gateway's exact
cost (no discounts apply), so the export sums to the daily table exactly. Unpriced usage is never shown as free:
its records carry ``x_PricingStatus = Unpriced`` (costs and unit prices 0, as FOCUS requires numbers there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from shared.accounting.prices import Price
from shared.finance.daily import Totals, daily_totals
from shared.finance.usage_report import Summary, chargeback, csv_line, table_name

FOCUS_VERSION = "1.2"
SERVICE_NAME = "Azure OpenAI (AI gateway)"
PROVIDER_NAME = "Microsoft"
PUBLISHER_NAME = "Microsoft"
INVOICE_ISSUER_NAME = "AI gateway (internal chargeback)"
PRICING_UNIT = "1000000 Tokens"  # FOCUS unit format: "<quantity> <plural unit>"
TOKEN_KINDS = (("input", "Input"), ("cached_input", "Cached input"), ("output", "Output"))
# Keys the gateway adds to Tags. Caller tag names are letters, digits and "_ . -" (shared.policy.callers), so a key
# with "/" can never be a caller's: a caller tag "cost_center" cannot override the real cost center.
GATEWAY_TAG_PREFIX = "gateway/"
UNPRICED = "Unpriced"
# Every mandatory column of FOCUS 1.2, then the conditional and recommended ones that apply, then the gateway's
# own (x_) columns. docs/finance.md gives each column's rule.
FOCUS_MANDATORY = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
)
FOCUS_COLUMNS = (
    *FOCUS_MANDATORY,
    "ChargeFrequency",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedUnitPrice",
    "ListUnitPrice",
    "PricingCategory",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceSubcategory",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    "x_CostCenter",
    "x_Owner",
    "x_Department",
    "x_Attribution",
    "x_PricingStatus",
    "x_PriceVersions",
    "x_Requests",
    "x_FailedRequests",
    "x_UnpricedRequests",
)


@dataclass(frozen=True)
class FocusContext:
    """Who bills and where the deployments live (settings: docs/finance.md, "FOCUS export")."""

    billing_account_id: str
    billing_account_name: str
    resource_prefix: str  # ResourceId = f"{resource_prefix}/deployments/{name}"
    currency: str  # the gateway's one billing currency: BillingCurrency is never empty
    region: str | None = None

    @classmethod
    def build(
        cls, resource_id: str | None, endpoint: str | None, region: str | None, currency: str, site: str | None
    ) -> FocusContext:
        """The Azure OpenAI account's resource id when configured; else the upstream endpoint's host (unique per
        account); else the gateway's site name (the embedded simulator)."""
        if resource_id:
            prefix = resource_id.rstrip("/")
            name = prefix.rsplit("/", 1)[-1]
        elif endpoint:
            host = urlsplit(endpoint).hostname or endpoint
            prefix, name = f"https://{host}/openai", host.split(".")[0]
        else:
            name = site or "local"
            prefix = f"ai-gateway/{name}"
        return cls(prefix, f"Azure OpenAI {name} (AI gateway)", prefix, currency, region)


def summary_csv(summary: Summary) -> Iterable[str]:
    """The summary's rows, then the totals row, whose first column says ``TOTAL`` (sum the other lines, or take
    this one: never both). Without groups (``group_by=``) the totals row is the only line after the header."""
    totals = {**summary.totals.to_json()}
    rows = summary.rows if summary.groups else []
    columns = list(rows[0]) if rows else [*_group_columns(summary.groups), *totals]
    yield csv_line(table_name(c) for c in columns)
    for row in rows:
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
    rows: AsyncIterator[Mapping[str, Any]], price_of: Callable[[str], Price | None], context: FocusContext
) -> AsyncIterator[str]:
    """The FOCUS export of daily table rows, streamed."""
    yield csv_line(FOCUS_COLUMNS)
    async for row in rows:
        for record in focus_records(row, price_of, context):
            yield csv_line(record.get(c) for c in FOCUS_COLUMNS)


def focus_records(
    row: Mapping[str, Any], price_of: Callable[[str], Price | None], context: FocusContext
) -> list[dict[str, Any]]:
    """One daily row as FOCUS records, one per token kind with tokens (ConsumedQuantity is positive for Usage; a
    row without tokens, e.g. only failed calls, carries no charge). ListUnitPrice x PricingQuantity = ListCost."""
    totals = daily_totals(row)
    day = date.fromisoformat(str(row.get("Day") or row["PartitionKey"])[:10])
    month = day.replace(day=1)
    deployment = str(row.get("Deployment", ""))
    attributes = chargeback(row)
    tags: dict[str, str] = {str(k): str(v) for k, v in attributes["tags"].items()}
    for name in ("cost_center", "owner", "department"):
        if attributes[name]:
            tags[GATEWAY_TAG_PREFIX + name] = attributes[name]
    versions = sorted(totals.price_versions)
    unpriced = not versions
    common: dict[str, Any] = {
        "BillingAccountId": context.billing_account_id,
        "BillingAccountName": context.billing_account_name,
        "BillingCurrency": ",".join(sorted(totals.currencies)) or context.currency,
        "BillingPeriodStart": f"{month.isoformat()}T00:00:00Z",
        "BillingPeriodEnd": f"{(month + timedelta(days=32)).replace(day=1).isoformat()}T00:00:00Z",
        "ChargeCategory": "Usage",
        "ChargeClass": None,
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodStart": f"{day.isoformat()}T00:00:00Z",
        "ChargePeriodEnd": f"{(day + timedelta(days=1)).isoformat()}T00:00:00Z",
        "InvoiceIssuerName": INVOICE_ISSUER_NAME,
        "ProviderName": PROVIDER_NAME,
        "PublisherName": PUBLISHER_NAME,
        "PricingCategory": "Standard",
        "RegionId": context.region,
        "RegionName": context.region,
        "ResourceId": f"{context.resource_prefix}/deployments/{deployment}",
        "ResourceName": deployment,
        "ResourceType": "Azure OpenAI deployment",
        "ServiceCategory": "AI and Machine Learning",
        "ServiceSubcategory": "Generative AI",
        "ServiceName": SERVICE_NAME,
        "SkuId": deployment,
        "SubAccountId": row.get("CallerId", ""),
        "SubAccountName": row.get("CallerName", ""),
        "ConsumedUnit": "Tokens",
        "Tags": tags,
        "x_CostCenter": attributes["cost_center"],
        "x_Owner": attributes["owner"],
        "x_Department": attributes["department"],
        "x_Attribution": row.get("Attribution") or "policy-at-rollup",
        "x_PricingStatus": UNPRICED if unpriced else "Priced",
        "x_PriceVersions": ",".join(versions),
    }
    records = [
        {
            **common,
            "BilledCost": cost,
            "EffectiveCost": cost,
            "ListCost": cost,
            "ContractedCost": cost,
            "ChargeDescription": f"{label}{' tokens' if consumed == 'Tokens' else ''} of {deployment}"
            + (" (unpriced: no price configured, cost not included)" if unpriced else ""),
            "ConsumedQuantity": tokens,
            "ConsumedUnit": consumed,
            "PricingQuantity": quantity,
            "PricingUnit": unit,
            "ListUnitPrice": unit_price,
            "ContractedUnitPrice": unit_price,
            "SkuPriceId": f"{common['x_PriceVersions'] or deployment + '@unpriced'}:{kind}",
        }
        for kind, label, tokens, quantity, unit, unit_price, cost, consumed in _charges(totals, price_of)
    ]
    if records:  # the call counts ride on the first record, so they sum to the daily table's
        records[0].update(
            x_Requests=totals.requests,
            x_FailedRequests=totals.failed_requests,
            x_UnpricedRequests=totals.unpriced_requests,
        )
    return records


Charge = tuple[str, str, int | Decimal, Decimal, str, Decimal, Decimal, str]
MEDIA_UNITS = (  # (kind, label, consumed unit, pricing unit, pricing quantity per consumed unit)
    ("audio_seconds", "Audio seconds", "Seconds", "Seconds", Decimal(1)),
    ("characters", "Characters", "Characters", "1000000 Characters", Decimal(1_000_000)),
)


def _quantities(totals: Totals) -> list[tuple[str, str, int | Decimal, str, str, Decimal, str]]:
    """(kind, label, consumed quantity, consumed unit, pricing unit, divisor, price field) of every kind of usage
    with a quantity: tokens by kind (text, audio and image tokens apart), images by size/quality, audio seconds,
    characters."""
    audio_in, image_in = totals.audio_input_tokens, totals.image_input_tokens
    audio_out, image_out = totals.audio_output_tokens, totals.image_output_tokens
    million = Decimal(1_000_000)
    tokens = [
        ("input", "Input", totals.prompt_tokens - totals.cached_tokens - audio_in - image_in, "input"),
        ("cached_input", "Cached input", totals.cached_tokens, "cached_input"),
        ("audio_input", "Audio input", audio_in, "audio_input"),
        ("image_input", "Image input", image_in, "image_input"),
        ("output", "Output", totals.completion_tokens - audio_out - image_out, "output"),
        ("audio_output", "Audio output", audio_out, "audio_output"),
        ("image_output", "Image output", image_out, "image_output"),
    ]
    found: list[tuple[str, str, int | Decimal, str, str, Decimal, str]] = [
        (kind, label, quantity, "Tokens", PRICING_UNIT, million, rate)
        for kind, label, quantity, rate in tokens
        if quantity > 0
    ]
    for variant, count in sorted(totals.image_variants.items()):
        if count > 0:
            found.append((f"images:{variant}", f"Images {variant}", count, "Images", "Images", Decimal(1), variant))
    if totals.audio_ms:
        seconds = Decimal(totals.audio_ms) / 1000
        found.append(("audio_seconds", "Audio seconds", seconds, "Seconds", "Seconds", Decimal(1), "audio_second"))
    if totals.characters:
        found.append(
            ("characters", "Characters", totals.characters, "Characters", "1000000 Characters", million, "characters")
        )
    return found


def _rate_of(price: Price, field: str) -> Decimal | None:
    if "/" in field:  # an image variant
        return price.image_price(field)
    rate = getattr(price, field)
    if rate is None and field in ("audio_input", "image_input"):
        return Decimal(price.input)
    if rate is None and field in ("audio_output", "image_output"):
        return Decimal(price.output)
    return None if rate is None else Decimal(rate)


def _charges(totals: Totals, price_of: Callable[[str], Price | None]) -> list[Charge]:
    """(kind, label, consumed quantity, pricing quantity, pricing unit, unit price, cost, consumed unit) per kind of
    usage with a quantity."""
    quantities = _quantities(totals)
    if not totals.price_versions and not totals.cost:  # unpriced: every figure 0, x_PricingStatus says so
        return [
            (kind, label, quantity, Decimal(quantity) / divisor, pricing_unit, Decimal(0), Decimal(0), consumed)
            for kind, label, quantity, consumed, pricing_unit, divisor, _ in quantities
        ]
    price = price_of(next(iter(totals.price_versions))) if len(totals.price_versions) == 1 else None
    if price is not None and all(q[2] >= 0 for q in quantities):
        charges: list[Charge] = []
        for kind, label, quantity, consumed, pricing_unit, divisor, field in quantities:
            rate = _rate_of(price, field)
            if rate is None:
                break
            pricing = Decimal(quantity) / divisor
            charges.append((kind, label, quantity, pricing, pricing_unit, rate, pricing * rate, consumed))
        else:
            if sum((c[6] for c in charges), Decimal()) == totals.cost:
                return charges
    # Rows priced before exact costs (legacy-float) or by a version no longer known: one charge of all the tokens
    # at their average unit price when that is exact, else the whole cost as one unit.
    million = Decimal(1_000_000)
    total = totals.total_tokens
    if total <= 0:
        return []
    average = totals.cost * million / total
    if average * total / million == totals.cost:
        return [("tokens", "All", total, Decimal(total) / million, PRICING_UNIT, average, totals.cost, "Tokens")]
    return [("tokens", "All", total, Decimal(1), "Charges", totals.cost, totals.cost, "Tokens")]
