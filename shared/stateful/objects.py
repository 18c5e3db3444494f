"""Who owns each stored object the gateway created upstream, and which backend holds it.

Every caller reaches Azure OpenAI through the gateway's one managed identity, so Azure cannot tell callers apart:
the gateway records the owner (caller id) and the backend of every stored object it creates (responses, files,
batches, ...) and checks that record before anything that references the object is forwarded. A stranger's id and
an unknown id get the same 404 ``not_found`` (never 403: the answer must not say that an id exists).

Table ``gatewayObjects``, one entity per object:

    PartitionKey = the owner's caller id (``table_key``: ``{tenant}%2F{object id}``)
    RowKey       = ``{kind}:{id}`` (``response:resp_67cb...``)

so the check on the hot path (is this caller's id, which backend holds it) is one point read, and a caller's objects
of one kind are one partition range (``list_for``). Objects that must be settled later (background responses,
batches) also get an index row in partition ``~unsettled``, RowKey ``{kind}:{id}``, holding the owner, so a timer
finds them with one partition query (``unsettled``) instead of a scan; it is deleted when the object is settled or
forgotten. Records carry the object's expiry (Azure's retention); an expired record reads as absent, and the
housekeeping timer deletes expired records (``delete_expired``, a filtered scan run rarely, D-number in
docs/decisions.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.auth.identity import ROLE_ADMIN, Caller
from shared.errors import GatewayError, not_found
from shared.stateful.ids import ObjectKind
from shared.storage.tables import check_entity, table_key

log = logging.getLogger(__name__)

__all__ = ["ANY_DEPLOYMENT", "RETENTION", "ObjectChanged", "ObjectKind", "ObjectRegistry", "OwnedObject"]

ANY_DEPLOYMENT = "*"  # an object not tied to one deployment (a file): its backend is then an account of the "*" pool
UNSETTLED_PARTITION = "~unsettled"  # '~' sorts after every escaped caller id, and no caller id starts with it

# How long Azure OpenAI keeps an object of each kind, when it keeps it for a fixed time: stored responses are kept
# 30 days (docs/decisions.md cites Microsoft's documentation). ``None``: kept until deleted, or the feature that
# records it passes its own ``expires_at`` (a file's ``expires_after``, a batch's window).
RETENTION: Mapping[ObjectKind, timedelta | None] = {
    ObjectKind.RESPONSE: timedelta(days=30),
    ObjectKind.CONVERSATION: None,
    ObjectKind.FILE: None,
    ObjectKind.BATCH: None,
}

MAX_ATTRIBUTE_CHARS = 16_000  # the attributes' JSON: a few numbers and names, far below what an entity holds


class ObjectChanged(Exception):
    """``update`` lost a race: the record changed (another instance settled it, or it was forgotten) since it was
    read. Read it again (``find``/``owned``) and decide on the fresh state."""


@dataclass(frozen=True)
class OwnedObject:
    """A stored object as the gateway recorded it.

    ``attributes``: a small JSON object that belongs to the feature that records the kind (e.g. a background
    response's reservation: request id, reserved tokens and cost, price version; a file's purpose and bytes).
    ``settled``: False while usage is still to be recorded (background responses, batches), True otherwise.
    ``etag``: the version read, which ``update`` makes its write conditional on (None on a record not yet read).
    """

    kind: ObjectKind
    id: str
    owner: str  # the caller id
    backend: str  # the label of the backend that holds the object (affinity)
    deployment: str = ANY_DEPLOYMENT
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    expires_at: datetime | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    settled: bool = True
    etag: str | None = field(default=None, compare=False)

    @classmethod
    def new(
        cls,
        kind: ObjectKind,
        object_id: str,
        owner: str,
        backend: str,
        deployment: str = ANY_DEPLOYMENT,
        *,
        attributes: Mapping[str, Any] | None = None,
        settled: bool = True,
        now: datetime | None = None,
        expires_at: datetime | None = None,
    ) -> OwnedObject:
        """A record for an object just created: expiry from Azure's retention for the kind unless given."""
        created = now or datetime.now(UTC)
        retention = RETENTION[kind]
        if expires_at is None and retention is not None:
            expires_at = created + retention
        return cls(kind, object_id, owner, backend, deployment, created, expires_at, dict(attributes or {}), settled)

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))

    @property
    def partition_key(self) -> str:
        return table_key(self.owner)

    @property
    def row_key(self) -> str:
        return row_key(self.kind, self.id)

    def entity(self) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": self.partition_key,
            "RowKey": self.row_key,
            "Kind": self.kind.value,
            "ObjectId": self.id,
            "Owner": self.owner,
            "Backend": self.backend,
            "Deployment": self.deployment,
            "CreatedAt": self.created_at,
            "Attributes": json.dumps(dict(self.attributes), separators=(",", ":"), sort_keys=True),
            "Settled": self.settled,
        }
        if self.expires_at is not None:
            entity["ExpiresAt"] = self.expires_at
        return entity

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> OwnedObject:
        metadata = getattr(entity, "metadata", None) or {}
        return cls(
            kind=ObjectKind(entity["Kind"]),
            id=entity["ObjectId"],
            owner=entity["Owner"],
            backend=entity["Backend"],
            deployment=entity.get("Deployment") or ANY_DEPLOYMENT,
            created_at=_utc(entity["CreatedAt"]),
            expires_at=_utc(entity["ExpiresAt"]) if entity.get("ExpiresAt") is not None else None,
            attributes=json.loads(entity.get("Attributes") or "{}"),
            settled=bool(entity.get("Settled", True)),
            etag=metadata.get("etag"),
        )


def row_key(kind: ObjectKind, object_id: str) -> str:
    return table_key(f"{kind.value}:{object_id}")


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def unknown_object(kind: ObjectKind, object_id: str) -> GatewayError:
    """The one answer for an id that does not exist, expired, or belongs to someone else (ids are validated before
    they get here, so echoing one is safe)."""
    return not_found(f"No {kind.value} with id '{object_id}' was found.", code="not_found")


class ObjectRegistry:
    """Owner and backend of every stored object, in Table Storage (``gatewayObjects``)."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def record(self, obj: OwnedObject) -> OwnedObject:
        """Record a new object (idempotent: recording the same object again replaces the record). Returns it with
        its ETag. An unsettled object also gets its ``~unsettled`` index row, written first, so a crash between
        the two writes leaves an index row the timer clears, never an unsettled object the timer cannot find."""
        entity = obj.entity()
        check_entity(entity)
        if not obj.settled:
            await self._table.upsert_entity(_index_entity(obj), mode=UpdateMode.REPLACE)
        metadata = await self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        return replace(obj, etag=metadata.get("etag"))

    async def find(self, owner: str, kind: ObjectKind, object_id: str) -> OwnedObject | None:
        """The record of ``owner``'s object, or None (absent or expired): one point read."""
        try:
            entity = await self._table.get_entity(table_key(owner), row_key(kind, object_id))
        except ResourceNotFoundError:
            return None
        obj = OwnedObject.from_entity(entity)
        return None if obj.expired() else obj

    async def owned(self, caller: Caller, kind: ObjectKind, object_id: str) -> OwnedObject:
        """The record of ``object_id`` if ``caller`` may use it, else 404 ``not_found`` (unknown, expired and other
        callers' ids alike). Admins (``Gateway.Admin``) may use other callers' objects; that access is logged."""
        obj = await self.find(caller.id, kind, object_id)
        if obj is not None:
            return obj
        if caller.has_role(ROLE_ADMIN):
            other = await self._find_any_owner(kind, object_id)
            if other is not None:
                log.warning(
                    "admin %s used %s %s owned by %s", caller.id, kind.value, object_id, other.owner
                )  # ids and caller ids only: no content
                return other
        raise unknown_object(kind, object_id)

    async def _find_any_owner(self, kind: ObjectKind, object_id: str) -> OwnedObject | None:
        """Admins only: the record whatever its owner (a query across partitions on the RowKey: a scan, which is
        why the hot path never takes it)."""
        query = self._table.query_entities("RowKey eq @rk", parameters={"rk": row_key(kind, object_id)})
        async for entity in query:
            if entity["PartitionKey"] == UNSETTLED_PARTITION:
                continue
            obj = OwnedObject.from_entity(entity)
            return None if obj.expired() else obj
        return None

    async def update(self, obj: OwnedObject) -> OwnedObject:
        """Write ``obj`` (a changed copy of a record read before: ``dataclasses.replace``) only if the record is
        still as read (its ETag); raises :class:`ObjectChanged` if another writer got there first or the record is
        gone. Settling (``settled=True``) also deletes the ``~unsettled`` index row, after the record."""
        if obj.etag is None:
            raise ValueError("update needs a record read from the registry (it carries the ETag to write against)")
        entity = obj.entity()
        check_entity(entity)
        try:
            metadata = await self._table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=obj.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ObjectChanged(f"{obj.kind.value} {obj.id} changed since it was read") from exc
        if obj.settled:
            await self._delete_index(obj.kind, obj.id)
        return replace(obj, etag=metadata.get("etag"))

    async def list_for(self, caller: Caller, kind: ObjectKind) -> list[OwnedObject]:
        """``caller``'s unexpired objects of ``kind``, oldest first (one partition range query)."""
        low = row_key(kind, "")
        high = low[:-1] + chr(ord(low[-1]) + 1)  # "response:" .. "response;"
        query = self._table.query_entities(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            parameters={"pk": table_key(caller.id), "low": low, "high": high},
        )
        now = datetime.now(UTC)
        found = [OwnedObject.from_entity(entity) async for entity in query]
        return sorted((obj for obj in found if not obj.expired(now)), key=lambda obj: (obj.created_at, obj.id))

    async def forget(self, kind: ObjectKind, object_id: str, owner: str) -> None:
        """Delete the record of an object that was deleted upstream (and its index row); absent is fine."""
        await self._delete_index(kind, object_id)
        try:
            await self._table.delete_entity(table_key(owner), row_key(kind, object_id))
        except ResourceNotFoundError:
            pass

    async def unsettled(self, kind: ObjectKind) -> list[OwnedObject]:
        """Objects of ``kind`` whose usage is still to be settled (for settlement timers), oldest first. An index
        row whose object is already settled or gone is removed on the way (a crash between the two writes)."""
        low = row_key(kind, "")
        high = low[:-1] + chr(ord(low[-1]) + 1)
        query = self._table.query_entities(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            parameters={"pk": UNSETTLED_PARTITION, "low": low, "high": high},
        )
        found: list[OwnedObject] = []
        for index in [entity async for entity in query]:
            obj = await self.find(index["Owner"], kind, index["ObjectId"])
            if obj is None or obj.settled:
                await self._delete_index(kind, index["ObjectId"])
                continue
            found.append(obj)
        return sorted(found, key=lambda obj: (obj.created_at, obj.id))

    async def delete_expired(self, now: datetime | None = None) -> int:
        """Delete records whose object Azure no longer keeps (housekeeping timer). A filtered scan of the table:
        run rarely (it reads every record, a page of up to 1,000 per request)."""
        cutoff = now or datetime.now(UTC)
        query = self._table.query_entities(
            "ExpiresAt lt @cutoff", parameters={"cutoff": cutoff}, select=["PartitionKey", "RowKey", "Kind", "ObjectId"]
        )
        deleted = 0
        async for entity in query:
            if entity["PartitionKey"] == UNSETTLED_PARTITION:
                continue
            await self._delete_index(ObjectKind(entity["Kind"]), entity["ObjectId"])
            try:
                await self._table.delete_entity(entity["PartitionKey"], entity["RowKey"])
                deleted += 1
            except ResourceNotFoundError:
                pass
        return deleted

    async def _delete_index(self, kind: ObjectKind, object_id: str) -> None:
        try:
            await self._table.delete_entity(UNSETTLED_PARTITION, row_key(kind, object_id))
        except ResourceNotFoundError:
            pass


def _index_entity(obj: OwnedObject) -> dict[str, Any]:
    return {
        "PartitionKey": UNSETTLED_PARTITION,
        "RowKey": obj.row_key,
        "Kind": obj.kind.value,
        "ObjectId": obj.id,
        "Owner": obj.owner,
    }
