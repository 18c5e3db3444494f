"""Backend pools: which Azure OpenAI deployment serves a call, and what happens when it cannot.

Routing (docs/decisions.md D40-D42):

* The pool is the caller's deployment's (``GATEWAY_BACKENDS``), else the ``"*"`` pool, else the single
  ``AZURE_OPENAI_ENDPOINT`` (or the local simulator).
* Use the lowest priority number that has a backend able to take the call; within that group, smooth weighted
  round robin (deterministic, so a 3:1 weight is 3:1 over every four calls, not on average).
* A 429 cools that backend for ``retry-after-ms``, else ``retry-after``, else the default, and the call moves
  at once to the next backend. A 5xx, timeout or connection failure counts against the backend's circuit
  breaker and the call moves on too, unless the failed attempt may have run and repeating it would have a
  visible effect (:func:`replayable`).
* At most ``max_attempts`` attempts, and none starts more than ``failover_seconds`` after the first.
* When no backend can take the call, the gateway answers itself: 429 with the soonest ``retry-after`` /
  ``retry-after-ms`` across the pool when any backend is cooling, else 503 with the soonest half-open time.
  When attempts end otherwise, the caller gets the last backend's own answer.
* Nothing is retried once a response has been accepted: :meth:`Upstream.send` returns on the status line, and
  the pipeline starts sending from there. A stream that breaks later ends in-band, never on another backend.

A pool of one backend (the default, ``AZURE_OPENAI_ENDPOINT``) is a straight pass-through, exactly as before
pools existed: no state, no gateway-made answers, the upstream's 429 and its headers go to the caller.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from shared import telemetry
from shared.errors import GatewayError
from shared.protocol.calls import ModelCall
from shared.protocol.operations import OperationKind
from shared.settings import BackendSettings, UpstreamSettings
from shared.settings.sections import ANY_DEPLOYMENT
from shared.upstream.client import Body, EndpointClient, TokenProvider, UpstreamResponse, UpstreamUnavailable
from shared.upstream.health import BackendHealth, Circuit, retry_after_seconds

log = logging.getLogger(__name__)


# A pooled connection the server had closed fails within this long of sending; later failures are not retried here.
STALE_CONNECTION_SECONDS = 1.0

# Asked before a call is sent again after an attempt that may have run: (the failure, its backend) -> go on?
AnotherAttempt = Callable[[UpstreamUnavailable, str], Awaitable[bool]]


class Backend:
    """A pool member: where to send, under which deployment name, and how it has been doing."""

    def __init__(self, settings: BackendSettings, client: EndpointClient, health: BackendHealth) -> None:
        self.settings = settings
        self.label = settings.label
        self.client = client
        self.health = health
        self.weight = settings.weight
        self.current_weight = 0  # smooth weighted round robin

    async def send(
        self, call: ModelCall, body: Body, request_id: str, *, own_deployment: bool = True
    ) -> UpstreamResponse:
        """``own_deployment``: call this backend's deployment name (False: the call's own, when the backend is
        reached through another deployment's pool because it holds the call's stored object)."""
        deployment = self.settings.deployment if own_deployment else None
        started = time.monotonic()
        try:
            return await self.client.send(call, body, request_id, deployment)
        except UpstreamUnavailable as error:
            # A stale pooled connection fails at once; a connection lost after a while may have done the work.
            stale = error.connection_dropped and time.monotonic() - started < STALE_CONNECTION_SECONDS
            if not (stale and (replayable(call) or not error.may_have_run)):
                raise
        # A pooled keep-alive connection the server had closed as idle, the close not yet seen here: once more, on
        # a new connection (the pool may hold more closed ones). Not counted as a failure of the backend.
        log.info("request %s: backend %s dropped a pooled connection; sending again", request_id, self.label)
        return await self.client.send(call, body, request_id, deployment, fresh_connection=True)


class BackendPool:
    def __init__(self, backends: Iterable[Backend]) -> None:
        self.backends = tuple(backends)
        priorities = sorted({backend.settings.priority for backend in self.backends})
        self.groups = tuple(
            tuple(backend for backend in self.backends if backend.settings.priority == priority)
            for priority in priorities
        )

    @property
    def single(self) -> Backend | None:
        return self.backends[0] if len(self.backends) == 1 else None

    def choose(self, now: float, tried: set[Backend]) -> Backend | None:
        """The backend for the next attempt, or None when no untried backend can take a call now."""
        for group in self.groups:
            candidates = [b for b in group if b not in tried and b.health.can_take(now)]
            if candidates:
                return _smooth_weighted(candidates)
        return None

    def any_available(self, now: float) -> bool:
        return any(backend.health.can_take(now) for backend in self.backends)

    def describe(self, now: float) -> list[dict[str, Any]]:
        return [
            {
                "label": backend.label,
                "priority": backend.settings.priority,
                "weight": backend.weight,
                **backend.health.describe(now),
            }
            for backend in self.backends
        ]


def _smooth_weighted(candidates: list[Backend]) -> Backend:
    """Nginx's smooth weighted round robin: every candidate gains its weight, the richest serves and pays the total."""
    total = 0
    chosen = candidates[0]
    for backend in candidates:
        backend.current_weight += backend.weight
        total += backend.weight
        if backend.current_weight > chosen.current_weight:
            chosen = backend
    chosen.current_weight -= total
    return chosen


def replayable(call: ModelCall) -> bool:
    """Whether an attempt that may have run upstream can be repeated on another backend without a visible effect.

    Stateless calls can: the failed attempt left nothing behind (at worst the upstream did work nobody sees). A call
    that asks the upstream to store its result cannot: a Responses call stores by default (``store`` absent or true)
    and ``background`` runs on after the connection, so after a timeout the first backend may hold a response the
    caller will never learn the id of, and chat's ``store: true`` would store the completion twice. Those calls fail
    over only when the attempt certainly did not run: a 429, or a connection that was never made.
    """
    body = call.body
    if call.operation.kind is OperationKind.RESPONSES:
        return body.get("store") is False and not body.get("background")
    return body.get("store") is not True


class Upstream:
    """The gateway's upstream: a pool per deployment; ``send`` is the only thing the pipeline calls."""

    def __init__(
        self, pools: Mapping[str, BackendPool], clients: Iterable[EndpointClient], settings: UpstreamSettings
    ) -> None:
        self._pools = dict(pools)
        self._default = self._pools[ANY_DEPLOYMENT]
        self._clients = tuple(clients)
        self._max_attempts = settings.max_attempts
        self._failover_seconds = settings.failover_seconds
        self._cooldown_seconds = settings.cooldown_seconds

    @classmethod
    def from_settings(
        cls,
        settings: UpstreamSettings,
        token_provider: Callable[[BackendSettings], TokenProvider],
        default_backend: BackendSettings | None = None,
    ) -> Upstream:
        """Pools from ``settings.pools``; ``default_backend`` serves deployments without one when there is no
        ``"*"`` pool. One client per endpoint, shared by every backend on it."""
        configured = dict(settings.pools)
        if ANY_DEPLOYMENT not in configured:
            if default_backend is None:
                raise ValueError('no "*" pool and no default backend')
            configured[ANY_DEPLOYMENT] = (default_backend,)
        clients: dict[str, EndpointClient] = {}
        pools: dict[str, BackendPool] = {}
        for deployment, members in configured.items():
            backends = []
            for member in members:
                client = clients.get(member.endpoint)
                if client is None:
                    client = clients[member.endpoint] = EndpointClient(
                        member.endpoint, token_provider(member), settings
                    )
                health = BackendHealth(
                    failures_to_open=settings.breaker_failures, open_seconds=settings.breaker_open_seconds
                )
                backends.append(Backend(member, client, health))
            pools[deployment] = BackendPool(backends)
        return cls(pools, clients.values(), settings)

    def pool_for(self, deployment: str) -> BackendPool:
        return self._pools.get(deployment, self._default)

    async def send(
        self,
        call: ModelCall,
        body: Body,
        request_id: str,
        another_attempt: AnotherAttempt | None = None,
        *,
        backend: str | None = None,
    ) -> UpstreamResponse:
        """The response of the backend that answered (headers read, body unread), labelled with that backend.

        ``another_attempt`` is asked before the call is sent again after an attempt that may have run (a timeout,
        a connection lost after sending): that attempt is paid for, and the next one needs quota of its own. When
        it answers False, the call is not sent again and the caller gets the failure.

        ``backend``: the label of the backend that holds the stored object the call refers to (a response, a file,
        a batch exist in one Azure OpenAI account only). The call goes there whatever priorities and weights say,
        once, and never to another account: when that backend cannot take it now, the caller gets a retryable 503.
        """
        if backend is not None:
            return await self._send_pinned(call, body, request_id, backend)
        pool = self.pool_for(call.deployment)
        single = pool.single
        if single is not None:
            response = await single.send(call, body, request_id)
            return response.served_by(single.label)
        return await self._send_with_failover(pool, call, body, request_id, another_attempt)

    def holder(self, deployment: str, label: str) -> tuple[Backend, bool] | None:
        """The backend labelled ``label`` for a call on ``deployment``: the one in the deployment's pool, else the
        one in any pool (the ``"*"`` pool first); and whether it is in the deployment's own pool. Labels name one
        account wherever they appear (settings check it)."""
        pool = self.pool_for(deployment)
        for candidate in pool.backends:
            if candidate.label == label:
                return candidate, True
        for other in (self._default, *self._pools.values()):
            for candidate in other.backends:
                if candidate.label == label:
                    return candidate, False
        return None

    async def _send_pinned(self, call: ModelCall, body: Body, request_id: str, label: str) -> UpstreamResponse:
        found = self.holder(call.deployment, label)
        if found is None:
            raise GatewayError(
                503,
                f"The backend {label!r} that holds this object is not configured on this gateway; ask its operator.",
                code="backend_unavailable",
            )
        backend, in_pool = found
        tracked = len(self.pool_for(call.deployment).backends) > 1 or not in_pool  # a pool of one keeps no state
        now = time.monotonic()
        if tracked:
            if not backend.health.can_take(now):
                raise _pinned_unavailable(backend, now)
            backend.health.attempt(now)
        try:
            response = await backend.send(call, body, request_id, own_deployment=in_pool)
        except UpstreamUnavailable:
            if tracked:
                _failed(backend, time.monotonic())
            raise
        except BaseException:
            if tracked:
                backend.health.abandoned()
            raise
        if tracked:
            now = time.monotonic()
            if response.status == 429:
                wait = retry_after_seconds(response.upstream_headers)
                backend.health.rate_limited(now, self._cooldown_seconds if wait is None else wait)
                telemetry.record_backend_event(backend.label, "cooling")
            elif response.status >= 500:
                _failed(backend, now)
            else:
                backend.health.answered()
        return response.served_by(backend.label)

    async def _send_with_failover(
        self,
        pool: BackendPool,
        call: ModelCall,
        body: Body,
        request_id: str,
        another_attempt: AnotherAttempt | None,
    ) -> UpstreamResponse:
        started = time.monotonic()
        tried: set[Backend] = set()
        may_replay = replayable(call)
        last: UpstreamResponse | UpstreamUnavailable | None = None
        last_label = ""
        for attempt in range(1, self._max_attempts + 1):
            now = time.monotonic()
            if attempt > 1 and now - started >= self._failover_seconds:
                break
            backend = pool.choose(now, tried)
            if backend is None:
                break
            if isinstance(last, UpstreamUnavailable) and last.may_have_run:
                # The failed attempt may have generated tokens: it is charged, and the next one must hold its own.
                if another_attempt is not None and not await another_attempt(last, last_label):
                    break
            tried.add(backend)
            if last is not None:
                log.info(
                    "request %s: attempt %d on backend %s after %s from %s",
                    request_id,
                    attempt,
                    backend.label,
                    _what(last),
                    last_label,
                )
            await _discard(last)
            if last is not None:
                telemetry.record_backend_event(backend.label, "failover")
            last_label = backend.label
            backend.health.attempt(now)
            try:
                response = await backend.send(call, body, request_id)
            except UpstreamUnavailable as error:
                _failed(backend, time.monotonic())
                last = error
                if error.may_have_run and not may_replay:
                    break
                continue
            except BaseException:
                backend.health.abandoned()
                raise
            now = time.monotonic()
            if response.status == 429:
                wait = retry_after_seconds(response.upstream_headers)
                backend.health.rate_limited(now, self._cooldown_seconds if wait is None else wait)
                telemetry.record_backend_event(backend.label, "cooling")
                last = response.served_by(backend.label)
                continue
            if response.status >= 500:
                _failed(backend, now)
                last = response.served_by(backend.label)
                if not may_replay:
                    break
                continue
            backend.health.answered()
            return response.served_by(backend.label)
        return await self._exhausted(pool, call, last)

    async def _exhausted(
        self, pool: BackendPool, call: ModelCall, last: UpstreamResponse | UpstreamUnavailable | None
    ) -> UpstreamResponse:
        """No attempt left. The gateway answers itself when no backend was tried (all cooling or open), or when the
        last one rate-limited the call and none can take it now (its retry-after would speak for one backend
        only); otherwise the caller gets the last backend's own answer."""
        now = time.monotonic()
        rate_limited = isinstance(last, UpstreamResponse) and last.status == 429
        if last is None or (rate_limited and not pool.any_available(now)):
            await _discard(last)
            raise _pool_unavailable(pool, call.deployment, now)
        if isinstance(last, UpstreamUnavailable):
            raise last
        return last

    def describe(self) -> dict[str, list[dict[str, Any]]]:
        """Each pool's backends and their state (for /api/ready): labels only, never endpoints."""
        now = time.monotonic()
        return {deployment: pool.describe(now) for deployment, pool in self._pools.items()}

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


def _pool_unavailable(pool: BackendPool, deployment: str, now: float) -> GatewayError:
    soonest = min(backend.health.available_at(now) for backend in pool.backends)
    wait = 1.0 if math.isinf(soonest) else max(0.0, soonest - now)  # inf: only probes in flight
    millis = max(1, math.ceil(wait * 1000))  # SDKs ignore a retry-after-ms of 0 and back off on their own
    headers = {"retry-after-ms": str(millis), "retry-after": str(math.ceil(millis / 1000))}
    if any(backend.health.cooling(now) for backend in pool.backends):
        return GatewayError(
            429,
            f"Every backend serving deployment {deployment!r} is rate limited; retry after {millis} ms.",
            code="rate_limit_exceeded",
            headers=headers,
        )
    return GatewayError(
        503,
        f"No backend serving deployment {deployment!r} is available right now; retry after {millis} ms.",
        code="backends_unavailable",
        headers=headers,
    )


def _pinned_unavailable(backend: Backend, now: float) -> GatewayError:
    """The backend holding the call's stored object cannot take calls now: retry later, never another account."""
    soonest = backend.health.available_at(now)
    wait = 1.0 if math.isinf(soonest) else max(0.0, soonest - now)
    millis = max(1, math.ceil(wait * 1000))
    return GatewayError(
        503,
        f"The backend {backend.label!r} that holds this object cannot take calls right now (the object exists "
        f"there only); retry after {millis} ms.",
        code="backend_unavailable",
        headers={"retry-after-ms": str(millis), "retry-after": str(math.ceil(millis / 1000))},
    )


def _what(outcome: UpstreamResponse | UpstreamUnavailable) -> str:
    return f"status {outcome.status}" if isinstance(outcome, UpstreamResponse) else outcome.code


async def _discard(outcome: UpstreamResponse | UpstreamUnavailable | None) -> None:
    if isinstance(outcome, UpstreamResponse):
        await outcome.aclose()


def _failed(backend: Backend, now: float) -> None:
    """A 5xx, timeout or connection failure on ``backend``; telemetry hears when it opens the circuit."""
    was_open = backend.health.circuit(now) is Circuit.OPEN
    backend.health.failed(now)
    telemetry.record_backend_event(backend.label, "failure")
    if not was_open and backend.health.circuit(now) is Circuit.OPEN:
        telemetry.record_backend_event(backend.label, "breaker_open")
