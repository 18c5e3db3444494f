"""Backend pools end to end: the official openai SDK against a gateway process whose backends are simulators
(separate processes), a dead port and a half-dead one, with faults injected per backend."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from azure.data.tables import TableClient

from shared.storage.tables import USAGE_TABLE
from tests.upstream.servers import dead_endpoint, half_dead_endpoint, simulators

pytestmark = pytest.mark.e2e
API_VERSION = "2024-10-21"
MINI = "gpt-4o-mini"  # pool: a (priority 1), b (priority 2)
BIG = "gpt-4.1"  # pool: a dead port and a half-dead one (priority 1), b (priority 2)
HELLO = [{"role": "user", "content": "Hello there, gateway!"}]


@pytest.fixture(scope="module")
def backends():
    with simulators(2) as controls, half_dead_endpoint() as silent:
        yield {"a": controls[0], "b": controls[1], "dead": dead_endpoint(), "silent": silent}


@pytest.fixture(autouse=True)
def clean(backends):
    backends["a"].reset()
    backends["b"].reset()


def _settle(gateway, deployment: str = MINI) -> None:
    """Wait until no backend of the pool cools any more (an earlier test may have cooled them)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pools = httpx.get(f"{gateway.api}/ready").json()["checks"]["upstream"]["pools"]
        if all(backend["cooling_ms"] == 0 for backend in pools[deployment]):
            return
        time.sleep(0.02)
    raise AssertionError(f"the {deployment} pool still cools")


@pytest.fixture(scope="module")
def pooled(start_gateway, backends, storage_connection_string):
    a, b = backends["a"].url, backends["b"].url
    pools = {
        MINI: [{"label": "a", "endpoint": a, "priority": 1}, {"label": "b", "endpoint": b, "priority": 2}],
        BIG: [
            {"label": "dead", "endpoint": backends["dead"], "priority": 1},
            {"label": "silent", "endpoint": backends["silent"], "priority": 1},
            {"label": "b", "endpoint": b, "priority": 2},
        ],
        "*": [{"label": "b", "endpoint": b}],
    }
    return start_gateway(
        {
            "GATEWAY_BACKENDS": json.dumps(pools),
            "GATEWAY_UPSTREAM_TIMEOUT_SECONDS": "0.5",
            "GATEWAY_BACKEND_BREAKER_FAILURES": "2",
            "GATEWAY_BACKEND_BREAKER_SECONDS": "30",
            "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
            "GATEWAY_LOCAL_DEV_AUTH": "true",
        }
    )


def _client(gateway, retries: int = 0) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=gateway.api, api_key="local", api_version=API_VERSION, max_retries=retries)


def _ledger_rows(connection_string: str, request_ids: set[str]) -> dict[str, list[dict]]:
    """The usage rows of these requests, once the ledger has flushed them all (it batches within 0.5 s)."""
    query = " or ".join(f"RowKey eq '{request_id}'" for request_id in sorted(request_ids))
    deadline = time.monotonic() + 30
    with TableClient.from_connection_string(connection_string, USAGE_TABLE) as table:
        while True:
            rows: dict[str, list[dict]] = {}
            for entity in table.query_entities(query):
                rows.setdefault(entity["RowKey"], []).append(dict(entity))
            if len(rows) == len(request_ids) or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)


def test_callers_stay_served_through_429s_and_5xx_and_each_call_is_charged_once_to_its_backend(
    pooled, backends, storage_connection_string
):
    a, b = backends["a"], backends["b"]
    _settle(pooled)
    a.behave(fault="429", retry_after_ms=100, times=1)
    a.behave(fault="503", times=1)
    azure = _client(pooled)
    served: dict[str, tuple[str, int, int]] = {}
    for _ in range(20):
        raw = azure.chat.completions.with_raw_response.create(model=MINI, messages=HELLO)
        completion = raw.parse()
        served[raw.headers["x-gateway-request-id"]] = (
            raw.headers["x-gateway-backend"],
            completion.usage.prompt_tokens,
            completion.usage.completion_tokens,
        )
        time.sleep(0.01)

    assert len(served) == 20  # every call succeeded (with_raw_response raises on an error status)
    labels = [label for label, _, _ in served.values()]
    assert labels[:2] == ["b", "b"]  # the 429 moved call 1 to b; call 2 skipped the cooling a
    assert labels[-1] == "a"  # back to priority 1
    # Attempts: one per call, plus one for each injected fault.
    assert len(a.requests()) == labels.count("a") + 2
    assert len(b.requests()) == labels.count("b")

    # One more call: today's ledger leaves a row queued while a batch is being written until the next row arrives
    # (UsageLedger.record only starts a flush timer when none is running), so the last row could wait for it.
    azure.chat.completions.create(model=MINI, messages=HELLO)
    rows = _ledger_rows(storage_connection_string, set(served))
    assert {request_id: len(found) for request_id, found in rows.items()} == {request_id: 1 for request_id in served}
    for request_id, (label, prompt, completion) in served.items():
        [row] = rows[request_id]
        assert (row["Backend"], row["Status"], row["PromptTokens"], row["CompletionTokens"]) == (
            label,
            200,
            prompt,
            completion,
        )


def test_when_every_backend_cools_callers_get_429_with_the_soonest_wait_and_their_sdk_retries_in_time(pooled, backends):
    _settle(pooled)
    backends["a"].behave(fault="429", retry_after_ms=900, retry_after_seconds=9, times=1)
    backends["b"].behave(fault="429", retry_after_ms=400, retry_after_seconds=9, times=1)
    with pytest.raises(openai.RateLimitError) as caught:
        _client(pooled).chat.completions.create(model=MINI, messages=HELLO)
    headers = caught.value.response.headers
    assert 300 <= int(headers["retry-after-ms"]) <= 400 and headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"

    # The official SDK honours retry-after-ms: it waits for b's cooling, not a's, nor 9 s.
    started = time.monotonic()
    raw = _client(pooled, retries=2).chat.completions.with_raw_response.create(model=MINI, messages=HELLO)
    assert raw.headers["x-gateway-backend"] == "b"
    assert time.monotonic() - started < 0.9
    assert len(backends["a"].requests()) == 1 and len(backends["b"].requests()) == 2


def test_a_stream_fails_over_before_its_first_byte_but_never_after(pooled, backends):
    a, b = backends["a"], backends["b"]
    azure = _client(pooled)
    _settle(pooled)
    a.behave(fault="429", retry_after_ms=50, times=1)
    raw = azure.chat.completions.with_raw_response.create(model=MINI, messages=HELLO, stream=True)
    assert raw.headers["x-gateway-backend"] == "b"
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)

    _settle(pooled)
    a.reset()
    b.reset()
    a.behave(fault="cutoff", cutoff_after_chunks=2, times=1)
    with pytest.raises(openai.APIError):
        for _ in azure.chat.completions.create(model=MINI, messages=HELLO, stream=True):
            pass
    assert len(a.requests()) == 1 and b.requests() == []  # bytes had gone to the caller: no second attempt


def test_dead_and_half_dead_backends_open_their_circuits_and_ready_shows_it(pooled, backends):
    azure = _client(pooled)
    timings = []
    for _ in range(4):
        started = time.monotonic()
        raw = azure.chat.completions.with_raw_response.create(model=BIG, messages=HELLO)
        timings.append(time.monotonic() - started)
        assert raw.headers["x-gateway-backend"] == "b"
    # Each failure counts; after two each, both circuits are open and calls go straight to b.
    assert timings[-1] < 0.4, timings
    ready = httpx.get(f"{pooled.api}/ready").json()
    pool = {backend["label"]: backend for backend in ready["checks"]["upstream"]["pools"][BIG]}
    assert pool["dead"]["circuit"] == pool["silent"]["circuit"] == "open"
    assert pool["b"]["circuit"] == "closed"
    assert "127.0.0.1" not in json.dumps(ready)  # labels only, never endpoints


def test_the_single_endpoint_default_is_a_pool_of_one_named_default(gateway, sim):
    raw = _client(gateway).chat.completions.with_raw_response.create(model=MINI, messages=HELLO)
    assert raw.headers["x-gateway-backend"] == "default"
    pools = httpx.get(f"{gateway.api}/ready").json()["checks"]["upstream"]["pools"]
    assert [backend["label"] for backend in pools["*"]] == ["default"]
    sim.behave(fault="429", retry_after_ms=1500, times=1)
    with pytest.raises(openai.RateLimitError) as caught:
        _client(gateway).chat.completions.create(model=MINI, messages=HELLO)
    assert caught.value.response.headers["retry-after-ms"] == "1500"  # the upstream's own 429, passed through
    assert caught.value.response.headers["x-gateway-backend"] == "default"


def test_a_quota_counts_calls_not_attempts(start_gateway, backends, storage_connection_string):
    a, b = backends["a"], backends["b"]
    pools = {"*": [{"label": "a", "endpoint": a.url, "priority": 1}, {"label": "b", "endpoint": b.url, "priority": 2}]}
    gateway = start_gateway(
        {
            "GATEWAY_BACKENDS": json.dumps(pools),
            "GATEWAY_DEFAULT_REQUESTS_PER_MINUTE": "3",
            "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
            "GATEWAY_LOCAL_DEV_AUTH": "true",
        }
    )
    a.behave(fault="429", retry_after_ms=1)  # every call: a 429 on a, then b
    if time.gmtime().tm_sec >= 56:  # the four calls below (well under a second) must share one UTC minute
        time.sleep(61 - time.gmtime().tm_sec)
    azure = _client(gateway)
    served = [
        azure.chat.completions.with_raw_response.create(model=MINI, messages=HELLO).headers["x-gateway-backend"]
        for _ in range(3)
    ]
    assert served == ["b", "b", "b"]
    assert (len(a.requests()), len(b.requests())) == (3, 3)  # six attempts
    with pytest.raises(openai.RateLimitError) as caught:  # three calls: the limit, not six
        azure.chat.completions.create(model=MINI, messages=HELLO)
    assert caught.value.code == "requests_per_minute_exceeded"
    assert len(a.requests()) == 3  # refused before any backend
