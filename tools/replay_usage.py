"""Replay usage rows left in the ledger journal into Table Storage: "logged for replay" made true.

Each instance appends every usage row to its journal before the row waits for Table Storage and deletes a
journal file once all its rows are in the table (docs/durability.md). Files still there after their
process stopped hold usage that may be missing from the ledger. Instances replay orphaned files themselves
(at start-up and every 5 minutes, ``shared/timers.py``); this command does it on demand, e.g. after an outage
or before closing a month:

    python -m tools.replay_usage                  # orphaned files of the configured journal directory
    python -m tools.replay_usage --all            # every file (only when no gateway process is running)
    python -m tools.replay_usage --journal DIR --dry-run

Settings come from the environment (and ``local.settings.json`` locally), as for the gateway: the same
``GATEWAY_LEDGER_JOURNAL_DIR`` and Table Storage. Replays are idempotent: a row's key is its day and request
id, so replaying the same file twice changes nothing. It prints a JSON report and exits 1 if any file could
not be written (it is kept for the next replay).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from azure.core.credentials_async import AsyncTokenCredential

from shared.accounting.journal import (
    STALE_SECONDS,
    ReplayReport,
    instance_name,
    journal_files,
    orphaned,
    read_journal,
    replay,
)
from shared.local.devhost import ROOT, load_local_settings
from shared.settings import settings_from_env
from shared.storage.tables import USAGE_TABLE, table_service


async def run(directory: Path, *, every_file: bool, dry_run: bool) -> ReplayReport:
    if dry_run:
        report = ReplayReport()
        host = instance_name()
        for path in journal_files(directory):
            if every_file or orphaned(path, host=host, stale_seconds=STALE_SECONDS):
                _, records = read_journal(path, report)
                report.files += 1
                report.rows += len(records)
        return report
    settings = settings_from_env(os.environ)
    credential: AsyncTokenCredential | None = None

    def managed_identity() -> AsyncTokenCredential:
        nonlocal credential
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        return credential

    service = table_service(settings.storage, managed_identity)
    try:
        async with service.get_table_client(USAGE_TABLE) as table:
            return await replay(directory, table, every_file=every_file)
    finally:
        await service.close()
        if credential is not None:
            await credential.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--journal", type=Path, help="journal directory (default: GATEWAY_LEDGER_JOURNAL_DIR)")
    parser.add_argument("--all", action="store_true", help="replay every file, not only orphaned ones")
    parser.add_argument("--dry-run", action="store_true", help="count what would be replayed, write nothing")
    parser.add_argument("--settings", type=Path, default=ROOT / "local.settings.json")
    args = parser.parse_args(argv)
    for key, value in load_local_settings(args.settings).items():
        os.environ.setdefault(key, value)
    directory = args.journal
    if directory is None:
        configured = settings_from_env(os.environ).ledger.journal_dir
        if configured is None:
            print("GATEWAY_LEDGER_JOURNAL_DIR is off: there is no journal to replay.", file=sys.stderr)
            return 2
        directory = Path(configured)
    report = asyncio.run(run(directory, every_file=args.all, dry_run=args.dry_run))
    print(json.dumps(report.to_json(), indent=2))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
