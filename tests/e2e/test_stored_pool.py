"""Stored responses across a pool of two Azure OpenAI accounts (two simulator processes, weights 1:1): a response
exists in the account that made it only, so every follow-up must go there (affinity), whatever the weights say, and
a follow-up whose account cannot take it gets a retryable 503, never the other account's 404."""

from __future__ import annotations

import json
import time

import openai
import pytest
from azure.data.tables import TableClient

from shared.storage.tables import USAGE_TABLE
from tests.upstream.servers import simulators

pytestmark = pytest.mark.e2e

MINI = "gpt-4o-mini"


@pytest.fixture(scope="module")
def backends():
    with simulators(2) as controls:
        yield {"a": controls[0], "b": controls[1]}


@pytest.fixture(autouse=True)
def clean(backends):
    for control in backends.values():
        control.reset()


@pytest.fixture(scope="module")
def pooled(start_gateway, backends, storage_connection_string):
    a, b = backends["a"].url, backends["b"].url
    pools = {
        MINI: [{"label": "a", "endpoint": a, "weight": 1}, {"label": "b", "endpoint": b, "weight": 1}],
        "*": [{"label": "a", "endpoint": a}],
    }
    return start_gateway(
        {
            "GATEWAY_BACKENDS": json.dumps(pools),
            "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
            "GATEWAY_LOCAL_DEV_AUTH": "true",
            "GATEWAY_DEVHOST_TIMER_SECONDS": "2",  # the background settlement timer, without waiting a minute
        }
    )


def v1(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.api}/openai/v1", api_key="local", max_retries=0)


def created_ids(control) -> dict[str, str | None]:
    """Responses this simulator created, by the previous_response_id each create named."""
    return {r["body"].get("previous_response_id"): r["path"] for r in control.requests() if r.get("body")}


def test_twenty_agent_conversations_of_chained_turns_all_succeed_across_the_pool(pooled, backends):
    from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return f"18 degrees and sunny in {city}"

    client = openai.AsyncOpenAI(base_url=f"{pooled.api}/openai/v1", api_key="local", max_retries=0)
    agent = Agent(
        name="assistant",
        instructions="Answer briefly.",
        model=OpenAIResponsesModel(model=MINI, openai_client=client),
        model_settings=ModelSettings(store=True),
        tools=[get_weather],
    )
    succeeded = 0
    for conversation in range(20):
        last = None
        for turn in ("Hello, I am planning a trip.", "What is the weather in Paris?", "Thanks, and tomorrow?"):
            result = Runner.run_sync(agent, f"{turn} ({conversation})", previous_response_id=last)
            last = result.last_response_id
            assert last is not None
        succeeded += 1
    assert succeeded == 20

    # Both accounts served conversations and chained turns; an account asked to chain an id it does not hold answers
    # 400 previous_response_not_found, which would have failed the run: every follow-up went to its predecessor's.
    made = {name: [r for r in control.requests() if r.get("body")] for name, control in backends.items()}
    for name, requests in made.items():
        chained = [r for r in requests if r["body"].get("previous_response_id")]
        assert len(requests) > 10 and len(chained) > 5, (name, len(requests), len(chained))


def test_a_follow_up_whose_account_is_cooling_gets_a_retryable_503_never_the_other_account(pooled, backends):
    sdk = v1(pooled)
    raw = sdk.responses.with_raw_response.create(model=MINI, input="Remember 7.")
    first, holder = raw.parse(), raw.headers["x-gateway-backend"]
    other = "b" if holder == "a" else "a"
    backends[holder].behave(fault="429", retry_after_seconds=30, times=1)
    with pytest.raises(openai.RateLimitError):  # the holder's own 429 (it now cools)
        sdk.responses.create(model=MINI, input="Which?", previous_response_id=first.id)
    with pytest.raises(openai.InternalServerError) as unavailable:
        sdk.responses.create(model=MINI, input="Which?", previous_response_id=first.id)
    assert unavailable.value.status_code == 503
    assert unavailable.value.code == "backend_unavailable"
    assert int(unavailable.value.response.headers["retry-after"]) > 0
    assert [r for r in backends[other].requests() if r.get("body")] == []  # never sent to the other account
    with pytest.raises(openai.InternalServerError):  # reads of the object wait for its account too
        sdk.responses.retrieve(first.id)
    # New conversations still follow the pool: the other account serves them.
    assert sdk.responses.with_raw_response.create(model=MINI, input="New").headers["x-gateway-backend"] == other


def test_the_timer_settles_a_background_response_nobody_polls(pooled, backends, storage_connection_string):
    for control in backends.values():
        control.behave(background_steps=0)
    raw = v1(pooled).responses.with_raw_response.create(model=MINI, input="Write an essay", background=True)
    assert raw.parse().status == "queued"
    request_id = raw.headers["x-gateway-request-id"]
    [reported] = [
        r["usage"] for control in backends.values() for r in control.requests() if (r.get("body") or {}).get("background")
    ]
    deadline = time.monotonic() + 30
    with TableClient.from_connection_string(storage_connection_string, USAGE_TABLE) as table:
        while True:
            rows = list(table.query_entities(f"RowKey eq '{request_id}'"))
            if rows or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    [row] = rows
    assert (row["PromptTokens"], row["CompletionTokens"]) == (reported["prompt_tokens"], reported["completion_tokens"])
    assert row["Outcome"] == "background_completed" and row["Backend"] == raw.headers["x-gateway-backend"]
