"""The usage ledger writer against real Table Storage (Azurite): batching, idempotence."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from shared.accounting.ledger import UsageLedger, UsageRecord
from shared.finance.usage_report import ledger_rows


def record(
    caller="t/alice",
    deployment="gpt-4o-mini",
    at=None,
    prompt=10,
    completion=5,
    cost=0.001,
    request_id=None,
    status=200,
    estimated=False,
) -> UsageRecord:
    return UsageRecord(
        request_id or str(uuid.uuid4()),
        at or datetime.now(UTC),
        caller,
        caller.upper(),
        "t",
        "api-key",
        None,
        "chat.completions",
        deployment,
        False,
        status,
        "completed",
        prompt,
        completion,
        0,
        0,
        estimated,
        cost,
        12,
    )


async def test_rows_are_batched_across_days_and_beyond_a_hundred(table):
    ledger = UsageLedger(table, flush_seconds=60)  # only explicit flushes
    today = datetime.now(UTC)
    yesterday = today - timedelta(days=1)
    for i in range(150):
        await ledger.record(record(at=today if i % 3 else yesterday))
    await ledger.flush()

    rows = await ledger_rows(table, yesterday.date(), today.date())
    assert len(rows) == 150
    assert {r["PartitionKey"] for r in rows} == {today.strftime("%Y-%m-%d"), yesterday.strftime("%Y-%m-%d")}


async def test_a_row_written_twice_counts_once(table):
    ledger = UsageLedger(table)
    same = record(request_id="fixed-id")
    await ledger.record(same)
    await ledger.flush()
    await ledger.record(same)
    await ledger.flush()
    assert len(await ledger_rows(table, same.at.date(), same.at.date())) == 1


async def test_the_timer_flushes_without_being_asked(table):
    import asyncio

    ledger = UsageLedger(table, flush_seconds=0.05)
    one = record()
    await ledger.record(one)
    await asyncio.sleep(0.5)
    assert len(await ledger_rows(table, one.at.date(), one.at.date())) == 1
