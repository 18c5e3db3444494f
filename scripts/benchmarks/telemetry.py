"""Telemetry overhead: CPU per call of the instrumentation in process, and gateways with telemetry off, every call
traced and one in ten traced, compared in interleaved rounds through real processes (docs/observability.md).

    .venv/bin/python scripts/bench_telemetry.py [--requests 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

from scripts.benchmarks.common import DEPLOYMENT, V1_PATH, Target, drive, start_simulator, summarize
from tests.azurite import Azurite, terminate
from tests.gateway_process import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]


async def run(gateway: GatewayProcess, total: int, concurrency: int, stream: bool) -> dict[str, float]:
    assert gateway.proc is not None
    target = Target(
        "gateway",
        "gateway",
        gateway.base_url,
        gateway.proc.pid,
        {"authorization": "Bearer b"},
        {"v1": "/api" + V1_PATH},
        DEPLOYMENT,
    )
    return summarize(await drive(target, "v1", stream, total, concurrency))


def telemetry_cpu_per_call(calls: int = 10_000) -> None:
    """CPU time the instrumentation itself adds to one call (in this process, no network, so the machine's load does
    not blur it): telemetry off (the no-op observation), on with the call sampled out, on with the call traced
    (spans batched to an exporter writing to /dev/null). "request thread" is what the request path pays; "process"
    adds the exporter thread's serializing (Azure Monitor's exporter also serializes off the request path)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    from shared import telemetry
    from shared.protocol.calls import ModelCall
    from shared.protocol.operations import V1_CHAT
    from shared.protocol.usage import Usage

    call = ModelCall(V1_CHAT, "gpt-4o-mini", None, {}, False, False, 11, 16)
    usage = Usage(11, 16)

    def one_call() -> None:
        observation = telemetry.observe_request(V1_CHAT, "7b0e4d2a-6f1c-4a51-9d0e-2c6f3b8a9e10")
        observation.identified("tenant/8c1d5e8e-0000-4000-8000-000000000001", call)
        with observation.quota_reserve():
            pass
        with observation.upstream():
            pass
        observation.answered("gpt-4o-mini-2024-07-18")
        with observation.settle_step():
            pass
        observation.settled(usage, 200, "completed", 0.0000113)

    devnull = open(os.devnull, "w")  # noqa: SIM115 (closed below)
    cases = {"off": telemetry.Telemetry()}
    providers = []
    for name, sampler in (("on, call sampled out", ALWAYS_OFF), ("on, call traced", ALWAYS_ON)):
        tracer_provider = TracerProvider(sampler=sampler)
        exporter = ConsoleSpanExporter(out=devnull)
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=8 * calls))
        providers.append(tracer_provider)
        cases[name] = telemetry.Telemetry(tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))
    print(f"\ntelemetry CPU per call, in process ({calls} calls each): request thread, process")
    previous = telemetry.active()
    try:
        for name, instance in cases.items():
            telemetry.install(instance)
            for _ in range(1000):  # warm-up
                one_call()
            thread_started, process_started = time.thread_time(), time.process_time()
            for _ in range(calls):
                one_call()
            thread = time.thread_time() - thread_started
            for provider in providers:
                provider.force_flush()  # the exporter's share of this case, before the clock stops
            process = time.process_time() - process_started
            print(f"  {name:28} {thread / calls * 1e6:8.1f} µs {process / calls * 1e6:8.1f} µs")
    finally:
        telemetry.install(previous)
        for provider in providers:
            provider.shutdown()
        devnull.close()


def compare_telemetry(gateways: dict[str, GatewayProcess], args: argparse.Namespace) -> None:
    """Telemetry off vs on, in interleaved rounds (off, on, on-sampled, then the next round in rotated order), so
    the machine's load drifts over all of them alike; reports medians over rounds of p50 and of the ratio to off."""
    per_round = max(20, args.requests // args.rounds)
    print(f"\ntelemetry on/off: {args.rounds} interleaved rounds of {per_round} requests per case")
    print(f"{'case':44} {'p50 ms':>8} {'p95 ms':>8} {'ratio p50':>10} {'ratio p95':>10}")
    names = list(gateways)
    for stream in (False, True):
        for concurrency in (1, 8):
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
            for round_ in range(args.rounds):
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    samples[name].append(asyncio.run(run(gateways[name], per_round, concurrency, stream)))
            label = f"{'stream' if stream else 'json'} c={concurrency}"
            for name in names:
                ratios = [r["p50_ms"] / o["p50_ms"] for r, o in zip(samples[name], samples["off"], strict=True)]
                ratios95 = [r["p95_ms"] / o["p95_ms"] for r, o in zip(samples[name], samples["off"], strict=True)]
                print(
                    f"{label + ' telemetry ' + name:44} {statistics.median(r['p50_ms'] for r in samples[name]):8.2f} "
                    f"{statistics.median(r['p95_ms'] for r in samples[name]):8.2f} "
                    f"{statistics.median(ratios):10.3f} {statistics.median(ratios95):10.3f}"
                )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args(argv)
    azurite = Azurite().start()
    sim_proc, sim_url = start_simulator()
    common = {
        "AZURE_OPENAI_ENDPOINT": sim_url,
        "GATEWAY_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "GATEWAY_LOCAL_DEV_AUTH": "true",
        "GATEWAY_PRICES": '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}',
    }
    gateways = {}
    try:
        gateways["off"] = GatewayProcess(common).start()
        gateways["every call traced"] = GatewayProcess({**common, "GATEWAY_TELEMETRY": "console"}).start()
        gateways["10% traced"] = GatewayProcess(
            {**common, "GATEWAY_TELEMETRY": "console", "GATEWAY_TELEMETRY_TRACE_SAMPLE_RATIO": "0.1"}
        ).start()
        print(f"{os.cpu_count()} cores; all processes share them")
        telemetry_cpu_per_call()
        compare_telemetry(gateways, args)
    finally:
        for gateway in gateways.values():
            gateway.stop()
        terminate(sim_proc)
        azurite.stop()
