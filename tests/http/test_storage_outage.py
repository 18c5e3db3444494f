"""Storage that fails is a 503 with Retry-After, never a 500: the function app in-process over ASGI, with real
Table Storage clients pointed at a port where nothing listens (a real connection failure, not a mock)."""

from __future__ import annotations

import dataclasses

import azure.functions as func
import httpx
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables.aio import TableClient
from starlette.applications import Starlette

from shared.auth.apikeys import ApiKeyStore
from shared.auth.authenticator import Authenticator
from shared.http import blueprints
from shared.local.devhost import http_routes
from shared.pipeline import Gateway
from shared.policy.authorization import Authorizer
from shared.policy.callers import CallerPolicyStore
from shared.runtime import Runtime, Services
from shared.storage.tables import is_storage_outage, storage_refusal_status
from tests.azurite import DEV_ACCOUNT, DEV_KEY, free_port
from tests.http.conftest import assert_openai_error

HELLO = [{"role": "user", "content": "hi"}]
A_KEY = "gwk_0123456789abcdef_" + "A" * 43


def asgi_client(runtime: Runtime) -> httpx.AsyncClient:
    """The function app's HTTP functions as the Functions worker indexes them, served in-process."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    for blueprint in blueprints(runtime):
        app.register_functions(blueprint)
    asgi = Starlette(routes=http_routes(app.get_functions(), "api"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://gateway.test")


@pytest.fixture
def env(storage_connection_string, simulator) -> dict[str, str]:
    return {
        "AZURE_OPENAI_ENDPOINT": simulator.url,
        "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
        "GATEWAY_LOCAL_DEV_AUTH": "true",
    }


def unreachable_table(name: str) -> TableClient:
    endpoint = f"http://127.0.0.1:{free_port()}/{DEV_ACCOUNT}"
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};TableEndpoint={endpoint};"
    )
    return TableClient.from_connection_string(connection, name, retry_total=0)


class UnstartableRuntime(Runtime):
    async def _build(self) -> Services:
        raise ServiceRequestError("Table Storage refused the connection")


async def test_a_gateway_that_cannot_start_answers_503_everywhere_with_a_request_id(env):
    async with asgi_client(UnstartableRuntime(env)) as client:
        responses = [
            await client.get("/api/me"),
            await client.get("/api/manage/keys"),
            await client.get("/api/usage"),
            await client.post("/api/openai/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HELLO}),
        ]
    for response in responses:
        assert_openai_error(response, 503, "gateway_unavailable")
        assert response.headers["retry-after"]


async def test_storage_failing_mid_request_is_a_503_storage_unavailable(env):
    runtime = Runtime(env)
    services = await runtime.services()
    try:
        policies = CallerPolicyStore(unreachable_table("gatewayCallerPolicies"))
        keys = ApiKeyStore(unreachable_table("gatewayApiKeys"), cache_seconds=0)
        authenticator = Authenticator(easy_auth=False, validator=None, key_store=keys, local_dev=True, env={})
        gateway = services.gateway
        runtime._services = dataclasses.replace(
            services,
            policies=policies,
            api_keys=keys,
            authenticator=authenticator,
            gateway=Gateway(
                gateway.guardrails,
                authenticator,
                Authorizer(policies),
                gateway.upstream,
                gateway.accounting,
                stream_usage_min_api_version=gateway.stream_usage_min_api_version,
            ),
        )
        chat = {"model": "gpt-4o-mini", "messages": HELLO}
        async with asgi_client(runtime) as client:
            responses = [
                await client.get("/api/manage/policies/local/developer"),  # a policy read fails
                await client.get("/api/me"),
                await client.post("/api/openai/v1/chat/completions", json=chat),  # the authorizer's policy read
                await client.get("/api/me", headers={"api-key": A_KEY}),  # the key lookup fails
                await client.post("/api/openai/v1/chat/completions", json=chat, headers={"api-key": A_KEY}),
            ]
        for response in responses:
            assert_openai_error(response, 503, "storage_unavailable")
            assert response.headers["retry-after"]
    finally:
        await runtime.aclose()


def _http_error(status: int) -> HttpResponseError:
    error = HttpResponseError(message=f"status {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    "error, outage",
    [
        (ServiceRequestError("connect failed"), True),
        (ServiceResponseError("connection reset"), True),
        (ClientAuthenticationError("no token"), True),
        (_http_error(500), True),
        (_http_error(503), True),
        (_http_error(429), True),
        (_http_error(403), True),
        (_http_error(400), False),  # a key Table Storage refuses: a gateway bug, not an outage
        (ResourceNotFoundError("gone"), False),
        (ResourceExistsError("exists"), False),
        (ValueError("bug"), False),
    ],
)
def test_what_counts_as_a_storage_outage(error, outage):
    assert is_storage_outage(error) is outage


class UncheckedPolicyStore(CallerPolicyStore):
    """A store that writes a note larger than Table Storage takes, as if a field had no bound in validation."""

    async def put(self, policy) -> None:
        await self._table.upsert_entity(
            {"PartitionKey": "policy", "RowKey": "unchecked", "CallerId": policy.caller_id, "Note": "n" * 40_000}
        )


async def test_a_storage_refusal_nothing_handled_is_a_4xx_not_a_500(env):
    """Table Storage (Azurite) answers 400 PropertyValueTooLarge; the edge answers 400 naming the storage error."""
    runtime = Runtime(env)
    services = await runtime.services()
    try:
        runtime._services = dataclasses.replace(services, policies=UncheckedPolicyStore(services.policies._table))
        async with asgi_client(runtime) as client:
            response = await client.put("/api/manage/policies/local/developer", json={"note": "x"})
        error = assert_openai_error(response, 400, "storage_refused")
        assert "PropertyValueTooLarge" in error["message"]
    finally:
        await runtime.aclose()


@pytest.mark.parametrize("status, answer", [(400, 400), (413, 400), (404, 404), (409, 409), (412, 409), (503, None)])
def test_storage_refusals_map_to_a_4xx(status, answer):
    assert storage_refusal_status(_http_error(status)) == answer
