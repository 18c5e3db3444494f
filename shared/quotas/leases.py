"""This instance's share of each quota counter: leased from Table Storage in slices, spent locally.

A reservation that fits in the local balance costs no storage round trip. When it does not fit, the instance
asks the counter for what it needs plus a slice of what is free (an eighth), under a per-counter lock so that
concurrent requests on one instance make one storage change, not a storm. As the budget runs low the slices
shrink to exactly what one call needs, so the last tokens are handed out exactly.

A keeper task commits what was spent (every few seconds while busy), hands back an idle balance (after about a
second without use, so another instance can have it), renews the lease before it expires, and forgets counters
whose window has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from azure.core.exceptions import AzureError

from shared.quotas.counters import CounterBusy, CounterId, CounterStore, Outcome

log = logging.getLogger(__name__)

KEEPER_INTERVAL_SECONDS = 0.25
IDLE_RETURN_SECONDS = 1.0  # an unused balance goes back to the counter after this long
COMMIT_SECONDS = 5.0  # spent amounts reach storage at least this often while a counter is busy


class QuotaStorageError(Exception):
    """Table Storage could not be reached (or kept conflicting) while a lease was needed."""


@dataclass
class LocalCounter:
    counter: CounterId
    limit: int
    window_end: datetime
    granted: int = 0  # this instance's lease as last written to storage
    spent: int = 0  # settled, not yet committed
    inflight: int = 0  # reserved by calls still running
    seen_free: int = 0  # budget nobody held, at the last storage change
    seen_used: int = 0
    storage_failed: bool = False  # the last lease attempt could not reach storage
    voided: bool = False  # the limit was lowered and the smaller lease is not yet written
    window_total: int = 0  # everything this instance reserved in the window (fail-open's local limit)
    last_used: float = field(default_factory=time.monotonic)
    last_commit: float = field(default_factory=time.monotonic)
    lease_renew_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def balance(self) -> int:
        return self.granted - self.spent - self.inflight

    @property
    def remaining(self) -> int:
        """What the caller can still use in this window, as far as this instance knows."""
        return max(0, self.seen_free + self.balance)


@dataclass(frozen=True)
class Denied:
    """A reservation the counter could not cover."""

    local: LocalCounter
    need: int
    outcome: Outcome

    @property
    def held_elsewhere(self) -> bool:
        """The budget is not spent, only leased by other busy instances: worth retrying in a moment."""
        return self.outcome.used + self.need <= self.outcome.limit


class QuotaLeases:
    def __init__(self, store: CounterStore, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock  # UTC now: which window a call falls in (tests move it)
        self._counters: dict[CounterId, LocalCounter] = {}
        self._keeper: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.storage_changes = 0  # for the benchmark: storage round trips made ...
        self.reservations = 0  # ... per reservation

    def local(self, counter: CounterId, limit: int, window_end: datetime) -> LocalCounter:
        local = self._counters.get(counter)
        if local is None:
            local = self._counters[counter] = LocalCounter(counter, limit, window_end)
        elif local.limit != limit:
            if limit < local.limit:
                # A lowered limit: the unspent balance leased under the old one is void at once (calls already
                # running keep what they hold), so the next call must lease against the new limit, and the keeper
                # writes the smaller lease at its next turn.
                local.granted = min(local.granted, local.spent + local.inflight)
                local.voided = True
            local.limit = limit
        return local

    def find(self, counter: CounterId) -> LocalCounter | None:
        return self._counters.get(counter)

    def take(self, local: LocalCounter, need: int) -> bool:
        """Hold ``need`` units from the local balance if it covers them (no storage); False if it does not."""
        if local.balance < need:
            return False
        self._ensure_keeper()
        self.reservations += 1
        local.last_used = time.monotonic()
        local.inflight += need
        local.window_total += need
        return True

    async def reserve(self, local: LocalCounter, need: int) -> Denied | None:
        """Hold ``need`` units of the counter for a call; ``Denied`` if the budget cannot cover it."""
        if self.take(local, need):
            return None
        self._ensure_keeper()
        self.reservations += 1
        local.last_used = time.monotonic()
        async with local.lock:
            if local.balance >= need:  # another request on this instance leased enough meanwhile
                local.inflight += need
                local.window_total += need
                return None
            outcome = await self._change(local, need=need - local.balance)
            if outcome.granted == 0:
                return Denied(local, need, outcome)
            local.inflight += need
            local.window_total += need
            return None

    def admit_locally(self, local: LocalCounter, need: int) -> bool:
        """Fail-open: storage is down, so this instance alone enforces the limit on what it admitted itself."""
        if local.window_total + need > local.limit:
            return False
        local.inflight += need
        local.window_total += need
        local.granted += need  # held against nothing in storage; committed as spent once storage returns
        return True

    def release(self, local: LocalCounter, reserved: int, actual: int) -> None:
        """Settle a reservation: ``actual`` was used, the rest returns to the local balance (no storage)."""
        local.inflight -= reserved
        local.spent += actual
        local.window_total += actual - reserved

    async def aclose(self) -> None:
        """Hand every balance back and commit what was spent (on shutdown)."""
        if self._keeper is not None:
            self._stopping.set()  # the keeper finishes the change it is making (cancelling it mid-write could not
            await self._keeper  # tell whether storage took the change), then stops
            self._keeper = None
            self._stopping.clear()
        for local in list(self._counters.values()):
            if local.spent or local.granted:
                with contextlib.suppress(Exception):
                    async with local.lock:
                        await self._change(local, release=max(0, local.balance))
        log.info("quota leases: %d storage round trips, %d reservations", self.storage_changes, self.reservations)

    async def _change(self, local: LocalCounter, *, release: int = 0, need: int = 0) -> Outcome:
        """Commit what was spent, hand ``release`` of the free balance back, and lease ``need`` more.

        Calls settle and reserve from the balance while the storage change is in flight (only lease changes take
        the counter's lock), so the change works on what it took at its start: the released part leaves the
        balance before the await, and only the spent amount it committed is subtracted after it.
        """
        local.granted -= release
        committing = local.spent
        keep = max(0, local.granted - committing)  # in flight + the balance kept (0 when more was spent than held)
        try:
            outcome = await self.store.change(
                local.counter, local.limit, local.window_end, spent=committing, keep=keep, need=max(0, need)
            )
        except (AzureError, CounterBusy, OSError) as exc:
            local.granted += release
            local.storage_failed = True
            raise QuotaStorageError(type(exc).__name__) from exc
        self.storage_changes += 1
        local.storage_failed = False
        local.voided = False
        local.spent -= committing
        local.granted = outcome.own
        local.seen_free = outcome.free
        local.seen_used = outcome.used
        local.last_commit = time.monotonic()
        local.lease_renew_at = local.last_commit + self.store.lease_seconds / 2
        return outcome

    def _ensure_keeper(self) -> None:
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.get_running_loop().create_task(self._keep())

    async def _keep(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), KEEPER_INTERVAL_SECONDS)
            if self._stopping.is_set():
                return
            now, wall = time.monotonic(), self.clock()
            for counter, local in list(self._counters.items()):
                if local.lock.locked():
                    continue
                try:
                    if wall >= local.window_end:
                        # A past window admits nothing more: forget it once its calls have settled.
                        if local.inflight <= 0:
                            if local.spent and not counter.limit.is_rate:
                                async with local.lock:  # the window's final use, on record
                                    await self._change(local, release=max(0, local.balance))
                            del self._counters[counter]
                        continue
                    idle = now - local.last_used >= IDLE_RETURN_SECONDS
                    if local.voided:
                        async with local.lock:
                            await self._change(local)
                    elif idle and (local.balance > 0 or local.spent):
                        async with local.lock:
                            await self._change(local, release=max(0, local.balance))
                    elif local.spent and (
                        local.balance < 0 or now - local.last_commit >= COMMIT_SECONDS or now >= local.lease_renew_at
                    ):
                        async with local.lock:
                            await self._change(local)
                    elif local.granted and now >= local.lease_renew_at:
                        async with local.lock:
                            await self._change(local)
                except QuotaStorageError as exc:
                    log.warning("quota counter %s could not be updated (%s); retrying", counter.row_key, exc)
                except Exception:
                    log.exception("quota keeper failed on %s", counter.row_key)
