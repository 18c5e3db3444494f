"""Gateway performance benchmark: the same chat calls straight to the simulator (the baseline), through the gateway
and through peer gateways, measured side by side in one run on this machine.

Everything runs on loopback: a private Azurite, the simulator (zero latency), an OpenID/JWKS issuer with real RSA
keys, and the gateway as real processes (``python -m shared.local.devhost``, the handlers Azure runs) configured as
in production: authentication on (local dev auth in one process; Entra tokens validated in-process and gateway API
keys in the other), every quota limit on (none binding), the ledger on (journal + Table Storage), telemetry on with
one call in ten traced (the Azure default). Peer gateways (LiteLLM proxy, Portkey) run when
``scripts/bench_peers.py`` can install them, else they are reported as skipped.

The matrix: targets x {dated, v1} x {JSON, streaming} x {1, 16 concurrent}, repeated in ``--rounds`` interleaved
rounds (each round in a rotated order, so the machine's drift falls on every target alike). Reported per cell:
p50/p95/p99 latency, time to first body byte, requests/s, the serving process's CPU per 1,000 requests, and each
process's peak RSS; ratios to direct are taken within a round, then the median over rounds. Cold start: import
time of ``function_app`` and the first call after a gateway process starts.

    .venv/bin/python scripts/bench.py                 # the whole run; writes docs/performance.{json,md}
    .venv/bin/python scripts/bench.py --quick         # one round, fewer requests, no peers, writes nothing
    .venv/bin/python scripts/bench.py upload          # a 25 MB transcription upload: gateway vs direct
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from tests.azurite import Azurite, free_port, terminate  # noqa: E402
from tests.gateway_process import GatewayProcess  # noqa: E402
from tests.identity_provider import CLIENT_ID, TENANT, LocalIdentityProvider, SigningKey  # noqa: E402

DEPLOYMENT = "gpt-4o-mini"
API_VERSION = "2024-10-21"
DATED_PATH = f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={API_VERSION}"
V1_PATH = "/openai/v1/chat/completions"
BODY = {
    "messages": [{"role": "user", "content": "Benchmark the gateway please."}],
    "max_tokens": 16,
}
# Every limit on, none binding: what quotas cost when callers are within their limits (the common case).
QUOTAS_ON = {
    "GATEWAY_DEFAULT_REQUESTS_PER_MINUTE": "100000000",
    "GATEWAY_DEFAULT_TOKENS_PER_MINUTE": "100000000000",
    "GATEWAY_DEFAULT_TOKENS_PER_DAY": "100000000000",
    "GATEWAY_DEFAULT_TOKENS_PER_MONTH": "100000000000",
    "GATEWAY_DEFAULT_COST_USD_PER_MONTH": "1000000",
}
# Telemetry as deployed (bicep: OTEL_TRACES_SAMPLER_ARG 0.1): metrics always, one call in ten traced. Locally the
# spans go to the console exporter (into the process log), standing in for Azure Monitor's exporter.
TELEMETRY_ON = {"GATEWAY_TELEMETRY": "console", "GATEWAY_TELEMETRY_TRACE_SAMPLE_RATIO": "0.1"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MARK_START, MARK_END = "<!-- bench:start -->", "<!-- bench:end -->"


@dataclass
class Target:
    name: str
    kind: str  # "direct", "gateway" or "peer"
    base_url: str
    pid: int
    headers: dict[str, str]
    apis: dict[str, str]  # api style ("dated", "v1") -> path and query
    model: str = DEPLOYMENT


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)
    first_bytes: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class Cell:
    target: str
    api: str
    mode: str  # "json" or "stream"
    concurrency: int


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc (the serving process only, not its clients)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    """Peak resident memory of a process (``VmRSS``: what it holds now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(target: Target, api: str, stream: bool, total: int, concurrency: int) -> Sample:
    """``total`` calls from ``concurrency`` workers on keep-alive connections (aiohttp: a load generator lighter
    than the SDK, so the client's own CPU does not hide the servers' differences)."""
    url = target.base_url + target.apis[api]
    payload = json.dumps({**BODY, "model": target.model, "stream": stream}).encode()
    headers = {**target.headers, "content-type": "application/json"}
    sample = Sample()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def call(record: bool) -> None:
            started = time.perf_counter()
            async with session.post(url, data=payload, headers=headers) as response:
                if response.status != 200:
                    detail = (await response.read())[:300]
                    raise RuntimeError(f"{target.name} {api}: HTTP {response.status}: {detail!r}")
                first = None
                async for _chunk in response.content.iter_any():
                    if first is None:
                        first = time.perf_counter() - started
            if record:
                sample.first_bytes.append(first or 0.0)
                sample.latencies.append(time.perf_counter() - started)

        for _ in range(min(concurrency * 2, total)):  # warm-up: connections, caches, lazily built clients
            await call(record=False)
        work = iter(range(total))

        async def worker() -> None:
            for _ in work:
                await call(record=True)

        cpu_before = cpu_seconds(target.pid)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        sample.elapsed = time.perf_counter() - started
        sample.cpu_seconds = cpu_seconds(target.pid) - cpu_before
    return sample


def summarize(sample: Sample) -> dict[str, float]:
    latencies, first = sorted(sample.latencies), sorted(sample.first_bytes)
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": quantile(latencies, 0.95) * 1000,
        "p99_ms": quantile(latencies, 0.99) * 1000,
        "ttfb_p50_ms": statistics.median(first) * 1000,
        "rps": len(latencies) / sample.elapsed,
        "cpu_ms_per_1000": sample.cpu_seconds * 1000 / len(latencies) * 1000,
    }


# --- the processes -------------------------------------------------------------------------------------------------


def start_simulator() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.local.simulator", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/_simulator/health", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    terminate(proc)
    raise RuntimeError("simulator did not start")


@dataclass
class Bench:
    """Owns every process of a run and stops them all, whatever happens."""

    stops: list[Callable[[], None]] = field(default_factory=list)

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *_: object) -> None:
        for stop in reversed(self.stops):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 (stopping the rest matters more)
                print(f"warning: stopping failed: {exc}", file=sys.stderr)


def gateway_settings(sim_url: str, storage: str) -> dict[str, str]:
    return {
        "AZURE_OPENAI_ENDPOINT": sim_url,
        "GATEWAY_STORAGE_CONNECTION_STRING": storage,
        "GATEWAY_PRICES": '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}',
        **QUOTAS_ON,
        **TELEMETRY_ON,
        # As in Azure, where the Functions worker's Azure Monitor logging keeps the per-call line local (D52).
        "GATEWAY_LOG_LEVEL": "WARNING",
    }


def start_targets(bench: Bench, args: argparse.Namespace) -> tuple[list[Target], dict[str, str], dict[str, str]]:
    azurite = Azurite().start()
    bench.stops.append(azurite.stop)
    sim_proc, sim_url = start_simulator()
    bench.stops.append(lambda: terminate(sim_proc))
    issuer = LocalIdentityProvider({"k1": SigningKey("k1")}).reset().start()
    bench.stops.append(issuer.stop)
    common = gateway_settings(sim_url, azurite.connection_string)
    dev = GatewayProcess({**common, "GATEWAY_LOCAL_DEV_AUTH": "true"}).start()
    bench.stops.append(dev.stop)
    secured = GatewayProcess(
        {
            **common,
            "GATEWAY_AUTH_TENANT_IDS": TENANT,
            "GATEWAY_AUTH_CLIENT_ID": CLIENT_ID,
            "GATEWAY_AUTH_AUTHORITY": issuer.authority,
        }
    ).start()
    bench.stops.append(secured.stop)
    admin = issuer.token(oid="aaaaaaaa-0000-4000-8000-0000000000ad", roles=["Gateway.Admin", "Gateway.Use"])
    created = httpx.post(
        f"{secured.api}/manage/keys", json={"name": "bench"}, headers={"authorization": f"Bearer {admin}"}
    )
    created.raise_for_status()
    apis = {"dated": DATED_PATH, "v1": V1_PATH}
    gateway_apis = {name: "/api" + path for name, path in apis.items()}
    assert dev.proc is not None and secured.proc is not None
    targets = [
        Target("direct", "direct", sim_url, sim_proc.pid, {"authorization": "Bearer bench"}, apis),
        Target("gateway, dev auth", "gateway", dev.base_url, dev.proc.pid, {"authorization": "Bearer b"}, gateway_apis),
        Target(
            "gateway, API key",
            "gateway",
            secured.base_url,
            secured.proc.pid,
            {"api-key": created.json()["key"]},
            gateway_apis,
        ),
        Target(
            "gateway, Entra token",
            "gateway",
            secured.base_url,
            secured.proc.pid,
            {"authorization": f"Bearer {issuer.token()}"},
            gateway_apis,
        ),
    ]
    skipped: dict[str, str] = {}
    if args.peers:
        targets += start_peers(bench, sim_url, skipped)
    return targets, skipped, common


def start_peers(bench: Bench, sim_url: str, skipped: dict[str, str]) -> list[Target]:
    """LiteLLM proxy and Portkey against the same simulator (scripts/bench_peers.py installs them on first use into
    .bench/, before anything is timed; nothing of theirs is committed). A peer that cannot run is reported skipped."""
    import bench_peers

    peers = []
    for name, peer in (("LiteLLM proxy", "litellm"), ("Portkey gateway", "portkey")):
        reason = bench_peers.install(peer)
        if reason is not None:
            skipped[name] = reason
            continue
        try:
            process = bench_peers.start(peer, sim_url)
        except bench_peers.PeerUnavailable as exc:
            skipped[name] = str(exc)
            continue
        bench.stops.append(process.stop)
        peers.append(
            Target(
                name,
                "peer",
                process.base_url,
                process.pid,
                dict(process.headers),
                {"v1": process.chat_path},
                process.body_model,
            )
        )
    return peers


# --- the run -------------------------------------------------------------------------------------------------------


def cells(targets: list[Target], concurrencies: tuple[int, ...]) -> list[tuple[Target, Cell]]:
    return [
        (target, Cell(target.name, api, mode, concurrency))
        for target in targets
        for api in target.apis
        for mode in ("json", "stream")
        for concurrency in concurrencies
    ]


def rotated(items: list[Any], by: int) -> Iterator[Any]:
    by %= max(1, len(items))
    return itertools.chain(items[by:], items[:by])


def run_rounds(targets: list[Target], args: argparse.Namespace) -> dict[Cell, list[dict[str, float]]]:
    matrix = cells(targets, (1, args.concurrency))
    results: dict[Cell, list[dict[str, float]]] = {cell: [] for _, cell in matrix}
    for round_ in range(args.rounds):
        started = time.perf_counter()
        for target, cell in rotated(matrix, round_ * 7):
            sample = asyncio.run(drive(target, cell.api, cell.mode == "stream", args.requests, cell.concurrency))
            results[cell].append(summarize(sample))
        print(
            f"round {round_ + 1}/{args.rounds}: {len(matrix)} cells in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    return results


def baseline_of(cell: Cell) -> Cell:
    return Cell("direct", cell.api, cell.mode, cell.concurrency)


def report(results: dict[Cell, list[dict[str, float]]]) -> list[dict[str, Any]]:
    """Medians over rounds, and ratios to direct taken round by round (then the median)."""
    rows = []
    for cell, samples in results.items():
        base = results[baseline_of(cell)]
        row: dict[str, Any] = asdict(cell)
        for metric in samples[0]:
            row[metric] = statistics.median(s[metric] for s in samples)
        row["overhead_p50_ms"] = statistics.median(
            s["p50_ms"] - b["p50_ms"] for s, b in zip(samples, base, strict=True)
        )
        for metric in ("p50_ms", "p99_ms", "ttfb_p50_ms", "rps"):
            row[f"{metric}_x_direct"] = statistics.median(
                s[metric] / b[metric] for s, b in zip(samples, base, strict=True)
            )
        rows.append(row)
    return rows


def headline(rows: list[dict[str, Any]], rss: dict[str, tuple[float, float]]) -> list[tuple[str, str, str]]:
    """The issue's goals, each as (goal, measured, verdict)."""

    def find(target: str, mode: str, concurrency: int, api: str = "v1") -> dict[str, Any] | None:
        for row in rows:
            if (row["target"], row["api"], row["mode"], row["concurrency"]) == (target, api, mode, concurrency):
                return row
        return None

    lines = []
    ours = [r for r in rows if r["target"].startswith("gateway")]
    concurrency = max(r["concurrency"] for r in rows)
    portkey_json1 = find("Portkey gateway", "json", 1)
    portkey_jsonc = find("Portkey gateway", "json", concurrency)
    for row in (r for r in ours if r["api"] == "v1" and r["mode"] == "json" and r["concurrency"] == 1):
        versus = f", Portkey {portkey_json1['overhead_p50_ms']:.2f} ms" if portkey_json1 else ""
        ratio = row["overhead_p50_ms"] / portkey_json1["overhead_p50_ms"] if portkey_json1 else None
        lines.append(
            (
                f"overhead p50, JSON, c=1, {row['target']}",
                f"{row['overhead_p50_ms']:.2f} ms{versus}",
                f"{ratio:.2f}x Portkey (goal < 1, stretch 0.7)" if ratio else "no Portkey in this run",
            )
        )
    for row in (r for r in ours if r["api"] == "v1" and r["mode"] == "json" and r["concurrency"] == concurrency):
        ratio = row["rps"] / portkey_jsonc["rps"] if portkey_jsonc else None
        versus = f", Portkey {portkey_jsonc['rps']:.0f}" if portkey_jsonc else ""
        lines.append(
            (
                f"req/s, JSON, c={concurrency}, {row['target']}",
                f"{row['rps']:.0f}{versus}",
                f"{ratio:.2f}x Portkey (goal > 1, stretch 1.3)" if ratio else "no Portkey in this run",
            )
        )
    for row in (r for r in ours if r["mode"] == "stream" and r["concurrency"] == concurrency):
        lines.append(
            (
                f"stream TTFB p50, c={concurrency}, {row['api']}, {row['target']}",
                f"{row['ttfb_p50_ms']:.2f} ms",
                f"{row['ttfb_p50_ms_x_direct']:.2f}x direct (goal <= 1.5)",
            )
        )
    for name, (peak, now) in rss.items():
        goal = "goal <= 150 MB per worker process" if name.startswith("gateway") else ""
        lines.append((f"peak RSS, {name}", f"{peak:.0f} MB (holding {now:.0f} MB at the end)", goal))
    return lines


# --- cold start ----------------------------------------------------------------------------------------------------


def cold_start(settings: dict[str, str], runs: int) -> dict[str, float]:
    """Import time of function_app (what the Functions worker does at start) and, for a fresh gateway process, the
    time until it answers /api/health and the first model call after that (which builds the services)."""
    dev = {**settings, "GATEWAY_LOCAL_DEV_AUTH": "true"}
    env = {**dev, "PATH": os.environ["PATH"]}
    imports, ready, first_calls = [], [], []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import function_app"], cwd=ROOT, env=env, check=True)
        imports.append(time.perf_counter() - started)
    for _ in range(runs):
        gateway = GatewayProcess(dev)
        started = time.perf_counter()
        gateway.start(poll_seconds=0.005)
        ready.append(time.perf_counter() - started)
        call_started = time.perf_counter()
        response = httpx.post(
            f"{gateway.api}{V1_PATH}",
            json={**BODY, "model": DEPLOYMENT},
            headers={"authorization": "Bearer b"},
            timeout=30,
        )
        first_calls.append(time.perf_counter() - call_started)
        gateway.stop()
        response.raise_for_status()
    return {
        "import_function_app_ms": statistics.median(imports) * 1000,
        "process_start_to_healthy_ms": statistics.median(ready) * 1000,
        "first_model_call_ms": statistics.median(first_calls) * 1000,
    }


# --- output --------------------------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def markdown(data: dict[str, Any]) -> str:
    c = data["conditions"]
    out = [
        MARK_START,
        f"Run of {data['date']} on {data['machine']['cpu']}, {data['machine']['cores']} cores, Python "
        f"{data['machine']['python']}; every process (load generator, simulator, Azurite, gateways, peers) shares "
        f"those cores. {c['requests']} calls per cell, {c['rounds']} interleaved rounds, medians over rounds; ratios "
        f"to direct are taken within each round. Gateways: {c['gateway']}.",
        "",
        "| goal | measured | verdict |",
        "|---|---|---|",
        *(f"| {goal} | {measured} | {verdict} |" for goal, measured, verdict in data["headline"]),
        "",
        "| target | api | mode | c | p50 ms | p95 ms | p99 ms | TTFB p50 ms | req/s | CPU ms / 1,000 req "
        "| overhead p50 ms | p50 x direct | req/s x direct |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        direct = r["target"] == "direct"
        ratios = (
            ("", "", "")
            if direct
            else (f"{r['overhead_p50_ms']:.2f}", f"{r['p50_ms_x_direct']:.2f}", f"{r['rps_x_direct']:.2f}")
        )
        out.append(
            f"| {r['target']} | {r['api']} | {r['mode']} | {r['concurrency']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['ttfb_p50_ms']:.2f} | {r['rps']:.0f} | {r['cpu_ms_per_1000']:.0f} "
            f"| {ratios[0]} | {ratios[1]} | {ratios[2]} |"
        )
    if data["skipped"]:
        out += ["", *(f"Skipped: {name}: {reason}" for name, reason in data["skipped"].items())]
    if data.get("cold_start"):
        cs = data["cold_start"]
        out += [
            "",
            f"Cold start (median of {c['cold_start_runs']}): `import function_app` "
            f"{cs['import_function_app_ms']:.0f} ms; "
            f"gateway process start to healthy {cs['process_start_to_healthy_ms']:.0f} ms; first model call after that "
            f"{cs['first_model_call_ms']:.0f} ms.",
        ]
    out.append(MARK_END)
    return "\n".join(out)


def write_outputs(data: dict[str, Any], json_path: Path, markdown_path: Path) -> None:
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    table = markdown(data)
    text = markdown_path.read_text() if markdown_path.exists() else f"# Performance\n\n{MARK_START}\n{MARK_END}\n"
    if MARK_START not in text or MARK_END not in text:
        text += f"\n{MARK_START}\n{MARK_END}\n"
    before, rest = text.split(MARK_START, 1)
    after = rest.split(MARK_END, 1)[1]
    markdown_path.write_text(before + table + after)
    print(f"\nwrote {json_path} and the table in {markdown_path}")


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


class _ModelStream(asyncio.Protocol):
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
        server = await loop.create_server(lambda: _ModelStream(args), "127.0.0.1", args.port, backlog=8192)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def start_model_upstream(knobs: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, str(Path(__file__)), "upstream", "--port", str(port)]
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


def exported(bench: Bench, ref: str) -> Path:
    """The gateway's code at ``ref``, exported from git into a temporary directory (to measure before and after)."""
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="gateway-at-"))
    bench.stops.append(lambda: shutil.rmtree(directory, ignore_errors=True))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


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
    }
    print("\n" + concurrency_markdown(data))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")


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
    upstream = _ModelStream(knobs)
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


# --- uploads: a 25 MB transcription relayed through the gateway, against direct ----------------------------------

UPLOAD_DEPLOYMENT = "whisper"
UPLOAD_PATH = f"/openai/deployments/{UPLOAD_DEPLOYMENT}/audio/transcriptions?api-version=2025-04-01-preview"


def upload_body(size: int) -> tuple[bytes, str]:
    """A multipart transcription request whose WAV file (16-bit mono silence at 24 kHz) makes the whole body
    ``size`` bytes: what the SDK sends for ``audio.transcriptions.create(file=...)``."""
    boundary = "benchupload0123456789"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="response_format"\r\n\r\njson\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="long.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    data_bytes = size - len(head) - len(tail) - 44
    data_bytes -= data_bytes % 2
    fmt = b"fmt " + (16).to_bytes(4, "little") + bytes.fromhex("01000100c05d000080bb000002001000")
    wav = b"RIFF" + (36 + data_bytes).to_bytes(4, "little") + b"WAVE" + fmt
    wav += b"data" + data_bytes.to_bytes(4, "little") + bytes(data_bytes)
    return head + wav + tail, f"multipart/form-data; boundary={boundary}"


async def _upload_once(url: str, headers: dict[str, str], body: bytes) -> float:
    async with httpx.AsyncClient(timeout=300) as client:
        started = time.perf_counter()
        response = await client.post(url, content=body, headers=headers)
        elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:200]}")
    return elapsed * 1000


def run_upload(args: argparse.Namespace) -> None:
    """Added latency and peak RSS for a large transcription upload through the gateway, against direct. The gateway
    spools the upload (in memory up to 1 MiB, then on local disk) and streams it on: its peak RSS must not grow by
    the upload's size."""
    body, content_type = upload_body(args.size)
    with Bench() as bench:
        azurite = Azurite().start()
        bench.stops.append(azurite.stop)
        sim_proc, sim_url = start_simulator()
        bench.stops.append(lambda: terminate(sim_proc))
        gateway = GatewayProcess(
            {
                **gateway_settings(sim_url, azurite.connection_string),
                "GATEWAY_LOCAL_DEV_AUTH": "true",
                "GATEWAY_PRICES": '{"whisper": {"input": 0, "output": 0, "audio_second": 0.0001}}',
            }
        ).start()
        bench.stops.append(gateway.stop)
        assert gateway.proc is not None
        enabled = httpx.put(f"{gateway.api}/manage/policies/local/developer", json={"media": True})
        enabled.raise_for_status()
        targets = {
            "direct": (f"{sim_url}{UPLOAD_PATH}", {"authorization": "Bearer bench"}),
            "gateway": (f"{gateway.api}{UPLOAD_PATH}", {"api-key": "local"}),
        }
        small, small_type = upload_body(64 * 1024)
        for url, headers in targets.values():  # warm both up (imports, connections, the first ledger write)
            asyncio.run(_upload_once(url, {**headers, "content-type": small_type}, small))
        rss_before = {"gateway": peak_rss_mb(gateway.proc.pid), "simulator": peak_rss_mb(sim_proc.pid)}
        # What the gateway holds before the uploads: holding one whole would lift its peak above this plus its size.
        rss_now = peak_rss_mb(gateway.proc.pid, "VmRSS")
        times: dict[str, list[float]] = {name: [] for name in targets}
        sampled: list[float] = []  # the gateway's resident memory every 2 ms while uploads run (its peak hides it)
        gateway_pid = gateway.proc.pid
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                sampled.append(peak_rss_mb(gateway_pid, "VmRSS"))
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for round_ in range(args.rounds):
            for name in rotated(list(targets), round_):
                url, headers = targets[name]
                times[name].append(asyncio.run(_upload_once(url, {**headers, "content-type": content_type}, body)))
        stop.set()
        sampler.join()
        rss_after = {"gateway": peak_rss_mb(gateway.proc.pid), "simulator": peak_rss_mb(sim_proc.pid)}
    direct, through = statistics.median(times["direct"]), statistics.median(times["gateway"])
    data = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "body_bytes": len(body),
        "rounds": args.rounds,
        "direct_ms": [round(t, 1) for t in times["direct"]],
        "gateway_ms": [round(t, 1) for t in times["gateway"]],
        "direct_p50_ms": round(direct, 1),
        "gateway_p50_ms": round(through, 1),
        "added_p50_ms": round(through - direct, 1),
        "peak_rss_mb_before": {k: round(v, 1) for k, v in rss_before.items()},
        "peak_rss_mb_after": {k: round(v, 1) for k, v in rss_after.items()},
        "gateway_rss_before_uploads_mb": round(rss_now, 1),
        "gateway_peak_rss_growth_mb": round(rss_after["gateway"] - rss_before["gateway"], 1),
        "gateway_peak_over_rss_before_mb": round(rss_after["gateway"] - rss_now, 1),
        "gateway_rss_sampled_max_mb": round(max(sampled), 1),
        "gateway_rss_growth_during_uploads_mb": round(max(sampled) - rss_now, 1),
        "rss_samples": len(sampled),
    }
    print(json.dumps(data, indent=2))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")


COMMANDS = ("rate", "concurrency", "relay", "upstream", "upload")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        argv.insert(0, "rate")  # the request-rate run, as before subcommands (make bench)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    rate = commands.add_parser("rate", help="the request-rate matrix (the default)")
    concurrency = commands.add_parser("concurrency", help="C streams held open at once, each target alone")
    for sub in (concurrency, commands.add_parser("upstream", help="(internal) the model-like upstream")):
        sub.add_argument("--first-ms", type=int, default=300, help="the upstream's first event after this")
        sub.add_argument("--events", type=int, default=60, help="events per answer")
        sub.add_argument("--interval-ms", type=int, default=50, help="between events")
    commands.choices["upstream"].add_argument("--port", type=int, required=True)
    concurrency.add_argument("--levels", default="100,400,1000,2000", help="C: streams open at once, comma-separated")
    concurrency.add_argument("--seconds", type=float, default=20.0, help="per target and level")
    concurrency.add_argument("--timeout", type=float, default=60.0, help="per stream")
    concurrency.add_argument("--rest", type=float, default=3.0, help="seconds between runs")
    concurrency.add_argument("--no-peers", dest="peers", action="store_false", help="skip LiteLLM and Portkey")
    concurrency.add_argument("--litellm-max", type=int, default=1000, help="highest C LiteLLM is run at")
    concurrency.add_argument("--only", help="comma-separated words: keep direct and the targets whose name has one")
    concurrency.add_argument("--compare", action="append", default=[], help="also run the gateway at this git ref")
    concurrency.add_argument("--unbounded", action="store_true", help="also the gateway without admission bound")
    concurrency.add_argument("--gateway-env", action="append", default=[], help="KEY=VALUE for the gateway")
    concurrency.add_argument("--burst", action="store_true", help="start all C streams at once (default: spread)")
    concurrency.add_argument("--json", type=Path, help="write the results here")
    relay = commands.add_parser("relay", help="CPU per relayed event of the stream relay, in process")
    relay.add_argument("--streams", type=int, default=2000)
    relay.add_argument("--events", type=int, default=60)
    relay.add_argument("--repeat", type=int, default=5)
    upload = commands.add_parser("upload", help="a 25 MB transcription upload through the gateway vs direct")
    upload.add_argument("--size", type=int, default=25_000_000, help="bytes of the multipart body")
    upload.add_argument("--rounds", type=int, default=5)
    upload.add_argument("--json", type=Path, help="write the results here")
    parser = rate
    parser.add_argument("--requests", type=int, default=400, help="calls per cell and round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="skip LiteLLM and Portkey")
    parser.add_argument("--cold-start-runs", type=int, default=3)
    parser.add_argument("--only", help="comma-separated words: keep direct and the targets whose name has one")
    parser.add_argument("--quick", action="store_true", help="1 round of 100 calls, no peers, no cold start, no files")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "performance.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "performance.md")
    args = commands.choices[argv[0]].parse_args(argv[1:])
    if argv[0] == "concurrency":
        return run_concurrency(args)
    if argv[0] == "relay":
        return run_relay(args)
    if argv[0] == "upstream":
        return serve_model_upstream(args)
    if argv[0] == "upload":
        return run_upload(args)
    if args.quick:
        args.requests, args.rounds, args.peers, args.cold_start_runs = 100, 1, False, 0

    with Bench() as bench:
        targets, skipped, settings = start_targets(bench, args)
        if args.only:
            words = args.only.split(",")
            targets = [t for t in targets if t.kind == "direct" or any(w in t.name for w in words)]
        print(f"targets: {', '.join(t.name for t in targets)}; skipped: {skipped or 'none'}", flush=True)
        results = run_rounds(targets, args)
        rss: dict[str, tuple[float, float]] = {}
        for pid, served in itertools.groupby(targets, key=lambda t: t.pid):  # one process may serve several targets
            names = [t.name for t in served]
            label = "simulator (direct)" if names == ["direct"] else " / ".join(names)
            rss[label] = (peak_rss_mb(pid), peak_rss_mb(pid, "VmRSS"))
        cold = cold_start(settings, args.cold_start_runs) if args.cold_start_runs else {}
    rows = report(results)
    data = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "conditions": {
            "requests": args.requests,
            "rounds": args.rounds,
            "concurrency": [1, args.concurrency],
            "cold_start_runs": args.cold_start_runs,
            "gateway": "auth on, quotas on (5 limits, none binding), ledger on (journal + Table Storage on Azurite), "
            "telemetry on (metrics, 1 in 10 calls traced)",
            "upstream": "the project's simulator, zero latency",
        },
        "rows": rows,
        "peak_rss_mb": rss,
        "skipped": skipped,
        "cold_start": cold,
    }
    data["headline"] = headline(rows, rss)
    print_table(data)
    if not args.quick:
        write_outputs(data, args.json, args.markdown)


def print_table(data: dict[str, Any]) -> None:
    columns = ("p50", "p99", "ttfb", "req/s", "cpu/1k", "x p50", "x rps")
    print(f"\n{'target':22} {'api':5} {'mode':6} {'c':>3} " + " ".join(f"{c:>7}" for c in columns))
    for r in data["rows"]:
        print(
            f"{r['target']:22} {r['api']:5} {r['mode']:6} {r['concurrency']:3d} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} "
            f"{r['ttfb_p50_ms']:7.2f} {r['rps']:7.0f} {r['cpu_ms_per_1000']:7.0f} {r['p50_ms_x_direct']:7.2f} "
            f"{r['rps_x_direct']:7.2f}"
        )
    print()
    for goal, measured, verdict in data["headline"]:
        print(f"{goal:50} {measured:30} {verdict}")
    if data["cold_start"]:
        print(f"cold start: {data['cold_start']}")


if __name__ == "__main__":
    main()
