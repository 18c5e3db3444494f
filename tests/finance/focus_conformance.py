"""The FOCUS 1.2 rules the gateway's export must meet, checked on a parsed export (every mandatory column's presence,
type, nullability and format; the applicable conditional ones). docs/finance.md cites each rule."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from shared.finance.exports import FOCUS_MANDATORY, GATEWAY_TAG_PREFIX

DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")  # FOCUS numeric format: no exponent, no thousands separator
DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")  # ISO 8601, UTC
CURRENCY = re.compile(r"[A-Z]{3}")  # ISO 4217
UNIT = re.compile(r"([1-9][0-9]* )?[A-Z][A-Za-z]*( [A-Za-z]+)*")  # FOCUS unit format: "1000000 Tokens"
CHARGE_CATEGORIES = {"Usage", "Purchase", "Tax", "Credit", "Adjustment"}
SERVICE_CATEGORIES = {"AI and Machine Learning"}  # the one this gateway uses, of FOCUS's list
NOT_NULL_STRINGS = (
    "BillingAccountId",
    "BillingAccountName",
    "ChargeDescription",
    "InvoiceIssuerName",
    "ProviderName",
    "PublisherName",
    "ServiceName",
)


def violations(header: list[str], records: list[dict[str, str]]) -> list[str]:
    """Every rule a record breaks, as text (empty: conformant)."""
    problems = [f"missing mandatory column {c}" for c in FOCUS_MANDATORY if c not in header]
    resource_of: dict[str, set[str]] = {}
    for n, r in enumerate(records):

        def bad(rule: str, n: int = n) -> None:
            problems.append(f"record {n}: {rule}")

        for column in ("BilledCost", "ContractedCost", "EffectiveCost", "ListCost", "PricingQuantity"):
            if not DECIMAL.fullmatch(r[column]):
                bad(f"{column} {r[column]!r} is not a non-null decimal")
        for column in NOT_NULL_STRINGS:
            if not r[column].strip():
                bad(f"{column} is null")
        if not CURRENCY.fullmatch(r["BillingCurrency"]):
            bad(f"BillingCurrency {r['BillingCurrency']!r} is not an ISO 4217 code")
        for column in ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"):
            if not DATETIME.fullmatch(r[column]):
                bad(f"{column} {r[column]!r} is not a UTC date-time")
        if not r["BillingPeriodStart"] <= r["ChargePeriodStart"] < r["ChargePeriodEnd"] <= r["BillingPeriodEnd"]:
            bad("the charge period is not inside the billing period")
        if r["ChargeCategory"] not in CHARGE_CATEGORIES:
            bad(f"ChargeCategory {r['ChargeCategory']!r}")
        if r["ChargeClass"] not in ("", "Correction"):
            bad(f"ChargeClass {r['ChargeClass']!r}")
        if r["ServiceCategory"] not in SERVICE_CATEGORIES:
            bad(f"ServiceCategory {r['ServiceCategory']!r}")
        if not UNIT.fullmatch(r["PricingUnit"]):
            bad(f"PricingUnit {r['PricingUnit']!r} breaks the unit format")
        if r["ChargeFrequency"] not in ("One-Time", "Recurring", "Usage-Based"):
            bad(f"ChargeFrequency {r['ChargeFrequency']!r}")
        usage = r["ChargeCategory"] == "Usage" and r["ChargeClass"] != "Correction"
        if usage:
            for price, cost in (("ListUnitPrice", "ListCost"), ("ContractedUnitPrice", "ContractedCost")):
                if not DECIMAL.fullmatch(r[price]) or Decimal(r[price]) < 0:
                    bad(f"{price} {r[price]!r} must be a non-negative decimal on usage")
                elif Decimal(r[price]) * Decimal(r["PricingQuantity"]) != Decimal(r[cost]):
                    bad(f"{price} x PricingQuantity != {cost}")
            if not DECIMAL.fullmatch(r["ConsumedQuantity"]) or Decimal(r["ConsumedQuantity"]) <= 0:
                bad(f"ConsumedQuantity {r['ConsumedQuantity']!r} must be positive on usage")
            if not r["ConsumedUnit"]:
                bad("ConsumedUnit is null on usage")
        tags = json.loads(r["Tags"] or "{}")
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            bad("Tags is not a JSON object of strings")
        elif r["x_CostCenter"] and tags.get(GATEWAY_TAG_PREFIX + "cost_center") != r["x_CostCenter"]:
            bad("the gateway's cost center tag is not the cost center")
        if not r["ResourceId"]:
            bad("ResourceId is null")
        resource_of.setdefault(r["ResourceId"], set()).add(r["ResourceName"])
    problems += [f"ResourceId {k} names {sorted(v)}" for k, v in resource_of.items() if len(v) != 1]
    return problems
