"""Counting Table Storage requests against real storage (Azurite): every request the gateway's clients send is
counted once, under its table and kind, and a batch counts as one request with its entities beside it."""

from __future__ import annotations

import json
import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.settings import StorageSettings
from shared.storage.batch import upsert_entities
from shared.storage.tables import ACCOUNT, StorageOperations, table_service


def no_managed_identity():
    raise AssertionError("a connection string is configured")


async def test_each_request_is_counted_by_table_and_kind(storage_connection_string):
    operations = StorageOperations()
    name = f"t{uuid.uuid4().hex[:16]}"
    async with table_service(
        StorageSettings(connection_string=storage_connection_string), no_managed_identity, operations
    ) as service:
        table = await service.create_table(name)  # from the service client: one pipeline, one counter
        await table.create_entity({"PartitionKey": "p", "RowKey": "a", "n": 1})
        await table.upsert_entity({"PartitionKey": "p", "RowKey": "a", "n": 2}, mode=UpdateMode.REPLACE)
        await table.submit_transaction([("upsert", {"PartitionKey": "p", "RowKey": f"r{i}"}) for i in range(7)])
        await upsert_entities(table, [{"PartitionKey": "q", "RowKey": f"r{i}"} for i in range(5)])  # the ledger's way
        assert (await table.get_entity("p", "a"))["n"] == 2
        with pytest.raises(ResourceNotFoundError):
            await table.get_entity("p", "missing")
        rows = [e async for e in table.query_entities("PartitionKey eq 'p'", results_per_page=3)]
        await table.delete_entity("p", "a")
        await service.delete_table(name)

    assert len(rows) == 8  # three pages of at most 3
    assert operations.snapshot() == {
        ACCOUNT: {"tables": 2},
        name: {
            "write": 3,
            "batch": 2,
            "batch_entities": 12,
            "read": 2,
            "query": 3,
            "failed": {"read 404": 1},
        },
    }
    assert operations.total() == 12
    assert json.loads(operations.to_json()) == operations.snapshot()


async def test_the_runtime_counts_its_storage_requests_and_logs_them_once_at_shutdown(
    storage_connection_string, tmp_path, caplog
):
    from shared.runtime import Runtime
    from shared.storage.tables import GATEWAY_TABLES, PRICES_TABLE

    runtime = Runtime(
        {
            "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
            "AZURE_OPENAI_ENDPOINT": "http://127.0.0.1:9",  # never called: no model call here
            "GATEWAY_LOCAL_DEV_AUTH": "true",
            "GATEWAY_LEDGER_JOURNAL_DIR": str(tmp_path),
        }
    )
    await runtime.services()  # creates the tables if missing, reads the price versions
    caplog.set_level("INFO", logger="shared.runtime")
    await runtime.aclose()

    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("table storage operations: ")]
    assert len(lines) == 1
    logged = json.loads(lines[0].removeprefix("table storage operations: "))
    assert logged == runtime.storage_operations.snapshot()
    assert logged[ACCOUNT]["tables"] == len(GATEWAY_TABLES)  # one create request per table
    assert logged[PRICES_TABLE]["query"] == 1
