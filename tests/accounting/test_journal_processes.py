"""Several Python worker processes on one instance share one ledger journal directory (docs/tuning.md).

With ``FUNCTIONS_WORKER_PROCESS_COUNT`` > 1 the Functions host runs that many gateway processes side by side on an
instance; they have the same instance name (``WEBSITE_INSTANCE_ID``) and the same ``$HOME``. These tests run real
second and third processes (not threads, not mocks) against real files and Azurite: a live sibling's segment is
never replayed under it, a dead sibling's is replayed at once, and two processes replaying the same orphaned files
at the same moment (several processes starting together after a crash) still write each row exactly once.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime

from shared.accounting.journal import journal_files, replay
from shared.finance.usage_report import ledger_rows
from tests.azurite import ROOT

INSTANCE = "instance-1"  # what WEBSITE_INSTANCE_ID gives every process of one instance

# A gateway process in miniature: journals rows that storage has not confirmed yet, then stays alive until its
# stdin closes (like a process waiting on Table Storage), and prints the request ids it journaled.
WRITER = """
import json, sys
from pathlib import Path
from shared.accounting.journal import Journal
from tests.accounting.test_ledger import record
journal = Journal(Path(sys.argv[1]), sys.argv[2], host=sys.argv[3])
rows = [record(prompt=i) for i in range(int(sys.argv[4]))]
for row in rows:
    journal.append(row)
print(json.dumps([row.request_id for row in rows]), flush=True)
sys.stdin.read()
journal.close()
"""

# What the timer function or a process's start-up does: replay the orphaned files of the shared directory.
REPLAYER = """
import asyncio, json, sys
from pathlib import Path
from azure.data.tables.aio import TableClient
from shared.accounting.journal import replay
async def main():
    async with TableClient.from_connection_string(sys.argv[2], table_name=sys.argv[3]) as table:
        report = await replay(Path(sys.argv[1]), table, host=sys.argv[4])
    print(json.dumps(report.to_json()), flush=True)
asyncio.run(main())
"""


def start_writer(directory, target: str, rows: int) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory), target, INSTANCE, str(rows)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


async def ledger_ids(table) -> set[str]:
    today = datetime.now(UTC).date()
    return {row["RowKey"] for row in await ledger_rows(table, today, today)}


async def test_a_live_sibling_process_keeps_its_segment_and_a_dead_one_is_replayed_at_once(table, tmp_path):
    target = f"{table.url.rstrip('/')}/{table.table_name}"
    first, first_ids = start_writer(tmp_path, target, 3)
    second, second_ids = start_writer(tmp_path, target, 4)
    try:
        assert len(journal_files(tmp_path)) == 2
        # A third process on the same instance (the timer's) replays: both writers are alive, their rows are
        # theirs to confirm, so nothing is taken.
        report = await replay(tmp_path, table, host=INSTANCE)
        assert (report.files, report.rows) == (0, 0)
        assert len(journal_files(tmp_path)) == 2

        first.kill()  # SIGKILL, as the host's Process.Kill() does
        first.wait()
        report = await replay(tmp_path, table, host=INSTANCE)
        assert (report.files, report.rows) == (1, 3)  # the dead process's segment, at once (no 120 s wait)
        assert await ledger_ids(table) == set(first_ids)
        assert len(journal_files(tmp_path)) == 1  # the live sibling's segment is still there

        assert second.stdin is not None
        second.stdin.close()  # stops with its rows unconfirmed: the segment stays for replay
        second.wait(timeout=10)
        report = await replay(tmp_path, table, host=INSTANCE)
        assert (report.files, report.rows) == (1, 4)
        assert await ledger_ids(table) == set(first_ids) | set(second_ids)
        assert journal_files(tmp_path) == []
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_processes_replaying_the_same_orphans_at_once_write_each_row_once(
    table, tmp_path, storage_connection_string
):
    target = f"{table.url.rstrip('/')}/{table.table_name}"
    expected: set[str] = set()
    for rows in (150, 120):  # two processes that stopped with unconfirmed rows: their segments are orphaned
        proc, ids = start_writer(tmp_path, target, rows)
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
        expected |= set(ids)
    assert len(journal_files(tmp_path)) == 2

    replayers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            REPLAYER,
            str(tmp_path),
            storage_connection_string,
            table.table_name,
            INSTANCE,
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in replayers))
    reports = [json.loads(out) for out, _ in outputs]
    assert all(p.returncode == 0 for p in replayers)
    assert all(report["failed"] == [] for report in reports)
    assert sum(report["files"] for report in reports) >= 2  # each file replayed by one of them, or by both
    rows = await ledger_rows(table, datetime.now(UTC).date(), datetime.now(UTC).date())
    assert len(rows) == len(expected) == 270  # every row once: a replay is an upsert keyed by request id
    assert {row["RowKey"] for row in rows} == expected
    assert sum(row["PromptTokens"] for row in rows) == sum(range(150)) + sum(range(120))
    assert journal_files(tmp_path) == []
