"""Admission control through a gateway process: past GATEWAY_MAX_INFLIGHT_CALLS a call is refused at once, and a
call's slot comes back when it ends, when its caller hangs up mid-stream, and when the upstream fails."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e

LIMIT = 2
CHAT = "gpt-4o-mini"
HELLO = [{"role": "user", "content": "Hello there, gateway!"}]
HEADERS = {"api-key": "local"}
V1_CHAT = "/openai/v1/chat/completions"


@pytest.fixture(scope="module")
def small(start_gateway, gateway_env):
    return start_gateway({**gateway_env, "GATEWAY_MAX_INFLIGHT_CALLS": str(LIMIT)})


@pytest.fixture
def client(small):
    with httpx.Client(base_url=small.api, headers=HEADERS, timeout=30) as http:
        yield http


@pytest.fixture
def sdk(small):
    return openai.OpenAI(base_url=f"{small.api}/openai/v1", api_key="local", max_retries=0)


def chat(client: httpx.Client, **body) -> httpx.Response:
    return client.post(V1_CHAT, json={"model": CHAT, "messages": HELLO, **body})


def open_streams(client: httpx.Client, count: int) -> list:
    """Streams whose first bytes arrived: each holds a slot until it ends."""
    streams = []
    for _ in range(count):
        context = client.stream("POST", V1_CHAT, json={"model": CHAT, "messages": HELLO, "stream": True})
        response = context.__enter__()
        assert response.status_code == 200, response.read()
        chunks = response.iter_raw()
        next(chunks)  # the iterator is kept: dropping it would close the response (the caller hanging up)
        streams.append((context, chunks))
    return streams


def admitted_within(client: httpx.Client, seconds: float = 15.0) -> httpx.Response:
    """The first call that is not refused for being over the bound (a hung-up stream frees its slot when the
    gateway notices the caller left, shortly after)."""
    deadline = time.monotonic() + seconds
    while True:
        response = chat(client)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_past_the_bound_a_call_is_refused_at_once_openai_shaped_and_never_forwarded(client, sim):
    sim.behave(chunk_delay_ms=200, completion_tokens=100)  # each stream stays open ~20 s unless abandoned
    streams = open_streams(client, LIMIT)
    try:
        started = time.monotonic()
        refused = chat(client)
        json_refused = client.post(V1_CHAT, json={"model": CHAT, "messages": HELLO, "stream": True})
        assert time.monotonic() - started < 10, "refused while the streams are still open, not after queueing"
        for response in (refused, json_refused):
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.headers["x-gateway-request-id"]
            error = response.json()["error"]
            assert error["code"] == "gateway_overloaded"
            assert error["type"] and "message" in error and "param" in error
        assert len(sim.requests()) == LIMIT, "the refused calls never reached the upstream"
    finally:
        for context, _chunks in streams:
            context.__exit__(None, None, None)  # the caller hangs up mid-stream
    # Hung-up streams give their slots back: LIMIT new streams are admitted again.
    sim.reset()
    assert admitted_within(client).status_code == 200
    for context, _chunks in open_streams(client, LIMIT):
        context.__exit__(None, None, None)


def test_calls_that_end_give_their_slot_back(client, sdk, sim):
    for _ in range(2 * LIMIT + 1):
        assert chat(client).status_code == 200
        chunks = list(sdk.chat.completions.create(model=CHAT, messages=HELLO, stream=True))
        assert chunks
    assert admitted_within(client, 0).status_code == 200


def test_calls_that_fail_give_their_slot_back(client, sdk, sim):
    sim.behave(fault="500", times=2 * LIMIT + 1)
    for _ in range(2 * LIMIT + 1):
        assert chat(client).status_code == 500
    sim.reset()
    sim.behave(fault="cutoff", cutoff_after_chunks=2, completion_tokens=10, times=2 * LIMIT + 1)
    for _ in range(2 * LIMIT + 1):
        with pytest.raises(openai.APIError, match="broke off the stream"):
            list(sdk.chat.completions.create(model=CHAT, messages=HELLO, stream=True))
    sim.reset()
    assert admitted_within(client, 0).status_code == 200
