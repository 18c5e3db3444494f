"""The ledger journal and its replay, against real files and real Table Storage (Azurite)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from azure.data.tables.aio import TableClient

from shared.accounting.journal import Journal, journal_files, journal_target, orphaned, replay
from shared.accounting.ledger import BacklogLimits, UsageLedger
from shared.errors import GatewayError
from shared.finance.usage_report import ledger_rows
from tests.accounting.test_ledger import record
from tests.azurite import connection_string, free_port


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def _totals(table) -> tuple[int, int]:
    today = datetime.now(UTC).date()
    rows = await ledger_rows(table, today, today)
    return len(rows), sum(r["PromptTokens"] + r["CompletionTokens"] for r in rows)


async def test_a_segment_is_deleted_once_all_its_rows_are_in_the_table(table, tmp_path):
    journal = Journal(tmp_path, journal_target(table))
    ledger = UsageLedger(table, journal=journal, flush_seconds=60)
    for _ in range(3):
        await ledger.record(record())
    [segment] = journal_files(tmp_path)
    assert len(segment.read_text().splitlines()) == 4  # header + 3 rows
    assert await ledger.flush(within=10)
    assert journal_files(tmp_path) == []
    await ledger.close()


async def test_replaying_the_same_rows_twice_changes_nothing(table, tmp_path):
    journal = Journal(tmp_path / "live", journal_target(table))
    for i in range(150):
        journal.append(record(prompt=i))
    journal.close()
    [segment] = journal_files(tmp_path / "live")
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(segment, copy / segment.name)

    first = await replay(tmp_path / "live", table, every_file=True)
    assert (first.files, first.rows) == (1, 150)
    assert journal_files(tmp_path / "live") == []  # replayed files are removed
    after_first = await _totals(table)
    second = await replay(copy, table, every_file=True)
    assert second.rows == 150
    assert await _totals(table) == after_first == (150, sum(range(150)) + 150 * 5)


async def test_only_orphaned_files_are_replayed_unless_asked(table, tmp_path):
    live = Journal(tmp_path, journal_target(table), host="here")
    live.append(record())  # this process is alive: its open segment is not orphaned
    dead = tmp_path / f"here.{_dead_pid()}.1.1.jsonl"
    shutil.copy(journal_files(tmp_path)[0], dead)
    elsewhere = tmp_path / "there.1.1.1.jsonl"  # another instance's recent file (a shared folder)
    shutil.copy(dead, elsewhere)

    assert orphaned(dead, host="here", stale_seconds=120)
    assert not orphaned(elsewhere, host="here", stale_seconds=120)
    assert orphaned(elsewhere, host="here", stale_seconds=120, now=time.time() + 121)
    report = await replay(tmp_path, table, exclude=live, host="here")
    assert (report.files, report.rows) == (1, 1)
    assert not dead.exists() and elsewhere.exists()
    live.close()


async def test_a_line_cut_short_by_a_crash_is_skipped_and_the_rest_replayed(table, tmp_path):
    journal = Journal(tmp_path, journal_target(table))
    journal.append(record(request_id="whole"))
    journal.close()
    [segment] = journal_files(tmp_path)
    with segment.open("ab") as file:
        file.write(b'{"request_id": "cut')
    report = await replay(tmp_path, table, every_file=True)
    assert (report.rows, report.corrupt_lines) == (1, 1)


async def test_a_journal_is_never_replayed_into_another_table(table, tmp_path):
    journal = Journal(tmp_path, "otheraccount/gatewayUsage")
    journal.append(record())
    journal.close()
    report = await replay(tmp_path, table, every_file=True)
    assert report.rows == 0 and len(report.skipped) == 1
    assert len(journal_files(tmp_path)) == 1


async def test_a_row_after_an_idle_spell_is_written_without_a_flush(table):
    ledger = UsageLedger(table, flush_seconds=0.05)
    await ledger.record(record())
    await asyncio.sleep(0.3)
    await ledger.record(record())
    for _ in range(40):
        if (await _totals(table))[0] == 2:
            break
        await asyncio.sleep(0.05)
    assert (await _totals(table))[0] == 2
    await ledger.close()


async def test_while_storage_is_away_rows_are_kept_and_calls_refused_past_the_limit(table, tmp_path):
    # A real Table client aimed at a port where nothing listens: every write fails, none may be dropped.
    away = TableClient.from_connection_string(connection_string(free_port()), table.table_name, retry_total=0)
    journal = Journal(tmp_path, journal_target(away))
    ledger = UsageLedger(away, journal=journal, flush_seconds=0.01, limits=BacklogLimits(max_rows=5, max_seconds=60))
    for i in range(4):
        await ledger.record(record(prompt=i))
        ledger.admit()  # within the limit: calls are still served
    await ledger.record(record(prompt=4))
    await asyncio.sleep(0.3)
    assert ledger.backlog_rows == 5 and ledger.failures >= 1  # retried, never dropped
    with pytest.raises(GatewayError) as refused:
        ledger.admit()
    assert (refused.value.status, refused.value.code) == (503, "ledger_backlog")
    assert refused.value.headers["Retry-After"]
    status = ledger.status()
    assert status["ok"] is False and status["backlog_rows"] == 5
    await ledger.close(within=0.1)
    await away.close()

    # The journal kept every row: replayed into the reachable table, they are all there.
    report = await replay(tmp_path, table, every_file=True)
    assert report.rows == 5
    assert await _totals(table) == (5, sum(range(5)) + 5 * 5)


async def test_calls_are_refused_when_the_oldest_row_waits_too_long(table, tmp_path):
    away = TableClient.from_connection_string(connection_string(free_port()), table.table_name, retry_total=0)
    ledger = UsageLedger(away, flush_seconds=0.01, limits=BacklogLimits(max_rows=1000, max_seconds=0.2))
    await ledger.record(record())
    ledger.admit()
    await asyncio.sleep(0.3)
    with pytest.raises(GatewayError):
        ledger.admit()
    await ledger.close(within=0.1)
    await away.close()


def test_a_journal_file_is_private_to_the_gateway(tmp_path):
    journal = Journal(tmp_path, "a/b")
    journal.append(record())
    [segment] = journal_files(tmp_path)
    assert os.stat(segment).st_mode & 0o077 == 0
    journal.close()
