"""The request path in-process: real Table Storage (Azurite), the simulator upstream, starlette requests built in
memory. Each step's effect on what is forwarded and what is recorded."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.accounting.ledger import UsageLedger
from shared.accounting.settlement import Accounting
from shared.auth.authenticator import Authenticator
from shared.finance.usage_report import ledger_rows
from shared.pipeline import Gateway
from shared.policy.authorization import Authorizer
from shared.policy.callers import CallerPolicy, CallerPolicyStore
from shared.protocol.operations import CHAT, V1_CHAT
from shared.settings import BackendSettings, GuardrailSettings, UpstreamSettings
from shared.upstream.client import simulator_token_provider
from shared.upstream.pool import Upstream
from tests.requests import make_request

CHAT_BODY = {"messages": [{"role": "user", "content": "Hello pipeline"}], "max_tokens": 5}


@pytest.fixture
def policies(table) -> CallerPolicyStore:
    return CallerPolicyStore(table, cache_seconds=0)


@pytest.fixture
async def gateway(table, simulator, policies):
    upstream = Upstream.from_settings(
        UpstreamSettings(endpoint=simulator.url),
        lambda _: simulator_token_provider(),
        BackendSettings("default", simulator.url),
    )
    ledger = UsageLedger(table, flush_seconds=60)
    gateway = Gateway(
        GuardrailSettings(),
        Authenticator(easy_auth=False, validator=None, key_store=None, local_dev=True, env={}),
        Authorizer(policies),
        upstream,
        Accounting(ledger, {}),
        stream_usage_min_api_version="2024-09-01-preview",
    )
    yield gateway
    await upstream.aclose()


async def rows(gateway: Gateway, table) -> list[dict]:
    await gateway.drain()
    await gateway.accounting.ledger.flush()
    today = datetime.now(UTC).date()
    return await ledger_rows(table, today, today)


async def test_a_call_is_forwarded_once_and_recorded_once_with_the_upstreams_usage(gateway, table, sim):
    response = await gateway.model_call(make_request(CHAT_BODY, query="api-version=2024-10-21"), CHAT, "gpt-4o-mini")
    assert response.status_code == 200
    request_id = response.headers["x-gateway-request-id"]
    usage = json.loads(response.body)["usage"]
    assert response.background is None  # settled (journaled) before the answer left, not after
    recorded = [r for r in await rows(gateway, table) if r["RowKey"] == request_id]
    assert len(recorded) == 1
    assert (recorded[0]["PromptTokens"], recorded[0]["CompletionTokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert len(sim.requests()) == 1


async def test_a_refused_call_is_neither_forwarded_nor_recorded(gateway, policies, table, sim):
    await policies.put(CallerPolicy("local/developer", frozenset({"gpt-4.1"})))
    response = await gateway.model_call(make_request(CHAT_BODY, query="api-version=2024-10-21"), CHAT, "gpt-4o-mini")
    assert response.status_code == 403
    request_id = response.headers["x-gateway-request-id"]
    assert sim.requests() == []
    assert not [r for r in await rows(gateway, table) if r["RowKey"] == request_id]


async def test_an_upstream_throttle_passes_through_and_is_recorded_as_an_upstream_error(gateway, table, sim):
    sim.behave(deployment="gpt-4o-mini", fault="429", retry_after_ms=250, times=1)
    response = await gateway.model_call(make_request(CHAT_BODY, query="api-version=2024-10-21"), CHAT, "gpt-4o-mini")
    assert response.status_code == 429
    assert response.headers["retry-after-ms"] == "250"
    recorded = [r for r in await rows(gateway, table) if r["RowKey"] == response.headers["x-gateway-request-id"]]
    assert (recorded[0]["Status"], recorded[0]["Outcome"]) == (429, "upstream_error")


@pytest.mark.parametrize(
    "operation, api_version, client_asked, injected",
    [
        (CHAT, "2024-10-21", False, True),
        (CHAT, "2024-06-01", False, False),  # older api-versions reject stream_options
        (CHAT, "2024-10-21", True, False),  # the caller asked itself: its chunk is not dropped
        (V1_CHAT, None, False, True),
    ],
)
def test_streams_ask_for_usage_only_where_the_api_version_supports_it(
    gateway, operation, api_version, client_asked, injected
):
    from shared.protocol.calls import ModelCall

    body = {**CHAT_BODY, "stream": True}
    if client_asked:
        body["stream_options"] = {"include_usage": True}
    call = ModelCall(operation, "gpt-4o-mini", api_version, body, True, client_asked, 5, 5)
    forwarded, added = gateway.forward_body(call)
    assert added is injected
    assert forwarded.get("stream_options", {}).get("include_usage", False) is (injected or client_asked)
    assert call.body == body  # the caller's body is never changed in place
