from __future__ import annotations

import httpx
import pytest
from azure.data.tables import TableClient

from shared.storage.tables import USAGE_TABLE
from tests.identity_provider import CLIENT_ID, TENANT

ADMIN_OID = "dddddddd-0000-4000-8000-00000000000a"


@pytest.fixture(scope="session")
def issuer(_identity_provider):
    return _identity_provider.reset()


@pytest.fixture(scope="session")
def secured(start_gateway, simulator, storage_connection_string, issuer):
    """A gateway without dev mode: Entra tokens validated in-process, API keys on, Easy Auth off."""
    return start_gateway(
        {
            "AZURE_OPENAI_ENDPOINT": simulator.url,
            "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
            "GATEWAY_AUTH_TENANT_IDS": TENANT,
            "GATEWAY_AUTH_CLIENT_ID": CLIENT_ID,
            "GATEWAY_AUTH_AUTHORITY": issuer.authority,
            "GATEWAY_ALLOWED_DEPLOYMENTS": "gpt-4o-mini,text-embedding-3-small",
        }
    )


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def admin_headers(issuer, **claims) -> dict[str, str]:
    return bearer(issuer.token(**{"oid": ADMIN_OID, "name": "Grace Admin", "roles": ["Gateway.Admin"], **claims}))


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """An OpenAI-shaped error with the request id header; returns the ``error`` object."""
    assert response.status_code == status, response.text
    assert response.headers.get("x-gateway-request-id"), response.headers
    error = response.json()["error"]
    assert set(error) == {"code", "message", "type", "param"} and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


@pytest.fixture(scope="session")
def usage_rows(storage_connection_string):
    """The ledger rows recorded for a request id (there must be none for a refused request)."""
    table = TableClient.from_connection_string(storage_connection_string, USAGE_TABLE)

    def rows(request_id: str) -> list[dict]:
        return list(table.query_entities("RowKey eq @id", parameters={"id": request_id}))

    yield rows
    table.close()
