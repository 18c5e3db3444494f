"""Backend pools over real HTTP: simulators as Azure OpenAI accounts, plus dead and half-dead endpoints."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import aiohttp
import pytest

from shared.errors import GatewayError
from shared.protocol.calls import ModelCall
from shared.protocol.operations import CHAT, RESPONSES, V1_CHAT
from shared.settings import BackendSettings, UpstreamSettings
from shared.upstream.client import BACKEND_HEADER, UpstreamUnavailable, connection_lost, simulator_token_provider
from shared.upstream.health import BackendHealth
from shared.upstream.pool import Backend, Upstream
from tests.upstream.servers import (
    closes_after_each_answer,
    closes_reused_connections,
    dead_endpoint,
    half_dead_endpoint,
    simulators,
)

DEPLOYMENT = "gpt-4o-mini"
HELLO = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def sims():
    with simulators(2) as controls:
        yield controls


@pytest.fixture(autouse=True)
def clean(sims):
    for sim in sims:
        sim.reset()


def _pool(*members: BackendSettings, **knobs) -> Upstream:
    settings = UpstreamSettings(pools={"*": members}, timeout_seconds=5, connect_timeout_seconds=2, **knobs)
    return Upstream.from_settings(settings, lambda _: simulator_token_provider())


def _backend(label: str, endpoint: str, **fields) -> BackendSettings:
    return BackendSettings(label=label, endpoint=endpoint, **fields)


def _call(operation=CHAT, body=None, api_version: str | None = "2024-10-21") -> ModelCall:
    body = body or HELLO
    return ModelCall(operation, DEPLOYMENT, api_version, body, False, False, 5, None)


async def _served_by(upstream: Upstream, call: ModelCall | None = None) -> str:
    call = call or _call()
    response = await upstream.send(call, call.body, "req")
    assert response.status == 200, response.status
    await response.read()
    assert response.headers[BACKEND_HEADER] == response.backend
    return response.backend or ""


def _hits(sim) -> int:
    return len(sim.requests())


async def test_the_highest_priority_group_serves_while_it_is_healthy(sims):
    a, b = sims
    upstream = _pool(_backend("b", b.url, priority=2), _backend("a", a.url, priority=1))
    try:
        assert [await _served_by(upstream) for _ in range(5)] == ["a"] * 5
        assert (_hits(a), _hits(b)) == (5, 0)
    finally:
        await upstream.aclose()


async def test_weights_split_a_group_exactly(sims):
    a, b = sims
    upstream = _pool(_backend("a", a.url, weight=3), _backend("b", b.url, weight=1))
    try:
        served = [await _served_by(upstream) for _ in range(8)]
        assert served.count("a") == 6 and served.count("b") == 2, served
        assert "b" in served[:4] and "b" in served[4:]  # interleaved, not a burst
    finally:
        await upstream.aclose()


async def test_a_429_moves_the_call_at_once_and_cools_the_backend_for_retry_after_ms(sims):
    a, b = sims
    upstream = _pool(_backend("a", a.url, priority=1), _backend("b", b.url, priority=2))
    try:
        a.behave(fault="500", times=1)  # warm both connections: a first call pays for its connection
        assert [await _served_by(upstream), await _served_by(upstream)] == ["b", "a"]
        a.reset()
        b.reset()
        a.behave(fault="429", retry_after_ms=250, retry_after_seconds=7, times=1)
        started = time.monotonic()
        assert await _served_by(upstream) == "b"
        answered = time.monotonic()
        assert (_hits(a), _hits(b)) == (1, 1)  # two attempts, no waiting in between
        # The cooling ends 250 ms (retry-after-ms, not retry-after's 7 s) after the 429 arrived, within this call.
        cooled_until = upstream.pool_for(DEPLOYMENT).backends[0].health.cooling_until
        assert started + 0.250 <= cooled_until <= answered + 0.250

        # Calls start every 3 ms; each chooses its backend as it starts, before its first await.
        choices = await _choices_until(upstream, "a", every=0.003, limit=1.0)
        first_a = min(at for at, label in choices if label == "a")
        assert all(label == "b" for at, label in choices if at < first_a)
        # ``first_a`` is when that call started, a few µs before it chose its backend (after cooled_until).
        assert cooled_until - 0.002 <= first_a <= cooled_until + 0.020, first_a - cooled_until
        assert max(at for at, label in choices if at < first_a) >= cooled_until - 0.020  # probed right up to it
    finally:
        await upstream.aclose()


async def _choices_until(upstream: Upstream, label: str, *, every: float, limit: float) -> list[tuple[float, str]]:
    """Start a call every ``every`` seconds until one is served by ``label``; (start time, backend) of each."""

    async def one() -> tuple[float, str]:
        at = time.monotonic()
        return at, await _served_by(upstream)

    tasks: list[asyncio.Task[tuple[float, str]]] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not any(t.done() and t.result()[1] == label for t in tasks):
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(every)
    return list(await asyncio.gather(*tasks))


async def test_when_every_backend_cools_the_gateway_answers_429_with_the_soonest_wait(sims):
    a, b = sims
    a.behave(fault="429", retry_after_ms=900, times=1)
    b.behave(fault="429", retry_after_ms=300, times=1)
    upstream = _pool(_backend("a", a.url), _backend("b", b.url))
    try:
        with pytest.raises(GatewayError) as caught:
            await upstream.send(_call(), HELLO, "req")
        assert caught.value.status == 429
        assert 250 <= int(caught.value.headers["retry-after-ms"]) <= 300
        assert caught.value.headers["retry-after"] == "1"
        # While both cool, calls are answered without reaching any backend.
        with pytest.raises(GatewayError) as again:
            await upstream.send(_call(), HELLO, "req")
        assert again.value.status == 429 and (_hits(a), _hits(b)) == (1, 1)
        await asyncio.sleep(int(again.value.headers["retry-after-ms"]) / 1000)
        assert await _served_by(upstream) == "b"
    finally:
        await upstream.aclose()


async def test_a_5xx_fails_over_to_the_next_backend(sims):
    a, b = sims
    a.behave(fault="503", times=1)
    upstream = _pool(_backend("a", a.url, priority=1), _backend("b", b.url, priority=2))
    try:
        assert await _served_by(upstream) == "b"
        assert (_hits(a), _hits(b)) == (1, 1)
        assert await _served_by(upstream) == "a"  # one 5xx does not open the circuit
    finally:
        await upstream.aclose()


async def test_a_dead_backend_opens_its_circuit_and_a_single_probe_half_opens_it(sims):
    a, b = sims
    dead = dead_endpoint()
    upstream = _pool(
        _backend("dead", dead, priority=1),
        _backend("b", b.url, priority=2),
        breaker_failures=2,
        breaker_open_seconds=0.3,
    )
    try:
        assert [await _served_by(upstream) for _ in range(4)] == ["b"] * 4
        [state] = [s for s in upstream.describe()["*"] if s["label"] == "dead"]
        assert state["circuit"] == "open" and state["consecutive_failures"] == 2
        await asyncio.sleep(0.32)
        assert upstream.describe()["*"][0]["circuit"] == "half_open"
        assert await _served_by(upstream) == "b"  # the probe failed (and the caller was still served)
        assert upstream.describe()["*"][0]["circuit"] == "open"
    finally:
        await upstream.aclose()


async def test_a_recovered_backend_gets_one_probe_then_all_its_traffic_back(sims):
    a, b = sims
    a.behave(fault="500", times=2)
    upstream = _pool(
        _backend("a", a.url, priority=1),
        _backend("b", b.url, priority=2),
        breaker_failures=2,
        breaker_open_seconds=0.3,
    )
    try:
        assert [await _served_by(upstream) for _ in range(3)] == ["b"] * 3
        assert _hits(a) == 2  # the third call skipped the open circuit
        await asyncio.sleep(0.32)
        a.behave(first_byte_delay_ms=300, times=1)  # the probe is slow: the others must not pile onto a
        served = await asyncio.gather(*(_served_by(upstream) for _ in range(6)))
        assert served.count("a") == 1 and served.count("b") == 5, served
        assert _hits(a) == 3
        assert upstream.describe()["*"][0]["circuit"] == "closed"
        assert await _served_by(upstream) == "a"
    finally:
        await upstream.aclose()


async def test_a_half_dead_backend_costs_one_timeout_then_the_call_moves_on(sims):
    _, b = sims
    with half_dead_endpoint() as silent:
        members = (_backend("silent", silent, priority=1), _backend("b", b.url, priority=2))
        settings = UpstreamSettings(pools={"*": members}, timeout_seconds=0.3)
        upstream = Upstream.from_settings(settings, lambda _: simulator_token_provider())
        try:
            started = time.monotonic()
            assert await _served_by(upstream) == "b"
            assert 0.3 <= time.monotonic() - started < 1.5
        finally:
            await upstream.aclose()


async def test_attempts_and_failover_time_are_bounded():
    with half_dead_endpoint() as one, half_dead_endpoint() as two, half_dead_endpoint() as three:
        members = (_backend("one", one), _backend("two", two), _backend("three", three))
        settings = UpstreamSettings(pools={"*": members}, timeout_seconds=0.2, max_attempts=2)
        upstream = Upstream.from_settings(settings, lambda _: simulator_token_provider())
        try:
            started = time.monotonic()
            with pytest.raises(UpstreamUnavailable) as caught:
                await upstream.send(_call(), HELLO, "req")
            assert caught.value.status == 504
            assert 0.4 <= time.monotonic() - started < 1.2  # two attempts, not three
            budget = Upstream.from_settings(
                replace(settings, failover_seconds=0.1), lambda _: simulator_token_provider()
            )
            started = time.monotonic()
            with pytest.raises(UpstreamUnavailable):
                await budget.send(_call(), HELLO, "req")
            assert time.monotonic() - started < 0.4  # the budget was spent by the first attempt
            await budget.aclose()
        finally:
            await upstream.aclose()


async def test_a_stored_responses_call_is_not_repeated_after_a_failure_that_may_have_run(sims):
    a, b = sims
    upstream = _pool(_backend("a", a.url, priority=1), _backend("b", b.url, priority=2))
    stored = _call(RESPONSES, {"model": DEPLOYMENT, "input": "hi"})
    unstored = _call(RESPONSES, {"model": DEPLOYMENT, "input": "hi", "store": False})
    try:
        a.behave(fault="500", times=1)
        response = await upstream.send(stored, stored.body, "req")
        assert response.status == 500 and response.backend == "a" and _hits(b) == 0
        await response.read()
        a.behave(fault="500", times=1)
        assert await _served_by(upstream, unstored) == "b"
        a.behave(fault="429", retry_after_ms=50, times=1)  # a 429 never ran: always safe to move
        assert await _served_by(upstream, stored) == "b"
    finally:
        await upstream.aclose()


async def test_each_backend_gets_its_own_deployment_name(sims):
    a, b = sims
    upstream = _pool(_backend("a", a.url, deployment="mini-ptu", priority=1), _backend("b", b.url, priority=2))
    try:
        await _served_by(upstream)
        await _served_by(upstream, _call(V1_CHAT, {**HELLO, "model": DEPLOYMENT}, api_version=None))
        assert [r["deployment"] for r in a.requests()] == ["mini-ptu", "mini-ptu"]
        assert a.requests()[0]["path"] == "/openai/deployments/mini-ptu/chat/completions"
        assert a.requests()[1]["body"]["model"] == "mini-ptu"
    finally:
        await upstream.aclose()


async def test_a_pool_of_one_passes_the_upstream_429_through_and_keeps_no_state(sims):
    a, _ = sims
    a.behave(fault="429", retry_after_ms=5000, times=1)
    upstream = _pool(_backend("only", a.url))
    try:
        response = await upstream.send(_call(), HELLO, "req")
        assert response.status == 429 and response.headers["retry-after-ms"] == "5000"
        await response.read()
        assert await _served_by(upstream) == "only"  # not cooled: the caller decides when to retry
    finally:
        await upstream.aclose()


async def test_when_attempts_end_without_success_the_caller_gets_the_last_backends_own_answer(sims):
    a, b = sims
    a.behave(fault="429", retry_after_ms=5000, times=1)
    b.behave(fault="500", times=1)
    upstream = _pool(_backend("a", a.url, priority=1), _backend("b", b.url, priority=2))
    try:
        response = await upstream.send(_call(), HELLO, "req")
        assert (response.status, response.backend) == (500, "b")  # b can serve the next call: no 429 from the pool
        assert json.loads(await response.read())["error"]
    finally:
        await upstream.aclose()


async def test_a_pooled_connection_the_server_closed_is_replaced_once_for_a_call_that_may_be_repeated():
    with closes_reused_connections() as (url, connections):
        upstream = _pool(_backend("only", url))
        try:
            for _ in range(3):
                response = await upstream.send(_call(), HELLO, "req")
                assert response.status == 200
                await response.read()
            # The second call found connection 1 closed and went again on a new connection (2, not kept); the third
            # found none pooled and opened 3.
            assert connections == [1, 1, 2, 3]
            stored = {**HELLO, "store": True}  # would be stored twice if it had run: never sent again
            with pytest.raises(UpstreamUnavailable) as caught:
                await upstream.send(_call(body=stored), stored, "req")
            assert caught.value.status == 502 and connections == [1, 1, 2, 3, 3]
        finally:
            await upstream.aclose()


async def test_a_connection_closing_under_the_next_request_is_replaced_by_a_new_one():
    with closes_after_each_answer() as (url, connections):
        upstream = _pool(_backend("only", url))
        try:
            for _ in range(20):
                response = await upstream.send(_call(), HELLO, "req")
                assert response.status == 200
                await response.read()
            assert len(connections) == 20  # every call answered once, each on a connection of its own
        finally:
            await upstream.aclose()


class _LosesFirstConnection:
    """An endpoint client whose first send fails as ``failure`` says; later sends answer ``"answer"``."""

    def __init__(self, failure: UpstreamUnavailable) -> None:
        self.failure, self.sends = failure, []

    async def send(self, call, body, request_id, deployment=None, *, fresh_connection=False):
        self.sends.append(fresh_connection)
        if len(self.sends) == 1:
            raise self.failure
        return "answer"


@pytest.mark.parametrize(
    ("error", "stored", "sent_again"),
    [
        (aiohttp.ClientOSError(None, "Can not write request body"), True, True),  # never written: even a stored call
        (aiohttp.ServerDisconnectedError(), False, True),  # may have run, but the call can be repeated
        (aiohttp.ServerDisconnectedError(), True, False),  # may have run and would be stored twice: not again
        (aiohttp.ClientPayloadError("truncated"), False, False),  # not a dropped connection
    ],
)
async def test_a_dropped_connection_is_sent_again_once_on_a_new_connection_when_that_is_safe(error, stored, sent_again):
    if "write" in str(error):
        error.__cause__ = aiohttp.ClientConnectionResetError()
    client = _LosesFirstConnection(connection_lost(error))
    backend = Backend(_backend("only", "http://unused"), client, BackendHealth(failures_to_open=5, open_seconds=30))
    body = {**HELLO, "store": True} if stored else HELLO
    if sent_again:
        assert await backend.send(_call(body=body), body, "req") == "answer"
        assert client.sends == [False, True]  # the second time on a new connection
    else:
        with pytest.raises(UpstreamUnavailable):
            await backend.send(_call(body=body), body, "req")
        assert client.sends == [False]


# --- affinity: a call about a stored object goes to the account that holds it ----------------------------------


async def test_a_pinned_call_goes_to_its_backend_whatever_the_weights_say(sims):
    a, b = sims
    upstream = _pool(_backend("a", a.url, weight=5), _backend("b", b.url, weight=1))
    try:
        for _ in range(6):
            response = await upstream.send(_call(), HELLO, "req", backend="b")
            assert response.status == 200 and response.backend == "b"
            await response.read()
        assert (_hits(a), _hits(b)) == (0, 6)
    finally:
        await upstream.aclose()


async def test_a_pinned_call_to_a_cooling_backend_gets_a_retryable_503_never_the_other_account(sims):
    a, b = sims
    upstream = _pool(_backend("a", a.url), _backend("b", b.url))
    try:
        b.behave(fault="429", retry_after_ms=5000, times=1)
        first = await upstream.send(_call(), HELLO, "req", backend="b")  # b's own 429 reaches the caller
        assert first.status == 429
        await first.read()
        with pytest.raises(GatewayError) as caught:
            await upstream.send(_call(), HELLO, "req", backend="b")  # b cools: nothing is sent anywhere
        assert caught.value.status == 503 and caught.value.code == "backend_unavailable"
        assert 4 <= int(caught.value.headers["retry-after"]) <= 5
        assert (_hits(a), _hits(b)) == (0, 1)
    finally:
        await upstream.aclose()


async def test_a_pinned_call_to_a_label_no_longer_configured_is_refused_without_sending(sims):
    a, _ = sims
    upstream = _pool(_backend("a", a.url))
    try:
        with pytest.raises(GatewayError) as caught:
            await upstream.send(_call(), HELLO, "req", backend="gone")
        assert caught.value.status == 503 and caught.value.code == "backend_unavailable"
        assert _hits(a) == 0
    finally:
        await upstream.aclose()


async def test_a_pinned_call_reaches_a_backend_of_another_pool_under_its_own_deployment_name(sims):
    a, b = sims
    settings = UpstreamSettings(
        pools={
            "*": (_backend("a", a.url),),
            "other": (_backend("b", b.url, deployment="other-on-b"),),
        },
        timeout_seconds=5,
        connect_timeout_seconds=2,
    )
    upstream = Upstream.from_settings(settings, lambda _: simulator_token_provider())
    try:
        response = await upstream.send(_call(), HELLO, "req", backend="b")
        assert response.status == 200 and response.backend == "b"
        await response.read()
        (seen,) = b.requests()
        assert f"/deployments/{DEPLOYMENT}/" in seen["path"]  # the call's deployment, not the other pool's name
    finally:
        await upstream.aclose()
