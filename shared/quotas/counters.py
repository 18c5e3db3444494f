"""Quota counters in Table Storage: one entity per caller scope, limit and window, changed only with ETags.

An entity holds what was committed as used in its window (``Used``) and what each gateway instance currently
holds leased (``Leases``: instance id -> amount and expiry). Every change is a read, a check against the limit
and a conditional write (``If-Match`` the ETag read): a concurrent change gives 412 and the change is re-done on
fresh state, so no update is ever lost. The invariant every successful write keeps is

    Used + sum(Leases) <= Limit   (except what was consumed beyond its reservation, which is committed anyway)

so the instances together can never admit more than the limit. A lease that expired (its instance died
without returning it) is folded into ``Used``: counted as spent, the conservative side, until a
reconciliation against the ledger corrects it.

Row layout: PartitionKey = the scope (caller id, or ``caller id|deployment``), RowKey = ``<limit>|<window>``
(``tpm|2026-12-01T13:45``), so one caller's counters share a partition and a window's row is found by a point
read.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, UpdateMode
from azure.data.tables.aio import TableClient

from shared.quotas.limits import Limit
from shared.storage.tables import table_key

MAX_ATTEMPTS = 12  # conditional-write attempts before a change gives up (each re-reads fresh state)
BACKOFF_SECONDS = 0.004  # first back-off; doubles per attempt, full jitter, capped below
MAX_BACKOFF_SECONDS = 0.25


@dataclass(frozen=True)
class CounterId:
    scope: str  # caller id, or "caller id|deployment" for a per-deployment limit
    limit: Limit
    window: str  # window key: 2026-12-01T13:45, 2026-12-01, 2026-12

    @property
    def partition_key(self) -> str:
        return table_key(self.scope)

    @property
    def row_key(self) -> str:
        return f"{self.limit.short}|{self.window}"


@dataclass(frozen=True)
class Outcome:
    """What a change left in storage, as this instance sees it."""

    granted: int  # added to this instance's lease by this change
    own: int  # this instance's lease after the change
    used: int  # committed use after the change
    held_elsewhere: int  # other instances' live leases
    limit: int

    @property
    def free(self) -> int:
        """Budget nobody holds: what a new lease could still take."""
        return max(0, self.limit - self.used - self.held_elsewhere - self.own)


@dataclass(frozen=True)
class FoldedCounter:
    """A counter marked for reconciliation, as read: its ETag makes the correction conditional on this state."""

    counter: CounterId
    limit: int
    used: int
    etag: str


class CounterBusy(Exception):
    """Too many concurrent changes to one counter: every attempt met a newer ETag."""


class CounterStore:
    def __init__(self, table: TableClient, instance_id: str, *, lease_seconds: float = 60.0) -> None:
        self._table = table
        self.instance_id = instance_id
        self.lease_seconds = lease_seconds

    async def change(
        self,
        counter: CounterId,
        limit: int,
        window_end: datetime,
        *,
        spent: int,
        keep: int,
        need: int = 0,
        slice_divisor: int = 8,
    ) -> Outcome:
        """Commit ``spent`` as used, set this instance's lease to ``keep``, and if ``need`` > 0 lease at least
        ``need`` more (a slice of what is free, ``free // slice_divisor``, when that is larger).

        If ``need`` cannot be granted the commit is still written and the outcome has ``granted == 0``.
        """
        for attempt in range(MAX_ATTEMPTS):
            entity, etag = await self._read(counter)
            now = time.time()
            used, leases, folded = _used(entity), _leases(entity), _int((entity or {}).get("Folded"))
            for instance, (amount, expires) in list(leases.items()):
                if instance != self.instance_id and expires <= now:
                    used += amount  # an instance that died holding a lease: count it spent (conservative) ...
                    folded += amount  # ... and mark the counter for reconciliation against the ledger
                    del leases[instance]
            used += spent
            elsewhere = sum(amount for instance, (amount, _) in leases.items() if instance != self.instance_id)
            free = limit - used - elsewhere - keep
            granted = 0
            if need > 0 and free >= need:
                granted = min(free, max(need, free // slice_divisor))
            own = keep + granted
            if own > 0:
                leases[self.instance_id] = (own, now + self.lease_seconds)
            else:
                leases.pop(self.instance_id, None)
            new = _entity(counter, limit, window_end, used, leases, folded)
            try:
                if etag is None:
                    await self._table.create_entity(new)
                else:
                    await self._table.update_entity(
                        new, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
            except (ResourceModifiedError, ResourceExistsError):
                delay = min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2**attempt)
                await asyncio.sleep(random.uniform(0, delay))  # full jitter: contenders spread out
                continue
            return Outcome(granted, own, used, elsewhere, limit)
        raise CounterBusy(f"{counter.row_key}: {MAX_ATTEMPTS} conflicting attempts")

    async def read(self, counter: CounterId, limit: int) -> Outcome:
        """The counter as stored (for /api/me and tests); an absent counter is unused."""
        entity, _ = await self._read(counter)
        now = time.time()
        used, leases = _used(entity), _leases(entity)
        own = leases.pop(self.instance_id, (0, 0.0))[0]
        elsewhere = 0
        for amount, expires in leases.values():
            if expires <= now:
                used += amount
            else:
                elsewhere += amount
        return Outcome(0, own, used, elsewhere, limit)

    async def folded(self, now: datetime, quiet_seconds: float) -> list[FoldedCounter]:
        """Counters of current windows where a dead instance's lease was counted as spent, nobody holds a lease
        and nothing changed for ``quiet_seconds``: each as it was read, to check against the ledger."""
        found = []
        async for entity in self._table.query_entities("Folded gt 0L and WindowEnd gt @now", parameters={"now": now}):
            changed, etag = entity.metadata.get("timestamp"), entity.metadata.get("etag")
            if (
                _leases(dict(entity))
                or changed is None
                or etag is None
                or (now - changed).total_seconds() < quiet_seconds
            ):
                continue
            counter = CounterId(entity["Scope"], Limit(entity["LimitName"]), entity["Window"])
            found.append(FoldedCounter(counter, _int(entity["Limit"]), _used(dict(entity)), etag))
        return found

    async def reconcile(self, folded: FoldedCounter, window_end: datetime, recorded: int) -> bool:
        """Set a quiet counter's use to what the ledger recorded, if that is less (the fold counted a dead
        instance's unspent lease as used), and clear its mark: only if the counter is still exactly as it was read
        before the ledger was summed (its ETag). Any change since (another instance committed use or took a lease)
        means the ledger sum may miss that use, so nothing is written; the counter is looked at again next time."""
        new = _entity(folded.counter, folded.limit, window_end, min(recorded, folded.used), {}, 0)
        try:
            await self._table.update_entity(
                new, mode=UpdateMode.REPLACE, etag=folded.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    async def delete_expired(self, now: datetime | None = None) -> int:
        """Delete counters whose window ended (the cleanup timer); returns how many were deleted."""
        cutoff = now or datetime.now(UTC)
        deleted = 0
        async for entity in self._table.query_entities(
            "WindowEnd lt @cutoff", parameters={"cutoff": cutoff}, select=["PartitionKey", "RowKey"]
        ):
            try:
                await self._table.delete_entity(entity["PartitionKey"], entity["RowKey"])
                deleted += 1
            except ResourceNotFoundError:
                pass
        return deleted

    async def _read(self, counter: CounterId) -> tuple[dict[str, Any] | None, str | None]:
        try:
            entity = await self._table.get_entity(counter.partition_key, counter.row_key)
        except ResourceNotFoundError:
            return None, None
        return dict(entity), entity.metadata["etag"]


def _int(value: Any) -> int:
    if isinstance(value, EntityProperty):
        return int(value.value)
    return int(value or 0)


def _used(entity: dict[str, Any] | None) -> int:
    return _int(entity.get("Used")) if entity else 0


def _leases(entity: dict[str, Any] | None) -> dict[str, tuple[int, float]]:
    if not entity or not entity.get("Leases"):
        return {}
    return {
        instance: (int(amount), float(expires)) for instance, (amount, expires) in json.loads(entity["Leases"]).items()
    }


def _entity(
    counter: CounterId,
    limit: int,
    window_end: datetime,
    used: int,
    leases: dict[str, tuple[int, float]],
    folded: int = 0,
) -> dict[str, Any]:
    return {
        "PartitionKey": counter.partition_key,
        "RowKey": counter.row_key,
        "Scope": counter.scope,
        "LimitName": counter.limit.value,
        "Window": counter.window,
        "WindowEnd": window_end,
        "Limit": EntityProperty(limit, EdmType.INT64),
        "Used": EntityProperty(used, EdmType.INT64),
        "Leases": json.dumps({instance: [amount, round(expires, 3)] for instance, (amount, expires) in leases.items()}),
        "Folded": EntityProperty(folded, EdmType.INT64),  # expired leases counted as used, not yet reconciled
    }
