"""A dead instance's lease is counted as spent, then corrected from the ledger once the counter is quiet."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from shared.quotas.counters import CounterId, CounterStore
from shared.quotas.limits import Limit
from shared.quotas.reconcile import reconcile_folded_counters
from shared.quotas.windows import window_end, window_key


def inside_the_day() -> datetime:
    """Now, or 15 minutes earlier in the last 15 minutes of a UTC day: each test looks 11 minutes ahead and needs that
    moment in the same daily window."""
    now = datetime.now(UTC)
    return now - timedelta(minutes=15) if (now.hour, now.minute) >= (23, 45) else now


async def test_an_over_count_from_a_dead_instance_is_corrected_from_the_ledger(table):
    now = inside_the_day()
    caller = f"t/{uuid.uuid4().hex[:8]}"
    counter = CounterId(caller, Limit.TOKENS_PER_DAY, window_key(Limit.TOKENS_PER_DAY.window, now))
    end = window_end(Limit.TOKENS_PER_DAY.window, now)
    dead = CounterStore(table, "dead", lease_seconds=0.05)
    await dead.change(counter, 10_000, end, spent=200, keep=0, need=600)  # leases a slice, then dies
    await asyncio.sleep(0.1)
    alive = CounterStore(table, "alive")
    outcome = await alive.change(counter, 10_000, end, spent=50, keep=0)
    assert outcome.used > 200 + 50 + 600 - 1  # the whole dead lease counted as spent: the safe side

    asked = []

    async def ledger_tokens(caller_id, deployment, start, stop):
        asked.append((caller_id, deployment, start, stop))
        return 200 + 50 + 100  # the dead instance used 100 of its lease before it died

    assert await reconcile_folded_counters(alive, ledger_tokens, now, quiet_seconds=3600) == 0  # not quiet yet
    later = now + timedelta(minutes=11)
    assert await reconcile_folded_counters(alive, ledger_tokens, later, quiet_seconds=600) == 1
    assert asked[-1][:2] == (caller, None)
    assert (await alive.read(counter, 10_000)).used == 350
    assert await reconcile_folded_counters(alive, ledger_tokens, later, quiet_seconds=600) == 0  # mark cleared


async def test_use_committed_while_the_ledger_is_summed_is_never_erased(table):
    """The ledger sum is older than the counter by the time it is written back: the write is conditional on the
    counter being exactly as it was read before the sum, so another instance's use committed meanwhile stays."""
    now = inside_the_day()
    caller = f"t/{uuid.uuid4().hex[:8]}"
    counter = CounterId(caller, Limit.TOKENS_PER_DAY, window_key(Limit.TOKENS_PER_DAY.window, now))
    end = window_end(Limit.TOKENS_PER_DAY.window, now)
    dead = CounterStore(table, "dead", lease_seconds=0.05)
    await dead.change(counter, 10_000, end, spent=200, keep=0, need=600)
    await asyncio.sleep(0.1)
    alive = CounterStore(table, "alive")
    folded_used = (await alive.change(counter, 10_000, end, spent=150, keep=0)).used  # 200 + 600 folded + 150
    busy = CounterStore(table, "busy")

    async def ledger_tokens(caller_id, deployment, start, stop):
        # While the housekeeping sums the ledger (350 recorded so far), another instance commits 300 it spent.
        await busy.change(counter, 10_000, end, spent=300, keep=0)
        return 350

    later = now + timedelta(minutes=11)
    assert await reconcile_folded_counters(alive, ledger_tokens, later, quiet_seconds=600) == 0
    assert (await alive.read(counter, 10_000)).used == folded_used + 300  # nothing erased; corrected next time
