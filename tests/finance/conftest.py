from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.finance.daily import DailyRollup
from shared.policy.callers import CallerPolicyStore


@dataclass
class FinanceTables:
    ledger: TableClient
    hourly: TableClient
    daily: TableClient
    policies: CallerPolicyStore

    @property
    def rollup(self) -> DailyRollup:
        return DailyRollup(self.ledger, self.hourly, self.daily, self.policies)


@pytest.fixture
async def finance_tables(storage_connection_string):
    """Fresh ledger, hourly, daily and policy tables in the session's Azurite."""
    service = TableServiceClient.from_connection_string(storage_connection_string)
    names = [f"t{uuid.uuid4().hex[:16]}" for _ in range(4)]
    async with service:
        clients = [await service.create_table(name) for name in names]
        yield FinanceTables(clients[0], clients[1], clients[2], CallerPolicyStore(clients[3], cache_seconds=0))
        for client, name in zip(clients, names, strict=True):
            await client.close()
            await service.delete_table(name)
