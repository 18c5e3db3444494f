"""Gateway API keys in real Table Storage (the session's private Azurite)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import UpdateMode

from shared.auth.apikeys import DEFAULT_KEY_LIFETIME, MAX_KEY_LIFETIME, ApiKeyStore
from shared.auth.identity import MAX_NAME_CHARS, ROLE_ADMIN, ROLE_USAGE_READ, ROLE_USE, Caller
from shared.errors import GatewayError
from tests.identity_provider import TENANT, USER_OID

OWNER = Caller(f"{TENANT}/{USER_OID}", "Ada Lovelace", TENANT, "user", frozenset({ROLE_USE, ROLE_USAGE_READ}))
INVALID = "The API key is not valid."


@pytest.fixture
def store(table) -> ApiKeyStore:
    return ApiKeyStore(table)


async def rejected(store: ApiKeyStore, key: str) -> str:
    with pytest.raises(GatewayError) as raised:
        await store.verify(key)
    assert raised.value.status == 401
    return raised.value.message


async def test_an_issued_key_authenticates_as_its_owner(store):
    issued = await store.issue(OWNER, "notebook", datetime.now(UTC) + timedelta(days=30))
    assert issued.key.startswith(f"gwk_{issued.info.key_id}_")
    caller = await store.verify(issued.key)
    assert (caller.id, caller.name, caller.tenant, caller.kind) == (OWNER.id, OWNER.name, TENANT, "user")
    assert caller.roles == {ROLE_USE, ROLE_USAGE_READ}
    assert (caller.auth_method, caller.key_id) == ("api-key", issued.info.key_id)


async def test_only_a_hash_is_stored_and_the_key_is_not_in_reprs(store, table):
    issued = await store.issue(OWNER, "notebook", None)
    secret = issued.key[len(f"gwk_{issued.info.key_id}_") :]
    entity = await table.get_entity(issued.info.key_id, "apikey")
    assert all(secret not in str(value) for value in entity.values())
    assert len(entity["SecretHash"]) == 64
    assert issued.key not in repr(issued)
    assert issued.info.hint == secret[-4:]


async def test_keys_never_carry_the_admin_role(store):
    admin = Caller("t/admin", "Admin", "t", "user", frozenset({ROLE_USE, ROLE_ADMIN}))
    caller = await store.verify((await store.issue(admin, "ci", None)).key)
    assert caller.roles == {ROLE_USE}


async def test_a_key_for_an_owner_without_grantable_roles_is_refused(store):
    admin_only = Caller("t/admin", "Admin", "t", "user", frozenset({ROLE_ADMIN}))
    with pytest.raises(GatewayError) as raised:
        await store.issue(admin_only, "ci", None)
    assert raised.value.status == 400


async def test_an_expiry_in_the_past_is_refused(store):
    with pytest.raises(GatewayError) as raised:
        await store.issue(OWNER, "old", datetime.now(UTC) - timedelta(minutes=1))
    assert raised.value.status == 400


async def test_an_unknown_key_and_a_wrong_secret_get_the_same_answer(store):
    issued = await store.issue(OWNER, "notebook", None)
    wrong_secret = issued.key[:-4] + ("AAAA" if not issued.key.endswith("AAAA") else "BBBB")
    unknown_id = "gwk_0123456789abcdef_" + issued.key[-43:]
    assert await rejected(store, wrong_secret) == INVALID
    assert await rejected(store, unknown_id) == INVALID


@pytest.mark.parametrize("presented", ["", "sk-123", "gwk_", "gwk_xyz_abc", "gwk_0123456789abcdef_short"])
async def test_malformed_keys_get_the_generic_answer(store, presented):
    assert await rejected(store, presented) == INVALID


async def test_an_expired_key_is_refused(store, table):
    issued = await store.issue(OWNER, "short-lived", datetime.now(UTC) + timedelta(seconds=60))
    # Age the key in storage rather than sleeping a minute.
    await table.update_entity(
        {"PartitionKey": issued.info.key_id, "RowKey": "apikey", "ExpiresAt": datetime.now(UTC) - timedelta(seconds=1)}
    )
    assert await rejected(store, issued.key) == "This API key has expired. Ask a gateway administrator for a new key."


# --- every key expires --------------------------------------------------------------------------------------------


async def test_a_key_issued_without_an_expiry_gets_the_default_lifetime_and_none_lives_past_the_maximum(store, table):
    issued = await store.issue(OWNER, "defaulted", None)
    stored = await table.get_entity(issued.info.key_id, "apikey")
    assert stored["ExpiresAt"] == issued.info.expires_at
    assert timedelta(days=89) < issued.info.expires_at - datetime.now(UTC) <= DEFAULT_KEY_LIFETIME
    with pytest.raises(GatewayError) as raised:
        await store.issue(OWNER, "forever", datetime.now(UTC) + MAX_KEY_LIFETIME + timedelta(days=1))
    assert (raised.value.status, raised.value.param) == (400, "expires_at")


async def test_a_key_stored_without_an_expiry_expires_a_year_after_it_was_created(store, table):
    """Keys issued before expiry was required: read as created + 365 days; a rotation writes that expiry."""
    old = await store.issue(OWNER, "from last year", None)
    recent = await store.issue(OWNER, "from last month", None)
    for issued, age in ((old, 366), (recent, 30)):
        entity = dict(await table.get_entity(issued.info.key_id, "apikey"))
        del entity["ExpiresAt"]
        entity["CreatedAt"] = datetime.now(UTC) - timedelta(days=age)
        await table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    assert "expired" in await rejected(store, old.key)
    assert (await store.verify(recent.key)).key_id == recent.info.key_id
    listed = {k.key_id: k for k in await store.list_keys()}
    assert listed[old.info.key_id].status == "expired"
    assert listed[recent.info.key_id].expires_at == listed[recent.info.key_id].created_at + MAX_KEY_LIFETIME
    rotated = await store.rotate(recent.info.key_id)
    assert (await table.get_entity(recent.info.key_id, "apikey"))["ExpiresAt"] == rotated.info.expires_at
    assert rotated.info.expires_at == listed[recent.info.key_id].expires_at  # rotation keeps the bound


async def test_a_key_owner_name_stored_before_names_were_cleaned_is_cleaned_when_the_key_is_used(store, table):
    issued = await store.issue(OWNER, "legacy", None)
    await table.update_entity(
        {"PartitionKey": issued.info.key_id, "RowKey": "apikey", "OwnerName": "Eve\u202e\ud800\n" + "x" * 500}
    )
    caller = await store.verify(issued.key)
    assert caller.name == "Eve\ufffd " + "x" * (MAX_NAME_CHARS - 5)
    caller.name.encode("utf-8")


async def test_a_revoked_key_is_refused(store):
    issued = await store.issue(OWNER, "notebook", None)
    revoked = await store.revoke(issued.info.key_id)
    assert revoked.status == "revoked"
    assert "revoked" in await rejected(store, issued.key)
    assert (await store.revoke(issued.info.key_id)).revoked_at == revoked.revoked_at  # idempotent


async def test_rotation_replaces_the_secret(store):
    issued = await store.issue(OWNER, "notebook", None)
    rotated = await store.rotate(issued.info.key_id)
    assert rotated.info.key_id == issued.info.key_id and rotated.key != issued.key
    assert rotated.info.rotated_at is not None
    assert await rejected(store, issued.key) == INVALID
    assert (await store.verify(rotated.key)).key_id == issued.info.key_id


async def test_a_revoked_key_cannot_be_rotated_back_to_life(store):
    issued = await store.issue(OWNER, "notebook", None)
    await store.revoke(issued.info.key_id)
    with pytest.raises(GatewayError) as raised:
        await store.rotate(issued.info.key_id)
    assert raised.value.status == 400


async def test_concurrent_rotations_yield_exactly_one_valid_secret(store):
    issued = await store.issue(OWNER, "notebook", None)
    results = await asyncio.gather(*(store.rotate(issued.info.key_id) for _ in range(5)), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, Exception)]
    assert all(isinstance(r, GatewayError) and r.status == 409 for r in results if isinstance(r, Exception))
    valid = []
    for winner in winners:
        try:
            await store.verify(winner.key)
            valid.append(winner)
        except GatewayError:
            pass
    assert len(valid) == 1


async def test_revocation_wins_over_a_concurrent_rotation(store):
    issued = await store.issue(OWNER, "notebook", None)
    results = await asyncio.gather(
        store.rotate(issued.info.key_id), store.revoke(issued.info.key_id), return_exceptions=True
    )
    assert not isinstance(results[1], Exception)
    candidates = [issued.key] + ([results[0].key] if not isinstance(results[0], Exception) else [])
    for candidate in candidates:  # whichever ran first, no secret works afterwards
        await rejected(store, candidate)


async def test_unknown_key_ids_are_404_for_management(store):
    for key_id in ("0123456789abcdef", "../../etc"):
        with pytest.raises(GatewayError) as raised:
            await store.revoke(key_id)
        assert raised.value.status == 404


async def test_listing_shows_metadata_without_secrets(store):
    other = Caller("t/other", "Other", "t", "app", frozenset({ROLE_USE}))
    mine = await store.issue(OWNER, "one", None)
    await store.issue(OWNER, "two", None)
    await store.issue(other, "three", None)
    await store.revoke(mine.info.key_id)

    everything = await store.list_keys()
    assert [k.name for k in everything] == ["one", "two", "three"]
    owned = await store.list_keys(owner_id=OWNER.id)
    assert [(k.name, k.status) for k in owned] == [("one", "revoked"), ("two", "active")]
    listed = str([k.to_json() for k in everything])
    assert mine.key not in listed and "SecretHash" not in listed and "hash" not in listed.lower()


# --- the per-instance cache of verified keys --------------------------------------------------------------------


async def test_a_verified_key_is_served_from_memory_until_the_cache_time_passes(table):
    store = ApiKeyStore(table, cache_seconds=0.3)
    other_instance = ApiKeyStore(table, cache_seconds=0.3)
    issued = await store.issue(OWNER, "cached", None)
    await store.verify(issued.key)

    await other_instance.revoke(issued.info.key_id)  # another instance revokes it
    assert (await store.verify(issued.key)).key_id == issued.info.key_id  # still remembered here...
    await asyncio.sleep(0.35)
    assert "revoked" in await rejected(store, issued.key)  # ...but no longer than cache_seconds


async def test_revoking_or_rotating_on_this_instance_applies_at_once(store):
    revoked = await store.issue(OWNER, "revoke me", None)
    await store.verify(revoked.key)
    await store.revoke(revoked.info.key_id)
    assert "revoked" in await rejected(store, revoked.key)

    rotated = await store.issue(OWNER, "rotate me", None)
    await store.verify(rotated.key)
    fresh = await store.rotate(rotated.info.key_id)
    assert await rejected(store, rotated.key) == INVALID
    assert (await store.verify(fresh.key)).key_id == rotated.info.key_id


async def test_a_cached_key_id_with_a_wrong_secret_is_still_rejected(store):
    issued = await store.issue(OWNER, "guess", None)
    await store.verify(issued.key)
    forged = issued.key[:-4] + ("AAAA" if not issued.key.endswith("AAAA") else "BBBB")
    assert await rejected(store, forged) == INVALID


async def test_without_the_cache_every_request_reads_the_table(table):
    store = ApiKeyStore(table, cache_seconds=0)
    issued = await store.issue(OWNER, "uncached", None)
    await store.verify(issued.key)
    await ApiKeyStore(table).revoke(issued.info.key_id)
    assert "revoked" in await rejected(store, issued.key)
