from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.policy.callers import CallerPolicyStore


@dataclass
class FinanceTables:
    ledger: TableClient
    daily: TableClient
    policies: CallerPolicyStore


@pytest.fixture
async def finance_tables(storage_connection_string):
    """Fresh ledger, daily and policy tables in the session's Azurite."""
    service = TableServiceClient.from_connection_string(storage_connection_string)
    names = [f"t{uuid.uuid4().hex[:16]}" for _ in range(3)]
    async with service:
        clients = [await service.create_table(name) for name in names]
        yield FinanceTables(clients[0], clients[1], CallerPolicyStore(clients[2], cache_seconds=0))
        for client, name in zip(clients, names, strict=True):
            await client.close()
            await service.delete_table(name)
