"""The request path of a model call, top to bottom:

    authenticate -> guard -> authorize -> reserve -> forward -> account -> respond

Each step is one call here; what the step means lives in its own module.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from azure.core.exceptions import AzureError
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from shared.accounting.settlement import Accounting, Reservation
from shared.auth.identity import Caller
from shared.errors import (
    REQUEST_ID_HEADER,
    GatewayError,
    current_request_id,
    error_response,
    internal_error_response,
)
from shared.policy.guard import guard
from shared.protocol.api_versions import version_date
from shared.protocol.calls import ModelCall
from shared.protocol.operations import Operation, OperationKind
from shared.protocol.usage import Usage, usage_from_body
from shared.quotas.enforcer import with_quota_headers
from shared.settings import GuardrailSettings
from shared.telemetry import Observation, observe_request
from shared.upstream.pool import Upstream
from shared.upstream.relay import StreamRelay

log = logging.getLogger(__name__)

STORAGE_UNAVAILABLE = GatewayError(
    503,
    "The gateway cannot reach its storage right now, so it cannot check this call; retry shortly.",
    code="storage_unavailable",
    headers={"retry-after": "5"},
)


class Authenticates(Protocol):
    async def authenticate(self, headers: Mapping[str, str]) -> Caller: ...


class Authorizes(Protocol):
    async def authorize(self, caller: Caller, call: ModelCall) -> None: ...


class Gateway:
    def __init__(
        self,
        guardrails: GuardrailSettings,
        authenticator: Authenticates,
        authorizer: Authorizes,
        upstream: Upstream,
        accounting: Accounting,
        *,
        stream_usage_min_api_version: str,
    ) -> None:
        self.guardrails = guardrails
        self.stream_usage_min_api_version = stream_usage_min_api_version
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.upstream = upstream
        self.accounting = accounting
        self._pending: set[asyncio.Task[None]] = set()

    async def model_call(self, request: Request, operation: Operation, deployment: str | None = None) -> Response:
        request_id = current_request_id()  # set at the HTTP edge, so every response and log names it
        observation = observe_request(operation, request_id)
        try:
            self.accounting.ledger.admit()  # fail-closed 503 while usage cannot be recorded (docs/durability.md)
            caller = await self.authenticator.authenticate(request.headers)
            call = await guard(request, operation, self.guardrails, deployment)
            await self.authorizer.authorize(caller, call)
            observation.identified(caller.id, call)
            with observation.quota_reserve():
                reservation = await self.accounting.reserve(caller, call, request_id)
            reservation.observation = observation
        except GatewayError as error:
            observation.refused(error.status, error.code)
            return error_response(error, request_id)
        except AzureError as exc:  # Table Storage (keys, policies, quota counters) unreachable: fail closed
            log.error("request %s refused: Table Storage failed (%s)", request_id, type(exc).__name__)
            observation.refused(STORAGE_UNAVAILABLE.status, STORAGE_UNAVAILABLE.code, "storage_unavailable")
            return error_response(STORAGE_UNAVAILABLE, request_id)
        except Exception:
            log.exception("request %s failed before forwarding", request_id)
            observation.refused(500, "internal_error", "gateway_error")
            return internal_error_response(request_id)
        return await self._forward_and_account(reservation, request_id, observation)

    async def _forward_and_account(
        self, reservation: Reservation, request_id: str, observation: Observation
    ) -> Response:
        call = reservation.call
        body, injected_usage = self.forward_body(call)
        try:
            with observation.upstream():
                upstream = await self.upstream.send(call, body, request_id)
        except GatewayError as error:
            await self.accounting.settle(reservation, None, error.status, outcome="upstream_unavailable")
            return error_response(error, request_id)
        except Exception:
            log.exception("request %s failed while forwarding", request_id)
            await self.accounting.settle(reservation, None, 500, outcome="gateway_error")
            return internal_error_response(request_id)
        reservation.backend = upstream.backend
        if upstream.backend is not None:
            observation.backend(upstream.backend)
        headers = {**with_quota_headers(upstream.headers, reservation.quota.headers), REQUEST_ID_HEADER: request_id}
        if not upstream.ok:
            content = await upstream.read()
            await self.accounting.settle(reservation, None, upstream.status, outcome="upstream_error")
            return Response(content, status_code=upstream.status, headers=headers, media_type=upstream.content_type)
        if call.stream:
            relay = StreamRelay(upstream, call, drop_usage_chunk=injected_usage)
            return StreamingResponse(
                self._relay(relay, reservation),
                status_code=upstream.status,
                headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
                media_type="text/event-stream",
                # Settles a stream the caller abandoned before it started (the generator never ran).
                background=BackgroundTask(self._settle_abandoned, relay, reservation),
            )
        try:
            content = await upstream.read()
        except GatewayError as error:
            await self.accounting.settle(reservation, None, error.status, outcome="upstream_incomplete")
            return error_response(error, request_id)
        # Settled before the caller has the answer: the row is journaled (no storage wait, docs/durability.md), so
        # an instance killed right after sending it cannot lose a call it served.
        await self.accounting.settle(reservation, _usage_of(content, observation), upstream.status, outcome="completed")
        return Response(content, status_code=upstream.status, headers=headers, media_type=upstream.content_type)

    async def _relay(self, relay: StreamRelay, reservation: Reservation) -> AsyncIterator[bytes]:
        # The upstream stream is owned by this generator: the Functions invocation ends when the handler returns,
        # and the body is sent afterwards, so nothing here may depend on the handler's scope.
        try:
            async for events in relay.events():
                if relay.finished and reservation.claim():
                    # The final event: settle (journal the row) before the caller has it, as for JSON answers.
                    reservation.observation.streamed(relay.first_token_at, relay.response_model)
                    await self.accounting.record(reservation, relay.usage, 200, outcome=relay.outcome)
                yield events
        finally:
            # No await here: when the caller hangs up, this runs inside a cancelled task, so the ledger write goes
            # to a task of its own; the caller does not wait for it either way.
            self._settle_detached(reservation, relay)

    async def _settle_abandoned(self, relay: StreamRelay, reservation: Reservation) -> None:
        """After the response: settles a stream whose generator never ran (the caller left before the first byte)."""
        if not reservation.settled:
            await relay.aclose()
            self._settle_detached(reservation, relay)

    def _settle_detached(self, reservation: Reservation, relay: StreamRelay) -> None:
        if reservation.claim():
            reservation.observation.streamed(relay.first_token_at, relay.response_model)
            task = asyncio.get_running_loop().create_task(
                self.accounting.record(reservation, relay.usage, 200, outcome=relay.outcome)
            )
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for settlements still being written (on shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def forward_body(self, call: ModelCall) -> tuple[dict[str, Any], bool]:
        """The body to send upstream, and whether the gateway added ``include_usage`` for its own accounting."""
        if (
            call.stream
            and call.operation.kind is OperationKind.CHAT
            and not call.client_wants_stream_usage
            and self._stream_usage_supported(call.api_version)
        ):
            options = {**(call.body.get("stream_options") or {}), "include_usage": True}
            return {**call.body, "stream_options": options}, True
        return call.body, False

    def _stream_usage_supported(self, api_version: str | None) -> bool:
        if api_version is None:  # the v1 API
            return True
        return version_date(api_version) >= version_date(self.stream_usage_min_api_version)


def _usage_of(content: bytes, observation: Observation) -> Usage | None:
    try:
        body = json.loads(content)
        usage = usage_from_body(body)
    except ValueError:
        return None
    if isinstance(body, dict):
        observation.answered(body.get("model"))
    return usage
