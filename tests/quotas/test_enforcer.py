"""The enforcer on real Table Storage (Azurite), with a clock the tests move: windows roll over, budgets reset at
UTC day and month boundaries, refusals say when to come back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables.aio import TableServiceClient

from shared.accounting.prices import Price
from shared.auth.identity import ROLE_USE, Caller
from shared.errors import GatewayError
from shared.policy.callers import CallerPolicy, CallerPolicyStore
from shared.protocol.calls import ModelCall
from shared.protocol.operations import CHAT
from shared.protocol.usage import Usage
from shared.quotas.counters import CounterStore
from shared.quotas.enforcer import QuotaEnforcer
from shared.quotas.leases import QuotaLeases
from shared.quotas.limits import LimitOverrides
from shared.settings import QuotaSettings


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def policies(storage_connection_string):
    service = TableServiceClient.from_connection_string(storage_connection_string)
    name = f"p{uuid.uuid4().hex[:16]}"
    async with service:
        client = await service.create_table(name)
        async with client:
            yield CallerPolicyStore(client, cache_seconds=0)
        await service.delete_table(name)


def caller() -> Caller:
    return Caller(f"t/{uuid.uuid4().hex[:8]}", "Someone", "t", "app", frozenset({ROLE_USE}))


def call(prompt: int = 10, max_tokens: int | None = 20, deployment: str = "gpt-4o-mini") -> ModelCall:
    return ModelCall(CHAT, deployment, "2024-10-21", {}, False, False, prompt, max_tokens)


def enforcer(table, policies, clock, prices=None, **settings) -> QuotaEnforcer:
    leases = QuotaLeases(CounterStore(table, uuid.uuid4().hex), clock=clock)
    return QuotaEnforcer(QuotaSettings(**settings), leases, policies, prices or {}, output_ceiling=1000)


async def with_limits(policies, who: Caller, **limits) -> None:
    await policies.put(CallerPolicy(who.id, limits=LimitOverrides.parse(limits, "limits")))


async def test_a_minute_window_refuses_until_it_rolls_over(table, policies):
    clock = Clock(datetime(2026, 12, 1, 13, 45, 30, tzinfo=UTC))
    quotas, who = enforcer(table, policies, clock), caller()
    await with_limits(policies, who, requests_per_minute=2)
    for _ in range(2):
        quotas.settle(await quotas.reserve(who, call()), Usage(10, 5))
    with pytest.raises(GatewayError) as caught:
        await quotas.reserve(who, call())
    assert (caught.value.status, caught.value.code) == (429, "requests_per_minute_exceeded")
    assert caught.value.headers["retry-after-ms"] == "30000"  # when the minute rolls over
    assert caught.value.headers["retry-after"] == "30"
    clock.now += timedelta(seconds=30)
    quotas.settle(await quotas.reserve(who, call()), Usage(10, 5))
    await quotas.aclose()


async def test_a_month_budget_resets_at_the_utc_month_boundary(table, policies):
    clock = Clock(datetime(2026, 12, 31, 23, 59, 0, tzinfo=UTC))
    quotas, who = enforcer(table, policies, clock), caller()
    await with_limits(policies, who, tokens_per_month=100)
    quotas.settle(await quotas.reserve(who, call(prompt=50, max_tokens=40)), Usage(50, 40))
    with pytest.raises(GatewayError) as caught:
        await quotas.reserve(who, call(prompt=10, max_tokens=5))
    assert (caught.value.status, caught.value.code) == (403, "tokens_per_month_exceeded")
    assert "2027-01-01T00:00:00Z" in caught.value.message
    assert caught.value.headers["retry-after"] == "60"
    quotas.settle(await quotas.reserve(who, call(prompt=5, max_tokens=5)), Usage(5, 5))  # 10 tokens still fit
    clock.now = datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)
    quotas.settle(await quotas.reserve(who, call(prompt=50, max_tokens=40)), Usage(50, 40))
    await quotas.aclose()


async def test_unused_output_allowance_returns_to_the_budget_down_to_the_last_token(table, policies):
    quotas, who = enforcer(table, policies, Clock(datetime.now(UTC))), caller()
    await with_limits(policies, who, tokens_per_day=100)
    for _ in range(9):  # each holds 10 + 10 and uses 10 + 0: 90 used, the last one held the last 20
        quotas.settle(await quotas.reserve(who, call(prompt=10, max_tokens=10)), Usage(10, 0))
    with pytest.raises(GatewayError) as caught:  # 20 needed, 10 left
        await quotas.reserve(who, call(prompt=10, max_tokens=10))
    assert "resets at" in caught.value.message
    quotas.settle(await quotas.reserve(who, call(prompt=5, max_tokens=5)), Usage(5, 5))  # exactly the last 10
    with pytest.raises(GatewayError):
        await quotas.reserve(who, call(prompt=1, max_tokens=1))
    await quotas.aclose()


async def test_without_max_tokens_a_call_holds_the_configured_allowance(table, policies):
    quotas, who = enforcer(table, policies, Clock(datetime.now(UTC)), output_allowance=300), caller()
    await with_limits(policies, who, tokens_per_day=1000)
    held = await quotas.reserve(who, call(prompt=10, max_tokens=None))
    assert held.holds[0].amount == 310
    quotas.settle(held, Usage(10, 3))
    await quotas.aclose()


async def test_cost_budgets_need_a_price_and_count_exact_nano_dollars(table, policies):
    price = Price(input=2.5, cached_input=1.25, output=10.0)  # USD per million tokens
    quotas, who = enforcer(table, policies, Clock(datetime.now(UTC)), {"gpt-4.1": price}), caller()
    await with_limits(policies, who, cost_usd_per_month=0.0001)  # 100,000 nano-dollars
    with pytest.raises(GatewayError) as caught:
        await quotas.reserve(who, call(deployment="gpt-4o-mini"))
    assert (caught.value.status, caught.value.code) == (403, "cost_budget_unpriced")
    held = await quotas.reserve(who, call(prompt=10, max_tokens=5, deployment="gpt-4.1"))
    assert held.holds[0].amount == 10 * 2500 + 5 * 10000  # 75,000 nano-dollars
    quotas.settle(held, Usage(10, 2))  # 45,000 spent, 55,000 left
    with pytest.raises(GatewayError) as caught:
        await quotas.reserve(who, call(prompt=10, max_tokens=5, deployment="gpt-4.1"))  # needs 75,000
    assert (caught.value.status, caught.value.code) == (403, "cost_usd_per_month_exceeded")
    held = await quotas.reserve(who, call(prompt=10, max_tokens=3, deployment="gpt-4.1"))  # exactly 55,000
    quotas.settle(held, Usage(10, 3))
    await quotas.aclose()


async def test_per_deployment_limits_apply_to_that_deployment_only(table, policies):
    quotas, who = enforcer(table, policies, Clock(datetime.now(UTC))), caller()
    await policies.put(
        CallerPolicy(who.id, deployment_limits={"gpt-4.1": LimitOverrides.parse({"tokens_per_day": 50}, "x")})
    )
    quotas.settle(await quotas.reserve(who, call(prompt=20, max_tokens=20, deployment="gpt-4.1")), Usage(20, 20))
    with pytest.raises(GatewayError) as caught:
        await quotas.reserve(who, call(prompt=20, max_tokens=20, deployment="gpt-4.1"))
    assert caught.value.code == "tokens_per_day_exceeded"
    for _ in range(3):
        quotas.settle(await quotas.reserve(who, call(prompt=20, max_tokens=20)), Usage(20, 20))
    await quotas.aclose()


async def test_a_callers_counters_are_leased_together_and_a_refusal_gives_every_hold_back(table, policies):
    clock = Clock(datetime(2026, 12, 1, 13, 45, 30, tzinfo=UTC))
    quotas, who = enforcer(table, policies, clock), caller()
    await with_limits(policies, who, requests_per_minute=100, tokens_per_minute=10_000, tokens_per_day=100_000)
    store = quotas._leases.store
    change, running, most = store.change, 0, 0

    async def counted(*args, **kwargs):
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            return await change(*args, **kwargs)
        finally:
            running -= 1

    store.change = counted
    reservation = await quotas.reserve(who, call())
    assert most == 3 and len(reservation.holds) == 3  # one round of storage changes, not three in turn
    quotas.settle(reservation, Usage(10, 5))

    await with_limits(policies, who, requests_per_minute=100, tokens_per_minute=10_000, tokens_per_day=40)
    await quotas.aclose()  # 15 tokens of the day committed; a second instance now starts with nothing leased
    second = enforcer(table, policies, clock)
    with pytest.raises(GatewayError) as caught:
        await second.reserve(who, call(prompt=10, max_tokens=20))  # 30 more tokens: only 25 left today
    assert caught.value.status == 403 and caught.value.code == "tokens_per_day_exceeded"
    held = list(second._leases._counters.values())
    assert len(held) == 3 and all(local.inflight == 0 for local in held)  # the granted holds were given back
    await second.aclose()
