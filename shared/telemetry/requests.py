"""What one model call reports: a span from arrival to settlement, its child steps, and its metrics.

The request path holds one :class:`RequestObservation` per call and tells it what happened, in order:
``identified`` (who, which deployment), ``quota_reserve()`` (child span; a refusal is counted by limit),
``upstream()`` (child span, latency), ``streamed``/``answered`` (time to first token, response model), and
finally ``settled`` (tokens, cost, status, outcome; ends the span) or ``refused`` (ends it before forwarding).
The span ends at settlement, not when the handler returns: a stream's span covers the whole stream.

Only identifiers, counts and the gateway's own enums are recorded, never text from a request or response. With
telemetry off the request path gets :data:`UNOBSERVED`, whose methods do nothing, so the cost is a few no-op
calls; span attributes are only built when the span is sampled (``is_recording``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from shared.errors import GatewayError
from shared.protocol.calls import ModelCall
from shared.protocol.operations import Operation, OperationKind
from shared.protocol.usage import Usage
from shared.telemetry import instruments as names

if TYPE_CHECKING:
    from shared.telemetry.instruments import Instruments

PROVIDER_NAME = "azure.ai.openai"

# gen_ai.operation.name values of the GenAI semantic conventions (the Responses API is a chat operation).
GENAI_OPERATIONS = {
    OperationKind.CHAT: "chat",
    OperationKind.RESPONSES: "chat",
    OperationKind.COMPLETIONS: "text_completion",
    OperationKind.EMBEDDINGS: "embeddings",
}

_NO_STEP: AbstractContextManager[None] = nullcontext()


def quota_limit_of(error: GatewayError) -> str:
    """The limit a quota refusal names (``tokens_per_minute``), from the enforcer's documented error codes."""
    code = error.code or "unknown"
    return code.removesuffix("_exceeded")


def _units(usage: Usage) -> dict[str, float]:
    """The non-token units of a settled call (images, audio seconds, characters), those it used."""
    units = {
        "images": float(usage.images),
        "audio_seconds": usage.audio_ms / 1000,
        "characters": float(usage.characters),
    }
    return {unit: amount for unit, amount in units.items() if amount}


class RequestObservation:
    """A call being observed (telemetry on)."""

    def __init__(self, instruments: Instruments, operation: Operation, request_id: str) -> None:
        self._instruments = instruments
        self._arrived = time.perf_counter()
        self._operation = GENAI_OPERATIONS.get(operation.kind, operation.kind.value)
        self._gateway_operation = operation.name
        self._caller = names.NO_CALLER
        self._deployment = ""
        self._stream = False
        self._unit = "tokens"  # images and audio: the unit their call is counted in (shared.protocol.media)
        self._forwarded_at: float | None = None
        self._first_token_ms: float | None = None
        self._ended = False
        self._span: Span = instruments.tracer.start_span(self._operation, kind=SpanKind.INTERNAL)
        if self._span.is_recording():
            self._span.set_attributes(
                {
                    names.OPERATION: self._operation,
                    names.GATEWAY_OPERATION: self._gateway_operation,
                    names.PROVIDER: PROVIDER_NAME,
                    names.REQUEST_ID: request_id,
                }
            )

    def identified(self, caller_id: str, call: ModelCall) -> None:
        """The caller is authenticated and authorized for this call."""
        self._caller = self._instruments.caller(caller_id)
        self._deployment = self._instruments.deployment(call.deployment)
        self._stream = call.stream
        if call.media is not None:
            self._unit = call.media.unit.value
        span = self._span
        if span.is_recording():
            span.update_name(f"{self._operation} {call.deployment}")
            span.set_attributes(
                {
                    names.REQUEST_MODEL: call.deployment,
                    names.DEPLOYMENT: call.deployment,
                    names.CALLER: caller_id,
                    names.STREAM: call.stream,
                    names.UNIT: self._unit,
                }
            )
            if call.max_output_tokens is not None:
                span.set_attribute(names.MAX_TOKENS, call.max_output_tokens)

    @contextmanager
    def quota_reserve(self) -> Iterator[None]:
        """Child span around the quota reservation; a refusal is counted by the limit it names."""
        with self._child("gateway.quota.reserve"):
            try:
                yield
            except GatewayError as error:
                decision = "unavailable" if error.status >= 500 else "refused"
                if decision == "refused":
                    self._instruments.quota_refusals.add(
                        1,
                        {
                            names.QUOTA_LIMIT: quota_limit_of(error),
                            names.CALLER: self._caller,
                            names.STATUS: error.status,
                        },
                    )
                if self._span.is_recording():
                    self._span.set_attributes(
                        {names.QUOTA_DECISION: decision, names.QUOTA_LIMIT: quota_limit_of(error)}
                    )
                raise
        if self._span.is_recording():
            self._span.set_attribute(names.QUOTA_DECISION, "admitted")

    @contextmanager
    def upstream(self) -> Iterator[None]:
        """Child span (CLIENT) around the upstream call, and its latency."""
        self._forwarded_at = started = time.perf_counter()
        self._instruments.overhead.record(
            (started - self._arrived) * 1000, {names.OPERATION: self._operation, names.STREAM: self._stream}
        )
        outcome = "error"
        try:
            with self._child("gateway.upstream", kind=SpanKind.CLIENT):
                yield
            outcome = "answered"
        finally:
            self._instruments.upstream_latency.record(
                (time.perf_counter() - started) * 1000, {names.DEPLOYMENT: self._deployment, names.OUTCOME: outcome}
            )

    def settle_step(self) -> AbstractContextManager[None]:
        """Child span around the quota settlement and the ledger write."""
        return self._child("gateway.quota.settle")

    def backend(self, label: str) -> None:
        """The pool's backend that served the call."""
        if self._span.is_recording():
            self._span.set_attribute(names.BACKEND, label)

    def streamed(self, first_token_at: float | None, response_model: str | None) -> None:
        """A stream ended: when its first generated token was relayed (``time.perf_counter()``), and its model."""
        if first_token_at is not None:
            self._first_token_ms = (first_token_at - self._arrived) * 1000
            self._instruments.time_to_first_token.record(self._first_token_ms, {names.DEPLOYMENT: self._deployment})
        if response_model and self._span.is_recording():
            self._span.set_attribute(names.RESPONSE_MODEL, response_model)

    def answered(self, response_model: object) -> None:
        """A non-streaming answer arrived; ``response_model`` is its body's ``model`` (whatever JSON it was)."""
        if isinstance(response_model, str) and self._span.is_recording():
            self._span.set_attribute(names.RESPONSE_MODEL, response_model)

    def refused(self, status: int, code: str | None, outcome: str = "refused") -> None:
        """The call ended before it was forwarded (authentication, guardrails, authorization, quota, storage)."""
        self._count(status, outcome)
        if self._span.is_recording():
            self._span.set_attributes({names.STATUS: status, names.OUTCOME: outcome, names.ERROR_TYPE: code or "error"})
        self._end(error=(code or "error") if status >= 500 else None)

    def settled(self, usage: Usage, status: int, outcome: str, cost_usd: float | None) -> None:
        """The call's settlement: tokens and cost by caller and deployment; ends the span."""
        if self._ended:
            return
        instruments = self._instruments
        dims = {names.CALLER: self._caller, names.DEPLOYMENT: self._deployment}
        for kind, count in (
            ("input", usage.prompt_tokens),
            ("output", usage.completion_tokens),
            ("cached", usage.cached_tokens),
            ("reasoning", usage.reasoning_tokens),
            ("audio_input", usage.audio_input_tokens),
            ("audio_output", usage.audio_output_tokens),
            ("image_input", usage.image_input_tokens),
            ("image_output", usage.image_output_tokens),
        ):
            if count:
                instruments.tokens.add(count, {**dims, names.TOKEN_TYPE: kind, names.ESTIMATED: usage.estimated})
        units = _units(usage)
        for unit, amount in units.items():
            instruments.media_units.add(amount, {**dims, names.UNIT: unit, names.ESTIMATED: usage.estimated})
        if cost_usd:
            instruments.cost.add(cost_usd, dims)
        self._count(status, outcome)
        span = self._span
        if span.is_recording():
            attributes: dict[str, Any] = {
                names.INPUT_TOKENS: usage.prompt_tokens,
                names.OUTPUT_TOKENS: usage.completion_tokens,
                names.ESTIMATED: usage.estimated,
                names.STATUS: status,
                names.OUTCOME: outcome,
            }
            if self._unit in units:
                attributes[names.UNITS] = units[self._unit]
            if self._first_token_ms is not None:
                attributes[names.TIME_TO_FIRST_TOKEN] = round(self._first_token_ms, 3)
            span.set_attributes(attributes)
        self._end(error=outcome if status >= 400 else None)

    def _count(self, status: int, outcome: str) -> None:
        self._instruments.requests.add(
            1,
            {
                names.STATUS: status,
                names.OUTCOME: outcome,
                names.OPERATION: self._operation,
                names.CALLER: self._caller,
                names.DEPLOYMENT: self._deployment,
            },
        )

    def _end(self, error: str | None) -> None:
        if self._ended:
            return
        self._ended = True
        if error is not None:
            self._span.set_status(Status(StatusCode.ERROR, error))
        self._span.end()

    @contextmanager
    def _child(self, name: str, kind: SpanKind = SpanKind.INTERNAL) -> Iterator[None]:
        if not self._span.is_recording():
            yield
            return
        context = trace.set_span_in_context(self._span)
        span = self._instruments.tracer.start_span(name, context=context, kind=kind)
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                yield
        except BaseException as exc:
            # The exception's type only: messages of library exceptions may quote what they were given.
            error = exc.code if isinstance(exc, GatewayError) and exc.code else type(exc).__name__
            span.set_attribute(names.ERROR_TYPE, error)
            span.set_status(Status(StatusCode.ERROR, error))
            raise
        finally:
            span.end()


class Unobserved:
    """Telemetry off: every report is a no-op (no clock reads, no allocations beyond the call)."""

    def identified(self, caller_id: str, call: ModelCall) -> None:
        pass

    def quota_reserve(self) -> AbstractContextManager[None]:
        return _NO_STEP

    def upstream(self) -> AbstractContextManager[None]:
        return _NO_STEP

    def settle_step(self) -> AbstractContextManager[None]:
        return _NO_STEP

    def backend(self, label: str) -> None:
        pass

    def streamed(self, first_token_at: float | None, response_model: str | None) -> None:
        pass

    def answered(self, response_model: object) -> None:
        pass

    def refused(self, status: int, code: str | None, outcome: str = "refused") -> None:
        pass

    def settled(self, usage: Usage, status: int, outcome: str, cost_usd: float | None) -> None:
        pass


UNOBSERVED = Unobserved()

Observation = RequestObservation | Unobserved
