"""Files and batches through the gateway: owned by their caller, pinned to the backend that holds them, paid for.

Every file and batch the gateway creates upstream is recorded in the ownership registry (shared/stateful/objects.py)
with its owner and backend; every later call that names one is checked there first (a stranger's or unknown id is
a 404 and nothing is forwarded) and sent to that backend only (``Upstream.send(..., backend=label)``: a cooling
backend is a retryable 503, never another account's 404). Lists are the caller's own records, never the account's.

Money (docs/quotas.md, "Batches"): creating a batch holds, on the caller's limits, the input file's counted prompt
tokens plus every line's output bound at the deployment's batch rate (shared/accounting/prices.py), and charges the
hold at once, since the batch runs for hours after the request that created it (a refusal is the same 429/403 as
for a chat call). When a retrieve or the settlement timer sees the batch end (``completed``, ``failed``,
``expired``, ``cancelled``), the output file's ``usage`` lines are summed (read as a stream, one line at a time)
and recorded once on a ledger row with operation ``batch`` at the batch rate; what the hold charged beyond that is
given back to the caller's token and cost budgets still in the same window. Exactly once across instances: the
registry record is claimed with its ETag before the row is written. Management calls (upload, list, retrieve,
content, delete, cancel) are ledger rows of their own with no tokens and no cost.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from starlette.responses import JSONResponse, Response, StreamingResponse

from shared.accounting.prices import Price
from shared.accounting.settlement import Accounting, Reservation
from shared.auth.identity import Caller
from shared.errors import GatewayError, bad_request, forbidden
from shared.policy.callers import CallerPolicyStore
from shared.protocol import operations
from shared.protocol.calls import ModelCall
from shared.protocol.operations import Operation
from shared.protocol.usage import Usage, usage_from_body
from shared.quotas.enforcer import QuotaReservation, with_quota_headers
from shared.settings import GuardrailSettings
from shared.stateful.files import (
    MAX_BATCH_FILE_BYTES,
    BatchFile,
    Page,
    batch_endpoint,
    check_content_type,
    check_purpose,
    paged,
    scan_batch_file,
)
from shared.stateful.ids import ObjectKind, check_object_id, is_object_id
from shared.stateful.objects import ANY_DEPLOYMENT, ObjectChanged, ObjectRegistry, OwnedObject
from shared.upstream.client import Body, UpstreamResponse
from shared.upstream.pool import Upstream

log = logging.getLogger(__name__)

COMPLETION_WINDOWS = frozenset({"24h"})  # Azure OpenAI batch: the only completion window
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
MAX_METADATA_PAIRS = 16
FORWARDED_BATCH_FIELDS = ("input_file_id", "endpoint", "completion_window", "metadata")
MAX_OUTPUT_LINE_BYTES = 16 * 1024 * 1024  # an output line longer than this is skipped (its usage is lost, logged)
MAX_BATCH_LIST = 100
NO_CHARGE = "no-charge"  # the price version of management calls: no tokens, cost 0
_STORED_OBJECT_CHARS = 8_000  # the upstream's object kept on the record (what lists show), when it is this small


@dataclass(frozen=True)
class StoredCall:
    """One request on a stored object: who, which style (dated or v1), the api-version, the request id."""

    caller: Caller
    dated: bool
    api_version: str | None
    request_id: str


def operation(name: str, dated: bool) -> Operation:
    """``FILE_UPLOAD`` and friends of shared/protocol/operations.py, dated or v1."""
    return cast(Operation, getattr(operations, name if dated else f"V1_{name}"))


class FilesAndBatches:
    def __init__(
        self,
        upstream: Upstream,
        registry: ObjectRegistry,
        accounting: Accounting,
        policies: CallerPolicyStore,
        guardrails: GuardrailSettings,
    ) -> None:
        self.upstream = upstream
        self.registry = registry
        self.accounting = accounting
        self.policies = policies
        self.guardrails = guardrails

    # --- files -------------------------------------------------------------------------------------------------

    async def upload(self, call: StoredCall, form: Any) -> Response:
        """``form``: the parsed multipart body (shared.protocol.multipart.Form)."""
        purpose = check_purpose(form.text("purpose"))
        upload = form.file("file")
        if upload is None:
            raise bad_request("'file' is required.", code="missing_required_parameter", param="file")
        check_content_type(purpose, upload.content_type)
        attributes: dict[str, Any] = {"purpose": purpose}
        if purpose == "batch":
            if upload.size > MAX_BATCH_FILE_BYTES:
                raise GatewayError(
                    413,
                    f"A batch input file may be at most {MAX_BATCH_FILE_BYTES} bytes (Azure OpenAI's limit).",
                    code="request_too_large",
                    param="file",
                )
            facts = await asyncio.to_thread(self._scan, upload, await self._allowed_deployments(call.caller))
            attributes.update(facts.attributes())
        self.accounting.ledger.admit()
        model_call = self._call(operation("FILE_UPLOAD", call.dated), call, ANY_DEPLOYMENT)
        answer = await self._send(model_call, form.body(), call.request_id, None)
        content = await answer.read()
        if answer.ok:
            created = _json_object(content)
            file_id = created.get("id") if created else None
            if created is None or not is_object_id(ObjectKind.FILE, file_id):
                log.error("request %s: the upstream created a file but its answer has no usable id", call.request_id)
            else:
                attributes["object"] = _small(created)
                await self.registry.record(
                    OwnedObject.new(
                        ObjectKind.FILE,
                        str(file_id),
                        call.caller.id,
                        answer.backend or "",
                        attributes=attributes,
                        expires_at=_expiry(created),
                    )
                )
        await self._record_request(call, model_call, answer.status, answer.backend)
        return _relay(answer, content)

    def _scan(self, upload: Any, allowed: frozenset[str] | None) -> BatchFile:
        quotas = self.accounting.quotas
        return scan_batch_file(  # the spool stays open: it is sent from its start afterwards
            upload.open(),
            self.guardrails,
            (lambda c: quotas.output_bound(c).tokens) if quotas is not None else (lambda c: 0),
            (lambda d: True) if allowed is None else allowed.__contains__,
        )

    async def list_files(self, call: StoredCall, page: Page, purpose: str | None) -> Response:
        objects = [
            _shown(obj)
            for obj in await self.registry.list_for(call.caller, ObjectKind.FILE)
            if purpose is None or obj.attributes.get("purpose") == purpose
        ]
        await self._record_request(
            call, self._call(operation("FILE_LIST", call.dated), call, ANY_DEPLOYMENT), 200, None
        )
        return JSONResponse(paged(objects, page))

    async def file(self, call: StoredCall, file_id: str, action: str) -> Response:
        """``action``: ``retrieve``, ``content`` or ``delete`` (FILE_RETRIEVE, FILE_CONTENT, FILE_DELETE)."""
        file_id = check_object_id(ObjectKind.FILE, file_id, "file_id")
        record = await self.registry.owned(call.caller, ObjectKind.FILE, file_id)
        model_call = self._call(operation(f"FILE_{action.upper()}", call.dated), call, record.deployment, file_id)
        answer = await self._send(model_call, None, call.request_id, record.backend)
        if action == "content" and answer.ok:
            await self._record_request(call, model_call, answer.status, answer.backend)
            return StreamingResponse(
                _closing(answer), status_code=answer.status, media_type=answer.content_type, headers=_headers(answer)
            )
        content = await answer.read()
        if action == "delete" and (answer.ok or answer.status == 404):
            await self.registry.forget(ObjectKind.FILE, file_id, record.owner)  # deleted, or already gone upstream
        await self._record_request(call, model_call, answer.status, answer.backend)
        return _relay(answer, content)

    # --- batches -----------------------------------------------------------------------------------------------

    async def create_batch(self, call: StoredCall, body: Mapping[str, Any]) -> Response:
        input_file_id = check_object_id(ObjectKind.FILE, body.get("input_file_id"), "input_file_id")
        endpoint = batch_endpoint(body.get("endpoint"))
        if endpoint is None:
            raise bad_request(
                "'endpoint' must be '/chat/completions', '/embeddings' or '/responses' (or their /v1/ form).",
                code="invalid_value",
                param="endpoint",
            )
        if body.get("completion_window") not in COMPLETION_WINDOWS:
            raise bad_request("'completion_window' must be '24h'.", code="invalid_value", param="completion_window")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_PAIRS):
            raise bad_request(
                f"'metadata' must be an object of at most {MAX_METADATA_PAIRS} pairs.",
                code="invalid_value",
                param="metadata",
            )
        source = await self.registry.owned(call.caller, ObjectKind.FILE, input_file_id)
        facts = BatchFile.from_attributes(source.attributes)
        if source.attributes.get("purpose") != "batch" or facts is None:
            raise bad_request(
                "The input file was not uploaded with purpose 'batch'.", code="invalid_value", param="input_file_id"
            )
        if facts.endpoint != endpoint:
            raise bad_request(
                f"The input file's requests are for '{facts.endpoint}', not '{endpoint}'.",
                code="invalid_value",
                param="endpoint",
            )
        allowed = await self._allowed_deployments(call.caller)
        if allowed is not None and facts.deployment not in allowed:
            raise forbidden(
                f"The deployment '{facts.deployment}' is not allowed for this caller.", code="deployment_not_allowed"
            )
        if not any(b.label == source.backend for b in self.upstream.pool_for(facts.deployment).backends):
            raise bad_request(
                f"The deployment '{facts.deployment}' is not served by the account that holds the input file; upload "
                "the file again so that it lands on an account that serves it.",
                code="deployment_not_on_backend",
                param="input_file_id",
            )
        self.accounting.ledger.admit()
        price = await self._batch_price(facts.deployment)
        hold = self._hold_call(call, facts)
        quotas = self.accounting.quotas
        quota = await quotas.reserve(call.caller, hold, price) if quotas is not None else QuotaReservation(price=price)
        model_call = self._call(operation("BATCH_CREATE", call.dated), call, facts.deployment)
        forwarded = {
            key: value
            for key, value in body.items()
            if key in ("input_file_id", "endpoint", "completion_window", "metadata")
        }
        try:
            answer = await self._send(model_call, forwarded, call.request_id, source.backend)
            content = await answer.read()
        except BaseException:
            if quotas is not None:
                quotas.settle(quota, None)  # nothing was created: only the request counts
            raise
        created = _json_object(content) if answer.ok else None
        batch_id = created.get("id") if created else None
        if created is None or not is_object_id(ObjectKind.BATCH, batch_id):
            if quotas is not None:
                quotas.settle(quota, None)
            if answer.ok:
                log.error("request %s: the upstream created a batch but its answer has no usable id", call.request_id)
            await self._record_request(call, model_call, answer.status, answer.backend)
            return _relay(answer, content)
        reserved = Usage(facts.prompt_tokens, facts.output_tokens, estimated=True)
        if quotas is not None:
            quotas.settle(quota, reserved)  # the batch runs for hours: its hold is charged now, corrected at the end
        policy = await self.policies.get(call.caller.id)
        caller = call.caller
        record = OwnedObject.new(
            ObjectKind.BATCH,
            str(batch_id),
            caller.id,
            source.backend,
            facts.deployment,
            settled=False,
            attributes={
                "input_file_id": input_file_id,
                "status": created.get("status"),
                "object": _small(created),
                "api_version": call.api_version,
                "request_id": call.request_id,
                "price_version": price.version if price is not None else None,
                "reserved_prompt_tokens": facts.prompt_tokens,
                "reserved_output_tokens": facts.output_tokens,
                "reserved_at": datetime.now(UTC).isoformat(),
                "caller": {
                    "name": caller.name,
                    "tenant": caller.tenant,
                    "kind": caller.kind,
                    "auth_method": caller.auth_method,
                    "key_id": caller.key_id,
                },
                "chargeback": policy.chargeback(),
                "files": [],
            },
        )
        await self.registry.record(record)
        await self._record_request(call, model_call, answer.status, answer.backend)
        headers = with_quota_headers(_headers(answer), quota.headers)
        return Response(content, status_code=answer.status, headers=headers, media_type=answer.content_type)

    async def list_batches(self, call: StoredCall, page: Page) -> Response:
        objects = [_shown(obj) for obj in await self.registry.list_for(call.caller, ObjectKind.BATCH)]
        await self._record_request(
            call, self._call(operation("BATCH_LIST", call.dated), call, ANY_DEPLOYMENT), 200, None
        )
        return JSONResponse(paged(objects, page))

    async def batch(self, call: StoredCall, batch_id: str, action: str) -> Response:
        """``action``: ``retrieve`` or ``cancel``; what the answer shows is recorded (and settled if it ended)."""
        batch_id = check_object_id(ObjectKind.BATCH, batch_id, "batch_id")
        record = await self.registry.owned(call.caller, ObjectKind.BATCH, batch_id)
        model_call = self._call(operation(f"BATCH_{action.upper()}", call.dated), call, record.deployment, batch_id)
        answer = await self._send(model_call, None, call.request_id, record.backend)
        content = await answer.read()
        await self._record_request(call, model_call, answer.status, answer.backend)
        seen = _json_object(content) if answer.ok else None
        if seen is not None:
            try:
                await self.observe(record, seen, call.request_id)
            except GatewayError as error:  # the caller still gets the batch; the timer settles it later
                log.warning("batch %s not settled on this read: %s", record.id, error.code)
        return _relay(answer, content)

    # --- what a batch shows, and its settlement ---------------------------------------------------------------

    async def settle_on_timer(self) -> int:
        """The settlement timer: every batch not yet settled is read from its backend; ended ones are settled.
        Returns how many were settled by this run."""
        settled = 0
        for record in await self.registry.unsettled(ObjectKind.BATCH):
            api_version = record.attributes.get("api_version")
            dated = isinstance(api_version, str)
            request_id = f"timer-{record.id}"
            model_call = ModelCall(
                operation=operation("BATCH_RETRIEVE", dated),
                deployment=record.deployment,
                api_version=api_version if dated else None,
                body={},
                stream=False,
                client_wants_stream_usage=False,
                prompt_tokens_estimate=0,
                max_output_tokens=None,
                object_id=record.id,
            )
            try:
                answer = await self._send(model_call, None, request_id, record.backend)
                content = await answer.read()
            except GatewayError as error:  # its backend is cooling or down: the next run tries again
                log.info("batch %s not checked: %s", record.id, error.code)
                continue
            seen = _json_object(content) if answer.ok else None
            if seen is None:
                log.warning("batch %s: its backend answered %d", record.id, answer.status)
                continue
            try:
                if await self.observe(record, seen, request_id):
                    settled += 1
            except GatewayError as error:  # its output file could not be read now: the next run tries again
                log.warning("batch %s not settled: %s", record.id, error.code)
        return settled

    async def observe(self, record: OwnedObject, seen: Mapping[str, Any], request_id: str) -> bool:
        """Record what the upstream showed of a batch: its status, its output and error files (owned by the batch's
        owner, on the same backend); and settle it once if it ended. True if this call settled it."""
        attributes = dict(record.attributes)
        files = list(attributes.get("files") or [])
        for key in ("output_file_id", "error_file_id"):
            file_id = seen.get(key)
            if is_object_id(ObjectKind.FILE, file_id) and file_id not in files:
                await self._record_output_file(record, str(file_id), request_id)
                files.append(file_id)
        status = seen.get("status")
        attributes.update(files=files, status=status, object=_small(seen))
        if record.settled or status not in TERMINAL:
            if attributes != dict(record.attributes):
                try:
                    await self.registry.update(replace(record, attributes=attributes))
                except ObjectChanged:
                    pass  # another request recorded a newer view
            return False
        output_file_id = seen.get("output_file_id")
        usage = (
            await self._output_usage(record, str(output_file_id), request_id)
            if is_object_id(ObjectKind.FILE, output_file_id)
            else Usage()
        )
        attributes["settled_usage"] = [usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens]
        try:
            await self.registry.update(replace(record, attributes=attributes, settled=True))
        except ObjectChanged:
            return False  # another instance (or request) claimed it first: it writes the row
        await self._settle(record, usage, str(status))
        return True

    async def _settle(self, record: OwnedObject, usage: Usage, status: str) -> None:
        attributes = record.attributes
        who = attributes.get("caller") or {}
        caller = Caller(
            id=record.owner,
            name=str(who.get("name") or record.owner),
            tenant=who.get("tenant"),
            kind=who.get("kind") or "user",
            auth_method=who.get("auth_method") or "entra-token",
            key_id=who.get("key_id"),
        )
        version = attributes.get("price_version")
        price = self.accounting.prices.by_id(version) if isinstance(version, str) else None
        call = ModelCall(
            operation=operations.BATCH_USAGE,
            deployment=record.deployment,
            api_version=None,
            body={},
            stream=False,
            client_wants_stream_usage=False,
            prompt_tokens_estimate=int(attributes.get("reserved_prompt_tokens") or 0),
            max_output_tokens=None,
        )
        reservation = Reservation(
            request_id=record.id,
            caller=caller,
            call=call,
            quota=QuotaReservation(price=price),
            backend=record.backend,
            chargeback=attributes.get("chargeback"),
        )
        await self.accounting.settle(reservation, usage, 200, outcome=status)
        quotas = self.accounting.quotas
        if quotas is not None:
            reserved = Usage(
                int(attributes.get("reserved_prompt_tokens") or 0), int(attributes.get("reserved_output_tokens") or 0)
            )
            await quotas.give_back(caller, record.deployment, price, reserved, usage, since=_time(attributes))

    async def _output_usage(self, record: OwnedObject, file_id: str, request_id: str) -> Usage:
        """The sum of the ``usage`` of every line of a batch's output file, read as a stream (one line in memory)."""
        model_call = ModelCall(
            operation=operations.V1_FILE_CONTENT,
            deployment=record.deployment,
            api_version=None,
            body={},
            stream=False,
            client_wants_stream_usage=False,
            prompt_tokens_estimate=0,
            max_output_tokens=None,
            object_id=file_id,
        )
        answer = await self._send(model_call, None, request_id, record.backend)
        if not answer.ok:
            await answer.read()
            raise GatewayError(
                502, "The batch's output file could not be read from its backend.", code="batch_output_unreadable"
            )
        total = [0, 0, 0, 0]
        buffered = bytearray()
        skipping = False
        try:
            async for chunk in answer.chunks():
                buffered += chunk
                while True:
                    end = buffered.find(b"\n")
                    if end < 0:
                        if len(buffered) > MAX_OUTPUT_LINE_BYTES:
                            buffered.clear()
                            skipping = True
                        break
                    line = bytes(buffered[:end])
                    del buffered[: end + 1]
                    if skipping:
                        skipping = False
                        log.warning(
                            "batch %s: an output line over %d bytes was skipped", record.id, MAX_OUTPUT_LINE_BYTES
                        )
                        continue
                    _add_line(total, line)
            if buffered and not skipping:
                _add_line(total, bytes(buffered))
        finally:
            await answer.aclose()
        return Usage(total[0], total[1], total[2], total[3])

    async def _record_output_file(self, record: OwnedObject, file_id: str, request_id: str) -> None:
        """An output or error file a batch produced: the batch owner's, on the batch's backend."""
        model_call = ModelCall(
            operation=operations.V1_FILE_RETRIEVE,
            deployment=record.deployment,
            api_version=None,
            body={},
            stream=False,
            client_wants_stream_usage=False,
            prompt_tokens_estimate=0,
            max_output_tokens=None,
            object_id=file_id,
        )
        shown: dict[str, Any] | None = None
        try:
            answer = await self._send(model_call, None, request_id, record.backend)
            content = await answer.read()
            shown = _json_object(content) if answer.ok else None
        except GatewayError:
            pass  # recorded all the same: ownership must not wait for a description
        if shown is None:
            shown = {
                "id": file_id,
                "object": "file",
                "purpose": "batch_output",
                "created_at": int(datetime.now(UTC).timestamp()),
            }
        await self.registry.record(
            OwnedObject.new(
                ObjectKind.FILE,
                file_id,
                record.owner,
                record.backend,
                attributes={"purpose": "batch_output", "batch_id": record.id, "object": _small(shown)},
                expires_at=_expiry(shown),
            )
        )

    # --- helpers -------------------------------------------------------------------------------------------------

    async def _allowed_deployments(self, caller: Caller) -> frozenset[str] | None:
        policy = await self.policies.get(caller.id)
        return frozenset(policy.allowed_deployments) if policy.allowed_deployments is not None else None

    async def _batch_price(self, deployment: str) -> Price | None:
        await self.accounting.prices.ensure_current()
        return self.accounting.prices.batch_at(deployment, datetime.now(UTC))

    def _hold_call(self, call: StoredCall, facts: BatchFile) -> ModelCall:
        """What a batch holds on the caller's limits, as one call: its prompts and its lines' output bounds."""
        return ModelCall(
            operation=operations.V1_EMBEDDINGS if facts.output_tokens == 0 else operations.V1_CHAT,
            deployment=facts.deployment,
            api_version=None,
            body={},
            stream=False,
            client_wants_stream_usage=False,
            prompt_tokens_estimate=facts.prompt_tokens,
            max_output_tokens=facts.output_tokens or None,
            model=self.guardrails.deployment_models.get(facts.deployment, facts.deployment),
        )

    async def _send(self, call: ModelCall, body: Body, request_id: str, backend: str | None) -> UpstreamResponse:
        """Files and batches live in an account, not a deployment: they are sent as calls of the "*" pool, to the
        backend that holds them (``backend``), so no backend's deployment name is put into their bodies."""
        return await self.upstream.send(replace(call, deployment=ANY_DEPLOYMENT), body, request_id, backend=backend)

    def _call(self, op: Operation, call: StoredCall, deployment: str, object_id: str | None = None) -> ModelCall:
        """The upstream call; ``deployment`` is what its ledger row names (the pinned backend is called by label)."""
        return ModelCall(
            operation=op,
            deployment=deployment,
            api_version=call.api_version,
            body={},
            stream=False,
            client_wants_stream_usage=False,
            prompt_tokens_estimate=0,
            max_output_tokens=None,
            object_id=object_id,
        )

    async def _record_request(self, call: StoredCall, model_call: ModelCall, status: int, backend: str | None) -> None:
        """A management call's ledger row: a request, no tokens, no cost."""
        policy = await self.policies.get(call.caller.id)
        currency = self.accounting.prices.currency
        reservation = Reservation(
            request_id=call.request_id,
            caller=call.caller,
            call=model_call,
            quota=QuotaReservation(price=Price(Decimal(0), Decimal(0), Decimal(0), currency, NO_CHARGE)),
            backend=backend,
            chargeback=policy.chargeback(),
        )
        outcome = "completed" if 200 <= status < 300 else "upstream_error"
        await self.accounting.settle(reservation, Usage(), status, outcome=outcome)


def _add_line(total: list[int], line: bytes) -> None:
    if not line.strip():
        return
    try:
        item = json.loads(line)
    except ValueError:
        return
    response = item.get("response") if isinstance(item, dict) else None
    usage = usage_from_body(response.get("body")) if isinstance(response, dict) else None
    if usage is not None:
        total[0] += usage.prompt_tokens
        total[1] += usage.completion_tokens
        total[2] += usage.cached_tokens
        total[3] += usage.reasoning_tokens


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(content)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _small(value: Mapping[str, Any]) -> dict[str, Any]:
    """The upstream's object as lists show it, if small enough to keep on the record; else its key fields."""
    if len(json.dumps(value)) <= _STORED_OBJECT_CHARS:
        return dict(value)
    keep = ("id", "object", "status", "created_at", "endpoint", "input_file_id", "output_file_id", "error_file_id")
    return {key: value.get(key) for key in keep if key in value}


def _shown(obj: OwnedObject) -> dict[str, Any]:
    shown = obj.attributes.get("object")
    base = {"id": obj.id, "created_at": int(obj.created_at.timestamp())}
    return {**base, **shown} if isinstance(shown, dict) else base


def _expiry(shown: Mapping[str, Any]) -> datetime | None:
    expires = shown.get("expires_at")
    if isinstance(expires, int) and not isinstance(expires, bool) and expires > 0:
        return datetime.fromtimestamp(expires, UTC)
    return None


def _time(attributes: Mapping[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(attributes["reserved_at"]))
    except (KeyError, ValueError):
        return datetime.now(UTC)


def _headers(answer: UpstreamResponse) -> dict[str, str]:
    return dict(answer.headers)


def _relay(answer: UpstreamResponse, content: bytes) -> Response:
    return Response(content, status_code=answer.status, headers=_headers(answer), media_type=answer.content_type)


async def _closing(answer: UpstreamResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in answer.chunks():
            yield chunk
    finally:
        await answer.aclose()
