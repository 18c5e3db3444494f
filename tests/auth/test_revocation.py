"""Revocation and rotation hold under load: many verifications of a key in flight, Table Storage slow (a proxy in
front of Azurite holds every answer 0-400 ms), and the admin's change lands while they wait. No verification that
began before the change may accept the old secret after it returns, or leave it cached behind it."""

from __future__ import annotations

import asyncio
import functools
import time

import pytest
from azure.data.tables.aio import TableClient

from shared.auth.apikeys import ApiKeyStore
from shared.errors import GatewayError
from shared.storage.tables import FAIL_FAST
from tests.auth.test_apikeys import OWNER
from tests.latency_proxy import LatencyProxy

IN_FLIGHT = 60
MAX_DELAY = 0.4
TRIALS = 2


@pytest.fixture
def slow_storage(azurite):
    proxy = LatencyProxy(azurite.port, MAX_DELAY).start()
    yield proxy
    proxy.stop()


@pytest.fixture
async def slow_store(slow_storage, table):
    async with TableClient.from_connection_string(
        slow_storage.connection_string, table.table_name, **{**FAIL_FAST, "read_timeout": 30}
    ) as client:
        yield ApiKeyStore(client, cache_seconds=30)


async def accepted(store: ApiKeyStore, key: str) -> bool:
    try:
        await store.verify(key)
    except GatewayError as error:
        assert error.status == 401
        return False
    return True


async def old_secret_accepted_after(store: ApiKeyStore, key: str, change) -> list[float]:
    """Start IN_FLIGHT verifications, apply ``change`` while they wait on storage, then keep presenting the old
    secret until every one of them has finished; the times (after the change returned) it was accepted."""
    in_flight = [asyncio.create_task(store.verify(key)) for _ in range(IN_FLIGHT)]
    await asyncio.sleep(0.05)  # their reads are at the proxy, answers held back
    await change()
    done = time.monotonic()
    accepted_at = []
    while not all(task.done() for task in in_flight) or time.monotonic() - done < MAX_DELAY:
        if await accepted(store, key):
            accepted_at.append(round(time.monotonic() - done, 3))
        await asyncio.sleep(0.01)
    await asyncio.gather(*in_flight, return_exceptions=True)  # before the change: either answer is right
    return accepted_at


@pytest.mark.parametrize("change", ["revoke", "rotate"])
async def test_no_verification_in_flight_brings_back_the_old_secret_on_this_instance(slow_store, change):
    for _ in range(TRIALS):
        issued = await slow_store.issue(OWNER, f"{change} under load", None)
        apply = functools.partial(getattr(slow_store, change), issued.info.key_id)
        assert await old_secret_accepted_after(slow_store, issued.key, apply) == []
