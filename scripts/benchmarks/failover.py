"""Backend pool benchmark: what a failover adds to a call, and throughput while one backend is down.

Everything runs on this machine (loopback): a private Azurite, two simulator processes (``a`` and ``b``), a port
nobody listens on (``dead``), one that accepts and never answers (``silent``), and one gateway process whose
pools, one per deployment name, are the cases:

    solo            [a]                          a pool of one: the straight pass-through (the default set-up)
    pair            [a (priority 1), b (2)]      healthy: every call served by a
    failover        [a (1), b (2)]               a answers 429 with retry-after-ms: 0 to every call, so every call
                                                 is a 429 on a and then a success on b
    spread          [a, b]                       same priority, weight 1:1, both healthy
    one-dead        [dead, b]                    connection refused: the breaker opens after 5 failures
    one-silent      [silent, b]                  every attempt times out (0.5 s) until the breaker opens

Latency cases run one call at a time, the cases taking turns call by call (``req/s`` there is 1 / mean latency);
throughput cases run ``--concurrency`` at a time, interleaved in ``--rounds`` rounds, each figure the median
over the rounds. Ratios are to ``solo`` (latency) and
``spread`` (throughput), measured in the same run.

    .venv/bin/python scripts/bench_failover.py [--requests 300] [--concurrency 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import time
from pathlib import Path

import httpx

from scripts.benchmarks.common import BODY, Target, drive, start_simulator, summarize
from tests.azurite import Azurite, free_port
from tests.gateway_process import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]

API_VERSION = "2024-10-21"


async def interleaved(targets: dict[str, tuple[str, str]], total: int) -> dict[str, dict[str, float]]:
    """One call at a time, taking the cases in turn (a, b, c, a, b, c, ...): a burst of other work on the shared
    machine lands on every case alike. ``targets``: case -> (base URL, path)."""
    headers = {"authorization": "Bearer bench", "content-type": "application/json"}
    clients = {name: httpx.AsyncClient(base_url=url, timeout=30) for name, (url, _) in targets.items()}
    latencies: dict[str, list[float]] = {name: [] for name in targets}
    try:
        for round_ in range(20 + total):  # the first 20 rounds warm connections and lazy clients up
            for name, (_, case_path) in targets.items():
                started = time.perf_counter()
                response = await clients[name].post(case_path, json=BODY, headers=headers)
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.text
                if round_ >= 20:
                    latencies[name].append(elapsed)
    finally:
        for client in clients.values():
            await client.aclose()
    result = {}
    for name, values in latencies.items():
        values.sort()
        result[name] = {
            "p50_ms": statistics.median(values) * 1000,
            "p95_ms": values[int(len(values) * 0.95) - 1] * 1000,
            "rps": len(values) / sum(values),
        }
    return result


def path(deployment: str) -> str:
    return f"/api/openai/deployments/{deployment}/chat/completions?api-version={API_VERSION}"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    azurite = Azurite().start()
    cases = ("solo", "pair", "failover", "spread", "one-dead", "one-silent")
    sim_a, url_a = start_simulator(dict.fromkeys(cases, "gpt-4o-mini"))
    sim_b, url_b = start_simulator(dict.fromkeys(cases, "gpt-4o-mini"))
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1024)
    dead = f"http://127.0.0.1:{free_port()}"
    quiet = f"http://127.0.0.1:{silent.getsockname()[1]}"
    a = {"label": "a", "endpoint": url_a}
    b = {"label": "b", "endpoint": url_b}
    pools = {
        "solo": [a],
        "pair": [{**a, "priority": 1}, {**b, "priority": 2}],
        "failover": [{**a, "priority": 1}, {**b, "priority": 2}],
        "spread": [a, b],
        "one-dead": [{"label": "dead", "endpoint": dead}, b],
        "one-silent": [{"label": "silent", "endpoint": quiet}, b],
    }
    gateway = GatewayProcess(
        {
            "GATEWAY_BACKENDS": json.dumps(pools),
            "GATEWAY_UPSTREAM_TIMEOUT_SECONDS": "0.5",
            "GATEWAY_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "GATEWAY_LOCAL_DEV_AUTH": "true",
        }
    ).start()
    try:
        # a answers 429 with retry-after-ms: 0 for the "failover" deployment only: cooled for 0 ms, tried first again.
        httpx.post(
            f"{url_a}/_simulator/behaviours", json={"deployment": "failover", "fault": "429", "retry_after_ms": 0}
        ).raise_for_status()
        print(f"{args.requests} requests per case, {os.cpu_count()} cores; all processes share them\n")
        print(f"{'case':40} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>8} {'p50 ratio':>10} {'rps ratio':>10}")

        def report(name: str, result: dict[str, float], base: dict[str, float]) -> None:
            print(
                f"{name:40} {result['p50_ms']:8.2f} {result['p95_ms']:8.2f} {result['rps']:8.1f} "
                f"{result['p50_ms'] / base['p50_ms']:10.2f} {result['rps'] / base['rps']:10.2f}"
            )

        # Cases run interleaved, in rounds, and each figure is the median over the rounds: the machine is shared,
        # and a burst of someone else's work should not land on one case only.
        def rounds(url: str, paths: dict[str, str], concurrency: int) -> dict[str, dict[str, float]]:
            per_round = max(20, args.requests // args.rounds)
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
            assert gateway.proc is not None
            for _ in range(args.rounds):
                for name, case_path in paths.items():
                    target = Target(
                        name, "gateway", url, gateway.proc.pid, {"authorization": "Bearer b"}, {"case": case_path}, name
                    )
                    sample = asyncio.run(drive(target, "case", False, per_round, concurrency))
                    runs[name].append(summarize(sample))
            return {
                name: {key: statistics.median(r[key] for r in results) for key in results[0]}
                for name, results in runs.items()
            }

        direct_path = f"/openai/deployments/solo/chat/completions?api-version={API_VERSION}"
        targets = {"direct": (url_a, direct_path)} | {
            name: (gateway.base_url, path(name)) for name in ("solo", "pair", "failover")
        }
        latency = asyncio.run(interleaved(targets, args.requests))
        report("simulator a direct, c=1", latency.pop("direct"), latency["solo"])
        for name, result in latency.items():
            report(f"{name}, c=1", result, latency["solo"])
        added = latency["failover"]["p50_ms"] - latency["pair"]["p50_ms"]
        print(f"failover adds {added:.2f} ms at the median\n")

        c = args.concurrency
        throughput = rounds(
            gateway.base_url, {name: path(name) for name in ("spread", "one-dead", "one-silent", "solo")}, c
        )
        for name, result in throughput.items():
            report(f"{name}, c={c}", result, throughput["spread"])
        states = httpx.get(f"{gateway.api}/ready").json()["checks"]["upstream"]["pools"]
        for name in ("one-dead", "one-silent"):
            print(f"{name}: " + ", ".join(f"{s['label']} {s['circuit']}" for s in states[name]))
    finally:
        gateway.stop()
        sim_a.terminate()
        sim_b.terminate()
        silent.close()
        azurite.stop()
