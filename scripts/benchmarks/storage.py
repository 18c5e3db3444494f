"""Table Storage operations per 1,000 gateway requests, by table and feature, at steady request rates.

The capacity model (docs/scale.md) and the cost model (docs/cost.md) need the storage traffic one request causes,
and how it changes with request rate, number of callers and number of instances. This runs the real thing on one
machine: a private Azurite, the simulator in its own process, and one or two gateway processes
(``python -m shared.local.devhost``) with API keys (one per caller, each caller a principal of its own), every
default quota limit on (none binding), the ledger and its journal on, and the timer functions (ledger replay,
quota housekeeping, daily rollup) every ``--timer-seconds``. Calls arrive at a steady rate (open loop: a slow
gateway does not slow the arrivals), spread over callers and instances round-robin. Each gateway logs what its
Table Storage client sent when it stops (``table storage operations: {...}``, shared/storage/tables.py); this
adds them up per scenario and writes docs/storage-ops.json.

Timer work runs on a clock, not per request: in Azure the rollup runs every 5 minutes and quota housekeeping every
10, per instance that wins the timer's lease (one). The figures per 1,000 requests therefore report request-driven
tables apart from the timer-driven ones, which are given per timer run.

    .venv/bin/python scripts/bench_storage.py [--requests 3000] [--timer-seconds 10] [--quick]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from azure.data.tables.aio import TableServiceClient

from scripts.benchmarks.common import QUOTAS_ON, start_simulator
from shared.auth.apikeys import ApiKeyStore
from shared.auth.identity import ROLE_USE, Caller
from shared.storage.tables import API_KEYS_TABLE, ensure_tables
from tests.azurite import Azurite
from tests.gateway_process import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]

OUTPUT = ROOT / "docs" / "storage-ops.json"
PATH = "/openai/v1/chat/completions"
BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Count my storage, please."}],
    "max_tokens": 16,
}
PRICES = '{"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.6}}'

# What each table is for (shared/storage/tables.py) and whether requests or the clock drive its traffic.
FEATURES = {
    "gatewayUsage": "ledger (batched row writes; queries are the timers reading it)",
    "gatewayQuota": "quota counters (lease changes; queries/deletes are housekeeping)",
    "gatewayApiKeys": "API key verification (point read per key per instance per cache period)",
    "gatewayCallerPolicies": "caller policy cache (point read per caller per instance per cache period)",
    "gatewayPrices": "price versions (one query per instance per cache period)",
    "gatewayUsageHourly": "daily rollup: hourly partial sums",
    "gatewayUsageDaily": "daily rollup: finance's daily rows",
    "(account)": "table creation at start-up",
}
TIMER_DRIVEN = {
    ("gatewayUsage", "query"),
    ("gatewayQuota", "query"),
    ("gatewayCallerPolicies", "query"),
    ("gatewayUsageHourly", "query"),
    ("gatewayUsageHourly", "batch"),
    ("gatewayUsageDaily", "query"),
    ("gatewayUsageDaily", "batch"),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    instances: int
    rate: float  # requests per second, all instances together
    callers: int


async def issue_keys(connection_string: str, callers: int) -> list[str]:
    """One API key per caller, each owned by a principal of its own (so each has its own quota counters)."""
    async with TableServiceClient.from_connection_string(connection_string) as service:
        await ensure_tables(service)
        store = ApiKeyStore(service.get_table_client(API_KEYS_TABLE))
        keys = []
        for i in range(callers):
            owner = Caller(f"{uuid.uuid4()}/{uuid.uuid4()}", f"bench-{i}", None, "app", frozenset({ROLE_USE}))
            keys.append((await store.issue(owner, f"bench-{i}", None)).key)
        return keys


async def steady_load(urls: list[str], keys: list[str], total: int, rate: float) -> dict[str, Any]:
    """``total`` calls at ``rate`` per second, spread evenly over callers and, for each caller, over instances."""
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    clients = [httpx.AsyncClient(base_url=u, timeout=30, limits=httpx.Limits(max_connections=64)) for u in urls]

    async def call(caller: int, instance: int) -> None:
        started = time.perf_counter()
        try:
            response = await clients[instance].post(PATH, json=BODY, headers={"api-key": keys[caller]})
            statuses[response.status_code] += 1
        except httpx.HTTPError as exc:  # no answer: counted under the error's name (a timeout, a dropped connection)
            errors[type(exc).__name__] += 1
        latencies.append(time.perf_counter() - started)

    # Warm-up, one call per caller per instance in turn: caches and leases fill without a cold-start stampede (the
    # stampede is real, see docs/scale.md, but it is a start-up cost, not a per-request one). Counted in the total.
    warm = len(keys) * len(clients)
    for i in range(warm):
        await call(i % len(keys), i // len(keys))
    latencies.clear()
    tasks = []
    started = time.perf_counter()
    for i in range(total - warm):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        # Caller i mod callers; the instance advances once per round of callers, so every caller reaches every
        # instance in turn (as a load balancer spreads one app's calls), never one caller pinned to one instance.
        tasks.append(asyncio.create_task(call(i % len(keys), (i // len(keys) + i) % len(clients))))
    sent = time.perf_counter() - started
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.aclose()
    latencies.sort()
    return {
        "requests": total,
        "statuses": {str(k): v for k, v in sorted(statuses.items())} | dict(sorted(errors.items())),
        "offered_rps": round(total / sent, 1),
        "served_rps": round(total / elapsed, 1),  # below offered when the gateway (or this machine) is saturated
        "seconds": round(elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
    }


async def closed_loop(url: str, keys: list[str], total: int, concurrency: int) -> float:
    """Requests per second one gateway process serves with ``concurrency`` calls always in flight."""
    queue = iter(range(total))
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=concurrency)) as c:

        async def worker() -> None:
            for i in queue:
                response = await c.post(PATH, json=BODY, headers={"api-key": keys[i % len(keys)]})
                assert response.status_code == 200, response.text

        for i in range(50):  # warm: connections, key and policy caches, first leases
            await c.post(PATH, json=BODY, headers={"api-key": keys[i % len(keys)]})
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - started)


def gateway_env(sim_url: str, connection_string: str, timer_seconds: float) -> dict[str, str]:
    return {
        "AZURE_OPENAI_ENDPOINT": sim_url,
        "GATEWAY_STORAGE_CONNECTION_STRING": connection_string,
        "GATEWAY_PRICES": PRICES,
        "GATEWAY_DEVHOST_TIMER_SECONDS": str(timer_seconds),
        **QUOTAS_ON,
    }


_OPERATIONS = re.compile(r"table storage operations: (\{.*\})")
_LEASES = re.compile(r"quota leases: (\d+) storage round trips, (\d+) reservations")
_ROLLUP = re.compile(r"daily usage rollup: (\{.*\})")
_HOUSEKEEPING = re.compile(r"quota housekeeping: ")


def read_process(output: str) -> dict[str, Any]:
    """What one gateway process logged about its storage traffic when it stopped."""
    found = _OPERATIONS.findall(output)
    if len(found) != 1:
        raise RuntimeError(f"expected one 'table storage operations' line, found {len(found)}:\n{output[-3000:]}")
    leases = _LEASES.search(output)
    rollups = [ast.literal_eval(r) for r in _ROLLUP.findall(output)]  # the timer logs a dict
    return {
        "operations": json.loads(found[0]),
        "lease_round_trips": int(leases.group(1)) if leases else 0,
        "reservations": int(leases.group(2)) if leases else 0,
        "rollup_runs": len(rollups),
        "rollup_read_requests": sum(r.get("read_requests", 0) for r in rollups),
        "rollup_write_requests": sum(r.get("write_requests", 0) for r in rollups),
        "housekeeping_runs": len(_HOUSEKEEPING.findall(output)),
    }


def add_up(processes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    total: dict[str, dict[str, Any]] = {}
    for process in processes:
        for table, kinds in process["operations"].items():
            into = total.setdefault(table, {})
            for kind, value in kinds.items():
                if kind == "failed":
                    failed = into.setdefault("failed", {})
                    for what, n in value.items():
                        failed[what] = failed.get(what, 0) + n
                else:
                    into[kind] = into.get(kind, 0) + value
    return total


def per_thousand(operations: dict[str, dict[str, Any]], requests: int) -> dict[str, dict[str, float]]:
    """Request-driven requests (and batch entities) per 1,000 gateway requests, by table and kind."""
    out: dict[str, dict[str, float]] = {}
    for table, kinds in sorted(operations.items()):
        for kind, value in sorted(kinds.items()):
            if kind == "failed" or table == "(account)" or (table, kind) in TIMER_DRIVEN:
                continue
            if kind == "batch_entities" and (table, "batch") in TIMER_DRIVEN:
                continue
            out.setdefault(table, {})[kind] = round(1000 * value / requests, 2)
    return out


def per_second(operations: dict[str, dict[str, Any]], seconds: float) -> dict[str, dict[str, float]]:
    """The same, per second of load: what time drives (caches, quota commits) is flat here as the rate changes."""
    counts = per_thousand(operations, 1000)  # per 1,000 of 1,000 requests: the counts themselves
    return {
        table: {kind: round(value / seconds, 2) for kind, value in kinds.items()} for table, kinds in counts.items()
    }


def timer_driven(operations: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for table, kinds in sorted(operations.items()):
        for kind, value in sorted(kinds.items()):
            if (table, kind) in TIMER_DRIVEN or (kind == "batch_entities" and (table, "batch") in TIMER_DRIVEN):
                out.setdefault(table, {})[kind] = value
    return out


def run_scenario(scenario: Scenario, requests: int, timer_seconds: float, sim_url: str) -> dict[str, Any]:
    load_before = os.getloadavg()[0]  # the machine is shared: a busy one serves less than the offered rate
    azurite = Azurite().start()
    gateways: list[GatewayProcess] = []
    try:
        keys = asyncio.run(issue_keys(azurite.connection_string, scenario.callers))
        env = gateway_env(sim_url, azurite.connection_string, timer_seconds)
        gateways = [GatewayProcess(env).start() for _ in range(scenario.instances)]
        load = asyncio.run(steady_load([g.api for g in gateways], keys, requests, scenario.rate))
        time.sleep(1.0)  # the ledger flushes every half second
    finally:
        for gateway in gateways:
            gateway.stop()  # SIGTERM: the dev host's shutdown logs the counts
        azurite.stop()
    processes = [read_process(g.output()) for g in gateways]
    operations = add_up(processes)
    served = load["statuses"].get("200", 0)
    request_driven = per_thousand(operations, requests)
    return {
        "scenario": scenario.__dict__,
        "load": load,
        "machine_load_average": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "served": served,
        "request_driven_per_1000_requests": request_driven,
        "request_driven_per_second": per_second(operations, load["seconds"]),
        "request_driven_total_per_1000_requests": round(
            sum(v for kinds in request_driven.values() for k, v in kinds.items() if k != "batch_entities"), 1
        ),
        "timer_driven_totals": timer_driven(operations),
        "timer_runs": {
            "rollup": sum(p["rollup_runs"] for p in processes),
            "rollup_read_requests": sum(p["rollup_read_requests"] for p in processes),
            "rollup_write_requests": sum(p["rollup_write_requests"] for p in processes),
            "quota_housekeeping": sum(p["housekeeping_runs"] for p in processes),
        },
        "quota_leases": {
            "round_trips": sum(p["lease_round_trips"] for p in processes),
            "reservations": sum(p["reservations"] for p in processes),
        },
        "all_operations": operations,
    }


def print_scenario(result: dict[str, Any]) -> None:
    s, load = result["scenario"], result["load"]
    print(
        f"\n== {s['name']}: {s['instances']} instance(s), {s['callers']} callers, {s['rate']:.0f} req/s offered "
        f"({load['offered_rps']} sent, {load['served_rps']} served), {load['requests']} calls in {load['seconds']} s,"
        f" statuses {load['statuses']}, p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, load average "
        f"{result['machine_load_average']['before']} -> {result['machine_load_average']['after']}"
    )
    print(f"   request-driven storage requests per 1,000 calls: {result['request_driven_total_per_1000_requests']}")
    for table, kinds in result["request_driven_per_1000_requests"].items():
        print(f"     {table:24} {json.dumps(kinds)}   per s: {json.dumps(result['request_driven_per_second'][table])}")
    print(f"   timer-driven totals ({json.dumps(result['timer_runs'])}):")
    for table, kinds in result["timer_driven_totals"].items():
        print(f"     {table:24} {json.dumps(kinds)}")
    failed = {t: k["failed"] for t, k in result["all_operations"].items() if "failed" in k}
    if failed:
        print(f"   answers >= 400: {json.dumps(failed)}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per scenario")
    parser.add_argument("--timer-seconds", type=float, default=10.0, help="timer functions run this often")
    parser.add_argument("--throughput-requests", type=int, default=2000, help="closed-loop c=16 run (0: skip)")
    parser.add_argument("--quick", action="store_true", help="one small scenario (a smoke test of the script)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]

    scenarios = [
        # Rates stay below what this shared 2-core machine serves with two gateways, Azurite, the simulator and this
        # client on it: a saturated run measures the queue, not the gateway.
        Scenario("low rate", instances=1, rate=20, callers=8),
        Scenario("higher rate", instances=1, rate=60, callers=8),
        Scenario("two instances", instances=2, rate=60, callers=8),
        Scenario("more callers", instances=1, rate=60, callers=32),
        # Each caller calls less than once a second: quota balances go back to storage between its calls (idle
        # after 1 s, shared/quotas/leases.py), so every call leases and releases on all five counters.
        Scenario("many quiet callers", instances=1, rate=20, callers=64),
    ]
    if args.quick:
        scenarios, args.requests, args.throughput_requests = [Scenario("quick", 1, 100, 4)], 300, 0

    sim_proc, sim_url = start_simulator()
    results = []
    throughput = None
    try:
        for scenario in scenarios:
            result = run_scenario(scenario, args.requests, args.timer_seconds, sim_url)
            print_scenario(result)
            results.append(result)
        if args.throughput_requests:
            azurite = Azurite().start()
            try:
                keys = asyncio.run(issue_keys(azurite.connection_string, 8))
                gateway = GatewayProcess(gateway_env(sim_url, azurite.connection_string, 300)).start()
                try:
                    rps = asyncio.run(closed_loop(gateway.api, keys, args.throughput_requests, 16))
                finally:
                    gateway.stop()
            finally:
                azurite.stop()
            throughput = {"concurrency": 16, "requests": args.throughput_requests, "rps": round(rps, 1)}
            print(f"\n== one gateway process, c=16, API keys, quotas, ledger on: {rps:.0f} req/s")
    finally:
        sim_proc.terminate()

    report = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "conditions": {
            "requests_per_scenario": args.requests,
            "timer_seconds": args.timer_seconds,
            "body": BODY,
            "quotas": QUOTAS_ON,
            "auth": "gateway API keys, one per caller",
            "storage": "Azurite (in memory) on the same machine",
        },
        "features": FEATURES,
        "scenarios": results,
        "throughput_c16": throughput,
    }
    if not args.quick:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.output.relative_to(ROOT)}")
