"""Relay an upstream server-sent-event stream to the caller, event by event, learning its usage on the way.

Bytes go out as they came in, in complete events (those that arrived in one read go out in one write, which saves
a system call per event on the caller's connection and waits for nothing), with one exception: when the gateway
itself asked for ``stream_options.include_usage`` (so it can account a stream exactly) and the caller did not, the
extra usage chunk is dropped so the caller sees the stream it asked for.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio

from shared.errors import error_body
from shared.protocol.calls import ModelCall
from shared.protocol.operations import OperationKind
from shared.protocol.sse import event_data, split_events
from shared.protocol.tokens import count_text, encoding_for_model, texts_in
from shared.protocol.usage import Usage, parse_usage
from shared.upstream.client import UpstreamBroken, UpstreamResponse

log = logging.getLogger(__name__)

_decode = json.JSONDecoder().raw_decode

_RESPONSES_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_RESPONSES_TEXT_EVENTS = frozenset(
    {
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.refusal.delta",
        "response.reasoning_summary_text.delta",
    }
)


class StreamRelay:
    def __init__(self, upstream: UpstreamResponse, call: ModelCall, *, drop_usage_chunk: bool) -> None:
        self._upstream = upstream
        self._call = call
        self._drop_usage_chunk = drop_usage_chunk
        # What the stream generated, delta by delta (a delta is usually one token), counted only if the upstream
        # never reports usage; kept as text so the normal path neither counts nor loads an encoder.
        self._generated: list[str] = []
        self._reported: Usage | None = None
        self.finished = False  # saw the end of the stream ([DONE] or the final Responses event)
        self.broken = False  # the upstream broke off mid-stream, or ended without its final event
        self.relayed = False  # events() ran to its end (as opposed to being abandoned by the caller)
        self.first_token_at: float | None = None  # time.perf_counter() when the first generated text went by
        self.response_model: str | None = None  # the model the upstream named in its chunks (telemetry)
        self.response_id: str | None = None  # a Responses stream's id, from its first event (ownership record)

    @property
    def usage(self) -> Usage:
        """Upstream-reported usage, or an estimate flagged as such when the stream did not report it."""
        if self._reported is not None:
            return self._reported
        encoding = encoding_for_model(self._call.deployment)
        output_tokens = sum(count_text(text, encoding) for text in self._generated)
        return Usage(self._call.prompt_tokens_estimate, output_tokens, estimated=True)

    @property
    def outcome(self) -> str:
        if self.finished:
            return "completed"
        return "upstream_incomplete" if self.broken else "caller_gone"

    async def aclose(self) -> None:
        # Shielded: when the caller hangs up, the ASGI server cancels this task, and an unshielded await here would
        # be cancelled too, leaving the upstream connection checked out of the pool.
        with anyio.CancelScope(shield=True):
            await self._upstream.aclose()

    async def events(self) -> AsyncIterator[bytes]:
        """Complete events, as many as each upstream read completed, in their order; never a partial event."""
        buffer = b""
        inspect = self._inspect
        try:
            async for chunk in self._upstream.chunks():
                if not buffer and chunk.find(b"\n\n") == len(chunk) - 2 and b"\r" not in chunk:
                    # The common read: exactly one whole event (LF endings). Sent on as it came, no copy.
                    if inspect(chunk):
                        yield chunk
                    continue
                events, buffer = split_events(buffer + chunk if buffer else chunk)
                # Every complete event this read brought: one write to the caller, not one per event.
                ready = [event for event in events if inspect(event)]
                if ready:
                    yield b"".join(ready)
            if buffer.strip() and inspect(buffer):
                yield buffer if buffer.endswith(b"\n\n") else buffer.rstrip(b"\r\n") + b"\n\n"
            if not self.finished:
                self.broken = True  # the upstream closed cleanly but never sent its final event
            self.relayed = True
        except UpstreamBroken as exc:
            self.broken = True
            log.warning("upstream stream broke off: %s", exc)
            # An in-band error: the status line is long gone, but OpenAI SDKs raise APIError on this event.
            yield _sse_error("The upstream model service broke off the stream; the response is incomplete.")
            self.relayed = True
        finally:
            await self.aclose()

    def _inspect(self, event: bytes) -> bool:
        """Learn from one event; return False to drop it from what the caller sees.

        Runs for every event of every stream, so it does the least each needs (D81): the data of a one-line event is
        a slice, ``usage`` is parsed only from events whose bytes name it, and the generated text of a chat delta is
        kept as the strings it holds (counted into tokens only if the upstream never reports usage).
        """
        if event.startswith(b"data:") and event.find(b"\n") == len(event) - 2 and b"\r" not in event:  # one line
            data = event[5:-2].lstrip(b" ")
        else:
            data = event_data(event)
        if not data:
            return True
        if data == b"[DONE]":
            self.finished = True
            return True
        try:
            # What json.loads does, less its encoding detection and trailing-whitespace check (an inspection, not a
            # validation: the caller gets the bytes as they came). Not UTF-8: UnicodeDecodeError, a ValueError.
            payload = _decode(data.decode().lstrip())[0]
        except ValueError:
            return True
        if not isinstance(payload, dict):
            return True
        if self._call.operation.kind is OperationKind.RESPONSES:
            self._inspect_responses_event(payload)
            return True
        if self.response_model is None:
            model = payload.get("model")
            if isinstance(model, str) and model:  # Azure's first chunk (content filter results) has model ""
                self.response_model = model
        choices = payload.get("choices")
        if choices and isinstance(choices, list):
            generated = self._generated
            before = len(generated)
            for choice in choices:
                if isinstance(choice, dict):
                    _collect_generated(choice, generated)
            if self.first_token_at is None and len(generated) > before:
                self.first_token_at = time.perf_counter()
        if b'"usage"' in data:
            usage = parse_usage(payload.get("usage"))
            if usage is not None:
                self._reported = usage
                if choices == [] and self._drop_usage_chunk:
                    return False
        return True

    def _inspect_responses_event(self, payload: dict[str, Any]) -> None:
        kind = payload.get("type")
        if kind in _RESPONSES_TEXT_EVENTS and isinstance(payload.get("delta"), str):
            self._generated.append(payload["delta"])
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
        elif kind == "response.created":
            response = payload.get("response")
            if isinstance(response, dict) and isinstance(response.get("id"), str):
                self.response_id = response["id"]
        elif kind in _RESPONSES_FINAL_EVENTS:
            self.finished = True
            response = payload.get("response")
            usage = parse_usage(response.get("usage")) if isinstance(response, dict) else None
            if isinstance(response, dict) and isinstance(response.get("model"), str):
                self.response_model = response["model"]
            if usage is not None:
                self._reported = usage


def _sse_error(message: str) -> bytes:
    body = error_body(message, code="upstream_incomplete", type="server_error")
    return f"data: {json.dumps(body)}\n\n".encode()


def _collect_generated(choice: dict[str, Any], into: list[str]) -> None:
    """Add what a chat or completions chunk generated (content, refusals, tool-call arguments) to ``into``: every
    non-empty string of its delta except the role, or its ``text`` (legacy completions)."""
    delta = choice.get("delta")
    if isinstance(delta, dict):
        for key, value in delta.items():
            if key == "role":
                continue
            if isinstance(value, str):
                if value:
                    into.append(value)
            elif value is not None:
                into.extend(text for text in texts_in(value) if text)
    else:
        into.extend(text for text in texts_in(choice.get("text")) if text)
