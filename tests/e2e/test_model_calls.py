"""The official openai SDK, unchanged, against the gateway over real HTTP."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from azure.data.tables import TableClient

API_VERSION = "2024-10-21"
CHAT = "gpt-4o-mini"
EMBED = "text-embedding-3-small"
HELLO = [{"role": "user", "content": "Hello there, gateway!"}]

pytestmark = pytest.mark.e2e


@pytest.fixture
def azure(gateway):
    return openai.AzureOpenAI(azure_endpoint=gateway.api, api_key="local", api_version=API_VERSION, max_retries=0)


@pytest.fixture
def v1(gateway):
    return openai.OpenAI(base_url=f"{gateway.api}/openai/v1", api_key="local", max_retries=0)


def test_chat_completion_on_the_deployments_path(azure, sim):
    completion = azure.chat.completions.create(model=CHAT, messages=HELLO)

    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    # o200k_base: "user" 1 + "Hello there, gateway!" 5, plus 3 per message and 3 for the reply priming.
    assert completion.usage.prompt_tokens == 12
    assert completion.usage.completion_tokens == 12
    [upstream] = sim.requests()
    assert upstream["path"] == f"/openai/deployments/{CHAT}/chat/completions"
    assert upstream["query"] == {"api-version": API_VERSION}
    assert upstream["authorization"] == "bearer" and not upstream["api_key_header"]


def test_chat_completion_on_the_v1_path(v1, sim):
    completion = v1.chat.completions.create(model=CHAT, messages=HELLO, max_completion_tokens=4)

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 4
    [upstream] = sim.requests()
    assert upstream["path"] == "/openai/v1/chat/completions"
    assert "api-version" not in upstream["query"]


def test_unknown_request_fields_reach_the_upstream_unchanged(azure, sim):
    azure.chat.completions.create(
        model=CHAT, messages=HELLO, extra_body={"data_sources": [{"type": "azure_search"}], "x_custom": {"a": 1}}
    )
    [upstream] = sim.requests()
    assert upstream["body"]["data_sources"] == [{"type": "azure_search"}]
    assert upstream["body"]["x_custom"] == {"a": 1}


def test_streaming_chat_arrives_chunk_by_chunk_before_the_upstream_finishes(azure, sim):
    # The upstream takes ~2 s to finish (5 tokens, 400 ms apart); the first token must not wait for that.
    sim.behave(chunk_delay_ms=400, completion_tokens=5)
    started = time.monotonic()
    arrivals = []
    text = ""
    for chunk in azure.chat.completions.create(model=CHAT, messages=HELLO, stream=True):
        for choice in chunk.choices:
            if choice.delta.content:
                arrivals.append(time.monotonic() - started)
                text += choice.delta.content
    total = time.monotonic() - started

    assert len(arrivals) == 5
    assert total >= 1.6, total
    assert arrivals[0] < 1.0, arrivals  # first content token well before the stream ends
    assert arrivals[-1] - arrivals[0] >= 1.2, arrivals  # tokens were not buffered and released together
    assert text.split() == ["the", "gateway", "answered", "this", "request"]


def test_streaming_without_include_usage_hides_the_usage_chunk_the_gateway_asked_for(azure, sim):
    chunks = list(azure.chat.completions.create(model=CHAT, messages=HELLO, stream=True))

    assert all(chunk.usage is None for chunk in chunks)
    [upstream] = sim.requests()
    assert upstream["body"]["stream_options"] == {"include_usage": True}  # injected for accounting


def test_streaming_with_include_usage_keeps_the_usage_chunk(azure, sim):
    chunks = list(
        azure.chat.completions.create(model=CHAT, messages=HELLO, stream=True, stream_options={"include_usage": True})
    )

    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == 12 and usage[0].prompt_tokens == 12


def test_old_api_versions_get_no_injected_stream_options(gateway, sim):
    old = openai.AzureOpenAI(azure_endpoint=gateway.api, api_key="local", api_version="2024-06-01", max_retries=0)
    chunks = list(old.chat.completions.create(model=CHAT, messages=HELLO, stream=True))

    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    [upstream] = sim.requests()
    assert "stream_options" not in upstream["body"]


def test_embeddings_on_both_paths(azure, v1):
    for client in (azure, v1):
        result = client.embeddings.create(model=EMBED, input=["first text", "second text"])
        assert [len(d.embedding) for d in result.data] == [1536, 1536]
        assert result.usage.prompt_tokens == 4
    # Deterministic: the same text gives the same vector on either path.
    a = azure.embeddings.create(model=EMBED, input="same").data[0].embedding
    b = v1.embeddings.create(model=EMBED, input="same").data[0].embedding
    assert a == b


def test_responses_api(v1):
    response = v1.responses.create(model=CHAT, input="Say hello", max_output_tokens=6)

    # The 12-token reply is cut at 6: Azure marks the response incomplete, as the simulator does.
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert len(response.output_text.split()) == 6
    assert response.usage.output_tokens == 6


def test_responses_api_on_the_dated_path(gateway, sim):
    azure = openai.AzureOpenAI(
        azure_endpoint=gateway.api, api_key="local", api_version="2025-03-01-preview", max_retries=0
    )
    response = azure.responses.create(model=CHAT, input="Say hello", max_output_tokens=3)

    assert response.output_text.split() == ["the", "gateway", "answered"]
    [upstream] = sim.requests()
    assert upstream["path"] == "/openai/responses"
    assert upstream["query"] == {"api-version": "2025-03-01-preview"}


def test_responses_api_streaming(v1):
    events = list(v1.responses.create(model=CHAT, input="Say hello", stream=True))

    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) == 12
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage.output_tokens == 12


def test_upstream_429_reaches_the_caller_with_its_retry_headers(azure, sim):
    sim.behave(fault="429", times=1, retry_after_seconds=3, retry_after_ms=2500)

    with pytest.raises(openai.RateLimitError) as caught:
        azure.chat.completions.create(model=CHAT, messages=HELLO)

    headers = caught.value.response.headers
    assert headers["retry-after"] == "3"
    assert headers["retry-after-ms"] == "2500"
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    assert headers["x-ratelimit-reset-tokens"] == "3s"
    assert caught.value.body["code"] == "429"


def test_sdk_retry_honours_the_upstream_retry_after_ms(gateway, sim):
    # The gateway does not retry by itself; the caller's SDK does, guided by retry-after-ms.
    sim.behave(fault="429", times=1, retry_after_seconds=1, retry_after_ms=200)
    client = openai.AzureOpenAI(azure_endpoint=gateway.api, api_key="local", api_version=API_VERSION, max_retries=2)

    completion = client.chat.completions.create(model=CHAT, messages=HELLO)

    assert completion.choices[0].message.content
    assert len(sim.requests()) == 2


def test_upstream_server_errors_pass_through(azure, sim):
    sim.behave(fault="503", times=1)
    with pytest.raises(openai.InternalServerError) as caught:
        azure.chat.completions.create(model=CHAT, messages=HELLO)
    assert caught.value.status_code == 503


def test_a_stream_cut_off_upstream_ends_with_an_error_the_sdk_raises(azure, sim):
    sim.behave(fault="cutoff", cutoff_after_chunks=3, completion_tokens=10)
    received = []
    with pytest.raises(openai.APIError, match="broke off the stream"):
        for chunk in azure.chat.completions.create(model=CHAT, messages=HELLO, stream=True):
            received.append(chunk)
    assert received, "the chunks before the cut reached the caller"


def test_gateway_errors_are_openai_shaped_with_a_request_id(gateway):
    response = httpx.post(
        f"{gateway.api}/openai/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert "line 1 column 2" in error["message"]
    assert error["type"] == "invalid_request_error"
    assert response.headers["x-gateway-request-id"]


@pytest.mark.parametrize(
    "body, status, code, param",
    [
        ([1, 2], 400, "invalid_json", None),
        ({"model": CHAT, "messages": "hello"}, 400, "invalid_type", "messages"),
        ({"model": CHAT, "messages": []}, 400, "invalid_type", "messages"),
        ({"model": CHAT, "messages": HELLO, "max_tokens": "10"}, 400, "invalid_type", "max_tokens"),
        ({"model": CHAT, "messages": HELLO, "max_tokens": 0}, 400, "invalid_type", "max_tokens"),
        (
            {"model": CHAT, "messages": HELLO, "max_completion_tokens": 5000},
            400,
            "max_tokens_too_large",
            "max_completion_tokens",
        ),
        ({"model": CHAT, "messages": HELLO, "stream": "yes"}, 400, "invalid_type", "stream"),
        (
            {"model": CHAT, "messages": HELLO, "stream": True, "stream_options": {"include_usage": 1}},
            400,
            "invalid_type",
            "stream_options.include_usage",
        ),
        ({"messages": HELLO}, 400, "missing_model", "model"),
        ({"model": "../../admin", "messages": HELLO}, 400, "invalid_deployment", "model"),
        ({"model": "gpt-unlisted", "messages": HELLO}, 404, "DeploymentNotFound", None),
        ({"model": CHAT, "messages": [{"role": "user", "content": "word " * 4000}]}, 400, "prompt_too_large", None),
    ],
)
def test_bad_requests_are_refused_and_nothing_is_forwarded(gateway, sim, body, status, code, param):
    response = httpx.post(f"{gateway.api}/openai/v1/chat/completions", json=body)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["param"] == param
    assert sim.requests() == []


def test_oversized_bodies_get_413_and_are_not_forwarded(gateway, sim):
    big = {"model": CHAT, "messages": [{"role": "user", "content": "x" * 70_000}]}
    response = httpx.post(f"{gateway.api}/openai/v1/chat/completions", json=big)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert sim.requests() == []


def test_oversized_chunked_bodies_without_content_length_get_413(gateway, sim):
    def chunks():
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"}]}'

    response = httpx.post(
        f"{gateway.api}/openai/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert sim.requests() == []


def test_deployment_path_tricks_never_reach_the_upstream(gateway, sim):
    for path in (
        "openai/deployments/..%2F..%2Fsecrets/chat/completions",
        "openai/deployments/a%3Fb/chat/completions",
        "openai/deployments/-x/chat/completions",
    ):
        response = httpx.post(f"{gateway.api}/{path}?api-version={API_VERSION}", json={"messages": HELLO})
        assert response.status_code in (400, 404), (path, response.status_code)
    assert sim.requests() == []


def test_missing_api_version_on_the_deployments_path(gateway, sim):
    response = httpx.post(f"{gateway.api}/openai/deployments/{CHAT}/chat/completions", json={"messages": HELLO})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "api-version"
    assert sim.requests() == []


def test_health_and_ready(gateway):
    assert httpx.get(f"{gateway.api}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.api}/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["storage"]["ok"] is True


def _settled_line(gateway, request_id: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in gateway.output().splitlines():
            if f"model call {request_id} settled" in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no settlement logged for {request_id}")


def _ledger_row(storage_connection_string: str, request_id: str, timeout: float = 5.0) -> dict:
    """The usage ledger's row for one request, read straight from Table Storage."""
    table = TableClient.from_connection_string(storage_connection_string, "gatewayUsage")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(table.query_entities("RowKey eq @id", parameters={"id": request_id}))
        if rows:
            assert len(rows) == 1
            return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"no ledger row for {request_id}")


def test_a_stream_is_accounted_exactly_even_when_the_caller_did_not_ask_for_usage(
    gateway, azure, storage_connection_string
):
    stream = azure.chat.completions.with_raw_response.create(model=CHAT, messages=HELLO, stream=True)
    list(stream.parse())

    request_id = stream.headers["x-gateway-request-id"]
    line = _settled_line(gateway, request_id)
    assert "chat.completions gpt-4o-mini by local/developer status=200 outcome=completed tokens=12+12" in line
    row = _ledger_row(storage_connection_string, request_id)
    assert (row["PromptTokens"], row["CompletionTokens"], row["Estimated"], row["Outcome"]) == (
        12,
        12,
        False,
        "completed",
    )


def test_a_cut_off_stream_is_accounted_as_estimated(gateway, azure, sim, storage_connection_string):
    sim.behave(fault="cutoff", cutoff_after_chunks=4, completion_tokens=10)
    stream = azure.chat.completions.with_raw_response.create(model=CHAT, messages=HELLO, stream=True)
    with pytest.raises(openai.APIError):
        list(stream.parse())

    row = _ledger_row(storage_connection_string, stream.headers["x-gateway-request-id"])
    assert row["Outcome"] == "upstream_incomplete" and row["Estimated"] is True
    # The upstream may have generated more than it sent before breaking off: the call is charged all the output it
    # could have used (this gateway's ceiling of 1,000 tokens), not the two words relayed before the cut.
    assert (row["PromptTokens"], row["CompletionTokens"]) == (12, 1000)


def test_a_caller_leaving_mid_stream_is_recorded_once(gateway, sim, storage_connection_string):
    sim.behave(chunk_delay_ms=300, completion_tokens=20)
    with httpx.stream(
        "POST", f"{gateway.api}/openai/v1/chat/completions", json={"model": CHAT, "messages": HELLO, "stream": True}
    ) as response:
        request_id = response.headers["x-gateway-request-id"]
        next(response.iter_raw())  # the first event arrived; now hang up

    row = _ledger_row(storage_connection_string, request_id)
    assert row["Outcome"] == "caller_gone" and row["Estimated"] is True
    time.sleep(0.5)
    assert sum(f"model call {request_id} settled" in ln for ln in gateway.output().splitlines()) == 1


def test_a_gateway_that_cannot_reach_storage_answers_503_openai_shaped(start_gateway, simulator):
    from tests.azurite import connection_string, free_port

    broken = start_gateway(
        {
            "AZURE_OPENAI_ENDPOINT": simulator.url,
            "GATEWAY_STORAGE_CONNECTION_STRING": connection_string(free_port()),  # nothing listens there
            "GATEWAY_LOCAL_DEV_AUTH": "true",
        }
    )
    client = openai.OpenAI(base_url=f"{broken.api}/openai/v1", api_key="local", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=CHAT, messages=HELLO)
    assert caught.value.status_code == 503
    assert caught.value.body["code"] == "gateway_unavailable"
    assert caught.value.response.headers["retry-after"] == "5"
    ready = httpx.get(f"{broken.api}/ready", timeout=60)
    assert ready.status_code == 503 and ready.json()["checks"]["storage"]["ok"] is False


@pytest.mark.parametrize("raw", [b"[" * 5000 + b"]" * 5000, b'{"model": "gpt-4o-mini", "n": ' + b"9" * 5000 + b"}"])
def test_pathological_json_is_a_400_not_a_500(gateway, sim, raw):
    response = httpx.post(
        f"{gateway.api}/openai/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    assert sim.requests() == []
