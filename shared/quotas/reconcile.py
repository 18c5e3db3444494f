"""Correct quota counters from the usage ledger after an instance died holding a lease.

A dead instance's lease is counted as spent when it expires (:mod:`.counters`): the safe side, but it can
over-count by the part the instance had not used, so the caller could be refused early for the rest of the
window. Once such a counter is quiet (no instance holds a lease, nothing changed for ten minutes, so every call
of the window has settled and its ledger row has been written or journaled and replayed), its use is set to
what the ledger recorded for the caller (and deployment) in the window. Only token budgets of the current day
or month are corrected: per-minute windows end long before they could be quiet, and cost is left as counted
(the ledger's cost is a float today; an exact cost column is finance's to add).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from shared.quotas.counters import CounterStore
from shared.quotas.limits import Unit
from shared.quotas.windows import window_end, window_start

log = logging.getLogger(__name__)

QUIET_SECONDS = 600

# (caller id, deployment or None, window start, window end) -> prompt + completion tokens the ledger recorded
LedgerTokens = Callable[[str, str | None, datetime, datetime], Awaitable[int]]


async def reconcile_folded_counters(
    store: CounterStore, ledger_tokens: LedgerTokens, now: datetime, quiet_seconds: float = QUIET_SECONDS
) -> int:
    """Returns how many counters were corrected."""
    corrected = 0
    for folded in await store.folded(now, quiet_seconds):
        counter = folded.counter
        if counter.limit.unit is not Unit.TOKENS or counter.limit.is_rate:
            continue
        caller_id, _, deployment = counter.scope.partition("|")
        start, end = window_start(counter.limit.window, now), window_end(counter.limit.window, now)
        recorded = await ledger_tokens(caller_id, deployment or None, start, end)
        if await store.reconcile(folded, end, recorded):
            corrected += 1
            log.warning(
                "quota counter %s %s corrected from %d to %d tokens (ledger)",
                counter.scope,
                counter.row_key,
                folded.used,
                min(folded.used, recorded),
            )
    return corrected
