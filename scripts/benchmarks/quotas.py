"""What quotas add to a call in the common case: reserve + settle on five limits, in process, on real Table Storage.

The gateway benchmark (scripts/bench.py) compares whole gateways, whose medians move by more than a quota check
costs on a shared 2-core machine. This measures the quota step itself: CPU per call of ``QuotaEnforcer.reserve``
and ``settle`` with all five limits on and none binding (leases warm, as for a caller within its limits), and
the Table Storage round trips they made, against a private Azurite.

    .venv/bin/python scripts/bench_quotas.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from pathlib import Path

from azure.data.tables.aio import TableServiceClient

from shared.accounting.prices import Price
from shared.auth.identity import ROLE_USE, Caller
from shared.policy.callers import CallerPolicyStore
from shared.protocol.calls import ModelCall
from shared.protocol.operations import CHAT
from shared.protocol.usage import Usage
from shared.quotas.counters import CounterStore
from shared.quotas.enforcer import QuotaEnforcer
from shared.quotas.leases import QuotaLeases
from shared.quotas.limits import Limit, Limits
from shared.settings import QuotaSettings
from tests.azurite import Azurite

ROOT = Path(__file__).resolve().parents[2]

LIMITS = Limits(
    {
        Limit.REQUESTS_PER_MINUTE: 10**9,
        Limit.TOKENS_PER_MINUTE: 10**12,
        Limit.TOKENS_PER_DAY: 10**12,
        Limit.TOKENS_PER_MONTH: 10**12,
        Limit.COST_USD_PER_MONTH: 10**6,
    }
)


async def measure(connection_string: str, calls: int) -> None:
    async with TableServiceClient.from_connection_string(connection_string) as service:
        counters = await service.create_table_if_not_exists("gatewayQuota")
        policies = await service.create_table_if_not_exists("gatewayCallerPolicies")
        leases = QuotaLeases(CounterStore(counters, uuid.uuid4().hex))
        for settings, label in (
            (QuotaSettings(), "quotas off (no limit applies)"),
            (QuotaSettings(defaults=LIMITS), "quotas on (5 limits)"),
        ):
            enforcer = QuotaEnforcer(
                settings,
                leases,
                CallerPolicyStore(policies),
                {"gpt-4o-mini": Price(0.15, 0.075, 0.6)},
                output_ceiling=16384,
            )
            caller = Caller(f"bench/{uuid.uuid4().hex[:8]}", "bench", "bench", "app", frozenset({ROLE_USE}))
            call = ModelCall(CHAT, "gpt-4o-mini", "2024-10-21", {}, False, False, 40, 200)
            for _ in range(200):  # warm: policy cache, first leases
                enforcer.settle(await enforcer.reserve(caller, call), Usage(40, 100))
            before = leases.storage_changes
            samples = []
            cpu = time.process_time()
            for _ in range(calls):
                started = time.perf_counter()
                enforcer.settle(await enforcer.reserve(caller, call), Usage(40, 100))
                samples.append(time.perf_counter() - started)
            cpu = time.process_time() - cpu
            samples.sort()
            print(
                f"{label:32} p50 {statistics.median(samples) * 1e6:7.1f} µs   "
                f"p99 {samples[int(len(samples) * 0.99)] * 1e6:8.1f} µs   "
                f"CPU {cpu / calls * 1e6:6.1f} µs/call   storage round trips {leases.storage_changes - before} "
                f"({1000 * (leases.storage_changes - before) / calls:.2f} per 1,000 calls)"
            )
        await leases.aclose()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args(argv)
    azurite = Azurite().start()
    try:
        asyncio.run(measure(azurite.connection_string, args.calls))
    finally:
        azurite.stop()
