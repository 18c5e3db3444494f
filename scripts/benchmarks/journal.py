"""What the ledger journal costs per call: ``UsageLedger.record`` without a journal (baseline), with the journal
(one write(2) per row) and with the journal fsync'ed per row, measured in the same run on the same disk.

The journal is appended on the request path of every settled call, so its cost is per call; see
docs/durability.md for the figures and the loss window of each choice.

    .venv/bin/python scripts/bench_journal.py [--rows 3000] [--dir /path/on/the/disk/to/measure]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from azure.data.tables.aio import TableClient

from shared.accounting.journal import Journal
from shared.accounting.ledger import BacklogLimits, UsageLedger
from tests.accounting.test_ledger import record
from tests.azurite import connection_string, free_port

ROOT = Path(__file__).resolve().parents[2]


async def per_row_us(rows: int, journal: Journal | None) -> list[float]:
    # Nothing is written to a table: the writer waits a minute before its first batch; only record() is timed.
    table = TableClient.from_connection_string(connection_string(free_port()), "benchjournal")
    ledger = UsageLedger(table, journal=journal, flush_seconds=60, limits=BacklogLimits(max_rows=10**9))
    records = [record() for _ in range(rows)]
    times = []
    for r in records:
        start = time.perf_counter()
        await ledger.record(r)
        times.append((time.perf_counter() - start) * 1e6)
    if journal is not None:
        journal.close()
    await ledger.close(within=0.01)
    await table.close()
    return times


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    return f"median {statistics.median(ordered):8.1f} µs   p99 {ordered[int(len(ordered) * 0.99)]:8.1f} µs"


async def measure(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--dir", type=Path, default=None, help="where to put the journal (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        base = await per_row_us(args.rows, None)
        plain = await per_row_us(args.rows, Journal(Path(directory) / "plain", "bench/journal"))
        synced = await per_row_us(args.rows, Journal(Path(directory) / "fsync", "bench/journal", fsync=True))
    baseline = statistics.median(base)
    print(f"rows per variant: {args.rows}, journal under {args.dir or tempfile.gettempdir()}")
    print(f"record() without journal : {summary(base)}   ratio 1.00")
    print(f"record() + journal       : {summary(plain)}   ratio {statistics.median(plain) / baseline:.2f}")
    print(f"record() + journal fsync : {summary(synced)}   ratio {statistics.median(synced) / baseline:.2f}")


def main(argv: list[str]) -> None:
    asyncio.run(measure(argv))
