"""Fixtures for the identity tests: Azurite tables (the local identity provider lives in tests/identity_provider.py)."""

from __future__ import annotations

import uuid

import pytest
from azure.data.tables.aio import TableServiceClient

from tests.identity_provider import (  # noqa: F401 (re-exported for the tests in this folder)
    APP_OID,
    CALLING_APP,
    CLIENT_ID,
    OTHER_TENANT,
    TENANT,
    USER_OID,
    LocalIdentityProvider,
    SigningKey,
    v1_issuer,
    v2_issuer,
)


@pytest.fixture
async def table(storage_connection_string):
    """A fresh API key table in the session's Azurite (a new table per test keeps tests independent)."""
    service = TableServiceClient.from_connection_string(storage_connection_string)
    name = f"keys{uuid.uuid4().hex[:16]}"
    async with service:
        client = await service.create_table(name)
        async with client:
            yield client
        await service.delete_table(name)
