"""Rebuild jobs (Azurite): steps of one ledger hour, progress kept in storage, one runner at a time, resumed by the
timer when the instance running it went away."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from shared.finance.daily import integer
from shared.finance.rebuild import DONE, RUNNING, RebuildJobs
from tests.finance.test_daily import DAY, usage, write


async def test_a_job_in_hour_steps_gives_the_same_rows_as_in_day_steps(finance_tables):
    await write(finance_tables, [usage("t/alice", "m", h, 10, 5, "0.001") for h in (0, 7, 23)])
    jobs = RebuildJobs(finance_tables.hourly, finance_tables.rollup)
    await jobs.run((await jobs.create(DAY, DAY, "t/admin")).id)
    by_day = sorted([dict(e) async for e in finance_tables.daily.list_entities()], key=lambda e: e["RowKey"])
    hourly = await jobs.run((await jobs.create(DAY, DAY, "t/admin")).id, hours_per_step=1)
    assert hourly is not None and hourly.status == DONE and hourly.ledger_rows == 3
    assert sorted([dict(e) async for e in finance_tables.daily.list_entities()], key=lambda e: e["RowKey"]) == by_day


async def test_a_job_rebuilds_every_day_of_its_range(finance_tables):
    await write(finance_tables, [usage("t/alice", "m", h, 10, 5, "0.001") for h in (0, 12, 23)])
    jobs = RebuildJobs(finance_tables.hourly, finance_tables.rollup)
    job = await jobs.create(DAY - timedelta(days=1), DAY, "t/admin")
    assert job.status == RUNNING and job.next == "2026-11-29T00"
    done = await jobs.run(job.id)
    assert done is not None and done.status == DONE and done.next is None
    assert [d["day"] for d in done.days] == [
        "2026-11-29",
        "2026-11-30",
    ]
    assert done.ledger_rows == 3
    rows = [dict(e) async for e in finance_tables.daily.list_entities()]
    assert [integer(r["Requests"]) for r in rows] == [3]
    assert (await jobs.get(job.id)).to_json()["days_done"] == 2


async def test_a_budget_stops_a_run_and_a_stale_job_is_resumed_once(finance_tables):
    await write(finance_tables, [usage("t/alice", "m", 5, 10, 5, "0.001")])
    jobs = RebuildJobs(finance_tables.hourly, finance_tables.rollup)
    job = await jobs.create(DAY, DAY, "t/admin")
    partial = await jobs.run(job.id, budget_seconds=0, hours_per_step=1)  # the instance goes away after one step
    assert partial is not None and partial.status == RUNNING and partial.next == "2026-11-30T01"

    assert await jobs.resume_stale(datetime.now(UTC), budget_seconds=60) == []  # not stale yet: its runner may live
    later = datetime.now(UTC) + timedelta(hours=1)
    other = RebuildJobs(finance_tables.hourly, finance_tables.rollup)
    assert await jobs.resume_stale(later, budget_seconds=60) == [job.id]
    assert await other.resume_stale(later, budget_seconds=60) == []  # done now: nothing to resume twice
    finished = await jobs.get(job.id)
    assert finished is not None and finished.status == DONE
    assert [integer(r["Requests"]) async for r in finance_tables.daily.list_entities()] == [1]


async def test_a_runner_holding_an_old_version_stops(finance_tables):
    jobs = RebuildJobs(finance_tables.hourly, finance_tables.rollup)
    job = await jobs.create(date(2026, 11, 30), date(2026, 11, 30), "t/admin")
    mine = await jobs.get(job.id)
    await jobs.run(job.id, budget_seconds=0, hours_per_step=1)  # another runner advanced it meanwhile
    assert mine is not None
    mine.next = "2026-11-30T07"
    assert await jobs._save(mine) is False  # the stale copy cannot overwrite its progress
