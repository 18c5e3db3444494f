"""Memory per call in flight: what one gateway process holds for each call that waits on the upstream.

Why: an LLM gateway holds calls for seconds to minutes (the model thinks, the stream trickles), so calls in flight
per instance are rate x duration, often hundreds. host.json's ``maxOutstandingRequests`` (docs/tuning.md) is only
worth setting if that many calls could exhaust an instance's memory; this measures the cost of one.

It starts a private Azurite, the simulator and one gateway process (local dev auth, ledger on), makes the simulator
slow (a first byte after ``--hold`` seconds for JSON calls; one chunk per second for streams), opens N calls at
once, waits until every one is in flight (JSON: sent and waiting; streams: first chunk received), and reads the
gateway's resident set size (VmRSS) at N = 0 and at each step. Linux only (/proc).

    .venv/bin/python scripts/bench_inflight.py [--steps 100,300] [--hold 20]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import httpx

from scripts.benchmarks.common import BODY, DEPLOYMENT, start_simulator
from tests.azurite import Azurite
from tests.gateway_process import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]

HEADERS = {"authorization": "Bearer bench", "content-type": "application/json"}
PATH = "/api/openai/v1/chat/completions"
V1_BODY = {**BODY, "model": DEPLOYMENT}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def hold(url: str, pid: int, count: int, stream: bool) -> float:
    """Open ``count`` calls, wait until all are in flight, return the gateway's RSS in MB then (calls cancelled)."""
    in_flight = 0
    all_in = asyncio.Event()
    limits = httpx.Limits(max_connections=count + 8, max_keepalive_connections=0)

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one() -> None:
            nonlocal in_flight
            async with client.stream("POST", PATH, json={**V1_BODY, "stream": stream}, headers=HEADERS) as response:
                if stream:
                    async for _chunk in response.aiter_raw():
                        break  # the first chunk: this stream is open on both sides
                in_flight += 1
                if in_flight == count:
                    all_in.set()
                await asyncio.sleep(3600)  # keep the call open until cancelled

        async def one_json() -> None:
            nonlocal in_flight
            in_flight += 1  # counted when sent: the gateway holds it while the simulator waits
            if in_flight == count:
                all_in.set()
            await client.post(PATH, json=V1_BODY, headers=HEADERS)

        tasks = [asyncio.create_task(one() if stream else one_json()) for _ in range(count)]
        await asyncio.wait_for(all_in.wait(), 60)
        await asyncio.sleep(2.0 if not stream else 0.5)  # JSON: let every request reach the upstream wait
        measured = rss_mb(pid)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(1.0)
    return measured


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="100,300", help="calls in flight to measure, comma-separated")
    parser.add_argument("--hold", type=int, default=20, help="seconds the simulator holds a JSON call's first byte")
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",")]

    azurite = Azurite().start()
    sim_proc, sim_url = start_simulator()
    gateway = GatewayProcess(
        {
            "AZURE_OPENAI_ENDPOINT": sim_url,
            "GATEWAY_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "GATEWAY_LOCAL_DEV_AUTH": "true",
        }
    ).start()
    assert gateway.proc is not None
    pid = gateway.proc.pid
    try:
        for _ in range(50):  # warm-up: clients, caches, first ledger batches
            httpx.post(gateway.base_url + PATH, json=V1_BODY, headers=HEADERS, timeout=30).raise_for_status()
        time.sleep(1.0)
        print(f"gateway idle after warm-up: {rss_mb(pid):.1f} MB RSS")
        print(f"{'case':24} {'in flight':>9} {'RSS MB':>8} {'MB per call':>12}")
        for stream in (False, True):
            httpx.delete(f"{sim_url}/_simulator/behaviours")
            behaviour = {"chunk_delay_ms": 1000, "completion_tokens": 200} if stream else {}
            behaviour |= {} if stream else {"first_byte_delay_ms": args.hold * 1000}
            httpx.post(f"{sim_url}/_simulator/behaviours", json=behaviour).raise_for_status()
            base = rss_mb(pid)
            label = "stream (1 chunk/s)" if stream else f"json (upstream {args.hold} s)"
            print(f"{label:24} {0:9} {base:8.1f} {'':>12}")
            for count in steps:
                measured = asyncio.run(hold(gateway.base_url, pid, count, stream))
                print(f"{label:24} {count:9} {measured:8.1f} {(measured - base) / count:12.3f}")
                if not stream:
                    time.sleep(args.hold + 2)  # the gateway still waits on the cancelled calls' upstream answers
    finally:
        gateway.stop()
        sim_proc.terminate()
        azurite.stop()
