"""Reserve and settle on their own: one settlement per call, cost at today's price, quota charged with what was
used, against real Table Storage (Azurite)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from shared.accounting.ledger import UsageLedger
from shared.accounting.prices import Price
from shared.accounting.settlement import Accounting
from shared.auth.identity import ROLE_USE, Caller
from shared.finance.usage_report import ledger_rows
from shared.policy.callers import CallerPolicyStore
from shared.protocol.calls import ModelCall
from shared.protocol.operations import CHAT
from shared.protocol.usage import Usage
from shared.quotas.counters import CounterStore
from shared.quotas.enforcer import QuotaEnforcer
from shared.quotas.leases import QuotaLeases
from shared.quotas.limits import Limit, Limits
from shared.settings import QuotaSettings

CALLER = Caller("t/settle", "Settle", "t", "app", frozenset({ROLE_USE}))
PRICE = Price(input=0.15, cached_input=0.075, output=0.6)


def call() -> ModelCall:
    return ModelCall(CHAT, "gpt-4o-mini", "2024-10-21", {}, False, False, 12, 30)


def accounting(table) -> Accounting:
    quotas = QuotaEnforcer(
        QuotaSettings(defaults=Limits({Limit.TOKENS_PER_DAY: 10_000})),
        QuotaLeases(CounterStore(table, uuid.uuid4().hex)),
        CallerPolicyStore(table),
        {"gpt-4o-mini": PRICE},
        output_ceiling=1000,
    )
    return Accounting(UsageLedger(table, flush_seconds=60), {"gpt-4o-mini": PRICE}, quotas)


async def test_a_call_settles_once_with_its_cost_and_its_quota_charged_by_what_it_used(table):
    books = accounting(table)
    reservation = await books.reserve(CALLER, call(), "req-1")
    hold = reservation.quota.holds[0]
    assert hold.amount == 12 + 30 and hold.local.inflight == 42
    await books.settle(reservation, Usage(12, 7, cached_tokens=4), 200, outcome="completed")
    await books.settle(reservation, Usage(999, 999), 200, outcome="completed")  # a second settlement is ignored
    assert (hold.local.inflight, hold.local.spent) == (0, 19)
    await books.ledger.flush()
    today = datetime.now(UTC).date()
    [row] = await ledger_rows(table, today, today)
    assert (row["RowKey"], row["PromptTokens"], row["CompletionTokens"], row["CachedTokens"]) == ("req-1", 12, 7, 4)
    # The process's shard at the row's time: one batch per flush interval.
    assert row["PartitionKey"].endswith(f"-{books.ledger.shard_at(row['At']):02d}")
    assert row["Cost"] == "0.0000057" == str(PRICE.cost(Usage(12, 7, cached_tokens=4)))  # exact decimal text
    await books.quotas.aclose()


async def test_an_upstream_failure_charges_the_request_but_no_tokens(table):
    books = accounting(table)
    reservation = await books.reserve(CALLER, call(), "req-2")
    [hold] = reservation.quota.holds
    await books.settle(reservation, None, 502, outcome="upstream_unavailable")
    assert (hold.local.inflight, hold.local.spent) == (0, 0)  # the allowance went back, nothing was used
    await books.ledger.flush()
    today = datetime.now(UTC).date()
    [row] = await ledger_rows(table, today, today)
    assert (row["Status"], row["Outcome"], row["PromptTokens"]) == (502, "upstream_unavailable", 0)
    await books.quotas.aclose()


async def test_a_call_is_charged_at_the_price_in_force_when_it_was_admitted_on_the_ledger_and_its_budget(table):
    """A price change while a call runs changes neither its ledger cost nor what its cost budget is charged."""
    from datetime import timedelta
    from decimal import Decimal

    from shared.accounting.prices import PriceBook, PriceVersion, version_id

    book = PriceBook({"gpt-4o-mini": PRICE}, table)
    quotas = QuotaEnforcer(
        QuotaSettings(defaults=Limits({Limit.COST_USD_PER_MONTH: Decimal(1)})),
        QuotaLeases(CounterStore(table, uuid.uuid4().hex)),
        CallerPolicyStore(table),
        book,
        output_ceiling=1000,
    )
    books = Accounting(UsageLedger(table, flush_seconds=60), book, quotas)
    reservation = await books.reserve(CALLER, call(), "req-price")
    hold = reservation.quota.holds[-1]
    change = datetime.now(UTC) + timedelta(seconds=0.3)
    dearer = Price(Decimal(100), Decimal(100), Decimal(100), "USD", version_id("gpt-4o-mini", change))
    await book.add(PriceVersion("gpt-4o-mini", change, dearer))
    await asyncio.sleep(0.4)
    assert book.current("gpt-4o-mini") == dearer  # in force now, after the call was admitted
    await books.settle(reservation, Usage(12, 7), 200, outcome="completed")
    await books.ledger.flush()
    today = datetime.now(UTC).date()
    [row] = [r for r in await ledger_rows(table, today, today) if r["RowKey"] == "req-price"]
    assert row["PriceVersion"] == PRICE.version and row["Cost"] == str(PRICE.cost(Usage(12, 7)))
    assert hold.local.spent == PRICE.cost_nano_usd(12, 7)
    await books.quotas.aclose()
