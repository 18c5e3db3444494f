"""The request path of a model call, top to bottom:

    authenticate -> guard -> authorize -> reserve -> forward -> account -> respond

Each step is one call here; what the step means lives in its own module.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any, Protocol

from azure.core.exceptions import AzureError
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from shared.accounting.settlement import Accounting, AttemptFailure, Reservation
from shared.auth.identity import Caller
from shared.errors import (
    REQUEST_ID_HEADER,
    GatewayError,
    current_request_id,
    error_response,
    internal_error_response,
)
from shared.policy.guard import guard
from shared.policy.media_guard import guard_media
from shared.protocol.api_versions import version_date
from shared.protocol.calls import ModelCall
from shared.protocol.models import is_reasoning_model
from shared.protocol.operations import Operation, OperationKind
from shared.protocol.payloads import StreamedBody
from shared.protocol.usage import Usage, usage_from_body
from shared.quotas.enforcer import with_quota_headers
from shared.settings import GuardrailSettings
from shared.stateful.responses import FINAL_STATUSES, StoredResponses, is_background, stores
from shared.telemetry import Observation, observe_request
from shared.upstream.admission import Admission, Slot
from shared.upstream.client import UpstreamUnavailable
from shared.upstream.media_relay import MediaRelay
from shared.upstream.pool import Upstream
from shared.upstream.relay import StreamRelay

log = logging.getLogger(__name__)

# Says that the gateway sent this output limit upstream for a budgeted call that set none (docs/quotas.md).
OUTPUT_CAP_HEADER = "x-gateway-max-output-tokens"
# From this api-version on, chat takes ``max_completion_tokens`` (reasoning models take nothing else).
MAX_COMPLETION_TOKENS_SINCE = "2024-09-01-preview"

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

    async def authorize_operation(self, caller: Caller, operation: Operation) -> None: ...


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
        admission: Admission | None = None,
        stored: StoredResponses | None = None,
    ) -> None:
        self.guardrails = guardrails
        self.stream_usage_min_api_version = stream_usage_min_api_version
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.upstream = upstream
        self.accounting = accounting
        # Calls this process holds at once (GATEWAY_MAX_INFLIGHT_CALLS); None in unit tests that build a bare Gateway.
        self.admission = admission or Admission(limit=1_000_000)
        # Owners and backends of stored responses (shared/stateful); None in unit tests that build a bare Gateway.
        self.stored = stored
        self._pending: set[asyncio.Task[Any]] = set()

    async def model_call(self, request: Request, operation: Operation, deployment: str | None = None) -> Response:
        request_id = current_request_id()  # set at the HTTP edge, so every response and log names it
        observation = observe_request(operation, request_id)
        try:
            # First, before the body is read: past the bound a refusal costs almost nothing (D80).
            slot = self.admission.enter()
        except GatewayError as error:
            observation.refused(error.status, error.code, "overloaded")
            return error_response(error, request_id)
        response: Response | None = None
        try:
            response = await self._admitted_call(request, operation, deployment, request_id, observation, slot)
            return response
        finally:
            # A stream keeps its slot until its end (the relay's finally, or the abandoned-stream task).
            if not isinstance(response, StreamingResponse):
                slot.release()

    async def _admitted_call(
        self,
        request: Request,
        operation: Operation,
        deployment: str | None,
        request_id: str,
        observation: Observation,
        slot: Slot,
    ) -> Response:
        form = None  # an upload the guard spooled (multipart): closed once the call was sent, or refused
        try:
            try:
                self.accounting.ledger.admit()  # fail-closed 503 while usage cannot be recorded (docs/durability.md)
                caller = await self.authenticator.authenticate(request.headers)
                if operation.kind.media:
                    await self.authorizer.authorize_operation(caller, operation)  # before an upload is read
                    call = await guard_media(request, operation, self.guardrails, deployment)
                else:
                    call = await guard(request, operation, self.guardrails, deployment)
                form = call.form
                await self.authorizer.authorize(caller, call)
                # The stored objects the call references must be the caller's; the call goes where they are held.
                pinned = await self.stored.pin(caller, call) if self.stored is not None else None
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
            return await self._forward_and_account(reservation, request_id, observation, slot, pinned)
        finally:
            if form is not None:
                form.close()

    async def _forward_and_account(
        self, reservation: Reservation, request_id: str, observation: Observation, slot: Slot, pinned: str | None
    ) -> Response:
        call = reservation.call
        output_cap = reservation.quota.output_cap
        body, injected_usage = self.forward_body(call, output_cap)

        async def another_attempt(failed: UpstreamUnavailable, backend: str) -> bool:
            return await self.accounting.another_attempt(reservation, AttemptFailure(backend, failed.status))

        try:
            with observation.upstream():
                upstream = await self.upstream.send(call, body, request_id, another_attempt, backend=pinned)
        except GatewayError as error:
            # No answer: if the request may have run upstream, it is charged as if it used all it reserved.
            may_have_run = isinstance(error, UpstreamUnavailable) and error.may_have_run
            usage = reservation.conservative() if may_have_run else None
            await self.accounting.settle(reservation, usage, error.status, outcome="upstream_unavailable")
            return error_response(error, request_id)
        except Exception:
            log.exception("request %s failed while forwarding", request_id)
            await self.accounting.settle(reservation, reservation.conservative(), 500, outcome="gateway_error")
            return internal_error_response(request_id)
        reservation.backend = upstream.backend
        if upstream.backend is not None:
            observation.backend(upstream.backend)
        headers = {**with_quota_headers(upstream.headers, reservation.quota.headers), REQUEST_ID_HEADER: request_id}
        if output_cap is not None:
            headers[OUTPUT_CAP_HEADER] = str(output_cap)
        if not upstream.ok:
            content = await upstream.read()
            await self.accounting.settle(reservation, None, upstream.status, outcome="upstream_error")
            return Response(content, status_code=upstream.status, headers=headers, media_type=upstream.content_type)
        relay: StreamRelay | MediaRelay | None = None
        media_type = "text/event-stream"
        if call.media is not None and (call.stream or call.operation.kind is OperationKind.SPEECH):
            # Audio bytes or media events, relayed as they arrive, never held whole (D88).
            relay = MediaRelay(upstream, call, events=call.stream)
            media_type = "text/event-stream" if call.stream else upstream.content_type
        elif call.stream:
            relay = StreamRelay(upstream, call, drop_usage_chunk=injected_usage)
        if relay is not None:
            return StreamingResponse(
                self._relay(relay, reservation, slot),
                status_code=upstream.status,
                headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
                media_type=media_type,
                # Settles a stream the caller abandoned before it started (the generator never ran).
                background=BackgroundTask(self._settle_abandoned, relay, reservation, slot),
            )
        try:
            content = await upstream.read()
        except GatewayError as error:  # the answer broke off: the call ran, its usage is lost with the body
            await self.accounting.settle(
                reservation, reservation.conservative(), error.status, outcome="upstream_incomplete"
            )
            return error_response(error, request_id)
        answer = None if call.media is not None else _answer_of(content, observation)  # media: read by its own parser
        if self.stored is not None and stores(call) and answer is not None:
            if await self._stored(reservation, answer, upstream.backend):
                return Response(content, status_code=upstream.status, headers=headers, media_type=upstream.content_type)
        # Settled before the caller has the answer: the row is journaled (no storage wait, docs/durability.md), so
        # an instance killed right after sending it cannot lose a call it served. An answer without a readable
        # ``usage`` still ran: it is charged conservatively.
        if call.media is not None:
            usage = call.media.answered(content) or reservation.conservative()
        else:
            usage = _usage_of(answer) or reservation.conservative()
        await self.accounting.settle(reservation, usage, upstream.status, outcome="completed")
        return Response(content, status_code=upstream.status, headers=headers, media_type=upstream.content_type)

    async def _stored(self, reservation: Reservation, answer: dict[str, Any], backend: str | None) -> bool:
        """Record the owner of the response a call created; True when it is a background response still running,
        held unsettled (its ledger row is written when it finishes: shared/stateful/responses.py)."""
        assert self.stored is not None
        if is_background(reservation.call) and answer.get("status") not in FINAL_STATUSES:
            if await self.stored.hold_background(reservation, answer, backend):
                reservation.claim()  # settled later, from the record, by whoever sees it finish
                return True
            return False  # not recorded: settled now, conservatively
        # Written while the answer goes out (this instance knows the owner at once; a follow-up on another instance
        # that misses it looks again shortly: shared.stateful.responses).
        self._track(self.stored.created(reservation, answer.get("id"), backend))
        return False

    async def _relay(
        self, relay: StreamRelay | MediaRelay, reservation: Reservation, slot: Slot
    ) -> AsyncIterator[bytes]:
        # The upstream stream is owned by this generator: the Functions invocation ends when the handler returns,
        # and the body is sent afterwards, so nothing here may depend on the handler's scope.
        recording: asyncio.Task[object] | None = None
        # A stored response's stream: its owner is recorded from the event that carries its id.
        records = (
            relay if isinstance(relay, StreamRelay) and self.stored is not None and stores(reservation.call) else None
        )
        try:
            async for events in relay.events():
                if records is not None and recording is None and records.response_id is not None:
                    # Written while the stream goes on; the caller sees the response complete only once it is.
                    assert self.stored is not None
                    recording = self._track(self.stored.created(reservation, records.response_id, reservation.backend))
                if relay.finished and recording is not None:
                    await asyncio.shield(recording)
                if relay.finished and reservation.claim():
                    # The final event: settle (journal the row) before the caller has it, as for JSON answers.
                    reservation.observation.streamed(relay.first_token_at, relay.response_model)
                    usage = _stream_usage(relay, reservation)
                    await self.accounting.record(reservation, usage, 200, outcome=relay.outcome)
                yield events
        finally:
            # No await here: when the caller hangs up, this runs inside a cancelled task, so the ledger write goes
            # to a task of its own; the caller does not wait for it either way.
            slot.release()
            self._settle_detached(reservation, relay)

    async def _settle_abandoned(self, relay: StreamRelay | MediaRelay, reservation: Reservation, slot: Slot) -> None:
        """After the response: settles a stream whose generator never ran (the caller left before the first byte)."""
        try:
            if not reservation.settled:
                await relay.aclose()
                self._settle_detached(reservation, relay)
        finally:
            slot.release()

    def _settle_detached(self, reservation: Reservation, relay: StreamRelay | MediaRelay) -> None:
        if reservation.claim():
            reservation.observation.streamed(relay.first_token_at, relay.response_model)
            task = asyncio.get_running_loop().create_task(
                self.accounting.record(reservation, _stream_usage(relay, reservation), 200, outcome=relay.outcome)
            )
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _track(self, work: Coroutine[Any, Any, object]) -> asyncio.Task[object]:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def drain(self) -> None:
        """Wait for settlements still being written (on shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def forward_body(
        self, call: ModelCall, output_cap: int | None = None
    ) -> tuple[dict[str, Any] | StreamedBody, bool]:
        """The body to send upstream, and whether the gateway added ``include_usage`` for its own accounting.

        ``output_cap``: the output limit a budgeted call that set none must carry, so that the upstream enforces
        what its quota reservation holds (D68).
        """
        if call.form is not None:  # an upload: re-encoded from the spooled parts as it is sent, never held whole
            return call.form.body(), False
        body = call.body
        if output_cap is not None:
            body = {**body, self._output_limit_field(call): output_cap}
        if (
            call.stream
            and call.operation.kind is OperationKind.CHAT
            and not call.client_wants_stream_usage
            and self._stream_usage_supported(call.api_version)
        ):
            options = {**(body.get("stream_options") or {}), "include_usage": True}
            return {**body, "stream_options": options}, True
        return body, False

    def _stream_usage_supported(self, api_version: str | None) -> bool:
        if api_version is None:  # the v1 API
            return True
        return version_date(api_version) >= version_date(self.stream_usage_min_api_version)

    @staticmethod
    def _output_limit_field(call: ModelCall) -> str:
        kind = call.operation.kind
        if kind is OperationKind.RESPONSES:
            return "max_output_tokens"
        if kind is OperationKind.CHAT and (
            call.api_version is None or version_date(call.api_version) >= version_date(MAX_COMPLETION_TOKENS_SINCE)
        ):
            return "max_completion_tokens"  # the only one reasoning models accept
        return "max_tokens"


def _stream_usage(relay: StreamRelay | MediaRelay, reservation: Reservation) -> Usage:
    """What a stream is charged: the usage the upstream reported; without it, what the stream showed, unless the
    stream broke off upstream or the model reasons (its reasoning tokens never show in a delta), in which case it
    is charged as if it used all it reserved (docs/quotas.md)."""
    observed = relay.usage
    if not observed.estimated or isinstance(relay, MediaRelay):
        return observed
    if relay.broken or is_reasoning_model(reservation.call.model_name):
        return reservation.conservative(observed)
    return observed


def _answer_of(content: bytes, observation: Observation) -> dict[str, Any] | None:
    """The JSON object of an answer (parsed once, for its usage, its model and a stored response's id)."""
    try:
        body = json.loads(content)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    observation.answered(body.get("model"))
    return body


def _usage_of(answer: dict[str, Any] | None) -> Usage | None:
    return usage_from_body(answer) if answer is not None else None
