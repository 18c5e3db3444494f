#!/usr/bin/env python3
"""Benchmark: the daily rollup of one day of ledger rows on a private Azurite, extrapolated to 100 requests/s.

    .venv/bin/python scripts/bench_rollup.py [--rows 100000] [--callers 200] [--deployments 4]

Writes ``--rows`` ledger rows for one UTC day through the ledger writer (sharded partitions, 100-row transactions),
then measures, in the same run:

* baseline: what ``/api/usage`` used to do for a day, read every per-call row and sum it in Python;
* the rollup of that day into the daily table (first run, then a re-run: idempotent, same rows);
* a month-style ``/api/usage`` query answered from the daily table.

It prints times, storage round trips (query pages, transactions) and the ratios to the baseline, then a linear
extrapolation to a day and a month at 100 requests/s (8.64 million ledger rows a day). Azurite is in-memory and
local, so absolute times are optimistic; round trips are what Azure bills and what scales.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from azure.data.tables.aio import TableServiceClient  # noqa: E402

from shared.accounting.ledger import LEDGER_SHARDS, UsageLedger, UsageRecord  # noqa: E402
from shared.accounting.prices import parse_prices  # noqa: E402
from shared.finance.daily import DailyRollup  # noqa: E402
from shared.finance.usage_report import UsageQuery, daily_rows, ledger_rows, summarize  # noqa: E402
from shared.policy.callers import CallerPolicyStore  # noqa: E402
from tests.azurite import Azurite  # noqa: E402

DAY = date(2026, 11, 30)
ROWS_PER_DAY_AT_100_RPS = 100 * 86_400
PRICES = parse_prices('{"d0": {"input": 0.15, "output": 0.6}, "d1": {"input": 2.5, "output": 10}}')


def records(rows: int, callers: int, deployments: int) -> list[UsageRecord]:
    rng = random.Random(7)
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    out = []
    for n in range(rows):
        deployment = f"d{n % deployments}"
        price = PRICES.get(deployment)
        prompt, completion = rng.randint(10, 4000), rng.randint(0, 1000)
        cost = price.cost_of(prompt, completion) if price else None
        out.append(
            UsageRecord(
                str(uuid.uuid4()),
                start + timedelta(seconds=n * 86_400 / rows),
                f"bench/caller-{rng.randrange(callers)}",
                "Bench caller",
                "bench",
                "api-key",
                None,
                "chat.completions",
                deployment,
                False,
                200,
                "completed",
                prompt,
                completion,
                0,
                0,
                False,
                float(cost) if cost is not None else None,
                5,
                str(cost) if cost is not None else None,
                "USD" if price else None,
                price.version if price else None,
            )
        )
    return out


async def main(rows: int, callers: int, deployments: int) -> None:
    azurite = Azurite().start()
    try:
        async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
            ledger_table = await service.create_table("benchLedger")
            daily_table = await service.create_table("benchDaily")
            policies = CallerPolicyStore(await service.create_table("benchPolicies"))
            rollup = DailyRollup(ledger_table, await service.create_table("benchHourly"), daily_table, policies)

            ledger = UsageLedger(ledger_table, flush_seconds=3600)
            started = time.perf_counter()
            written = records(rows, callers, deployments)
            for record in written:
                await ledger.record(record)
            assert await ledger.flush(3600)
            write_seconds = time.perf_counter() - started
            await ledger.close()

            started = time.perf_counter()
            raw = await ledger_rows(ledger_table, DAY, DAY)
            baseline_seconds = time.perf_counter() - started
            assert len(raw) == rows

            first = await rollup.day(DAY)
            again = await rollup.day(DAY)
            hour = await rollup.day(DAY, frozenset({23}))
            assert hour.hours == ["23"]  # what the 5-minute timer does late in the day
            assert first.ledger_rows == rows and again.daily_rows == first.daily_rows

            started = time.perf_counter()
            summary = await summarize(daily_rows(daily_table, UsageQuery(DAY, DAY, ("caller",))), ("caller",))
            query_seconds = time.perf_counter() - started
            exact = sum((Decimal(r.cost) for r in written if r.cost), start=Decimal(0))
            assert summary.totals.cost == exact and summary.totals.requests == rows  # the daily table is exact
    finally:
        azurite.stop()

    per_row = first.seconds / rows
    pages = first.read_requests
    day_runs = 24 * 12  # the timer re-derives today every 5 minutes
    print(
        f"ledger rows for one day: {rows:,} ({callers} callers x {deployments} deployments, "
        f"{LEDGER_SHARDS} shards/hour)"
    )
    print(f"writing them through the ledger writer: {write_seconds:.1f} s ({rows / write_seconds:,.0f} rows/s)")
    print(f"baseline, reading every row of the day (old /api/usage): {baseline_seconds:.2f} s")
    print(
        f"rollup, first run: {first.seconds:.2f} s = {first.seconds / baseline_seconds:.2f} x baseline; "
        f"{first.read_requests} read round trips, {first.write_requests} write transactions, "
        f"{first.daily_rows} daily rows"
    )
    print(
        f"rollup, re-run (idempotent): {again.seconds:.2f} s = {again.seconds / baseline_seconds:.2f} x baseline; "
        f"{again.read_requests} reads, {again.write_requests} writes, {again.deleted_rows} deleted"
    )
    print(
        f"/api/usage for the day from the daily table: {query_seconds * 1000:.1f} ms = "
        f"{query_seconds / baseline_seconds:.4f} x baseline ({first.daily_rows} rows instead of {rows:,})"
    )
    scale = ROWS_PER_DAY_AT_100_RPS / rows
    print("extrapolated to 100 requests/s (8.64 million ledger rows a day), linear in rows:")
    print(
        f"  rolling up a whole day once: {per_row * ROWS_PER_DAY_AT_100_RPS / 60:.1f} min, "
        f"{pages * scale:,.0f} read round trips"
    )
    average_today = ROWS_PER_DAY_AT_100_RPS / 2
    print(
        f"  the 5-minute timer re-reading today: on average {per_row * average_today / 60:.1f} min and "
        f"{pages * scale / 2:,.0f} reads per run, {pages * scale / 2 * day_runs:,.0f} reads a day"
    )
    print(
        f"  a month (30 days): {pages * scale / 2 * day_runs * 30:,.0f} reads by the timer, plus "
        f"{pages * scale * 2 * 30:,.0f} for the two after-midnight runs; "
        f"/api/usage for a month reads ~{first.daily_rows * 30 / 1000:.0f} pages of the daily table"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--deployments", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.callers, args.deployments))
