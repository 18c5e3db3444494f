"""Stored responses through the gateway: who owns each, which backend holds it, and what a background one costs.

* **Create** (``POST /responses``, shared/pipeline.py): every stored object the call references
  (``previous_response_id``, ``conversation``) must be the caller's (:meth:`StoredResponses.pin`, one point read
  each; 404 otherwise, nothing forwarded), and the call goes to the backend that holds it. The response it creates
  (``store`` not false: Azure stores by default) is recorded with its owner and backend from the id in the JSON
  answer, or in a stream's first event (``response.created``), before the caller can see the response complete.
* **Background** (``background: true``): reserved at create like any call; when Azure answers ``queued`` or
  ``in_progress``, the reservation is charged to the caller's quota in full and its facts (request id, prompt and
  reserved output tokens, price version, chargeback) go on the record, unsettled. The first to see it finished (a
  retrieve or cancel through the gateway, or the settlement timer) settles it exactly once: an ETag-conditional
  write of the record wins the right, then one ledger row under the create's request id with the final ``usage``
  (``cancelled``/``failed`` without usage: 0 tokens).
* **Reads and changes** (retrieve, delete, cancel, input items: :meth:`StoredResponses.call`): owner checked, id
  and query validated, pinned to the backend; each is a ledger row of its own operation with no tokens.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import anyio
from azure.core.exceptions import AzureError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from shared.accounting.prices import PriceBook
from shared.accounting.settlement import Accounting, Reservation
from shared.auth.identity import ROLE_USE, Caller
from shared.errors import REQUEST_ID_HEADER, GatewayError, bad_request, current_request_id, error_body, error_response
from shared.policy.authorization import require_role
from shared.policy.guard import check_api_version
from shared.protocol import operations
from shared.protocol.calls import ModelCall
from shared.protocol.operations import Operation, OperationKind
from shared.protocol.usage import Usage, parse_usage
from shared.quotas.enforcer import QuotaReservation
from shared.stateful.ids import ObjectKind, check_item_id, check_object_id, referenced_objects
from shared.stateful.objects import ObjectChanged, ObjectRegistry, OwnedObject
from shared.upstream.client import UpstreamBroken, UpstreamResponse
from shared.upstream.pool import Upstream

log = logging.getLogger(__name__)

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "incomplete"})
MAX_LIST_LIMIT = 100
# ``include[]`` values a retrieve may ask for (Azure's list; anything else is refused before it is forwarded).
INCLUDE_VALUES = frozenset(
    {
        "code_interpreter_call.outputs",
        "computer_call_output.output.image_url",
        "file_search_call.results",
        "message.input_image.image_url",
        "message.output_text.logprobs",
        "reasoning.encrypted_content",
        "web_search_call.action.sources",
    }
)
MAX_INCLUDES = 16


def stores(call: ModelCall) -> bool:
    """Whether Azure keeps the response this call creates (``store`` defaults to true)."""
    return call.operation.kind is OperationKind.RESPONSES and call.body.get("store") is not False


def is_background(call: ModelCall) -> bool:
    return call.operation.kind is OperationKind.RESPONSES and call.body.get("background") is True


def answer_of(content: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class StoredResponses:
    def __init__(self, registry: ObjectRegistry, upstream: Upstream, accounting: Accounting, prices: PriceBook) -> None:
        self.registry = registry
        self.upstream = upstream
        self.accounting = accounting
        self.prices = prices

    # --- create ----------------------------------------------------------------------------------------------

    async def pin(self, caller: Caller, call: ModelCall) -> str | None:
        """The backend that holds the stored objects ``call`` references, after checking that each is the caller's
        (404, naming the parameter, when one is not: unknown and other callers' ids answer alike); None when the call
        references none (it follows the pool)."""
        backend: str | None = None
        for kind, object_id, param in referenced_objects(call.body):
            assert isinstance(object_id, str)  # the guard checked every referenced id's shape
            try:
                held = await self.registry.owned(caller, kind, object_id)
            except GatewayError as error:
                if error.status != 404:
                    raise
                code = "previous_response_not_found" if kind is ObjectKind.RESPONSE else "not_found"
                raise GatewayError(404, error.message, code=code, param=param) from None
            if backend is not None and held.backend != backend:
                raise bad_request(
                    "The objects this request references are held by different backends, so no backend can serve it.",
                    code="objects_on_different_backends",
                    param=param,
                )
            backend = held.backend
        return backend

    async def created(
        self, reservation: Reservation, response_id: object, backend: str | None, *, unsettled: bool = False
    ) -> OwnedObject | None:
        """Record the owner and backend of a response the call created. ``unsettled``: a background response still
        running, recorded with what settling it will need. Returns None (logged) when the id is not Azure-shaped
        or the record could not be written: the response then cannot be referenced through the gateway (a
        follow-up gets 404, the safe side)."""
        call = reservation.call
        if not isinstance(response_id, str):
            log.warning("request %s: the created response carries no id; it is not recorded", reservation.request_id)
            return None
        try:
            check_object_id(ObjectKind.RESPONSE, response_id, "id")
        except GatewayError:
            log.warning(
                "request %s: the upstream's response id is not Azure-shaped; not recorded", reservation.request_id
            )
            return None
        attributes: dict[str, Any] = {"request_id": reservation.request_id}
        if unsettled:
            caller = reservation.caller
            price = reservation.price
            attributes |= {
                "caller_name": caller.name,
                "tenant": caller.tenant,
                "caller_kind": caller.kind,
                "auth_method": caller.auth_method,
                "key_id": caller.key_id,
                "api": call.operation.style.value,
                "api_version": call.api_version,
                "model": call.model,
                "prompt_tokens": call.prompt_tokens_estimate,
                "reserved_output_tokens": reservation.output_tokens,
                "price_version": price.version if price else None,
                "chargeback": dict(reservation.chargeback) if reservation.chargeback is not None else None,
            }
        obj = OwnedObject.new(
            ObjectKind.RESPONSE,
            response_id,
            reservation.caller.id,
            backend or "",
            call.deployment,
            attributes=attributes,
            settled=not unsettled,
        )
        try:
            return await self.registry.record(obj)
        except AzureError as exc:
            log.error(
                "request %s: the owner of %s could not be recorded (%s)", reservation.request_id, response_id, exc
            )
            return None

    async def hold_background(self, reservation: Reservation, answer: Mapping[str, Any], backend: str | None) -> bool:
        """A background create was accepted and runs on: charge its reservation to the caller's quota in full now and
        record it unsettled (its ledger row waits for the end). False when it could not be recorded: the caller
        then settles it now, conservatively (never free)."""
        if self.accounting.quotas is not None:
            self.accounting.quotas.settle(reservation.quota, reservation.conservative())
        recorded = await self.created(reservation, answer.get("id"), backend, unsettled=True)
        return recorded is not None

    # --- settlement ------------------------------------------------------------------------------------------

    async def settle_if_final(self, obj: OwnedObject, answer: Mapping[str, Any] | None) -> bool:
        """Settle an unsettled background response that ``answer`` (its retrieve or cancel answer) shows finished;
        True if this call settled it. Exactly once across instances: the ETag-conditional write decides."""
        if obj.settled or answer is None or answer.get("status") not in FINAL_STATUSES:
            return False
        status = str(answer["status"])
        usage = parse_usage(answer.get("usage")) or Usage()  # cancelled/failed without usage: 0 tokens
        return await self._settle(obj, usage, f"background_{status}")

    async def settle_gone(self, obj: OwnedObject, outcome: str) -> bool:
        """Settle an unsettled background response whose end will never be seen (deleted, gone upstream):
        charged as if it used all it reserved, flagged estimated."""
        if obj.settled:
            return False
        attributes = obj.attributes
        usage = Usage(int(attributes.get("prompt_tokens") or 0), int(attributes.get("reserved_output_tokens") or 0))
        return await self._settle(obj, replace(usage, estimated=True), outcome)

    async def _settle(self, obj: OwnedObject, usage: Usage, outcome: str) -> bool:
        try:
            await self.registry.update(replace(obj, settled=True, attributes={**obj.attributes, "outcome": outcome}))
        except ObjectChanged:
            return False  # another instance (or request) settled it
        await self.accounting.record(self._reservation_of(obj), usage, 200, outcome=outcome)
        return True

    def _reservation_of(self, obj: OwnedObject) -> Reservation:
        """The create's reservation, rebuilt from the record (perhaps on another instance, days later)."""
        a = obj.attributes
        caller = Caller(
            obj.owner,
            str(a.get("caller_name") or obj.owner),
            a.get("tenant"),
            "user" if a.get("caller_kind") == "user" else "app",
            auth_method=a.get("auth_method") or "entra-token",
            key_id=a.get("key_id"),
        )
        operation = operations.V1_RESPONSES if a.get("api") == "v1" else operations.RESPONSES
        call = ModelCall(
            operation=operation,
            deployment=obj.deployment,
            api_version=a.get("api_version"),
            body={},
            stream=False,
            client_wants_stream_usage=False,
            prompt_tokens_estimate=int(a.get("prompt_tokens") or 0),
            max_output_tokens=None,
            model=str(a.get("model") or ""),
        )
        version = a.get("price_version")
        price = self.prices.by_id(version) if isinstance(version, str) else None
        reservation = Reservation(
            str(a.get("request_id") or obj.id),
            caller,
            call,
            QuotaReservation(price=price),
            output_tokens=int(a.get("reserved_output_tokens") or 0),
            chargeback=a.get("chargeback"),
            backend=obj.backend,
            settled=True,
        )
        reservation.started = time.monotonic() - (datetime.now(UTC) - obj.created_at).total_seconds()
        return reservation

    async def settle_finished(self, request_id: str) -> dict[str, int]:
        """The settlement timer: poll every unsettled background response on its backend and settle the finished
        ones. A backend that cannot answer now is asked again next time."""
        counts = {"checked": 0, "settled": 0, "unavailable": 0}
        for obj in await self.registry.unsettled(ObjectKind.RESPONSE):
            counts["checked"] += 1
            call = self._stored_call(RETRIEVE[obj.attributes.get("api") == "v1"], obj, {}, ())
            try:
                upstream = await self.upstream.send(call, None, request_id, backend=obj.backend)
                content = await upstream.read()
            except GatewayError:
                counts["unavailable"] += 1
                continue
            if upstream.status == 404:
                settled = await self.settle_gone(obj, "background_gone")
            else:
                settled = upstream.ok and await self.settle_if_final(obj, answer_of(content))
            counts["settled"] += int(settled)
        return counts

    # --- retrieve, delete, cancel, input items -------------------------------------------------------------

    async def call(self, request: Request, caller: Caller, operation: Operation, response_id: str) -> Response:
        """A request about one stored response, for its owner only, on the backend that holds it."""
        request_id = current_request_id()
        self.accounting.ledger.admit()  # fail-closed 503 while usage cannot be recorded (docs/durability.md)
        require_role(caller, ROLE_USE)
        api_version = check_api_version(request, operation)
        check_object_id(ObjectKind.RESPONSE, response_id, "response_id")
        query, stream = _query(request, operation.kind)
        obj = await self.registry.owned(caller, ObjectKind.RESPONSE, response_id)
        call = self._stored_call(operation, obj, {"api_version": api_version, "stream": stream}, query)
        try:
            upstream = await self.upstream.send(call, None, request_id, backend=obj.backend)
        except GatewayError as error:
            await self.accounting.record_request(caller, call, request_id, error.status, outcome="upstream_unavailable")
            return error_response(error, request_id)
        headers = {**upstream.headers, REQUEST_ID_HEADER: request_id}
        if stream and upstream.ok:
            await self.accounting.record_request(
                caller, call, request_id, upstream.status, outcome="completed", backend=upstream.backend
            )
            return StreamingResponse(
                _relay(upstream),
                status_code=upstream.status,
                headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
                media_type="text/event-stream",
            )
        try:
            content = await upstream.read()
        except GatewayError as error:
            await self.accounting.record_request(caller, call, request_id, error.status, outcome="upstream_incomplete")
            return error_response(error, request_id)
        await self._after(operation.kind, obj, upstream, content)
        outcome = "completed" if upstream.ok else "upstream_error"
        await self.accounting.record_request(
            caller, call, request_id, upstream.status, outcome=outcome, backend=upstream.backend
        )
        return Response(content, status_code=upstream.status, headers=headers, media_type=upstream.content_type)

    async def _after(self, kind: OperationKind, obj: OwnedObject, upstream: UpstreamResponse, content: bytes) -> None:
        """What an answer changes here: a background response seen finished is settled; a deleted one forgotten
        (settled first if it never was)."""
        if kind is OperationKind.RESPONSES_DELETE and (upstream.ok or upstream.status == 404):
            await self.settle_gone(obj, "background_deleted")
            await self.registry.forget(ObjectKind.RESPONSE, obj.id, obj.owner)
        elif kind in (OperationKind.RESPONSES_RETRIEVE, OperationKind.RESPONSES_CANCEL) and upstream.ok:
            await self.settle_if_final(obj, answer_of(content))

    def _stored_call(
        self, operation: Operation, obj: OwnedObject, options: Mapping[str, Any], query: tuple[tuple[str, str], ...]
    ) -> ModelCall:
        api_version = options.get("api_version")
        if api_version is None and operation.style.dated:
            api_version = obj.attributes.get("api_version") or DEFAULT_DATED_VERSION
        return ModelCall(
            operation=operation,
            deployment=obj.deployment,
            api_version=api_version,
            body={},
            stream=bool(options.get("stream")),
            client_wants_stream_usage=False,
            prompt_tokens_estimate=0,
            max_output_tokens=None,
            object_id=obj.id,
            query=query,
        )


# The settlement timer's retrieve of a response created on the dated API, when its record has no api-version.
DEFAULT_DATED_VERSION = "2025-04-01-preview"


RETRIEVE = {True: operations.V1_RESPONSES_RETRIEVE, False: operations.RESPONSES_RETRIEVE}  # by "is it v1"


def _query(request: Request, kind: OperationKind) -> tuple[tuple[tuple[str, str], ...], bool]:
    """The query parameters forwarded upstream, each checked (anything else the caller sent is dropped, never
    forwarded): retrieve ``include[]``, ``stream``, ``starting_after``; input items ``limit``, ``order``,
    ``after``, ``include[]``."""
    params = request.query_params
    forwarded: list[tuple[str, str]] = []
    stream = False
    if kind in (OperationKind.RESPONSES_RETRIEVE, OperationKind.RESPONSES_INPUT_ITEMS):
        includes = params.getlist("include[]") + params.getlist("include")
        if len(includes) > MAX_INCLUDES or any(value not in INCLUDE_VALUES for value in includes):
            raise bad_request(
                f"'include[]' takes at most {MAX_INCLUDES} of: {', '.join(sorted(INCLUDE_VALUES))}.",
                code="invalid_value",
                param="include[]",
            )
        forwarded += [("include[]", value) for value in includes]
    if kind is OperationKind.RESPONSES_RETRIEVE:
        if "stream" in params:
            text = params["stream"]
            if text not in ("true", "false"):
                raise bad_request("'stream' must be true or false.", code="invalid_type", param="stream")
            stream = text == "true"
            forwarded.append(("stream", text))
        if "starting_after" in params:
            value = params["starting_after"]
            if not value.isascii() or not value.isdigit() or len(value) > 9:
                raise bad_request(
                    "'starting_after' must be an event sequence number.", code="invalid_value", param="starting_after"
                )
            forwarded.append(("starting_after", value))
    if kind is OperationKind.RESPONSES_INPUT_ITEMS:
        if "limit" in params:
            value = params["limit"]
            if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_LIST_LIMIT:
                raise bad_request(
                    f"'limit' must be a whole number from 1 to {MAX_LIST_LIMIT}.", code="invalid_value", param="limit"
                )
            forwarded.append(("limit", value))
        if "order" in params:
            if params["order"] not in ("asc", "desc"):
                raise bad_request("'order' must be 'asc' or 'desc'.", code="invalid_value", param="order")
            forwarded.append(("order", params["order"]))
        for cursor in ("after", "before"):
            if cursor in params:
                forwarded.append((cursor, check_item_id(params[cursor], cursor)))
    return tuple(forwarded), stream


async def _relay(upstream: UpstreamResponse) -> AsyncIterator[bytes]:
    """A resumed stream, as it comes (it was accounted when the response was created); an upstream that breaks off
    ends it with the in-band error event the OpenAI SDKs raise."""
    try:
        async for chunk in upstream.chunks():
            yield chunk
    except UpstreamBroken:
        body = error_body(
            "The upstream model service broke off the stream.", code="upstream_incomplete", type="server_error"
        )
        yield f"data: {json.dumps(body)}\n\n".encode()
    finally:
        with anyio.CancelScope(shield=True):
            await upstream.aclose()
