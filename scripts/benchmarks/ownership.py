"""What owning stored responses costs a create that chains one: CPU and Table Storage round trips
(``scripts/bench.py ownership``)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import aiohttp
import httpx

from scripts.benchmarks.common import DEPLOYMENT, Bench, cpu_seconds, gateway_settings, start_simulator
from tests.azurite import Azurite, terminate
from tests.gateway_process import GatewayProcess


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.py ownership", description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-gateway", dest="gateway", action="store_false", help="in process only")
    run(parser.parse_args(argv))


def _rotated(items: list[Any], by: int) -> list[Any]:
    """Each round in another order, so the machine's drift falls on every variant alike."""
    by %= len(items)
    return items[by:] + items[:by]


def run(args: argparse.Namespace) -> None:
    """What owning stored responses costs a create that chains one (``previous_response_id``).

    In process, against a private Azurite: ``--calls`` ownership checks (:meth:`StoredResponses.pin`) and as many
    owner records written, with every Table Storage request counted (:class:`StorageOperations`) and this process's
    CPU per call. Then, unless ``--no-gateway``, a gateway process over the simulator: ``--calls`` creates each of
    ``store: false`` (nothing recorded), stored (the owner recorded: one write), and stored chaining a stored
    response (one point read, then one write), at ``--concurrency``; the gateway process's CPU per 1,000 calls and
    the median latency of each, in ``--rounds`` interleaved rounds (median over rounds)."""
    from azure.data.tables.aio import TableServiceClient

    from shared.accounting.ledger import UsageLedger
    from shared.accounting.prices import PriceBook
    from shared.accounting.settlement import Accounting, Reservation
    from shared.auth.identity import ROLE_USE, Caller
    from shared.protocol.calls import ModelCall
    from shared.protocol.operations import V1_RESPONSES
    from shared.stateful.objects import ObjectKind, ObjectRegistry
    from shared.stateful.responses import StoredResponses
    from shared.storage.tables import OBJECTS_TABLE, StorageOperations

    caller = Caller("bench-tenant/bench-caller", "bench", "bench-tenant", "app", frozenset({ROLE_USE}))

    async def in_process(connection_string: str) -> dict[str, float]:
        operations = StorageOperations()
        hooks = {"raw_request_hook": operations.on_request, "raw_response_hook": operations.on_response}
        async with TableServiceClient.from_connection_string(connection_string, **hooks) as service:
            table = await service.create_table_if_not_exists(OBJECTS_TABLE)
            # Uncached: every check a point read, as on an instance that has not seen the response before.
            registry = ObjectRegistry(table)
            stored = StoredResponses(registry, None, Accounting(UsageLedger(table), {}), PriceBook({}))  # type: ignore[arg-type]
            ids = [f"resp_bench{n:040d}" for n in range(args.calls)]
            write_before = operations.total()
            started = time.process_time()
            for response_id in ids:
                call = ModelCall(V1_RESPONSES, DEPLOYMENT, None, {}, False, False, 5, None)
                await stored.created(Reservation("r", caller, call), response_id, "a")
            write_cpu = time.process_time() - started
            writes = operations.total() - write_before
            read_before = operations.total()
            started = time.process_time()
            for response_id in ids:
                call = ModelCall(
                    V1_RESPONSES, DEPLOYMENT, None, {"previous_response_id": response_id}, False, False, 5, None
                )
                assert await stored.pin(caller, call) == "a"
            read_cpu = time.process_time() - started
            reads = operations.total() - read_before
            # Cached (the instance's own responses, and those it checked before): no storage at all.
            cached = StoredResponses(
                ObjectRegistry(table, cached=[ObjectKind.RESPONSE]),
                None,
                stored.accounting,
                stored.prices,  # type: ignore[arg-type]
            )
            for response_id in ids:
                await cached.registry.find(caller.id, ObjectKind.RESPONSE, response_id)  # seen once
            cached_before = operations.total()
            started = time.process_time()
            for response_id in ids:
                call = ModelCall(
                    V1_RESPONSES, DEPLOYMENT, None, {"previous_response_id": response_id}, False, False, 5, None
                )
                assert await cached.pin(caller, call) == "a"
            cached_cpu = time.process_time() - started
            cached_reads = operations.total() - cached_before
        per_1000 = 1000 / args.calls
        return {
            "cached_check_cpu_us_per_call": cached_cpu / args.calls * 1e6,
            "cached_check_round_trips_per_1000": cached_reads * per_1000,
            "check_cpu_us_per_call": read_cpu / args.calls * 1e6,
            "check_round_trips_per_1000": reads * per_1000,
            "record_cpu_us_per_call": write_cpu / args.calls * 1e6,
            "record_round_trips_per_1000": writes * per_1000,
        }

    async def through_gateway(gateway: GatewayProcess, chain_to: str) -> dict[str, tuple[float, float]]:
        variants = {
            "store false (nothing recorded)": {"store": False},
            "stored (owner recorded)": {},
            "stored, previous_response_id (checked + recorded)": {"previous_response_id": chain_to},
        }
        url = f"{gateway.api}/openai/v1/responses"
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as session:
            for round_number in range(args.rounds):
                for name in _rotated(list(variants), round_number):
                    payload = {"model": DEPLOYMENT, "input": "Benchmark", "max_output_tokens": 16, **variants[name]}
                    latencies: list[float] = []
                    queue = list(range(args.calls))

                    async def worker(
                        queue: list[int] = queue, latencies: list[float] = latencies, payload: Any = payload
                    ) -> None:
                        while queue:
                            queue.pop()
                            started = time.perf_counter()
                            async with session.post(url, json=payload, headers={"api-key": "local"}) as answer:
                                await answer.read()
                                assert answer.status == 200, answer.status
                            latencies.append(time.perf_counter() - started)

                    cpu = cpu_seconds(gateway.proc.pid)  # type: ignore[union-attr]
                    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
                    cpu = cpu_seconds(gateway.proc.pid) - cpu  # type: ignore[union-attr]
                    results[name].append((cpu / args.calls * 1000 * 1000, statistics.median(latencies) * 1000))
        return {
            name: (statistics.median(c for c, _ in runs), statistics.median(p for _, p in runs))
            for name, runs in results.items()
        }

    with Bench() as bench:
        azurite = Azurite().start()
        bench.stops.append(azurite.stop)
        figures = asyncio.run(in_process(azurite.connection_string))
        print(f"ownership check (in process, Azurite): {args.calls} calls")
        print(
            f"  check:  {figures['check_cpu_us_per_call']:.0f} µs CPU per call, "
            f"{figures['check_round_trips_per_1000']:.0f} Table Storage round trips per 1,000 calls"
        )
        print(
            f"  check, cached: {figures['cached_check_cpu_us_per_call']:.0f} µs CPU per call, "
            f"{figures['cached_check_round_trips_per_1000']:.0f} Table Storage round trips per 1,000 calls"
        )
        print(
            f"  record: {figures['record_cpu_us_per_call']:.0f} µs CPU per call, "
            f"{figures['record_round_trips_per_1000']:.0f} Table Storage round trips per 1,000 calls"
        )
        if not args.gateway:
            return
        sim_proc, sim_url = start_simulator()
        bench.stops.append(lambda: terminate(sim_proc))
        gateway = GatewayProcess(
            {**gateway_settings(sim_url, azurite.connection_string), "GATEWAY_LOCAL_DEV_AUTH": "true"}
        )
        gateway.start()
        bench.stops.append(gateway.stop)
        first = httpx.post(
            f"{gateway.api}/openai/v1/responses",
            json={"model": DEPLOYMENT, "input": "Remember 7"},
            headers={"api-key": "local"},
            timeout=30,
        )
        first.raise_for_status()
        rows = asyncio.run(through_gateway(gateway, first.json()["id"]))
        print(
            f"through a gateway process: {args.calls} creates per variant x {args.rounds} rounds, c={args.concurrency}"
        )
        for name, (cpu, p50) in rows.items():
            print(f"  {name:52} {cpu:7.0f} ms CPU per 1,000 calls   p50 {p50:6.2f} ms")
