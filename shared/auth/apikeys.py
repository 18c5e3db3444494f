"""Gateway API keys for tools that cannot obtain Entra tokens, kept in Azure Table Storage.

Format: ``gwk_<key id>_<secret>``. The fixed prefix lets secret scanners recognise leaked keys; the key id
(16 hex characters) makes verification a single point read; the secret is 256 random bits (base64url).

Only ``SHA-256(domain tag, key id, secret)`` is stored. A 256-bit random secret cannot be brute-forced from
its hash, so a slow password hash would only add latency to every request, and an HMAC pepper would add a
second secret to manage without protecting anything the hash does not already protect. Comparisons use
``hmac.compare_digest``.

A key acts as its owner with a snapshot of the owner's roles taken at issue time, minus ``Gateway.Admin``
(keys never administer), so a key never grants more than its owner had. The snapshot does not follow later
role removals in Entra: revoke the owner's keys when their access ends (expiry bounds the exposure).

Every key expires: at most ``MAX_KEY_LIFETIME`` (365 days) after it is issued, ``DEFAULT_KEY_LIFETIME`` (90 days)
when no expiry is given. A row written before expiry was required is read as expiring ``MAX_KEY_LIFETIME`` after
its creation, and a rotation writes that expiry into the row.

Verified keys are remembered per instance for ``cache_seconds`` (default 30 s): without that, every request
pays a Table Storage read. Revoking or rotating drops the entry at once on the instance that did it, and bumps
the key's generation: a verification that read the row before the change (its read still in flight when the
change landed) re-reads instead of caching what it saw, so nothing stale enters the cache after the change.
Other instances stop accepting the old secret within ``cache_seconds`` of their last read of the row.
``cache_seconds=0`` turns the cache off.

Row layout: PartitionKey = key id, RowKey = ``"apikey"`` — one partition per key, so the per-request point
reads spread across partitions. Listing scans the table (an admin action on a small table).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.auth.identity import MAX_NAME_CHARS, ROLE_ADMIN, ROLE_USAGE_READ, ROLE_USE, Caller, canonical_caller_id
from shared.errors import GatewayError, bad_request, not_found, unauthorized
from shared.text import display_text

KEY_PREFIX = "gwk_"
KEY_ROW = "apikey"
GRANTABLE_ROLES = frozenset({ROLE_USE, ROLE_USAGE_READ})
_KEY_ID_PATTERN = re.compile(r"[0-9a-f]{16}")
_KEY_PATTERN = re.compile(r"gwk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_HASH_TAG = b"gateway-api-key-v1"
_INVALID = "The API key is not valid."
MAX_KEY_LIFETIME = timedelta(days=365)
DEFAULT_KEY_LIFETIME = timedelta(days=90)
MAX_KEY_NAME_CHARS = 100
# A verification that keeps meeting concurrent changes of its key gives up (401) rather than loop.
_MAX_VERIFY_READS = 3
# Compared against when the key id is unknown, so both failures take the same path.
_DUMMY_HASH = hashlib.sha256(b"unknown key").hexdigest()


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about a key: never its secret or hash."""

    key_id: str
    name: str
    owner_id: str
    owner_name: str
    owner_tenant: str | None
    owner_kind: str
    roles: tuple[str, ...]
    hint: str  # last 4 characters of the secret, to tell keys apart in a list
    created_at: datetime
    expires_at: datetime  # every key expires (rows without one: created_at + MAX_KEY_LIFETIME)
    revoked_at: datetime | None
    rotated_at: datetime | None
    issued_by: str | None = None  # the admin who issued the key (None for keys issued before this was recorded)

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= datetime.now(UTC):
            return "expired"
        return "active"

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "key_id": self.key_id,
            "name": self.name,
            "owner": {
                "id": self.owner_id,
                "name": self.owner_name,
                "tenant": self.owner_tenant,
                "kind": self.owner_kind,
            },
            "roles": list(self.roles),
            "hint": f"…{self.hint}",
            "status": self.status,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "rotated_at": iso(self.rotated_at),
            "issued_by": self.issued_by,
        }


@dataclass(frozen=True)
class IssuedApiKey:
    """A new key: the plaintext ``key`` exists only in this object, returned once to whoever issued it."""

    key: str = field(repr=False)
    info: ApiKeyInfo

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, **self.info.to_json()}


MAX_CACHED_KEYS = 10_000


@dataclass(frozen=True)
class _Verified:
    secret_hash: str
    caller: Caller
    expires_at: datetime
    until: float  # monotonic time after which the row must be read again (cache time after the read began)


class ApiKeyStore:
    def __init__(self, table: TableClient, cache_seconds: float = 30.0) -> None:
        self._table = table
        self._cache_seconds = cache_seconds
        self._verified: dict[str, _Verified] = {}
        # Bumped by every rotation or revocation of a key on this instance (after its write, in the same step as
        # the cache entry is dropped): a verification caches its answer only if the generation it started with is
        # still current, so a read that raced the change cannot put the old state back into the cache.
        self._generation: dict[str, int] = {}
        self._epoch = 0  # bumped when the generations are forgotten (bounded memory): every read in flight re-reads

    async def issue(
        self, owner: Caller, name: str, expires_at: datetime | None, *, issued_by: str | None = None
    ) -> IssuedApiKey:
        """A new key acting as ``owner`` (whose id must be canonical); ``issued_by`` is kept for audit.

        ``expires_at`` ``None`` means the default lifetime; later than ``MAX_KEY_LIFETIME`` from now is refused."""
        roles = sorted(owner.roles & GRANTABLE_ROLES)
        if not roles:
            raise bad_request(
                f"The key's owner holds none of the roles a key can carry ({sorted(GRANTABLE_ROLES)}; "
                f"keys never carry {ROLE_ADMIN}), so the key could do nothing.",
                param="roles",
            )
        now = datetime.now(UTC)
        if expires_at is None:
            expires_at = now + DEFAULT_KEY_LIFETIME
        if expires_at.tzinfo is None or expires_at <= now:
            raise bad_request("The expiry must be a timezone-aware time in the future.", param="expires_at")
        if expires_at > now + MAX_KEY_LIFETIME + timedelta(minutes=1):  # a minute's slack for the caller's clock
            raise bad_request(
                f"A key lives at most {MAX_KEY_LIFETIME.days} days; choose an earlier expiry.", param="expires_at"
            )
        name = _bounded(name, MAX_KEY_NAME_CHARS, "name")
        owner_name = _bounded(owner.name, MAX_NAME_CHARS, "owner.name")
        for _ in range(3):  # a 64-bit key id collides only by astronomical bad luck; retry rather than fail
            key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
            entity = {
                "PartitionKey": key_id,
                "RowKey": KEY_ROW,
                "Name": name,
                "OwnerId": owner.id,
                "OwnerName": owner_name,
                "OwnerTenant": owner.tenant or "",
                "OwnerKind": owner.kind,
                "Roles": json.dumps(roles),
                "SecretHash": _hash(key_id, secret),
                "Hint": secret[-4:],
                "CreatedAt": now,
                "ExpiresAt": expires_at,
            }
            if issued_by is not None:
                entity["IssuedBy"] = issued_by
            try:
                await self._table.create_entity(entity)
            except ResourceExistsError:
                continue
            return IssuedApiKey(_format(key_id, secret), _info(entity))
        raise GatewayError(500, "Could not allocate a unique API key id; try again.", code="key_id_collision")

    async def verify(self, presented: str) -> Caller:
        """The owner as a caller (``auth_method='api-key'``, ``key_id`` set), or 401."""
        match = _KEY_PATTERN.fullmatch(presented.strip()) if presented else None
        if match is None:
            raise unauthorized(_INVALID)
        key_id, secret = match.groups()
        presented_hash = _hash(key_id, secret)
        cached = self._verified.get(key_id)
        if (
            cached is not None
            and time.monotonic() < cached.until
            and cached.expires_at > datetime.now(UTC)
            and hmac.compare_digest(cached.secret_hash, presented_hash)
        ):
            return cached.caller
        for _ in range(_MAX_VERIFY_READS):
            generation = self._generation_of(key_id)
            read_at = time.monotonic()
            entity = await self._get(key_id)
            if self._generation_of(key_id) == generation:
                break
            # The key was rotated or revoked here while the row was being read: what was read may be the old
            # state, which must be neither answered nor cached after the change. Read again.
        else:
            raise unauthorized(_INVALID)
        stored = entity.get("SecretHash", _DUMMY_HASH) if entity else _DUMMY_HASH
        if not hmac.compare_digest(stored, presented_hash) or entity is None:
            raise unauthorized(_INVALID)
        info = _info(entity)
        # Only the holder of the secret learns why a real key stopped working.
        if info.revoked_at is not None:
            raise unauthorized("This API key has been revoked. Ask a gateway administrator for a new key.")
        if info.status == "expired":
            raise unauthorized("This API key has expired. Ask a gateway administrator for a new key.")
        caller = Caller(
            id=info.owner_id,
            name=display_text(info.owner_name, MAX_NAME_CHARS) or info.owner_id,
            tenant=info.owner_tenant,
            kind="app" if info.owner_kind == "app" else "user",
            roles=frozenset(info.roles),
            auth_method="api-key",
            key_id=key_id,
        )
        if self._cache_seconds > 0:
            if len(self._verified) >= MAX_CACHED_KEYS:
                self._verified.clear()
            self._verified[key_id] = _Verified(stored, caller, info.expires_at, read_at + self._cache_seconds)
        return caller

    async def rotate(self, key_id: str) -> IssuedApiKey:
        """A new secret for the same key id, name, owner, roles and expiry; the old secret stops working."""
        entity = await self._existing(key_id)
        info = _info(entity)
        if info.status != "active":
            raise bad_request(
                f"API key {key_id} is {info.status} and cannot be rotated; issue a new key.", code="key_not_active"
            )
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        change = {
            "PartitionKey": key_id,
            "RowKey": KEY_ROW,
            "SecretHash": _hash(key_id, secret),
            "Hint": secret[-4:],
            "RotatedAt": now,
            "ExpiresAt": info.expires_at,  # the same bound (and, for a row from before expiry was required, written)
        }
        try:
            # If the key was revoked or rotated since we read it, do not hand out a secret for a stale state.
            await self._table.update_entity(
                change,
                mode=UpdateMode.MERGE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            raise GatewayError(
                409, f"API key {key_id} changed while it was being rotated; retry.", code="key_changed"
            ) from None
        finally:
            self._changed(key_id)  # also when the write's outcome is unknown (a timeout may still have landed)
        return IssuedApiKey(_format(key_id, secret), _info({**entity, **change}))

    async def revoke(self, key_id: str) -> ApiKeyInfo:
        """Revoke for good (idempotent). Retries on concurrent changes: a revocation must never be lost."""
        for _ in range(5):
            entity = await self._existing(key_id)
            if entity.get("RevokedAt") is not None:
                return _info(entity)
            change = {"PartitionKey": key_id, "RowKey": KEY_ROW, "RevokedAt": datetime.now(UTC)}
            try:
                await self._table.update_entity(
                    change,
                    mode=UpdateMode.MERGE,
                    etag=entity.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                continue
            finally:
                self._changed(key_id)
            return _info({**entity, **change})
        raise GatewayError(
            409, f"API key {key_id} kept changing while it was being revoked; retry.", code="key_changed"
        )

    def _changed(self, key_id: str) -> None:
        """After a rotation or revocation: drop the cached answer and make every read in flight read again.

        No await between the two, so no verification can run in between."""
        self._verified.pop(key_id, None)
        if len(self._generation) >= MAX_CACHED_KEYS:  # bounded memory; forgetting costs reads in flight a re-read
            self._generation.clear()
            self._epoch += 1
        self._generation[key_id] = self._generation.get(key_id, 0) + 1

    def _generation_of(self, key_id: str) -> tuple[int, int]:
        return self._epoch, self._generation.get(key_id, 0)

    async def list_keys(self, owner_id: str | None = None) -> list[ApiKeyInfo]:
        if owner_id is None:
            entities = self._table.query_entities("RowKey eq @row", parameters={"row": KEY_ROW})
        else:
            entities = self._table.query_entities(
                "RowKey eq @row and OwnerId eq @owner", parameters={"row": KEY_ROW, "owner": owner_id}
            )
        keys = [_info(entity) async for entity in entities]
        return sorted(keys, key=lambda k: (k.created_at, k.key_id))

    async def _get(self, key_id: str) -> Any:
        try:
            return await self._table.get_entity(key_id, KEY_ROW)
        except ResourceNotFoundError:
            return None

    async def _existing(self, key_id: str) -> Any:
        if not _KEY_ID_PATTERN.fullmatch(key_id):
            raise not_found("No API key has that id (key ids are 16 hexadecimal characters).", code="key_not_found")
        entity = await self._get(key_id)
        if entity is None:
            raise not_found(f"No API key with id '{key_id}'.", code="key_not_found")
        return entity


def _format(key_id: str, secret: str) -> str:
    return f"{KEY_PREFIX}{key_id}_{secret}"


def _hash(key_id: str, secret: str) -> str:
    return hashlib.sha256(b"\0".join((_HASH_TAG, key_id.encode(), secret.encode()))).hexdigest()


def _info(entity: dict[str, Any]) -> ApiKeyInfo:
    return ApiKeyInfo(
        key_id=entity["PartitionKey"],
        name=entity["Name"],
        # Canonical on read too: a row written before ids were canonical still acts as the principal it names.
        owner_id=canonical_caller_id(entity["OwnerId"]) or entity["OwnerId"],
        owner_name=entity["OwnerName"],
        owner_tenant=(entity.get("OwnerTenant") or "").lower() or None,
        owner_kind=entity["OwnerKind"],
        roles=tuple(_roles(entity["Roles"])),
        hint=entity["Hint"],
        created_at=entity["CreatedAt"],
        # Keys issued before every key had to expire: the longest lifetime a key may have now, from its creation.
        expires_at=entity.get("ExpiresAt") or entity["CreatedAt"] + MAX_KEY_LIFETIME,
        revoked_at=entity.get("RevokedAt"),
        rotated_at=entity.get("RotatedAt"),
        issued_by=entity.get("IssuedBy"),
    )


def _bounded(text: str, limit: int, param: str) -> str:
    """A name to store: one line of at most ``limit`` characters (the HTTP edge checks this first, and says so)."""
    if display_text(text, limit) != text:
        raise bad_request(f"'{param}' must be one line of at most {limit} printable characters.", param=param)
    return text


def _roles(stored: str) -> Iterable[str]:
    # Re-applied on read: even a hand-edited row cannot make a key an administrator.
    return sorted(set(json.loads(stored)) & GRANTABLE_ROLES)
