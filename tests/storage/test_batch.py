"""Entity-group transactions encoded by the gateway, against Azurite: the same rows as the SDK's, all or none."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from azure.core.exceptions import HttpResponseError
from azure.data.tables import EdmType, EntityProperty, UpdateMode

from shared.storage.batch import upsert_entities


def _row(partition: str, row: str) -> dict:
    return {
        "PartitionKey": partition,
        "RowKey": row,
        "At": datetime(2026, 12, 1, 16, 5, 7, 123456, tzinfo=UTC),
        "Caller": 'tenant/ä ü € 😀 "quoted" \\ back\nslash',
        "Tokens": 2_000_000_000,
        "Big": EntityProperty(2**40, EdmType.INT64),
        "Cost": "0.0000113",
        "CostUsd": 0.0000113,
        "Stream": True,
        "Empty": "",
    }


def _plain(entity) -> dict:
    return {key: value for key, value in entity.items()}


async def test_rows_read_back_exactly_as_the_sdks_own_transaction_writes_them(table):
    keys = ["req-1", "a b%20c", "é-ñ", str(uuid.uuid4()), "x" * 200]
    await upsert_entities(table, [_row("ours", key) for key in keys])
    await table.submit_transaction([("upsert", _row("sdk", key), {"mode": UpdateMode.REPLACE}) for key in keys])
    for key in keys:
        ours, sdk = await table.get_entity("ours", key), await table.get_entity("sdk", key)
        assert {**_plain(ours), "PartitionKey": "sdk"} == _plain(sdk)
        assert ours["Big"].value == 2**40 and ours["At"] == datetime(2026, 12, 1, 16, 5, 7, 123456, tzinfo=UTC)


async def test_a_hundred_rows_in_one_transaction_and_a_second_write_replaces(table):
    rows = [_row("p", f"r{i:03d}") for i in range(100)]
    await upsert_entities(table, rows)
    await upsert_entities(table, [{**row, "Tokens": 7} for row in rows])
    written = [e async for e in table.query_entities("PartitionKey eq 'p'")]
    assert len(written) == 100 and {e["Tokens"] for e in written} == {7}


async def test_a_refused_operation_writes_nothing_and_names_its_status(table):
    too_long = {**_row("p", "bad"), "Caller": "x" * 70_000}  # a string property holds at most 64 KiB
    with pytest.raises(HttpResponseError) as caught:
        await upsert_entities(table, [_row("p", "good"), too_long])
    assert caught.value.status_code == 400
    assert [e async for e in table.query_entities("PartitionKey eq 'p'")] == []


async def test_a_transaction_is_one_partition_and_at_most_a_hundred_rows(table):
    with pytest.raises(ValueError):
        await upsert_entities(table, [_row("a", "1"), _row("b", "1")])
    with pytest.raises(ValueError):
        await upsert_entities(table, [_row("a", str(i)) for i in range(101)])
