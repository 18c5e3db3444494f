"""The daily usage table derived from the ledger (Azurite): exact sums, idempotent rebuilds, late rows."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from shared.accounting.journal import Journal, journal_target, replay
from shared.accounting.ledger import UsageLedger, UsageRecord, late_hours
from shared.finance.daily import RollupPlan, integer, merge_plans, timer_plan
from shared.policy.callers import CallerPolicy

DAY = date(2026, 11, 30)


def usage(caller: str, deployment: str, hour: int, prompt: int, completion: int, cost: str | None, **kw) -> UsageRecord:
    return UsageRecord(
        request_id=kw.pop("request_id", str(uuid.uuid4())),
        at=datetime(DAY.year, DAY.month, DAY.day, hour, 30, tzinfo=UTC),
        caller_id=caller,
        caller_name=caller.upper(),
        tenant="t",
        auth_method="api-key",
        key_id=None,
        operation="chat.completions",
        deployment=deployment,
        stream=False,
        status=kw.pop("status", 200),
        outcome="completed",
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=kw.pop("cached", 0),
        reasoning_tokens=0,
        estimated=False,
        cost_usd=float(cost) if cost else None,
        duration_ms=5,
        cost=cost,
        currency="USD" if cost else None,
        price_version="m@seed-1" if cost else None,
    )


async def write(tables, records: list[UsageRecord]) -> None:
    ledger = UsageLedger(tables.ledger, flush_seconds=60)
    for record in records:
        await ledger.record(record)
    assert await ledger.flush(10)
    await ledger.close()


async def daily(tables) -> dict[str, dict]:
    """The day's rows by ``caller|deployment`` (each pair has one row here: one price version, one attribute set)."""
    rows = [dict(e) async for e in tables.daily.query_entities("PartitionKey eq @d", parameters={"d": "2026-11-30"})]
    keyed = {f"{row['CallerId']}|{row['Deployment']}": row for row in rows}
    assert len(keyed) == len(rows)
    return keyed


def comparable(rows: dict[str, dict]) -> dict[str, dict]:
    return {
        k: {n: (integer(v) if n.endswith(("Tokens", "Requests")) else v) for n, v in r.items()} for k, r in rows.items()
    }


async def test_a_day_sums_exactly_per_caller_and_deployment_with_chargeback(finance_tables):
    await finance_tables.policies.put(CallerPolicy("t/alice", cost_center="CC-100", owner="Ann", tags={"app": "x"}))
    records = [usage("t/alice", "m", h, 1000 + h, 10, "0.00001575") for h in range(24)]
    records += [usage("t/alice", "m", 3, 5, 0, "0", status=429)]  # priced like every call: cost 0
    records += [usage("t/bob", "m", 23, 2_000_000_000, 1_000_000_000, "1000.000000001")] * 1  # beyond Int32
    records += [usage("t/bob", "e", 0, 7, 0, None)]  # unpriced
    await write(finance_tables, records)

    report = await finance_tables.rollup.day(DAY)
    assert (report.ledger_rows, report.daily_rows, report.deleted_rows) == (27, 3, 0)
    assert len(report.hours) == 25  # 24 hours and the unsharded rows
    rows = await daily(finance_tables)
    alice = rows["t/alice|m"]
    assert integer(alice["Requests"]) == 25 and integer(alice["FailedRequests"]) == 1
    assert integer(alice["PromptTokens"]) == sum(1000 + h for h in range(24)) + 5
    assert Decimal(alice["CostExact"]) == Decimal("0.00001575") * 24 and alice["CostExact"] == "0.000378"
    assert (alice["CostCenter"], alice["Owner"], alice["Tags"]) == ("CC-100", "Ann", '{"app": "x"}')
    assert (alice["Currency"], alice["PriceVersions"], alice["Month"]) == ("USD", "m@seed-1", "2026-11")
    bob = rows["t/bob|m"]
    assert integer(bob["TotalTokens"]) == 3_000_000_000 and bob["CostExact"] == "1000.000000001"
    assert integer(rows["t/bob|e"]["UnpricedRequests"]) == 1 and rows["t/bob|e"]["CostExact"] == "0"


async def test_rebuilding_twice_gives_identical_rows_and_late_rows_are_picked_up(finance_tables):
    await write(finance_tables, [usage("t/alice", "m", h, 10, 5, "0.001") for h in range(5)])
    await finance_tables.rollup.day(DAY)
    first = comparable(await daily(finance_tables))
    again = await finance_tables.rollup.day(DAY)
    assert comparable(await daily(finance_tables)) == first and again.daily_rows == 1

    late = usage("t/alice", "m", 23, 1, 1, "0.5")  # settled on the day, written after its rollup
    await write(finance_tables, [late, late])  # and twice: counted once
    await finance_tables.rollup.day(DAY)
    row = (await daily(finance_tables))["t/alice|m"]
    assert integer(row["Requests"]) == 6 and row["CostExact"] == "0.505"


async def test_a_request_id_in_two_shards_counts_once_and_stale_rows_go(finance_tables):
    record = usage("t/alice", "m", 1, 10, 5, "0.001", request_id="same")
    await write(finance_tables, [record])
    entity = record.entity()
    entity["PartitionKey"] = "2026-11-30"  # the same row under the pre-sharding key
    await finance_tables.ledger.upsert_entity(entity)
    stale = {"PartitionKey": "2026-11-30", "RowKey": "gone|m", "CallerId": "gone", "Deployment": "m", "Requests": 1}
    await finance_tables.daily.upsert_entity(stale)
    report = await finance_tables.rollup.day(DAY)
    assert (report.ledger_rows, report.daily_rows, report.deleted_rows) == (1, 1, 1)  # counted once
    assert integer((await daily(finance_tables))["t/alice|m"]["Requests"]) == 1


async def test_the_timer_re_derives_only_recent_hours_and_hours_never_derived(finance_tables):
    await write(finance_tables, [usage("t/alice", "m", h, 10, 5, "0.001") for h in (1, 5, 9)])
    report = await finance_tables.rollup.day(DAY, frozenset({9}))
    assert report.hours == [f"{h:02d}" for h in range(10)]  # 0-8 were never derived
    assert integer((await daily(finance_tables))["t/alice|m"]["Requests"]) == 3

    await write(finance_tables, [usage("t/alice", "m", 9, 1, 1, "0.5"), usage("t/alice", "m", 1, 1, 1, "0.5")])
    report = await finance_tables.rollup.day(DAY, frozenset({9}))
    assert report.hours == ["09"] and report.ledger_rows == 2  # one hour read, not the day
    assert integer((await daily(finance_tables))["t/alice|m"]["Requests"]) == 4  # the late 01:30 row waits

    await finance_tables.rollup.day(DAY)  # the after-midnight run (or a rebuild) re-derives every hour
    row = (await daily(finance_tables))["t/alice|m"]
    assert integer(row["Requests"]) == 5 and row["CostExact"] == "1.003"


def test_the_timer_plan():
    plan = timer_plan(datetime(2026, 12, 1, 14, 20, tzinfo=UTC))
    assert plan == [RollupPlan(date(2026, 12, 1), frozenset({14}))]
    plan = timer_plan(datetime(2026, 12, 1, 14, 5, 30, tzinfo=UTC))
    assert plan == [RollupPlan(date(2026, 12, 1), frozenset({13, 14}))]
    plan = timer_plan(datetime(2026, 12, 1, 0, 10, 30, tzinfo=UTC))
    assert plan == [RollupPlan(date(2026, 11, 30), None), RollupPlan(date(2026, 12, 1), frozenset({0}))]
    assert timer_plan(datetime(2026, 12, 1, 6, 0, 30, tzinfo=UTC))[0] == RollupPlan(date(2026, 11, 30), None)
    assert len(timer_plan(datetime(2026, 12, 1, 6, 0, tzinfo=UTC) + timedelta(minutes=20))) == 1


def attributed(record: UsageRecord, cost_center: str, tags: str = "") -> UsageRecord:
    """The row as settlement writes it: the caller's chargeback attributes fixed on it."""
    return dataclasses.replace(record, cost_center=cost_center, owner="Ann", department="Research", tags=tags)


async def test_history_never_moves_when_a_callers_attributes_change(finance_tables):
    """Attributes are fixed when a call settles: a rebuild after a cost center change reproduces the day exactly, a
    change during the day starts a second row, and rows written before the attributes existed are flagged."""
    await finance_tables.policies.put(CallerPolicy("t/alice", cost_center="CC-NOW", owner="Zed"))
    morning = [attributed(usage("t/alice", "m", h, 10, 5, "0.001"), "CC-100", '{"app": "x"}') for h in (1, 2)]
    evening = [attributed(usage("t/alice", "m", 20, 10, 5, "0.001"), "CC-200")]
    legacy = [usage("t/bob", "m", 3, 1, 1, "0.5")]  # written before rows carried attributes
    await write(finance_tables, morning + evening + legacy)
    await finance_tables.rollup.day(DAY)
    rows = [dict(e) async for e in finance_tables.daily.list_entities()]
    by_center = {(r["CallerId"], r["CostCenter"]): r for r in rows}
    assert set(by_center) == {("t/alice", "CC-100"), ("t/alice", "CC-200"), ("t/bob", "")}
    assert integer(by_center[("t/alice", "CC-100")]["Requests"]) == 2
    assert by_center[("t/alice", "CC-100")]["Tags"] == '{"app": "x"}'
    assert by_center[("t/alice", "CC-100")]["Owner"] == "Ann"  # not the policy's "Zed"
    assert by_center[("t/alice", "CC-100")]["Attribution"] == "settlement"
    assert by_center[("t/bob", "")]["Attribution"] == "policy-at-rollup"

    before = sorted(rows, key=lambda r: r["RowKey"])
    await finance_tables.policies.put(CallerPolicy("t/alice", cost_center="CC-LATER", owner="Yan"))
    await finance_tables.rollup.day(DAY)
    after = sorted([dict(e) async for e in finance_tables.daily.list_entities()], key=lambda r: r["RowKey"])
    assert after == before


async def test_a_journal_replayed_two_days_late_reaches_the_daily_table_on_the_next_timer_run(finance_tables, tmp_path):
    """An instance died with rows in its journal; two days later the journal is replayed (at start-up, by the
    timer or by tools.replay_usage): the replay marks the hours, and the next ordinary timer run re-derives them."""
    await write(finance_tables, [usage("t/alice", "m", 9, 10, 5, "0.001")])
    after_midnight = datetime(2026, 12, 1, 0, 10, 30, tzinfo=UTC)
    await finance_tables.rollup.on_timer(after_midnight)  # yesterday (DAY) is derived, as every night
    journal = Journal(tmp_path, journal_target(finance_tables.ledger))
    lost = [usage("t/alice", "m", 14, 100, 50, "0.25"), usage("t/bob", "m", 23, 7, 3, "0.5")]
    for record in lost:
        journal.append(record)
    journal.close()

    two_days_later = datetime(2026, 12, 2, 15, 40, 30, tzinfo=UTC)
    assert (await replay(tmp_path, finance_tables.ledger, every_file=True)).rows == 2
    reports = await finance_tables.rollup.on_timer(two_days_later)
    assert [(r.day, r.hours) for r in reports][0] == (DAY, ["14", "23"])  # only the marked hours of that day
    rows = await daily(finance_tables)
    assert integer(rows["t/alice|m"]["Requests"]) == 2 and rows["t/alice|m"]["CostExact"] == "0.251"
    assert rows["t/bob|m"]["CostExact"] == "0.5"
    assert [e async for e in finance_tables.ledger.query_entities("PartitionKey eq 'late-hours'")] == []
    again = await finance_tables.rollup.on_timer(two_days_later)  # markers done: back to the ordinary plan
    assert [r.day for r in again] == [date(2026, 12, 2)]


async def test_the_writer_marks_rows_it_writes_after_their_hour(finance_tables):
    """The ledger writer after an outage writes rows of hours already over: it marks those hours."""
    await write(finance_tables, [usage("t/alice", "m", 3, 1, 1, "0.1"), usage("t/alice", "m", 5, 1, 1, "0.1")])
    marked = [e["RowKey"] async for e in finance_tables.ledger.query_entities("PartitionKey eq 'late-hours'")]
    assert sorted(marked) == ["2026-11-30T03", "2026-11-30T05"]
    assert late_hours([usage("t/alice", "m", 5, 1, 1, None)], datetime(2026, 11, 30, 5, 59, tzinfo=UTC)) == set()


def test_marked_hours_join_the_timer_plan():
    plans = merge_plans(timer_plan(datetime(2026, 12, 1, 0, 10, 30, tzinfo=UTC)), [(DAY, 3), (date(2026, 11, 2), 7)])
    assert plans == [
        RollupPlan(date(2026, 11, 2), frozenset({7})),
        RollupPlan(DAY, None),  # the whole of yesterday anyway
        RollupPlan(date(2026, 12, 1), frozenset({0})),
    ]
