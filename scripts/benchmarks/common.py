"""What every benchmark shares: the processes it starts, the calls it drives, and the figures it reads.

Benchmarks run from the one entry point, ``scripts/bench.py <command>``, which puts the repository on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[2]

from tests.azurite import Azurite, free_port, terminate  # noqa: E402,F401
from tests.gateway_process import GatewayProcess  # noqa: E402,F401
from tests.identity_provider import CLIENT_ID, TENANT, LocalIdentityProvider, SigningKey  # noqa: E402,F401

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


def start_simulator(deployments: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """The project's simulator on a free port; ``deployments`` (name -> model family) replaces its default list."""
    port = free_port()
    env = {**os.environ, "SIMULATOR_DEPLOYMENTS": json.dumps(deployments)} if deployments else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.local.simulator", "--port", str(port)],
        cwd=ROOT,
        env=env,
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


def start_peers(bench: Bench, sim_url: str, skipped: dict[str, str]) -> list[Target]:
    """LiteLLM proxy and Portkey against the same simulator (``scripts/bench.py peers`` installs them on first use into
    .bench/, before anything is timed; nothing of theirs is committed). A peer that cannot run is reported skipped."""
    from scripts.benchmarks import peers as bench_peers

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


def exported(bench: Bench, ref: str) -> Path:
    """The gateway's code at ``ref``, exported from git into a temporary directory (to measure before and after)."""
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="gateway-at-"))
    bench.stops.append(lambda: shutil.rmtree(directory, ignore_errors=True))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory
