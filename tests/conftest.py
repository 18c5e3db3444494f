from __future__ import annotations

import uuid

import httpx
import pytest
from azure.data.tables.aio import TableServiceClient

from tests.azurite import Azurite
from tests.gateway_process import GatewayProcess
from tests.identity_provider import LocalIdentityProvider, SigningKey


@pytest.fixture(scope="session")
def azurite():
    """A private in-memory Azurite Table service for this test session."""
    server = Azurite().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def storage_connection_string(azurite) -> str:
    return azurite.connection_string


@pytest.fixture
async def table(storage_connection_string):
    """A fresh table in the session's Azurite (a new table per test keeps tests independent)."""
    service = TableServiceClient.from_connection_string(storage_connection_string)
    name = f"t{uuid.uuid4().hex[:16]}"
    async with service:
        client = await service.create_table(name)
        async with client:
            yield client
        await service.delete_table(name)


@pytest.fixture(scope="session")
def simulator():
    """The Azure OpenAI simulator on a loopback port (the same code the gateway embeds locally)."""
    from shared.local.simulator.embedded import EmbeddedSimulator

    server = EmbeddedSimulator().start()
    yield server
    server.stop()


class SimulatorControl:
    """Tell the simulator how to misbehave and see what reached it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=5)

    def behave(self, **behaviour) -> None:
        self.http.post("/_simulator/behaviours", json=behaviour).raise_for_status()

    def requests(self) -> list[dict]:
        return self.http.get("/_simulator/requests").json()

    def reset(self) -> None:
        self.http.delete("/_simulator/behaviours").raise_for_status()
        self.http.delete("/_simulator/requests").raise_for_status()


@pytest.fixture
def sim(simulator):
    control = SimulatorControl(simulator.url)
    control.reset()
    yield control
    control.reset()


@pytest.fixture(scope="session")
def gateway_env(simulator, storage_connection_string) -> dict[str, str]:
    """Settings of the default test gateway: simulator upstream, Azurite storage, local dev auth."""
    return {
        "AZURE_OPENAI_ENDPOINT": simulator.url,
        "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
        "GATEWAY_LOCAL_DEV_AUTH": "true",
        "GATEWAY_MAX_REQUEST_BYTES": "65536",
        "GATEWAY_MAX_PROMPT_TOKENS": "4000",
        "GATEWAY_MAX_OUTPUT_TOKENS": "1000",
        "GATEWAY_ALLOWED_DEPLOYMENTS": "gpt-4o-mini,text-embedding-3-small,gpt-4.1",
        # Above the default (500): tests/e2e/test_concurrency.py holds 1,000 streams through this process.
        "GATEWAY_MAX_INFLIGHT_CALLS": "2000",
    }


@pytest.fixture(scope="session")
def gateway(gateway_env):
    """The gateway as a real HTTP server process."""
    process = GatewayProcess(gateway_env).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def start_gateway():
    """Start extra gateways with other settings; all are stopped at the end of the session."""
    started: list[GatewayProcess] = []

    def start(env: dict[str, str]) -> GatewayProcess:
        process = GatewayProcess(env).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def signing_keys() -> dict[str, SigningKey]:
    return {kid: SigningKey(kid) for kid in ("k1", "k2", "rogue")}


@pytest.fixture(scope="session")
def _identity_provider(signing_keys):
    provider = LocalIdentityProvider(signing_keys).start()
    yield provider
    provider.stop()


@pytest.fixture
def idp(_identity_provider) -> LocalIdentityProvider:
    """The local identity provider, publishing only ``k1``, with fresh request counts."""
    return _identity_provider.reset()
