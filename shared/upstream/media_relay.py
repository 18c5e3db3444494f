"""Relay an image or audio answer as it arrives, unchanged: audio bytes (speech) or server-sent events (streamed
transcriptions, speech with ``stream_format: sse``, partial images), learning its usage on the way.

Bytes go out as they came in: the relay never holds more than one upstream read (plus, for events, the part of an
event not yet complete, which it only looks into). It has the interface of :class:`shared.upstream.relay.StreamRelay`
so the pipeline settles both the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator

import anyio

from shared.protocol.calls import ModelCall
from shared.protocol.media import MediaRequest
from shared.protocol.sse import event_data, split_events
from shared.protocol.usage import Usage
from shared.upstream.client import UpstreamBroken, UpstreamResponse
from shared.upstream.relay import _sse_error

log = logging.getLogger(__name__)

MAX_PENDING_EVENT_BYTES = 8 * 1024 * 1024  # a partial image's event is about 1-3 MB of base64


class MediaRelay:
    def __init__(self, upstream: UpstreamResponse, call: ModelCall, *, events: bool) -> None:
        assert call.media is not None
        self._upstream = upstream
        self._media: MediaRequest = call.media
        self._events = events  # server-sent events (else: audio bytes)
        self._reported: Usage | None = None
        self.finished = False
        self.broken = False
        self.relayed = False
        self.first_token_at: float | None = None  # when the first bytes went by (time to first audio)
        self.response_model: str | None = None

    @property
    def usage(self) -> Usage:
        """What the answer reported (or, for audio bytes priced per character, the input's characters); else what
        the call reserved, flagged estimated."""
        if self._reported is not None:
            return self._reported
        if not self._events and self.finished:
            binary = self._media.binary()
            if binary is not None:
                return binary
        return self._media.bound()

    @property
    def outcome(self) -> str:
        if self.finished:
            return "completed"
        return "upstream_incomplete" if self.broken else "caller_gone"

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._upstream.aclose()

    async def events(self) -> AsyncIterator[bytes]:
        buffer = b""
        try:
            async for chunk in self._upstream.chunks():
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                if self._events:
                    events, buffer = split_events(buffer + chunk if buffer else chunk)
                    for event in events:
                        self._inspect(event)
                    if len(buffer) > MAX_PENDING_EVENT_BYTES:  # not events after all: stop looking, keep relaying
                        buffer = b""
                yield chunk
            if buffer.strip():
                self._inspect(buffer)
            if not self._events:
                self.finished = True  # audio bytes end when the upstream closes them cleanly
            elif not self.finished:
                self.broken = True  # events that never reached their final one
            self.relayed = True
        except UpstreamBroken as exc:
            self.broken = True
            log.warning("upstream media answer broke off: %s", exc)
            if self._events:
                yield _sse_error("The upstream model service broke off the stream; the response is incomplete.")
            self.relayed = True
        finally:
            await self.aclose()

    def _inspect(self, event: bytes) -> None:
        data = event_data(event)
        if not data or (b'"usage"' not in data and b"completed" not in data and b".done" not in data):
            return
        try:
            payload = json.loads(data)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        usage = self._media.streamed(payload)
        if usage is None:
            return
        self.finished = True
        if self._reported is None or self._media.output_kind != "image":
            self._reported = usage
        else:  # one completed event per image (n > 1): their usage adds up
            self._reported = _added(self._reported, usage)


def _added(a: Usage, b: Usage) -> Usage:
    """Two images' completed events: outputs add up; the request's input is counted once (the larger report)."""
    outputs = ("completion_tokens", "image_output_tokens", "audio_output_tokens", "images")
    inputs = ("prompt_tokens", "cached_tokens", "image_input_tokens", "audio_input_tokens")
    return dataclasses.replace(
        a,
        **{name: getattr(a, name) + getattr(b, name) for name in outputs},
        **{name: max(getattr(a, name), getattr(b, name)) for name in inputs},
    )
