"""CPU per relayed event of the stream relay, in process (``scripts/bench.py relay``)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from scripts.benchmarks.common import (
    API_VERSION,
    DEPLOYMENT,
)
from scripts.benchmarks.concurrency import ModelStream

# --- relay: CPU per relayed event, in process (``scripts/bench.py relay``) -----------------------------------------


class _ReplayedContent:
    """An upstream body replayed from memory, one event per read (as a model streams them)."""

    def __init__(self, events: list[bytes]) -> None:
        self.events = events
        self.done = False

    async def iter_any(self) -> Any:
        for event in self.events:
            yield event
        self.done = True

    def at_eof(self) -> bool:
        return self.done


class _ReplayedResponse:
    def __init__(self, events: list[bytes]) -> None:
        from multidict import CIMultiDict, CIMultiDictProxy

        self.status = 200
        self.headers = CIMultiDictProxy(CIMultiDict({"content-type": "text/event-stream"}))
        self.content = _ReplayedContent(events)

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


def run_relay(args: argparse.Namespace) -> None:
    """CPU per event of :class:`shared.upstream.relay.StreamRelay` relaying a model-like chat stream, with the
    gateway's injected usage chunk dropped and usage learned: the relay alone, without sockets or ASGI."""
    from shared.protocol.calls import ModelCall
    from shared.protocol.operations import CHAT
    from shared.upstream.client import UpstreamResponse
    from shared.upstream.relay import StreamRelay

    knobs = argparse.Namespace(events=args.events)
    upstream = ModelStream(knobs)
    unframe = lambda chunk: chunk.split(b"\r\n", 1)[1][:-2]  # noqa: E731 (the SSE bytes inside a chunk)
    events = [unframe(upstream.first)] + [unframe(upstream.event)] * (args.events - 1)
    events += [unframe(upstream.final), unframe(upstream.usage), b"data: [DONE]\n\n"]
    call = ModelCall(CHAT, DEPLOYMENT, API_VERSION, {}, True, False, 12, None)

    async def relay_all() -> float:
        started = time.process_time()
        for _ in range(args.streams):
            relay = StreamRelay(UpstreamResponse(_ReplayedResponse(events)), call, drop_usage_chunk=True)  # type: ignore[arg-type]
            async for _chunk in relay.events():
                pass
            assert relay.finished and not relay.usage.estimated
        return time.process_time() - started

    per_event = []
    for _ in range(args.repeat):
        cpu = asyncio.run(relay_all())
        per_event.append(cpu / (args.streams * len(events)) * 1e6)
    print(
        f"relay: {args.streams} streams x {len(events)} events, best of {args.repeat}: "
        f"{min(per_event):.2f} µs CPU per event (median {statistics.median(per_event):.2f})"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.py relay", description=__doc__)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--events", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=5)
    run_relay(parser.parse_args(argv))
