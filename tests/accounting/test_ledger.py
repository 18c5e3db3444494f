"""The usage ledger writer against real Table Storage (Azurite): batching, idempotence."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta

from shared.accounting.journal import Journal, ReplayReport, journal_files, journal_target, read_journal
from shared.accounting.ledger import LEDGER_SHARDS, UsageLedger, UsageRecord, day_range_filter, ledger_partition
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
    assert {r["PartitionKey"][:10] for r in rows} == {today.strftime("%Y-%m-%d"), yesterday.strftime("%Y-%m-%d")}
    assert len({r["PartitionKey"] for r in rows}) > 2  # each day spread over shards


def test_a_day_is_spread_over_shards_by_request_id_and_sorts_by_time():
    at = datetime(2026, 11, 30, 14, 5, tzinfo=UTC)
    partitions = {ledger_partition(at, str(i)) for i in range(1000)}
    assert len(partitions) == LEDGER_SHARDS
    assert all(p.startswith("2026-11-30T14-") for p in partitions)
    assert ledger_partition(at, "abc") == ledger_partition(at, "abc")  # a rewrite or replay hits the same row
    query, parameters = day_range_filter(at.date(), at.date())
    assert all(parameters["first"] <= p < parameters["after"] for p in partitions | {"2026-11-30"})
    assert not parameters["first"] <= "2026-12-01T00-00" < parameters["after"]


async def test_a_process_writes_every_row_to_its_own_shard_and_a_replay_keeps_it(table, tmp_path):
    at = datetime(2026, 11, 30, 14, 5, tzinfo=UTC)
    rows = [dataclasses.replace(record(at=at), shard=UsageLedger(table).shard_at(at)) for _ in range(20)]
    assert len({r.partition for r in rows}) > 1  # processes start at independent shards
    moving = UsageLedger(table, flush_seconds=0.5)
    seen = {moving.shard_at(at + timedelta(seconds=0.5 * i)) for i in range(LEDGER_SHARDS)}
    assert len(seen) == LEDGER_SHARDS  # ... and move on each interval, so each spreads over all of them

    journal = Journal(tmp_path, journal_target(table))
    ledger = UsageLedger(table, journal=journal, flush_seconds=3600)
    written = [
        dataclasses.replace(record(at=at + timedelta(seconds=i)), shard=ledger.shard_at(at + timedelta(seconds=i)))
        for i in range(5)
    ]
    for row in written:
        await ledger.record(row)
    [segment] = journal_files(tmp_path)
    line = json.loads(segment.read_text().splitlines()[1])
    assert "shard" not in line  # the lines stay readable by the version before D56 (its reader refuses new fields)
    _, replayed = read_journal(segment, ReplayReport())
    assert [r.partition for r in replayed] == [r.partition for r in written]  # from the header's shard layout
    assert UsageRecord.from_json({**line, "a_future_field": 1}).request_id == line["request_id"]  # newer lines read
    assert dataclasses.replace(written[0], shard=None).partition == ledger_partition(
        written[0].at, written[0].request_id
    )
    journal.close()


async def test_one_process_writes_its_half_second_of_rows_in_one_transaction(table, monkeypatch):
    from shared.accounting import ledger as ledger_module

    transactions = []
    upsert = ledger_module.upsert_entities

    async def counted(table, entities, **kwargs):
        transactions.append(len(entities))
        return await upsert(table, entities, **kwargs)

    monkeypatch.setattr(ledger_module, "upsert_entities", counted)
    ledger = UsageLedger(table, flush_seconds=60)  # one interval: the 60 rows cannot straddle a shard change
    for row in (record() for _ in range(60)):
        await ledger.record(dataclasses.replace(row, shard=ledger.shard_at(row.at)))
    await ledger.flush()
    assert transactions == [60]


def test_journal_lines_written_before_the_price_columns_still_read():
    data = record().to_json()
    for name in ("cost", "currency", "price_version"):
        del data[name]
    assert UsageRecord.from_json(data).price_version is None


async def test_a_row_written_twice_counts_once(table):
    ledger = UsageLedger(table)
    same = record(request_id="fixed-id")
    await ledger.record(same)
    await ledger.flush()
    await ledger.record(same)
    await ledger.flush()
    assert len(await ledger_rows(table, same.at.date(), same.at.date())) == 1


async def test_the_timer_flushes_without_being_asked(table):

    ledger = UsageLedger(table, flush_seconds=0.05)
    one = record()
    await ledger.record(one)
    await asyncio.sleep(0.5)
    assert len(await ledger_rows(table, one.at.date(), one.at.date())) == 1
