"""The guardrails on their own: what is refused before anything is reserved or forwarded, and what a passing
request turns into."""

from __future__ import annotations

import pytest

from shared.errors import GatewayError
from shared.policy.guard import guard
from shared.protocol.operations import CHAT, EMBEDDINGS, RESPONSES, V1_CHAT, V1_EMBEDDINGS
from shared.settings import GuardrailSettings
from tests.requests import make_request

LIMITS = GuardrailSettings(
    allowed_deployments=frozenset({"gpt-4o-mini", "text-embedding-3-small"}),
    max_request_bytes=2048,
    max_prompt_tokens=100,
    max_output_tokens=500,
)
CHAT_BODY = {"messages": [{"role": "user", "content": "Hello there"}]}
DATED = "api-version=2024-10-21"


async def refused(body=None, *, operation=CHAT, deployment="gpt-4o-mini", query=DATED, **kwargs) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await guard(make_request(body, query=query, **kwargs), operation, LIMITS, deployment)
    return caught.value


async def test_a_good_chat_request_describes_what_to_forward():
    body = {**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 200}
    call = await guard(make_request(body, query=DATED), CHAT, LIMITS, "gpt-4o-mini")
    assert (call.deployment, call.api_version, call.stream, call.client_wants_stream_usage) == (
        "gpt-4o-mini",
        "2024-10-21",
        True,
        True,
    )
    assert call.max_output_tokens == 200
    assert call.body == body
    assert 0 < call.prompt_tokens_estimate <= 100


async def test_the_v1_api_takes_the_deployment_from_the_body_and_needs_no_api_version():
    call = await guard(make_request({**CHAT_BODY, "model": "gpt-4o-mini"}), V1_CHAT, LIMITS, None)
    assert (call.deployment, call.api_version) == ("gpt-4o-mini", None)
    error = await refused(CHAT_BODY, operation=V1_CHAT, deployment=None, query="")
    assert (error.status, error.code, error.param) == (400, "missing_model", "model")


@pytest.mark.parametrize(
    "query, code",
    [
        ("", "missing_api_version"),
        ("api-version=latest", "invalid_api_version"),
        ("api-version=2024-10-21%0A", "invalid_api_version"),  # a trailing newline is not a version
        ("api-version=2024-10-21-preview-x", "invalid_api_version"),
    ],
)
async def test_the_dated_api_needs_a_well_formed_api_version(query, code):
    error = await refused(CHAT_BODY, query=query)
    assert (error.status, error.code, error.param) == (400, code, "api-version")


@pytest.mark.parametrize("deployment", ["../gpt", "gpt 4o", "a" * 65, "gpt-4o-mini\n", "-leading-dash"])
async def test_malformed_deployment_names_are_refused(deployment):
    error = await refused(CHAT_BODY, deployment=deployment)
    assert (error.status, error.code) == (400, "invalid_deployment")


async def test_a_deployment_outside_the_gateway_allowlist_does_not_exist():
    error = await refused(CHAT_BODY, deployment="gpt-4.1")
    assert (error.status, error.code) == (404, "DeploymentNotFound")


async def test_large_bodies_are_refused_by_declared_length_and_by_what_arrives():
    big = {"messages": [{"role": "user", "content": "x" * 4096}]}
    assert (await refused(big)).status == 413
    streamed = make_request(big, chunk_size=512, query=DATED)  # no Content-Length: counted as it arrives
    with pytest.raises(GatewayError) as caught:
        await guard(streamed, CHAT, LIMITS, "gpt-4o-mini")
    assert caught.value.status == 413


@pytest.mark.parametrize(
    "raw, code",
    [(b"", "invalid_json"), (b"{", "invalid_json"), (b"[1]", "invalid_json"), (b"\xff\xfe", "invalid_json")],
)
async def test_bodies_that_are_not_a_json_object_are_refused(raw, code):
    error = await refused(raw=raw)
    assert (error.status, error.code) == (400, code)


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({**CHAT_BODY, "stream": "yes"}, "stream"),
        ({**CHAT_BODY, "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
        ({**CHAT_BODY, "max_tokens": 0}, "max_tokens"),
        ({**CHAT_BODY, "max_tokens": True}, "max_tokens"),
        ({**CHAT_BODY, "max_completion_tokens": 501}, "max_completion_tokens"),
    ],
)
async def test_wrongly_typed_fields_are_named(body, param):
    error = await refused(body)
    assert (error.status, error.param) == (400, param)


async def test_embeddings_cannot_stream_and_need_input():
    assert (
        await refused({"input": "hi", "stream": True}, operation=EMBEDDINGS, deployment="text-embedding-3-small")
    ).param == "stream"
    empty = {"model": "text-embedding-3-small", "input": []}
    assert (await refused(empty, operation=V1_EMBEDDINGS, deployment=None, query="")).param == "input"


async def test_the_responses_api_reads_the_deployment_from_model_and_caps_max_output_tokens():
    call = await guard(
        make_request({"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 50}, query=DATED),
        RESPONSES,
        LIMITS,
        None,
    )
    assert (call.deployment, call.max_output_tokens) == ("gpt-4o-mini", 50)


async def test_prompts_above_the_gateway_limit_are_refused_before_forwarding():
    error = await refused({"messages": [{"role": "user", "content": "word " * 400}]})
    assert (error.status, error.code) == (400, "prompt_too_large")
