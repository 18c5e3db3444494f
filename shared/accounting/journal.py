"""The ledger journal: every usage row is appended to a local file before it waits for Table Storage.

Why: the ledger writes rows in batches, up to half a second late, and Table Storage can be away for
seconds or minutes. Rows that only live in memory in that time are lost when the process dies (a crash,
an OOM, or the Functions host killing the Python worker, which it does without any shutdown hook: see
docs/durability.md). So :class:`Journal` appends one JSON line per row (a write(2) to the page cache,
about a microsecond; optionally fsync'ed) and deletes a segment file once every row in it is confirmed
in the table. Whatever is left in the directory is, by construction, usage that may be missing from the
ledger: :func:`replay` writes it (an upsert keyed by PartitionKey/RowKey = ledger partition/request id, so replaying
twice changes nothing) and then deletes the file.

Segments: a process appends to one open segment at a time and starts a new one every ``rotate_seconds``,
so a segment is never appended to after it is ``rotate_seconds`` old. A replayer therefore only takes
files that are orphaned: written by a process on this machine that no longer runs, or untouched for
``stale_seconds`` (far longer than a rotation), which covers instances that vanished on a shared folder
(Azure Files at ``/home`` on Premium/Dedicated plans). Taking a live instance's closed segment would still be
harmless: the rows are upserted, and its owner writes the same rows again.

Files are named ``<host>.<pid>.<start-ms>.<seq>.jsonl``; the first line names the table the rows belong
to (endpoint, account, table), so a journal is never replayed into another storage account or emulator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.data.tables.aio import TableClient

from shared.accounting.ledger import BATCH_LIMIT, LEDGER_SHARDS, UsageRecord, mark_late_hours, shard_at
from shared.storage.batch import upsert_entities

log = logging.getLogger(__name__)

JOURNAL_VERSION = 1
ROTATE_SECONDS = 5.0
STALE_SECONDS = 120.0  # a file untouched this long is orphaned (a live segment is rotated every ROTATE_SECONDS)
SUFFIX = ".jsonl"
_NAME = re.compile(r"(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.(?P<start>\d+)\.(?P<seq>\d+)\.jsonl")


def instance_name(env: dict[str, str] | None = None) -> str:
    """This machine's name in journal file names: the Functions instance id in Azure, else the host name."""
    env = dict(os.environ) if env is None else env
    raw = env.get("WEBSITE_INSTANCE_ID") or socket.gethostname() or "local"
    return re.sub(r"[^A-Za-z0-9_-]", "-", raw)[:64]


def journal_target(table: TableClient) -> str:
    """The table a journal's rows belong to: endpoint, account and table (``http://127.0.0.1:10002/devstoreaccount1/
    gatewayUsage`` locally), so rows journaled against one Azurite or account never land in another."""
    return f"{table.url.rstrip('/')}/{table.table_name}"


@dataclass(eq=False)
class Segment:
    path: Path
    fd: int
    opened: float
    unconfirmed: int = 0
    closed: bool = False


@dataclass(frozen=True, eq=False)
class JournalEntry:
    """A row's place in the journal; confirming it lets its segment go once all its rows are in the table."""

    segment: Segment


class Journal:
    """Append-only segment files of usage rows, one open segment per process (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        target: str,
        *,
        fsync: bool = False,
        rotate_seconds: float = ROTATE_SECONDS,
        host: str | None = None,
    ) -> None:
        self.directory = directory
        self.target = target
        self.header_fields: dict[str, Any] = {}  # written into each segment's header (the ledger's shard layout)
        self.fsync = fsync
        self.rotate_seconds = rotate_seconds
        self.prefix = f"{host or instance_name()}.{os.getpid()}.{int(time.time() * 1000)}."
        self._seq = 0
        self._current: Segment | None = None
        self.errors = 0
        directory.mkdir(parents=True, exist_ok=True)

    def append(self, record: UsageRecord) -> JournalEntry:
        """Write the row's line (one write call; fsync'ed when configured). Raises OSError if the disk refuses."""
        segment = self._segment()
        line = (json.dumps(record.to_json(), separators=(",", ":")) + "\n").encode()
        _write_all(segment.fd, line)
        if self.fsync:
            os.fsync(segment.fd)
        segment.unconfirmed += 1
        return JournalEntry(segment)

    def confirm(self, entries: list[JournalEntry]) -> None:
        """These rows are in the table: a segment whose rows are all confirmed is closed and deleted."""
        for entry in entries:
            entry.segment.unconfirmed -= 1
        for segment in {entry.segment for entry in entries}:
            if segment.unconfirmed == 0:
                self._retire(segment)

    def close(self) -> None:
        """Stop appending; a segment with unconfirmed rows stays on disk for :func:`replay`."""
        if self._current is not None:
            self._close(self._current)
            if self._current.unconfirmed == 0:
                _unlink(self._current.path)
            self._current = None

    def owns(self, path: Path) -> bool:
        return path.name.startswith(self.prefix)

    def _segment(self) -> Segment:
        current = self._current
        if current is not None and time.monotonic() - current.opened < self.rotate_seconds:
            return current
        if current is not None:
            self._close(current)
            if current.unconfirmed == 0:
                _unlink(current.path)
        self._seq += 1
        path = self.directory / f"{self.prefix}{self._seq}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        header = {"journal": JOURNAL_VERSION, "target": self.target, **self.header_fields}
        _write_all(fd, (json.dumps(header, separators=(",", ":")) + "\n").encode())
        self._current = Segment(path, fd, time.monotonic())
        return self._current

    def _retire(self, segment: Segment) -> None:
        if segment is self._current:
            self._current = None
        self._close(segment)
        _unlink(segment.path)

    @staticmethod
    def _close(segment: Segment) -> None:
        if not segment.closed:
            segment.closed = True
            os.close(segment.fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass  # another instance replayed it already


# --- replay ------------------------------------------------------------------------------------------------


@dataclass
class ReplayReport:
    files: int = 0  # journal files replayed and removed
    rows: int = 0  # rows upserted
    corrupt_lines: int = 0  # unreadable lines (a line cut short by a crash is the usual one)
    skipped: list[str] = field(default_factory=list)  # files left alone, with the reason
    failed: list[str] = field(default_factory=list)  # files whose rows could not be written (kept for next time)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "rows": self.rows,
            "corrupt_lines": self.corrupt_lines,
            "skipped": self.skipped,
            "failed": self.failed,
        }


def orphaned(
    path: Path, *, host: str, stale_seconds: float, now: float | None = None, own_prefix: str | None = None
) -> bool:
    """Nobody will append to or confirm this file any more: its process on this machine is gone, or it is stale.

    ``own_prefix`` is this process's journal prefix: a file with this machine's name and this process's id but
    another start time is an earlier process's (containers reuse process ids after a restart)."""
    match = _NAME.fullmatch(path.name)
    try:
        age = (now or time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if match is not None and match["host"] == host:
        pid = int(match["pid"])
        if pid == os.getpid():
            if own_prefix is not None and not path.name.startswith(own_prefix):
                return True
        elif not _process_alive(pid):
            return True
    return age >= stale_seconds


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def journal_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(SUFFIX))


def read_journal(path: Path, report: ReplayReport) -> tuple[str | None, list[UsageRecord]]:
    """The target table named in the file's header, and its rows (unreadable lines are counted and skipped), each
    with the ledger shard its writer used when the header records the writer's shard layout."""
    target: str | None = None
    records: list[UsageRecord] = []
    layout: tuple[int, float] | None = None
    with path.open("rb") as file:
        for number, raw in enumerate(file):
            if not raw.endswith(b"\n"):
                report.corrupt_lines += 1  # the last line of a crashed process, cut short: never acknowledged
                continue
            try:
                data = json.loads(raw, parse_constant=_reject_constant)
                if number == 0:
                    target = str(data["target"]) if data.get("journal") == JOURNAL_VERSION else None
                    layout = _shard_layout(data)
                    continue
                record = UsageRecord.from_json(data)
                if layout is not None:
                    record = dataclasses.replace(record, shard=shard_at(record.at, *layout))
                records.append(record)
            except (ValueError, KeyError, TypeError, AttributeError):
                report.corrupt_lines += 1
    return target, records


def _shard_layout(header: dict[str, Any]) -> tuple[int, float] | None:
    offset, seconds = header.get("shard_offset"), header.get("shard_seconds")
    if isinstance(offset, bool) or isinstance(seconds, bool):
        return None
    if isinstance(offset, int) and 0 <= offset < LEDGER_SHARDS and isinstance(seconds, int | float) and seconds > 0:
        return offset, float(seconds)
    return None  # a file from before D56, or a header this version cannot read: shards from the request ids


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a journal holds")


async def upsert_records(table: TableClient, records: list[UsageRecord]) -> None:
    """Upsert rows in transactions of one partition and at most 100 rows (idempotent: keyed by request id)."""
    by_day: dict[str, list[UsageRecord]] = defaultdict(list)
    for record in records:
        by_day[record.partition].append(record)
    for rows in by_day.values():
        for start in range(0, len(rows), BATCH_LIMIT):
            chunk = rows[start : start + BATCH_LIMIT]
            await upsert_entities(table, [r.entity() for r in chunk])
    await mark_late_hours(table, records)  # replayed rows of hours already rolled up: the rollup re-derives them


async def replay(
    directory: Path,
    table: TableClient,
    *,
    every_file: bool = False,
    exclude: Journal | None = None,
    stale_seconds: float = STALE_SECONDS,
    host: str | None = None,
) -> ReplayReport:
    """Write the rows of orphaned journal files (or of every file, ``every_file``) to the table, then delete them.

    A file whose rows cannot all be written is kept for the next replay; replaying a file twice changes nothing.
    """
    report = ReplayReport()
    host = host or instance_name()
    target = journal_target(table)
    for path in journal_files(directory):
        if exclude is not None and exclude.owns(path):
            continue
        own_prefix = exclude.prefix if exclude is not None else None
        if not every_file and not orphaned(path, host=host, stale_seconds=stale_seconds, own_prefix=own_prefix):
            continue
        try:
            file_target, records = await asyncio.to_thread(read_journal, path, report)
        except FileNotFoundError:
            continue  # replayed by another instance meanwhile
        if file_target is not None and file_target != target:
            report.skipped.append(f"{path.name}: rows for {file_target}, not {target}")
            continue
        try:
            await upsert_records(table, records)
        except Exception as exc:  # storage still away: keep the file for the next replay
            report.failed.append(f"{path.name}: {type(exc).__name__}")
            continue
        _unlink(path)
        report.files += 1
        report.rows += len(records)
    if report.files or report.failed or report.skipped:
        log.warning("ledger journal replay: %s", report.to_json())
    return report
