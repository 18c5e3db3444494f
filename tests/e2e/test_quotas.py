"""Per-caller quotas end to end: three gateway processes share one Azurite; API-key callers with binding limits
send hundreds of concurrent calls through the dated and v1 APIs, streaming included, with the official SDK."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import openai
import pytest
from azure.data.tables.aio import TableClient

from shared.finance.usage_report import ledger_rows

pytestmark = pytest.mark.e2e

ADMIN = {"api-key": "local"}  # local dev mode: the local developer, who holds Gateway.Admin and Usage.Read
MAX_TOKENS = 8


@dataclass
class Tally:
    admitted: int = 0
    tokens: int = 0  # prompt + completion the SDK reported for admitted calls
    refusals: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    server_errors: list[int] = field(default_factory=list)
    minutes: set[int] = field(default_factory=set)
    gpt41_tokens: int = 0


@pytest.fixture(scope="module")
def gateways(start_gateway, gateway_env):
    env = {**gateway_env, "GATEWAY_API_KEY_CACHE_SECONDS": "30"}
    return [start_gateway(env) for _ in range(3)]


def issue_key(gateway, owner_id: str) -> str:
    response = httpx.post(
        f"{gateway.api}/manage/keys",
        headers=ADMIN,
        timeout=10,
        json={"name": "quota test", "owner": {"id": owner_id, "kind": "app"}, "roles": ["Gateway.Use"]},
    )
    assert response.status_code == 201, response.text
    return response.json()["key"]


def put_policy(gateway, owner_id: str, policy: dict) -> None:
    response = httpx.put(f"{gateway.api}/manage/policies/{owner_id}", headers=ADMIN, json=policy, timeout=10)
    assert response.status_code == 200, response.text


def sdk_client(gateway, key: str, style: str) -> openai.AsyncOpenAI:
    if style == "v1":
        return openai.AsyncOpenAI(base_url=f"{gateway.api}/openai/v1", api_key=key, max_retries=0)
    return openai.AsyncAzureOpenAI(azure_endpoint=gateway.api, api_key=key, api_version="2024-10-21", max_retries=0)


async def one_call(client: openai.AsyncOpenAI, style: str, deployment: str, tally: Tally) -> None:
    messages = [{"role": "user", "content": f"Quota check {random.randint(0, 10**6)}"}]
    for _attempt in range(4):
        try:
            if style == "stream":
                stream = await client.chat.completions.create(
                    model=deployment,
                    messages=messages,
                    max_tokens=MAX_TOKENS,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                usage = None
                async for chunk in stream:
                    usage = chunk.usage or usage
            else:
                response = await client.chat.completions.create(
                    model=deployment, messages=messages, max_tokens=MAX_TOKENS
                )
                usage = response.usage
        except openai.APIStatusError as error:
            headers = {k.lower(): v for k, v in error.response.headers.items()}
            if error.status_code >= 500:
                tally.server_errors.append(error.status_code)
                return
            tally.refusals.append((error.status_code, headers, error.body.get("code") if error.body else ""))
            wait_ms = int(headers.get("retry-after-ms", "0") or 0)
            if error.status_code == 429 and wait_ms <= 2000:  # budget held by calls in flight: retry soon
                await asyncio.sleep(wait_ms / 1000)
                continue
            return
        assert usage is not None
        tally.admitted += 1
        tally.tokens += usage.total_tokens
        tally.minutes.add(int(time.time() // 60))
        if deployment == "gpt-4.1":
            tally.gpt41_tokens += usage.total_tokens
        return


async def test_limits_hold_across_three_instances_under_concurrent_load(gateways, gateway_env):
    run = uuid.uuid4().hex[:8]
    limits = {
        "daily": {"limits": {"tokens_per_day": 1200}},
        "rpm": {"limits": {"requests_per_minute": 25}},
        "tpm": {"limits": {"tokens_per_minute": 900}},
        "per_deployment": {
            "limits": {"tokens_per_month": 100_000},
            "deployment_limits": {"gpt-4.1": {"tokens_per_day": 300}},
        },
    }
    owners = {name: f"quota-{run}/{name}" for name in limits}
    keys = {name: issue_key(gateways[0], owner) for name, owner in owners.items()}
    for name, policy in limits.items():
        put_policy(gateways[1], owners[name], policy)
    tallies = {name: Tally() for name in limits}
    started_minute = int(time.time() // 60)

    styles = ("dated", "v1", "stream")
    clients = {
        (g, name, style): sdk_client(gateways[g], keys[name], style)
        for g in range(3)
        for name in limits
        for style in styles
    }
    calls = []
    for i in range(84):
        for name in limits:
            deployment = "gpt-4.1" if name == "per_deployment" and i % 2 else "gpt-4o-mini"
            style = styles[(i // 3) % 3]
            calls.append(one_call(clients[(i % 3, name, style)], style, deployment, tallies[name]))
    random.shuffle(calls)
    await asyncio.gather(*calls)
    for client in clients.values():
        await client.close()
    minutes = int(time.time() // 60) - started_minute + 1  # windows the run spanned

    for name, tally in tallies.items():
        assert not tally.server_errors, (name, tally.server_errors)
        assert all("retry-after" in headers for _, headers, _ in tally.refusals), name
    daily, rpm, tpm, per_deployment = (tallies[n] for n in ("daily", "rpm", "tpm", "per_deployment"))
    # Never past a limit ...
    assert daily.tokens <= 1200
    assert rpm.admitted <= 25 * minutes
    assert tpm.tokens <= 900 * minutes
    assert per_deployment.gpt41_tokens <= 300
    # ... and not refused while the budget clearly had room: each binding limit was used up to its last call or so.
    one_call_tokens = 40
    assert daily.tokens >= 1200 - 2 * one_call_tokens
    assert rpm.admitted >= 25
    assert tpm.tokens >= 900 - 2 * one_call_tokens
    assert per_deployment.gpt41_tokens >= 300 - 2 * one_call_tokens
    assert per_deployment.admitted - (per_deployment.gpt41_tokens // 20) >= 40  # gpt-4o-mini calls all went through
    assert {status for status, _, _ in daily.refusals} <= {403, 429} and any(s == 403 for s, _, _ in daily.refusals)
    assert any(code == "requests_per_minute_exceeded" for _, _, code in rpm.refusals)

    # The ledger has exactly what the upstream reported, per caller (read from the ledger table itself: /api/usage
    # serves finance's daily table, which the rollup timer derives every few minutes).
    await asyncio.sleep(1.5)  # batched ledger writes land within half a second
    today = datetime.now(UTC).date()
    async with TableClient.from_connection_string(
        gateway_env["GATEWAY_STORAGE_CONNECTION_STRING"], "gatewayUsage"
    ) as t:
        rows = await ledger_rows(t, today, today)
    for name, owner in owners.items():
        mine = [row for row in rows if row["CallerId"] == owner]
        assert sum(row["PromptTokens"] + row["CompletionTokens"] for row in mine) == tallies[name].tokens, name
        assert len(mine) == tallies[name].admitted, name


def test_a_successful_call_carries_the_callers_quota_headers_and_me_shows_what_is_left(gateways):
    owner = f"quota-{uuid.uuid4().hex[:8]}/headers"
    key = issue_key(gateways[0], owner)
    put_policy(
        gateways[0],
        owner,
        {"limits": {"tokens_per_minute": 5000, "requests_per_minute": 100, "tokens_per_day": 50_000}},
    )
    client = openai.AzureOpenAI(azure_endpoint=gateways[1].api, api_key=key, api_version="2024-10-21", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=10
    )
    assert raw.headers["x-ratelimit-limit-tokens"] == "5000"
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 5000
    assert raw.headers["x-ratelimit-limit-requests"] == "100"
    assert raw.headers["x-gateway-quota-limit-tokens-day"] == "50000"
    used = raw.parse().usage.total_tokens
    # The serving instance hands its idle balance back and commits what was spent about a second after the call.
    deadline = time.monotonic() + 15
    while True:
        me = httpx.get(f"{gateways[2].api}/me", headers={"api-key": key}, timeout=10).json()
        if me["quotas"]["tokens_per_day"]["used"] == used or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert me["quotas"]["tokens_per_day"]["limit"] == 50_000
    assert me["quotas"]["tokens_per_day"]["used"] == used
    assert me["quotas"]["tokens_per_day"]["remaining"] == 50_000 - used
    assert me["quotas"]["requests_per_minute"]["used"] == 1


def test_a_call_that_cannot_fit_the_budget_is_refused_with_the_reason_and_nothing_is_forwarded(gateways, sim):
    owner = f"quota-{uuid.uuid4().hex[:8]}/small"
    key = issue_key(gateways[0], owner)
    put_policy(gateways[0], owner, {"limits": {"tokens_per_day": 100}})
    client = openai.AzureOpenAI(azure_endpoint=gateways[0].api, api_key=key, api_version="2024-10-21", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=500
        )
    assert caught.value.code == "tokens_per_day_exceeded"
    assert "lower max_tokens" in caught.value.message
    assert sim.requests() == []


def test_policy_limits_are_validated_and_unknown_fields_named(gateways):
    for body, param in [
        ({"limits": {"tokens_per_week": 1}}, "limits.tokens_per_week"),
        ({"limits": {"tokens_per_day": -5}}, "limits.tokens_per_day"),
        ({"limit": {"tokens_per_day": 5}}, "limit"),
        ({"deployment_limits": {"../x": {"tokens_per_day": 5}}}, "deployment_limits.../x"),
    ]:
        response = httpx.put(f"{gateways[0].api}/manage/policies/t/someone", headers=ADMIN, json=body, timeout=10)
        assert response.status_code == 400, body
        assert response.json()["error"]["param"] == param
    response = httpx.put(
        f"{gateways[0].api}/manage/policies/t/someone",
        headers=ADMIN,
        timeout=10,
        json={"limits": {"tokens_per_day": None, "cost_usd_per_month": 12.5}},
    )
    assert response.json()["limits"] == {"tokens_per_day": None, "cost_usd_per_month": 12.5}


def test_when_storage_is_down_a_call_that_needs_a_lease_is_refused_and_nothing_is_forwarded(
    start_gateway, simulator, sim
):
    """Fail-closed (the default): a call the instance's leased balance cannot cover needs Table Storage."""
    from tests.azurite import Azurite

    storage = Azurite().start()
    try:
        gateway = start_gateway(
            {
                "AZURE_OPENAI_ENDPOINT": simulator.url,
                "GATEWAY_STORAGE_CONNECTION_STRING": storage.connection_string,
                "GATEWAY_LOCAL_DEV_AUTH": "true",
                "GATEWAY_DEFAULT_TOKENS_PER_DAY": "8000",  # leases come in slices of about 1,000 tokens
            }
        )
        client = openai.AzureOpenAI(
            azure_endpoint=gateway.api, api_key="local", api_version="2024-10-21", max_retries=0
        )
        hello = [{"role": "user", "content": "hello"}]
        client.chat.completions.create(model="gpt-4o-mini", messages=hello, max_tokens=10)
        storage.stop()
        # Within the instance's leased balance the call needs no storage round trip ...
        client.chat.completions.create(model="gpt-4o-mini", messages=hello, max_tokens=10)
        sim.reset()
        # ... beyond it, the quota cannot be checked, so nothing is forwarded.
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=hello, max_tokens=990)
        assert caught.value.status_code == 503
        assert caught.value.code == "quota_unavailable"
        assert caught.value.response.headers["retry-after"]
        assert sim.requests() == []
    finally:
        storage.stop()


async def test_the_housekeeping_timer_deletes_counters_of_ended_windows(start_gateway, gateway_env):
    """`make run` runs timers too: the dev host fires the quota housekeeping function, which deletes dead rows."""
    from datetime import UTC, datetime, timedelta

    from azure.data.tables.aio import TableServiceClient

    from shared.quotas.counters import CounterId, CounterStore
    from shared.quotas.limits import Limit

    async with TableServiceClient.from_connection_string(gateway_env["GATEWAY_STORAGE_CONNECTION_STRING"]) as service:
        table = await service.create_table_if_not_exists("gatewayQuota")
        store = CounterStore(table, "test")
        ended = CounterId(f"quota-{uuid.uuid4().hex[:8]}/old", Limit.TOKENS_PER_MINUTE, "2026-11-30T10:00")
        current = CounterId(f"quota-{uuid.uuid4().hex[:8]}/now", Limit.TOKENS_PER_DAY, "2099-01-01")
        await store.change(ended, 100, datetime.now(UTC) - timedelta(minutes=1), spent=5, keep=0)
        await store.change(current, 100, datetime(2099, 1, 2, tzinfo=UTC), spent=5, keep=0)
        start_gateway({**gateway_env, "GATEWAY_DEVHOST_TIMER_SECONDS": "0.5"})
        for _ in range(60):
            await asyncio.sleep(0.25)
            if (await store.read(ended, 100)).used == 0:
                break
        assert (await store.read(ended, 100)).used == 0
        assert (await store.read(current, 100)).used == 5
        await table.close()
