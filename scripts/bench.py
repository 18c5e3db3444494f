"""Gateway overhead benchmark: the same requests straight to the simulator (baseline) and through the gateway.

Everything runs on this machine (loopback only): a private Azurite, the simulator in its own process, the
gateway in its own process (``python -m shared.local.devhost``, local dev auth). Reports latency percentiles and
throughput for both paths and the ratios gateway/baseline, measured in the same run.

    .venv/bin/python scripts/bench.py [--requests 300] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.azurite import Azurite, free_port  # noqa: E402
from tests.gateway_process import GatewayProcess  # noqa: E402

QUOTAS_ON = {
    "GATEWAY_DEFAULT_REQUESTS_PER_MINUTE": "100000000",
    "GATEWAY_DEFAULT_TOKENS_PER_MINUTE": "100000000000",
    "GATEWAY_DEFAULT_TOKENS_PER_DAY": "100000000000",
    "GATEWAY_DEFAULT_TOKENS_PER_MONTH": "100000000000",
    "GATEWAY_DEFAULT_COST_USD_PER_MONTH": "1000000",
}
BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Benchmark the gateway please."}],
    "max_tokens": 16,
}


def start_simulator() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.local.simulator", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{url}/_simulator/health", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("simulator did not start")


async def run(
    url: str, path: str, total: int, concurrency: int, stream: bool, headers: dict[str, str] | None = None
) -> dict[str, float]:
    headers = headers or {"authorization": "Bearer bench", "content-type": "application/json"}
    body = {**BODY, "stream": stream}
    latencies: list[float] = []
    first_bytes: list[float] = []
    queue = iter(range(total))

    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=concurrency)) as c:

        async def worker() -> None:
            for _ in queue:
                started = time.perf_counter()
                async with c.stream("POST", path, json=body, headers=headers) as response:
                    assert response.status_code == 200, await response.aread()
                    first = None
                    async for _chunk in response.aiter_raw():
                        if first is None:
                            first = time.perf_counter() - started
                first_bytes.append(first or 0.0)
                latencies.append(time.perf_counter() - started)

        for _ in range(min(20, total)):  # warm-up: connections, lazy clients
            await c.post(path, json={**BODY}, headers=headers)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started

    latencies.sort()
    first_bytes.sort()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
        "ttfb_p50_ms": statistics.median(first_bytes) * 1000,
        "rps": total / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    azurite = Azurite().start()
    sim_proc, sim_url = start_simulator()
    common = {
        "AZURE_OPENAI_ENDPOINT": sim_url,
        "GATEWAY_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "GATEWAY_LOCAL_DEV_AUTH": "true",
        "GATEWAY_PRICES": '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}',
    }
    gateway = GatewayProcess(common).start()
    # Every limit on, none binding: what quotas cost when callers are within their limits (the common case).
    quota_gateway = GatewayProcess({**common, **QUOTAS_ON}).start()
    try:
        key = httpx.post(f"{gateway.api}/manage/keys", json={"name": "bench"}).json()["key"]
        with_key = {"api-key": key, "content-type": "application/json"}
        print(f"{args.requests} requests per case, {os.cpu_count()} cores; all processes share them\n")
        print(f"{'case':44} {'p50 ms':>8} {'p95 ms':>8} {'ttfb p50':>9} {'req/s':>8}")
        path = "/openai/v1/chat/completions"
        for stream in (False, True):
            for concurrency in (1, args.concurrency):
                label = f"{'stream' if stream else 'json'} c={concurrency}"
                base = asyncio.run(run(sim_url, path, args.requests, concurrency, stream))
                results = {
                    "baseline (simulator direct)": base,
                    "gateway, local dev auth": asyncio.run(
                        run(gateway.base_url, "/api" + path, args.requests, concurrency, stream)
                    ),
                    "gateway, api-key (cached verification)": asyncio.run(
                        run(gateway.base_url, "/api" + path, args.requests, concurrency, stream, with_key)
                    ),
                    "gateway, quotas on (5 limits)": asyncio.run(
                        run(quota_gateway.base_url, "/api" + path, args.requests, concurrency, stream)
                    ),
                }
                for name, r in results.items():
                    print(
                        f"{label + ' ' + name:44} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} "
                        f"{r['ttfb_p50_ms']:9.2f} {r['rps']:8.1f}"
                    )
                for name, r in list(results.items())[1:]:
                    print(
                        f"{label + ' ratio ' + name.split(', ')[1]:44} {r['p50_ms'] / base['p50_ms']:8.2f} "
                        f"{r['p95_ms'] / base['p95_ms']:8.2f} {r['ttfb_p50_ms'] / base['ttfb_p50_ms']:9.2f} "
                        f"{r['rps'] / base['rps']:8.2f}"
                    )
                print()
    finally:
        quota_gateway.stop()  # logs its storage round trips on shutdown
        trips = re.search(r"quota leases: (\d+) storage round trips, (\d+) reservations", quota_gateway.output())
        if trips:
            made, reserved = int(trips.group(1)), int(trips.group(2))
            print(
                f"quota counters: {made} storage round trips for {reserved} reservations "
                f"({1000 * made / max(1, reserved):.1f} per 1,000 requests, 5 limits each)"
            )
        gateway.stop()
        sim_proc.terminate()
        azurite.stop()


if __name__ == "__main__":
    main()
