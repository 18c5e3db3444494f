"""The ownership registry against real Table Storage (Azurite): one point read per check, strangers and unknown ids
answer the same 404, admins may reach others' objects, settlement is ETag-conditional, expiry and forgetting."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.auth.identity import ROLE_ADMIN, ROLE_USE, Caller
from shared.errors import GatewayError
from shared.stateful.ids import ObjectKind, check_object_id
from shared.stateful.objects import ObjectChanged, ObjectRegistry, OwnedObject

ALICE = Caller("tenant-a/alice", "Alice", "tenant-a", "user", frozenset({ROLE_USE}))
BOB = Caller("tenant-a/bob", "Bob", "tenant-a", "user", frozenset({ROLE_USE}))
ADMIN = Caller("tenant-a/admin", "Admin", "tenant-a", "user", frozenset({ROLE_USE, ROLE_ADMIN}))
RESP = "resp_" + "a1" * 20


async def test_the_owner_gets_its_record_and_a_stranger_the_same_404_as_for_an_unknown_id(table):
    registry = ObjectRegistry(table)
    await registry.record(OwnedObject.new(ObjectKind.RESPONSE, RESP, ALICE.id, "east", "gpt-4o-mini"))
    mine = await registry.owned(ALICE, ObjectKind.RESPONSE, RESP)
    assert (mine.owner, mine.backend, mine.deployment) == (ALICE.id, "east", "gpt-4o-mini")
    assert mine.expires_at is not None and mine.expires_at - mine.created_at == timedelta(days=30)
    with pytest.raises(GatewayError) as stranger:
        await registry.owned(BOB, ObjectKind.RESPONSE, RESP)
    with pytest.raises(GatewayError) as unknown:
        await registry.owned(BOB, ObjectKind.RESPONSE, "resp_" + "b2" * 20)
    assert stranger.value.status == unknown.value.status == 404
    assert stranger.value.code == unknown.value.code == "not_found"
    assert stranger.value.message.replace(RESP, "X") == unknown.value.message.replace("resp_" + "b2" * 20, "X")
    # the same id as another kind is not the same object
    with pytest.raises(GatewayError):
        await registry.owned(ALICE, ObjectKind.FILE, RESP)


async def test_admins_reach_other_callers_objects(table):
    registry = ObjectRegistry(table)
    await registry.record(OwnedObject.new(ObjectKind.RESPONSE, RESP, ALICE.id, "east"))
    assert (await registry.owned(ADMIN, ObjectKind.RESPONSE, RESP)).owner == ALICE.id


async def test_expired_records_read_as_absent_and_housekeeping_deletes_them(table):
    registry = ObjectRegistry(table)
    old = datetime.now(UTC) - timedelta(days=31)
    await registry.record(OwnedObject.new(ObjectKind.RESPONSE, RESP, ALICE.id, "east", now=old))
    await registry.record(OwnedObject.new(ObjectKind.RESPONSE, "resp_" + "c3" * 20, ALICE.id, "east"))
    with pytest.raises(GatewayError):
        await registry.owned(ALICE, ObjectKind.RESPONSE, RESP)
    assert [o.id for o in await registry.list_for(ALICE, ObjectKind.RESPONSE)] == ["resp_" + "c3" * 20]
    assert await registry.delete_expired() == 1
    assert [e async for e in table.list_entities()][0]["ObjectId"] == "resp_" + "c3" * 20


async def test_list_for_shows_only_the_callers_objects_of_the_kind(table):
    registry = ObjectRegistry(table)
    await registry.record(OwnedObject.new(ObjectKind.FILE, "file-" + "1" * 24, ALICE.id, "east"))
    await registry.record(OwnedObject.new(ObjectKind.FILE, "file-" + "2" * 24, BOB.id, "east"))
    await registry.record(OwnedObject.new(ObjectKind.BATCH, "batch_" + "3" * 24, ALICE.id, "east"))
    assert [o.id for o in await registry.list_for(ALICE, ObjectKind.FILE)] == ["file-" + "1" * 24]
    assert [o.id for o in await registry.list_for(ALICE, ObjectKind.BATCH)] == ["batch_" + "3" * 24]


async def test_settlement_is_won_by_exactly_one_of_concurrent_writers(table):
    registry = ObjectRegistry(table)
    await registry.record(
        OwnedObject.new(ObjectKind.RESPONSE, RESP, ALICE.id, "east", attributes={"request_id": "r1"}, settled=False)
    )
    assert [o.id for o in await registry.unsettled(ObjectKind.RESPONSE)] == [RESP]
    read = [await registry.find(ALICE.id, ObjectKind.RESPONSE, RESP) for _ in range(5)]

    async def settle(obj: OwnedObject | None) -> bool:
        assert obj is not None
        try:
            await registry.update(replace(obj, settled=True))
            return True
        except ObjectChanged:
            return False

    assert sorted(await asyncio.gather(*(settle(obj) for obj in read))) == [False] * 4 + [True]
    assert await registry.unsettled(ObjectKind.RESPONSE) == []
    assert (await registry.owned(ALICE, ObjectKind.RESPONSE, RESP)).settled


async def test_forget_deletes_the_record_and_its_index(table):
    registry = ObjectRegistry(table)
    await registry.record(OwnedObject.new(ObjectKind.BATCH, "batch_" + "4" * 24, ALICE.id, "east", settled=False))
    await registry.forget(ObjectKind.BATCH, "batch_" + "4" * 24, ALICE.id)
    await registry.forget(ObjectKind.BATCH, "batch_" + "4" * 24, ALICE.id)  # twice is fine
    assert [e async for e in table.list_entities()] == []


@pytest.mark.parametrize(
    "hostile",
    [
        "resp_abc/../x",
        "resp_abcdefgh%2Fx",
        "resp_abcdefgh\n",
        "resp_abcdefgh\x00",
        "resp_" + "a" * 200,
        "..",
        "resp_abc defgh",
        "RESP_abcdefgh",
        "",
    ],
)
def test_hostile_ids_are_refused_before_any_use(hostile):
    with pytest.raises(GatewayError) as refused:
        check_object_id(ObjectKind.RESPONSE, hostile, "response_id")
    assert (refused.value.status, refused.value.code, refused.value.param) == (400, "invalid_id", "response_id")
    assert hostile not in refused.value.message or hostile == ""
