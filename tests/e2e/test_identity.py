"""Caller identity end to end: Entra tokens from a local issuer, gateway API keys, Easy Auth, roles."""

from __future__ import annotations

import base64
import json
import time

import httpx
import openai
import pytest
from azure.data.tables import TableClient

from shared.storage.tables import USAGE_TABLE
from tests.identity_provider import APP_OID, CALLING_APP, CLIENT_ID, TENANT, USER_OID

API_VERSION = "2024-10-21"
HELLO = [{"role": "user", "content": "Hello there, gateway!"}]
ADMIN_OID = "dddddddd-0000-4000-8000-000000000004"
SECRET_PROMPT = "zebra-quartz-7781 is my private note"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def issuer(_identity_provider):
    return _identity_provider.reset()


@pytest.fixture(scope="module")
def secured(start_gateway, simulator, storage_connection_string, issuer):
    """A gateway with no dev mode: Entra tokens validated in-process, API keys on, Easy Auth off."""
    return start_gateway(
        {
            "AZURE_OPENAI_ENDPOINT": simulator.url,
            "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
            "GATEWAY_AUTH_TENANT_IDS": TENANT,
            "GATEWAY_AUTH_CLIENT_ID": CLIENT_ID,
            "GATEWAY_AUTH_AUTHORITY": issuer.authority,
            "GATEWAY_LOG_LEVEL": "DEBUG",
        }
    )


def user_token(issuer, **claims) -> str:
    return issuer.token(**claims)


def admin_token(issuer) -> str:
    return issuer.token(oid=ADMIN_OID, name="Grace Admin", roles=["Gateway.Admin", "Gateway.Use"])


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_sdk_with_an_entra_token_provider(secured, issuer):
    client = openai.AzureOpenAI(
        azure_endpoint=secured.api,
        api_version=API_VERSION,
        max_retries=0,
        azure_ad_token_provider=lambda: user_token(issuer),
    )
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert completion.choices[0].message.content

    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
        if c.choices
    )
    assert streamed == completion.choices[0].message.content


def test_v1_sdk_with_an_entra_token(secured, issuer):
    client = openai.OpenAI(base_url=f"{secured.api}/openai/v1", api_key=user_token(issuer), max_retries=0)
    assert client.embeddings.create(model="text-embedding-3-small", input="x").data


def test_no_credentials_is_401(secured):
    client = openai.OpenAI(base_url=f"{secured.api}/openai/v1", api_key="not-a-credential", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert "malformed" in caught.value.message

    response = httpx.get(f"{secured.api}/me")
    assert response.status_code == 401
    assert response.json()["error"]["message"].startswith("No credentials were presented")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_spoofed_easy_auth_principal_is_not_trusted_when_easy_auth_is_off(secured, sim):
    principal = {
        "auth_typ": "aad",
        "claims": [
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": ADMIN_OID},
            {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": TENANT},
            {"typ": "roles", "val": "Gateway.Admin"},
            {"typ": "roles", "val": "Gateway.Use"},
        ],
    }
    spoof = {
        "x-ms-client-principal": base64.b64encode(json.dumps(principal).encode()).decode(),
        "x-ms-client-principal-id": ADMIN_OID,
        "x-ms-client-principal-idp": "aad",
    }

    response = httpx.post(
        f"{secured.api}/openai/v1/chat/completions", headers=spoof, json={"model": "gpt-4o-mini", "messages": HELLO}
    )
    assert response.status_code == 401
    assert httpx.get(f"{secured.api}/manage/keys", headers=spoof).status_code == 401
    assert sim.requests() == []


@pytest.mark.parametrize("tamper", ["expired", "wrong_audience", "other_key"])
def test_invalid_tokens_get_401_through_the_sdk(secured, issuer, tamper):
    token = {
        "expired": lambda: issuer.token(exp=1_000_000_000, iat=999_999_000, nbf=999_999_000),
        "wrong_audience": lambda: issuer.token(aud="api://someone-else"),
        "other_key": lambda: issuer.token(kid="rogue"),
    }[tamper]()
    client = openai.AzureOpenAI(
        azure_endpoint=secured.api, api_version=API_VERSION, azure_ad_token=token, max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)


def test_a_caller_without_the_use_role_is_forbidden(secured, issuer, sim):
    client = openai.AzureOpenAI(
        azure_endpoint=secured.api,
        api_version=API_VERSION,
        max_retries=0,
        azure_ad_token=issuer.token(roles=["Usage.Read"]),
    )
    with pytest.raises(openai.PermissionDeniedError, match="Gateway.Use"):
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert sim.requests() == []


def test_me_describes_the_caller(secured, issuer):
    me = httpx.get(f"{secured.api}/me", headers=bearer(user_token(issuer))).json()
    assert me["id"] == f"{TENANT}/{USER_OID}"
    assert me["kind"] == "user" and me["auth_method"] == "entra-token"
    assert me["roles"] == ["Gateway.Use"] and me["can_call_models"] is True
    assert me["limits"]["max_output_tokens"] == 16384

    app = httpx.get(
        f"{secured.api}/me",
        headers=bearer(issuer.token(oid=APP_OID, drop=("scp", "name", "preferred_username"), idtyp="app")),
    ).json()
    assert app["kind"] == "app" and app["name"] == CALLING_APP


def test_api_key_lifecycle_for_a_tool_that_only_speaks_api_key(secured, issuer, sim):
    admin = bearer(admin_token(issuer))
    created = httpx.post(
        f"{secured.api}/manage/keys",
        headers=admin,
        json={
            "name": "chat front-end",
            "owner": {"id": f"{TENANT}/{APP_OID}", "name": "Chat UI", "kind": "app"},
            "roles": ["Gateway.Use"],
            "expires_in_days": 30,
        },
    )
    assert created.status_code == 201, created.text
    issued = created.json()
    key, key_id = issued["key"], issued["key_id"]
    assert key.startswith("gwk_")

    listed = httpx.get(f"{secured.api}/manage/keys", headers=admin).json()["data"]
    mine = [k for k in listed if k["key_id"] == key_id]
    assert len(mine) == 1 and key not in json.dumps(listed)  # shown once, never again

    azure = openai.AzureOpenAI(azure_endpoint=secured.api, api_key=key, api_version=API_VERSION, max_retries=0)
    assert azure.chat.completions.create(model="gpt-4o-mini", messages=HELLO).choices
    v1 = openai.OpenAI(base_url=f"{secured.api}/openai/v1", api_key=key, max_retries=0)  # sent as Bearer gwk_...
    assert v1.responses.create(model="gpt-4o-mini", input="hi").output_text
    me = httpx.get(f"{secured.api}/me", headers={"api-key": key}).json()
    assert me["id"] == f"{TENANT}/{APP_OID}" and me["auth_method"] == "api-key" and me["key_id"] == key_id

    rotated = httpx.post(f"{secured.api}/manage/keys/{key_id}/rotate", headers=admin)
    assert rotated.status_code == 200, rotated.text
    new_key = rotated.json()["key"]
    with pytest.raises(openai.AuthenticationError):
        azure.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert httpx.get(f"{secured.api}/me", headers={"api-key": new_key}).status_code == 200

    assert httpx.delete(f"{secured.api}/manage/keys/{key_id}", headers=admin).status_code == 204
    assert httpx.get(f"{secured.api}/me", headers={"api-key": new_key}).status_code == 401


def test_keys_never_carry_the_admin_role(secured, issuer):
    response = httpx.post(
        f"{secured.api}/manage/keys",
        headers=bearer(admin_token(issuer)),
        json={"name": "escalate", "roles": ["Gateway.Admin"]},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "roles"


def test_management_needs_the_admin_role(secured, issuer):
    user = bearer(user_token(issuer))
    response = httpx.post(f"{secured.api}/manage/keys", headers=user, json={"name": "mine"})
    assert response.status_code == 403
    assert "Gateway.Admin" in response.json()["error"]["message"]
    assert httpx.get(f"{secured.api}/manage/keys", headers=user).status_code == 403
    assert (
        httpx.put(
            f"{secured.api}/manage/policies/{TENANT}/{USER_OID}", headers=user, json={"allowed_deployments": []}
        ).status_code
        == 403
    )


def test_per_caller_deployment_allowlist(secured, issuer, sim):
    oid = "eeeeeeee-0000-4000-8000-000000000005"
    admin = bearer(admin_token(issuer))
    put = httpx.put(
        f"{secured.api}/manage/policies/{TENANT}/{oid}",
        headers=admin,
        json={"allowed_deployments": ["text-embedding-3-small"], "note": "embeddings only"},
    )
    assert put.status_code == 200, put.text

    client = openai.AzureOpenAI(
        azure_endpoint=secured.api, api_version=API_VERSION, max_retries=0, azure_ad_token=issuer.token(oid=oid)
    )
    with pytest.raises(openai.PermissionDeniedError, match="not allowed for this caller"):
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert client.embeddings.create(model="text-embedding-3-small", input="ok").data
    me = httpx.get(f"{secured.api}/me", headers=bearer(issuer.token(oid=oid))).json()
    assert me["allowed_deployments"] == ["text-embedding-3-small"]
    assert [r["deployment"] for r in sim.requests()] == ["text-embedding-3-small"]


@pytest.mark.parametrize("flag", ["True", "true", "TRUE"])
def test_easy_auth_principal_is_trusted_when_easy_auth_is_on(start_gateway, simulator, storage_connection_string, flag):
    gateway = start_gateway(
        {
            "AZURE_OPENAI_ENDPOINT": simulator.url,
            "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
            "WEBSITE_AUTH_ENABLED": flag,
            # Outside Azure, Easy Auth is only accepted as an emulation in local dev mode (D31).
            "GATEWAY_LOCAL_DEV_AUTH": "true",
        }
    )
    principal = {
        "auth_typ": "aad",
        "name_typ": "name",
        "role_typ": "roles",
        "claims": [
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": USER_OID},
            {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": TENANT},
            {"typ": "name", "val": "Ada Lovelace"},
            {"typ": "http://schemas.microsoft.com/identity/claims/scope", "val": "access_as_user"},
            {"typ": "roles", "val": "Gateway.Use"},
        ],
    }
    header = {"x-ms-client-principal": base64.b64encode(json.dumps(principal).encode()).decode()}

    me = httpx.get(f"{gateway.api}/me", headers=header).json()
    assert me["id"] == f"{TENANT}/{USER_OID}" and me["auth_method"] == "easy-auth" and me["name"] == "Ada Lovelace"
    # Easy Auth on but no principal (anonymous allowed by the platform): the next method decides, here local dev.
    assert httpx.get(f"{gateway.api}/me").json()["auth_method"] == "local-dev"


def test_no_token_key_principal_or_prompt_reaches_the_logs(secured, issuer):
    token = user_token(issuer)
    client = openai.AzureOpenAI(
        azure_endpoint=secured.api, api_version=API_VERSION, azure_ad_token=token, max_retries=0
    )
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": SECRET_PROMPT}])
    list(
        client.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": SECRET_PROMPT}]
        )
    )
    issued = httpx.post(
        f"{secured.api}/manage/keys", headers=bearer(admin_token(issuer)), json={"name": "log probe"}
    ).json()["key"]
    httpx.get(f"{secured.api}/me", headers={"api-key": issued})
    httpx.get(f"{secured.api}/me", headers={"api-key": issued[:-2] + "xx"})  # a failing key
    httpx.get(f"{secured.api}/me", headers=bearer(token[:-4] + "AAAA"))  # a failing token
    spoof = base64.b64encode(json.dumps({"claims": [{"typ": "oid", "val": "x"}]}).encode()).decode()
    httpx.get(f"{secured.api}/me", headers={"x-ms-client-principal": spoof})

    log = secured.output()
    assert "Loaded 1 Microsoft Entra signing keys" in log  # logging is on (DEBUG), so absence below means something
    for secret in (token, token.split(".")[1], issued, issued.split("_")[-1], spoof, SECRET_PROMPT, "zebra-quartz"):
        assert secret not in log


def test_a_display_name_claim_is_cleaned_once_where_the_token_enters(secured, issuer, storage_connection_string):
    """A lone surrogate, a bidi override and a line break in the ``name`` claim: the caller is accepted under a name
    every encoder can write (it reaches /api/me, the ledger, the daily table and every export)."""
    oid = "eeeeeeee-0000-4000-8000-00000000e5e5"
    token = user_token(issuer, oid=oid, name="\ud800Eve\u202e\nAdmin" + "x" * 300)
    me = httpx.get(f"{secured.api}/me", headers=bearer(token))
    assert me.status_code == 200, me.text
    name = me.json()["name"]
    assert name == "\ufffdEve Admin" + "x" * (200 - 10) and len(name) == 200
    client = openai.AzureOpenAI(
        azure_endpoint=secured.api, azure_ad_token=token, api_version=API_VERSION, max_retries=0
    )
    call = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
    request_id = call.headers["x-gateway-request-id"]
    with TableClient.from_connection_string(storage_connection_string, USAGE_TABLE) as ledger:
        for _ in range(100):  # the ledger writes in the background, within its flush interval
            rows = list(ledger.query_entities("RowKey eq @id", parameters={"id": request_id}))
            if rows:
                break
            time.sleep(0.1)
    assert [row["CallerName"] for row in rows] == [name]
