"""C streams held open at once through one target at a time (``scripts/bench.py concurrency``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from scripts.benchmarks.common import (
    BODY,
    DATED_PATH,
    DEPLOYMENT,
    ROOT,
    V1_PATH,
    Azurite,
    Bench,
    GatewayProcess,
    Target,
    cpu_seconds,
    exported,
    free_port,
    gateway_settings,
    machine,
    peak_rss_mb,
    quantile,
    start_peers,
    terminate,
)

# --- concurrency: C streams held open at once (``scripts/bench.py concurrency``) -----------------------------------
#
# Real model calls last seconds, so what sizes a worker process is how many streams it holds open at once, not
# requests per second against a zero-latency upstream. The upstream here streams like a model (first event after
# ``--first-ms``, then ``--events`` events ``--interval-ms`` apart) and is built not to bottleneck the measurement: a
# raw asyncio protocol in its own process, one timer per event, no framework. The client is as lean: a raw asyncio
# protocol per stream that counts ``data:`` lines and timestamps reads, one new connection per stream (the same for
# every target). Each target is measured alone, C at a time.


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _sse_chunk(obj: dict[str, Any] | str) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return _chunk(f"data: {data}\n\n".encode())


class ModelStream(asyncio.Protocol):
    """One connection to the model-like upstream: each request gets an SSE stream (HTTP/1.1, chunked, keep-alive)."""

    def __init__(self, knobs: argparse.Namespace) -> None:
        self.knobs = knobs
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.close_after = False
        base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": DEPLOYMENT}
        word = {"index": 0, "delta": {"content": " word"}, "finish_reason": None}
        self.event = _sse_chunk({**base, "choices": [word]})
        self.first = _sse_chunk(
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        )
        self.final = _sse_chunk({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        tokens = knobs.events
        self.usage = _sse_chunk(
            {
                **base,
                "choices": [],
                "usage": {"prompt_tokens": 12, "completion_tokens": tokens, "total_tokens": 12 + tokens},
            }
        )
        self.done = _sse_chunk("[DONE]") + b"0\r\n\r\n"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next_request()

    def _next_request(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        rest = self.buffer[end + 4 :]
        length_at = head.find(b"content-length:")
        if length_at >= 0:
            length = int(head[length_at + 15 :].split(b"\r\n", 1)[0])
            if len(rest) < length:
                return
            body, self.buffer = rest[:length], rest[length:]
        elif b"transfer-encoding: chunked" in head:
            last = rest.find(b"\r\n0\r\n\r\n")
            if last < 0 and not rest.startswith(b"0\r\n\r\n"):
                return
            cut = 5 if last < 0 else last + 7
            body, self.buffer = rest[:cut], rest[cut:]
        else:
            body, self.buffer = b"", rest
        self.busy = True
        self.close_after = b"connection: close" in head
        usage = b'"include_usage"' in body and b'"include_usage":false' not in body.replace(b" ", b"")
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n" + (b"connection: close\r\n" if self.close_after else b"") + b"\r\n"
        )
        loop = asyncio.get_running_loop()
        loop.call_later(self.knobs.first_ms / 1000, self._send, 0, usage)

    def _send(self, sent: int, usage: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if sent < self.knobs.events:
            transport.write(self.first if sent == 0 else self.event)
            asyncio.get_running_loop().call_later(self.knobs.interval_ms / 1000, self._send, sent + 1, usage)
            return
        transport.write(self.final + (self.usage if usage else b"") + self.done)
        self.busy = False
        if self.close_after:
            transport.close()
        elif self.buffer:
            self._next_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def serve_model_upstream(args: argparse.Namespace) -> None:
    """The model-like upstream (``scripts/bench.py upstream``), in the process the concurrency run starts."""

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: ModelStream(args), "127.0.0.1", args.port, backlog=8192)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def start_model_upstream(knobs: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, str(ROOT / "scripts" / "bench.py"), "upstream", "--port", str(port)]
    command += ["--first-ms", str(knobs.first_ms), "--events", str(knobs.events)]
    command += ["--interval-ms", str(knobs.interval_ms)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        terminate(proc)
        raise RuntimeError("the model-like upstream did not start")
    return proc, f"http://127.0.0.1:{port}"


@dataclass
class StreamResult:
    ttfb: float | None = None  # seconds from connecting to the first event
    max_gap: float = 0.0  # the largest gap between reads that carried events
    events: int = 0
    error: str | None = None  # None: complete ([DONE] seen)


class _Reader(asyncio.Protocol):
    """One stream, from the client side: the request written, reads timestamped, ``data:`` lines counted."""

    def __init__(self, request: bytes, started: float, finished: asyncio.Future[StreamResult]) -> None:
        self.request = request
        self.started = started
        self.finished = finished
        self.result = StreamResult()
        self.head = b""
        self.status: int | None = None
        self.last = 0.0
        self.done = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.status is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            try:
                self.status = int(self.head.split(b" ", 2)[1])
            except (IndexError, ValueError):
                self.status = 0
            data = self.head[end + 4 :]
            if self.status != 200:
                self.result.error = f"http_{self.status}"
                self._finish()
                return
        count = data.count(b"data:")
        if count:
            result = self.result
            if result.ttfb is None:
                result.ttfb = now - self.started
            else:
                result.max_gap = max(result.max_gap, now - self.last)
            self.last = now
            result.events += count
        if b"[DONE]" in data:
            self.done = True
        if self.done and data.endswith(b"0\r\n\r\n"):
            self._finish()

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.connection_lost(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.finished.done():
            return
        if not self.done and self.result.error is None:
            self.result.error = "incomplete" if self.status == 200 else ("reset" if exc else "closed_before_answer")
        self.finished.set_result(self.result)


@dataclass
class ConcurrencyRow:
    target: str
    concurrency: int
    streams: int = 0  # completed within the run
    errors: dict[str, int] = field(default_factory=dict)
    ttfb_p50_ms: float = float("nan")
    ttfb_p99_ms: float = float("nan")
    gap_p99_ms: float = float("nan")
    cpu_us_per_event: float = float("nan")
    cores: float = float("nan")
    rss_idle_mb: float = float("nan")
    rss_open_mb: float = float("nan")
    added_ttfb_p50_ms: float = float("nan")
    added_ttfb_p99_ms: float = float("nan")

    @property
    def rss_per_100_streams_mb(self) -> float:
        return (self.rss_open_mb - self.rss_idle_mb) / self.concurrency * 100


def _request_bytes(target: Target, payload: bytes) -> bytes:
    url = httpx.URL(target.base_url)
    path = target.apis["v1" if "v1" in target.apis else "dated"]
    headers = {**target.headers, "content-type": "application/json", "host": f"{url.host}:{url.port}"}
    lines = [f"POST {path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers.items())]
    lines += [f"content-length: {len(payload)}", "connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def hold_streams(
    target: Target, concurrency: int, seconds: float, per_stream: float, stagger: float = 0.0
) -> ConcurrencyRow:
    """``concurrency`` workers, each opening streams back to back for ``seconds``; returns what they saw.

    ``stagger``: the workers' first streams start spread evenly over this many seconds (one answer's duration), so
    streams arrive at a steady rate as from many independent callers, not in waves of ``concurrency`` at once.
    """
    loop = asyncio.get_running_loop()
    url = httpx.URL(target.base_url)
    payload = json.dumps({**BODY, "model": target.model, "stream": True}).encode()
    request = _request_bytes(target, payload)
    results: list[StreamResult] = []
    row = ConcurrencyRow(target.name, concurrency, rss_idle_mb=peak_rss_mb(target.pid, "VmRSS"))

    async def one() -> StreamResult:
        finished: asyncio.Future[StreamResult] = loop.create_future()
        started = time.perf_counter()
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: _Reader(request, started, finished), url.host, url.port), per_stream
            )
        except (OSError, TimeoutError) as exc:
            return StreamResult(error="timeout" if isinstance(exc, TimeoutError) else "connect_failed")
        try:
            return await asyncio.wait_for(asyncio.shield(finished), per_stream)
        except TimeoutError:
            transport.close()
            return StreamResult(error="timeout")

    end_at = time.perf_counter() + seconds

    async def worker(delay: float) -> None:
        await asyncio.sleep(delay)
        while time.perf_counter() < end_at:
            results.append(await one())

    async def sample_rss() -> None:
        await asyncio.sleep(min(seconds * 0.6, stagger + 1.5))  # every worker's first stream open
        row.rss_open_mb = peak_rss_mb(target.pid, "VmRSS")

    cpu_before = cpu_seconds(target.pid)
    started = time.perf_counter()
    await asyncio.gather(sample_rss(), *(worker(stagger * i / concurrency) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(target.pid) - cpu_before
    complete = [r for r in results if r.error is None]
    for result in results:
        if result.error is not None:
            row.errors[result.error] = row.errors.get(result.error, 0) + 1
    row.streams = len(complete)
    events = sum(r.events for r in results)
    if complete:
        ttfbs = sorted(r.ttfb or 0.0 for r in complete)
        gaps = sorted(r.max_gap for r in complete)
        row.ttfb_p50_ms = statistics.median(ttfbs) * 1000
        row.ttfb_p99_ms = quantile(ttfbs, 0.99) * 1000
        row.gap_p99_ms = quantile(gaps, 0.99) * 1000
    if events:
        row.cpu_us_per_event = cpu / events * 1e6
    row.cores = cpu / elapsed
    return row


def concurrency_targets(bench: Bench, args: argparse.Namespace, upstream_url: str, upstream_pid: int) -> list[Target]:
    apis = {"dated": DATED_PATH, "v1": V1_PATH}
    targets = [Target("direct", "direct", upstream_url, upstream_pid, {"authorization": "Bearer bench"}, apis)]
    azurite = Azurite().start()
    bench.stops.append(azurite.stop)
    settings = {**gateway_settings(upstream_url, azurite.connection_string), "GATEWAY_LOCAL_DEV_AUTH": "true"}
    settings |= dict(pair.split("=", 1) for pair in args.gateway_env)
    gateway_apis = {"v1": "/api" + V1_PATH}
    gateways = [("gateway", ROOT, {})]
    if args.unbounded:  # the same code without admission control: what one process does past its bound
        gateways.append(("gateway, no admission bound", ROOT, {"GATEWAY_MAX_INFLIGHT_CALLS": "1000000"}))
    gateways += [(f"gateway @{ref}", exported(bench, ref), {}) for ref in args.compare]
    for name, root, extra in gateways:
        process = GatewayProcess(settings | extra, root=root).start()
        bench.stops.append(process.stop)
        assert process.proc is not None
        targets.append(Target(name, "gateway", process.base_url, process.proc.pid, {"api-key": "bench"}, gateway_apis))
    if args.peers:
        skipped: dict[str, str] = {}
        targets += start_peers(bench, upstream_url, skipped)
        for name, reason in skipped.items():
            print(f"skipped {name}: {reason}", flush=True)
    return targets


def run_concurrency(args: argparse.Namespace) -> None:
    levels = [int(c) for c in args.levels.split(",")]
    rows: list[ConcurrencyRow] = []
    with Bench() as bench:
        upstream, upstream_url = start_model_upstream(args)
        bench.stops.append(lambda: terminate(upstream))
        targets = concurrency_targets(bench, args, upstream_url, upstream.pid)
        if args.only:
            words = args.only.split(",")
            targets = [t for t in targets if t.kind == "direct" or any(w in t.name for w in words)]
        print(f"targets: {', '.join(t.name for t in targets)}", flush=True)
        for target in targets:
            asyncio.run(hold_streams(target, 4, 1.0, args.timeout))  # warm-up: clients, caches, first ledger rows
            for level in levels:
                if target.kind == "peer" and "LiteLLM" in target.name and level > args.litellm_max:
                    continue
                time.sleep(args.rest)  # the previous run's settlements and closes are done
                stagger = 0.0 if args.burst else (args.first_ms + args.events * args.interval_ms) / 1000
                row = asyncio.run(hold_streams(target, level, args.seconds, args.timeout, stagger))
                rows.append(row)
                print(_concurrency_line(row), flush=True)
    direct = {row.concurrency: row for row in rows if row.target == "direct"}
    for row in rows:
        base = direct.get(row.concurrency)
        if base is not None:
            row.added_ttfb_p50_ms = row.ttfb_p50_ms - base.ttfb_p50_ms
            row.added_ttfb_p99_ms = row.ttfb_p99_ms - base.ttfb_p99_ms
    data = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_average": os.getloadavg(),
        "conditions": {
            "upstream": f"first event after {args.first_ms} ms, then {args.events} events {args.interval_ms} ms apart",
            "seconds_per_level": args.seconds,
            "arrivals": "all C at once, then back to back"
            if args.burst
            else "first streams spread over one answer's "
            "duration, then each worker back to back (a steady arrival rate)",
            "client": "raw asyncio protocol, one connection per stream, in its own process",
            "gateway": "local dev auth, quotas on (5 limits, none binding), ledger on (journal + Table Storage on "
            "Azurite), telemetry on (metrics, 1 in 10 calls traced)"
            + (f", {args.gateway_env}" if args.gateway_env else ""),
        },
        "rows": [{**asdict(row), "rss_per_100_streams_mb": row.rss_per_100_streams_mb} for row in rows],
        "sustained": sustained(rows, args.p99_goal_ms),
    }
    print("\n" + concurrency_markdown(data))
    print(f"\nhighest C measured with added TTFB p99 <= {args.p99_goal_ms:.0f} ms and no errors, per target:")
    for name, best in data["sustained"].items():
        print(f"  {name:32} " + (f"C={best['concurrency']:,}, {best['streams']:,} streams" if best else "none"))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")


def sustained(rows: list[ConcurrencyRow], p99_goal_ms: float) -> dict[str, dict[str, int] | None]:
    """Per target, the highest level measured whose added TTFB p99 stays within the goal with no errors (what the
    target sustains at that latency), and the streams it served there; None when no level did."""
    best: dict[str, dict[str, int] | None] = {}
    for row in rows:
        if row.target == "direct":
            continue
        best.setdefault(row.target, None)
        current = best[row.target]
        if (
            row.added_ttfb_p99_ms <= p99_goal_ms
            and not row.errors
            and (current is None or row.concurrency > current["concurrency"])
        ):
            best[row.target] = {"concurrency": row.concurrency, "streams": row.streams}
    return best


def _concurrency_line(row: ConcurrencyRow) -> str:
    errors = ", ".join(f"{kind} {count}" for kind, count in sorted(row.errors.items())) or "none"
    return (
        f"{row.target:24} C={row.concurrency:5} streams {row.streams:6}  ttfb p50/p99 {row.ttfb_p50_ms:7.0f}/"
        f"{row.ttfb_p99_ms:7.0f} ms  gap p99 {row.gap_p99_ms:6.0f} ms  {row.cpu_us_per_event:6.1f} µs/event  "
        f"{row.cores:4.2f} cores  RSS {row.rss_open_mb:6.1f} MB  errors: {errors}"
    )


def concurrency_markdown(data: dict[str, Any]) -> str:
    lines = [
        "| target | C | streams served | added TTFB p50 / p99 (ms) | TTFB p50 / p99 (ms) | gap p99 (ms) "
        "| CPU µs / event | cores | RSS MB (open) | RSS MB / 100 streams | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        errors = ", ".join(f"{kind} {count}" for kind, count in sorted(row["errors"].items())) or "none"
        lines.append(
            f"| {row['target']} | {row['concurrency']:,} | {row['streams']:,} "
            f"| {row['added_ttfb_p50_ms']:,.0f} / {row['added_ttfb_p99_ms']:,.0f} "
            f"| {row['ttfb_p50_ms']:,.0f} / {row['ttfb_p99_ms']:,.0f} | {row['gap_p99_ms']:,.0f} "
            f"| {row['cpu_us_per_event']:.1f} | {row['cores']:.2f} | {row['rss_open_mb']:.0f} "
            f"| {row['rss_per_100_streams_mb']:.1f} | {errors} |"
        )
    return "\n".join(lines)


def _upstream_knobs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--first-ms", type=int, default=300, help="the upstream's first event after this")
    parser.add_argument("--events", type=int, default=60, help="events per answer")
    parser.add_argument("--interval-ms", type=int, default=50, help="between events")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.py concurrency", description=__doc__)
    _upstream_knobs(parser)
    parser.add_argument("--levels", default="100,400,1000,2000", help="C: streams open at once, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="per target and level")
    parser.add_argument("--timeout", type=float, default=60.0, help="per stream")
    parser.add_argument("--rest", type=float, default=3.0, help="seconds between runs")
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="skip LiteLLM and Portkey")
    parser.add_argument("--litellm-max", type=int, default=1000, help="highest C LiteLLM is run at")
    parser.add_argument("--only", help="comma-separated words: keep direct and the targets whose name has one")
    parser.add_argument("--compare", action="append", default=[], help="also run the gateway at this git ref")
    parser.add_argument("--unbounded", action="store_true", help="also the gateway without admission bound")
    parser.add_argument("--gateway-env", action="append", default=[], help="KEY=VALUE for the gateway")
    parser.add_argument("--burst", action="store_true", help="start all C streams at once (default: spread)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--p99-goal-ms", type=float, default=250.0, help="added TTFB p99 a sustained level keeps")
    run_concurrency(parser.parse_args(argv))


def upstream_main(argv: list[str]) -> None:
    """The model-like upstream, in the process a concurrency run starts (``bench.py upstream``)."""
    parser = argparse.ArgumentParser(prog="bench.py upstream", description=upstream_main.__doc__)
    _upstream_knobs(parser)
    parser.add_argument("--port", type=int, required=True)
    serve_model_upstream(parser.parse_args(argv))
