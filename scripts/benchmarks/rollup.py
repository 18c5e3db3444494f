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
import math
import random
import time
import tracemalloc
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from azure.data.tables.aio import TableServiceClient

from shared.accounting.ledger import LEDGER_SHARDS, UsageLedger, UsageRecord
from shared.accounting.prices import parse_prices
from shared.finance.daily import DailyRollup
from shared.finance.rebuild import RebuildJobs
from shared.finance.usage_report import UsageQuery, daily_rows, ledger_rows, summarize
from shared.policy.callers import CallerPolicyStore
from tests.azurite import Azurite

ROOT = Path(__file__).resolve().parents[2]

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
                cost=str(cost) if cost is not None else None,
                currency="USD" if price else None,
                price_version=price.version if price else None,
            )
        )
    return out


async def measure(rows: int, callers: int, deployments: int) -> None:
    azurite = Azurite().start()
    try:
        async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
            ledger_table = await service.create_table("benchLedger")
            daily_table = await service.create_table("benchDaily")
            policies = CallerPolicyStore(await service.create_table("benchPolicies"))
            hourly_table = await service.create_table("benchHourly")
            rollup = DailyRollup(ledger_table, hourly_table, daily_table, policies)

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
            tracemalloc.start()  # what the timer's run holds at its peak (Python objects: the rows it reads)
            hour = await rollup.day(DAY, frozenset({23}))
            hour_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            assert hour.hours == ["23"]  # what the 5-minute timer does late in the day
            jobs = RebuildJobs(hourly_table, rollup)  # what POST /api/manage/usage/rebuild runs: a step per hour
            started = time.perf_counter()
            job = await jobs.run((await jobs.create(DAY, DAY, "bench")).id, hours_per_step=1)  # the slowest case
            job_seconds = time.perf_counter() - started
            assert job is not None and job.status == "done" and job.ledger_rows == rows
            assert first.ledger_rows == rows and again.daily_rows == first.daily_rows

            started = time.perf_counter()
            summary = await summarize(daily_rows(daily_table, UsageQuery(DAY, DAY, ("caller",))), ("caller",))
            query_seconds = time.perf_counter() - started
            exact = sum((Decimal(r.cost) for r in written if r.cost), start=Decimal(0))
            assert summary.totals.cost == exact and summary.totals.requests == rows  # the daily table is exact
    finally:
        azurite.stop()

    print(
        f"ledger rows for one day: {rows:,} ({callers} callers x {deployments} deployments, "
        f"{LEDGER_SHARDS} shards/hour)"
    )
    print(f"writing them through the ledger writer: {write_seconds:.1f} s ({rows / write_seconds:,.0f} rows/s)")
    print(f"baseline, reading every row of the day (what /api/usage did): {baseline_seconds:.2f} s")
    for label, report in (
        ("rollup of the whole day", first),
        ("again (idempotent)", again),
        ("one hour (timer)", hour),
    ):
        print(
            f"{label}: {report.seconds:.2f} s = {report.seconds / baseline_seconds:.2f} x baseline; "
            f"{report.ledger_rows:,} ledger rows, {report.read_requests} read and {report.write_requests} write "
            f"round trips, {report.daily_rows} daily rows, {report.deleted_rows} deleted"
        )
    print(f"rebuild job of the day (24 one-hour steps, progress saved after each): {job_seconds:.2f} s")
    print(f"one hour's rollup: peak Python memory {hour_peak_mb:.1f} MB for {hour.ledger_rows:,} ledger rows")
    print(
        f"/api/usage for the day from the daily table: {query_seconds * 1000:.0f} ms = "
        f"{query_seconds / baseline_seconds:.3f} x baseline ({first.daily_rows} rows instead of {rows:,})"
    )
    # Model: a run = reading its ledger rows (at the rate measured for the baseline's full read) + a fixed part
    # (hourly partials, daily rows, policies), measured as what is left of the run's time.
    read_rate = rows / baseline_seconds
    fixed_reads = hour.read_requests - math.ceil(hour.ledger_rows / 1000)
    hour_rows = ROWS_PER_DAY_AT_100_RPS / 24
    day_fixed = max(first.seconds - first.ledger_rows / read_rate, 0.0)
    hour_fixed = max(hour.seconds - hour.ledger_rows / read_rate, 0.0)
    print(
        f"extrapolated to 100 requests/s ({ROWS_PER_DAY_AT_100_RPS:,} ledger rows a day) at the measured "
        f"{read_rate:,.0f} ledger rows/s read rate:"
    )
    print(
        f"  whole-day rollup (after midnight, rebuild): {(ROWS_PER_DAY_AT_100_RPS / read_rate + day_fixed) / 60:.1f} "
        f"min, ~{math.ceil(ROWS_PER_DAY_AT_100_RPS / 1000):,} ledger pages + {first.write_requests} transactions"
    )
    timer_reads = math.ceil(hour_rows / 1000) + fixed_reads
    print(
        f"  a 5-minute timer run (one hour of ledger, {hour_rows:,.0f} rows): "
        f"{hour_rows / read_rate + hour_fixed:.0f} s, ~{timer_reads:,} reads + {hour.write_requests} transactions "
        f"(two hours early in an hour: twice the ledger part)"
    )
    step_fixed = max(job_seconds - rows / read_rate, 0.0) / 24
    job_day = ROWS_PER_DAY_AT_100_RPS / read_rate + 24 * step_fixed
    print(
        f"  a rebuild job: a day {job_day / 60:.0f} min (steps of ~{hour_rows / read_rate + step_fixed:.0f} s), "
        f"a 30-day month {30 * job_day / 3600:.1f} h, in the background (no HTTP request waits for it; a "
        f"recycled instance's job is resumed by the timer from its last step)"
    )
    month_reads = 30 * (288 * timer_reads + 2 * math.ceil(ROWS_PER_DAY_AT_100_RPS / 1000))
    print(
        f"  a month: ~{month_reads / 1e6:.1f} million read round trips by the timer "
        f"(~{month_reads / 30 / 86_400:.1f}/s) "
        f"against {ROWS_PER_DAY_AT_100_RPS * 30 / 1e6:.0f} million ledger rows written; /api/usage for a month reads "
        f"{first.daily_rows * 30:,} daily rows (~{math.ceil(first.daily_rows * 30 / 1000)} pages)"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.py rollup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--deployments", type=int, default=4)
    args = parser.parse_args(argv)
    asyncio.run(measure(args.rows, args.callers, args.deployments))
