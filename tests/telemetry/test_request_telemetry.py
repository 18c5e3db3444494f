"""Spans and metrics of model calls, read from an in-memory exporter and metric reader: what operators chart."""

from __future__ import annotations

import json

import pytest
from opentelemetry.trace import SpanKind, StatusCode

CHAT = "gpt-4o-mini"
HELLO = [{"role": "user", "content": "Hello there, gateway!"}]
HEADERS = {"api-key": "local"}  # local dev auth: the local developer
V1_CHAT = "/api/openai/v1/chat/completions"


async def chat(client, **body):
    return await client.post(V1_CHAT, headers=HEADERS, json={"model": CHAT, "messages": HELLO, **body})


async def test_a_call_is_one_span_with_genai_attributes_and_child_steps(in_process):
    gateway, observed = in_process
    response = await chat(gateway.client, max_tokens=7)
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]

    [root] = observed.finished("chat gpt-4o-mini")
    attributes = dict(root.attributes)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == CHAT
    assert attributes["gen_ai.response.model"] == response.json()["model"]
    assert attributes["gen_ai.request.max_tokens"] == 7
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"] == 7
    assert attributes["gateway.caller_id"] == "local/developer"
    assert attributes["gateway.deployment"] == CHAT
    assert attributes["gateway.quota.decision"] == "admitted"
    assert attributes["gateway.request_id"] == response.headers["x-gateway-request-id"]
    assert attributes["http.response.status_code"] == 200
    assert attributes["gateway.outcome"] == "completed"
    assert root.status.status_code is StatusCode.UNSET

    children = {s.name: s for s in observed.finished() if s.parent is not None}
    assert set(children) == {"gateway.quota.reserve", "gateway.upstream", "gateway.quota.settle"}
    for child in children.values():
        assert child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
    assert children["gateway.upstream"].kind is SpanKind.CLIENT
    # The span ends at settlement, after the upstream answered and the ledger row was queued.
    assert root.end_time >= children["gateway.quota.settle"].end_time >= children["gateway.upstream"].end_time


async def test_token_request_and_latency_metrics_of_a_call(in_process):
    gateway, observed = in_process
    usage = (await chat(gateway.client, max_tokens=5)).json()["usage"]

    who = {"gateway.caller_id": "local/developer", "gateway.deployment": CHAT}
    assert observed.total("gateway.tokens", **who, **{"gen_ai.token.type": "input"}) == usage["prompt_tokens"]
    assert observed.total("gateway.tokens", **who, **{"gen_ai.token.type": "output"}) == 5
    assert observed.total("gateway.requests", **{"http.response.status_code": 200, "gateway.outcome": "completed"}) == 1
    # 0.15 USD per million input tokens, 0.6 per million output tokens
    expected_cost = (usage["prompt_tokens"] * 0.15 + 5 * 0.6) / 1e6
    assert observed.total("gateway.cost", **who) == pytest.approx(expected_cost)
    [overhead] = observed.points("gateway.overhead")
    [upstream] = observed.points("gateway.upstream.duration")
    assert overhead.count == upstream.count == 1
    assert 0 < overhead.sum < 5000 and 0 < upstream.sum < 5000
    assert observed.points("gateway.time_to_first_token") == []  # not a stream


async def test_a_stream_reports_time_to_first_token_and_its_usage(in_process, sim):
    gateway, observed = in_process
    sim.behave(first_byte_delay_ms=150, completion_tokens=6)
    response = await chat(gateway.client, stream=True)
    assert response.status_code == 200
    await gateway.settled()
    usage = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    assert not any(chunk.get("usage") for chunk in usage)  # the gateway's own include_usage chunk was dropped

    [root] = observed.finished("chat gpt-4o-mini")
    attributes = dict(root.attributes)
    assert attributes["gateway.stream"] is True
    assert attributes["gen_ai.usage.output_tokens"] == 6 and attributes["gateway.usage.estimated"] is False
    assert attributes["gen_ai.response.model"]
    assert attributes["gateway.time_to_first_token_ms"] >= 150
    [ttft] = observed.points("gateway.time_to_first_token")
    assert ttft.count == 1 and ttft.sum >= 150
    assert observed.total("gateway.tokens", **{"gen_ai.token.type": "output"}) == 6


async def test_an_upstream_error_is_counted_and_marks_the_span(in_process, sim):
    gateway, observed = in_process
    sim.behave(fault="429", times=1)
    response = await chat(gateway.client)
    assert response.status_code == 429

    [root] = observed.finished("chat gpt-4o-mini")
    assert root.attributes["gateway.outcome"] == "upstream_error"
    assert root.attributes["http.response.status_code"] == 429
    assert root.status.status_code is StatusCode.ERROR
    assert (
        observed.total("gateway.requests", **{"http.response.status_code": 429, "gateway.outcome": "upstream_error"})
        == 1
    )
    assert observed.total("gateway.tokens") == 0


@pytest.mark.parametrize("extra_env", [{"AZURE_OPENAI_ENDPOINT": "http://127.0.0.1:9"}])  # nothing listens
async def test_an_unreachable_upstream_is_an_error_on_the_upstream_span(in_process, sim):
    gateway, observed = in_process
    response = await chat(gateway.client)
    assert response.status_code == 502

    [upstream] = observed.finished("gateway.upstream")
    assert upstream.status.status_code is StatusCode.ERROR
    assert upstream.attributes["error.type"] == "upstream_unreachable"
    assert observed.total("gateway.requests", **{"http.response.status_code": 502}) == 1
    [latency] = observed.points("gateway.upstream.duration")
    assert latency.attributes["gateway.outcome"] == "error"


@pytest.mark.parametrize("extra_env", [{"GATEWAY_DEFAULT_TOKENS_PER_MINUTE": "50"}])
async def test_a_quota_refusal_is_counted_by_limit(in_process, sim):
    gateway, observed = in_process
    response = await chat(gateway.client, max_tokens=100)  # needs more than the whole minute's 50 tokens
    assert response.status_code == 403, response.text

    [root] = observed.finished("chat gpt-4o-mini")
    assert root.attributes["gateway.quota.decision"] == "refused"
    assert root.attributes["gateway.quota.limit"] == "tokens_per_minute"
    [reserve] = observed.finished("gateway.quota.reserve")
    assert reserve.status.status_code is StatusCode.ERROR
    assert observed.finished("gateway.upstream") == []
    assert observed.total("gateway.quota.refusals", **{"gateway.quota.limit": "tokens_per_minute"}) == 1
    assert observed.total("gateway.requests", **{"http.response.status_code": 403, "gateway.outcome": "refused"}) == 1
    assert sim.requests() == []


async def test_an_unauthenticated_call_is_counted_without_a_caller(in_process):
    gateway, observed = in_process
    wrong_key = {"api-key": "gwk_" + "x" * 40}
    response = await gateway.client.post(V1_CHAT, headers=wrong_key, json={"model": CHAT, "messages": HELLO})
    assert response.status_code == 401

    [root] = observed.finished("chat")  # refused before the deployment was known
    assert "gateway.caller_id" not in root.attributes
    assert (
        observed.total(
            "gateway.requests", **{"http.response.status_code": 401, "gateway.caller_id": "_unauthenticated"}
        )
        == 1
    )


async def test_telemetry_off_records_nothing_and_builds_no_span(gateway_env):
    from shared import telemetry
    from shared.protocol.operations import V1_CHAT as OPERATION
    from shared.runtime import Runtime

    Runtime(gateway_env)  # GATEWAY_TELEMETRY unset: off
    assert telemetry.active().enabled is False
    assert telemetry.observe_request(OPERATION, "r1") is telemetry.UNOBSERVED


async def test_a_call_past_the_admission_bound_is_counted_overloaded_and_calls_in_flight_are_a_gauge(in_process, sim):
    gateway, observed = in_process
    admission = (await gateway.runtime.services()).gateway.admission
    held = [admission.enter() for _ in range(admission.limit)]  # every slot taken, as by open streams
    response = await chat(gateway.client)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "gateway_overloaded"
    overloaded = {"http.response.status_code": 503, "gateway.outcome": "overloaded"}
    assert observed.total("gateway.requests", **overloaded) == 1
    assert observed.total("gateway.calls.in_flight") == admission.limit
    assert sim.requests() == []
    for slot in held:
        slot.release()
    assert (await chat(gateway.client)).status_code == 200
    assert observed.total("gateway.calls.in_flight") == 0
