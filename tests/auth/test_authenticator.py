"""The order in which credentials are tried, with the real validator, key store and Easy Auth decoding."""

from __future__ import annotations

import base64
import json

import pytest
from starlette.datastructures import Headers

from shared.auth.apikeys import ApiKeyStore
from shared.auth.authenticator import LOCAL_DEVELOPER, NO_CREDENTIALS, Authenticator
from shared.auth.entra import EntraTokenValidator
from shared.auth.identity import ROLE_ADMIN, ROLE_USAGE_READ, ROLE_USE, Caller
from shared.errors import GatewayError
from shared.hosting import LocalDevRefused
from tests.identity_provider import CLIENT_ID, TENANT, USER_OID

SPOOFED_OID = "99999999-0000-4000-8000-000000000009"
KEY_OWNER = Caller(f"{TENANT}/key-owner", "Key owner", TENANT, "app", frozenset({ROLE_USE}))


def principal_header(oid: str = SPOOFED_OID) -> str:
    claims = [{"typ": "oid", "val": oid}, {"typ": "tid", "val": TENANT}, {"typ": "roles", "val": "Gateway.Admin"}]
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()


@pytest.fixture
def validator(idp) -> EntraTokenValidator:
    return EntraTokenValidator([TENANT], CLIENT_ID, authority=idp.authority)


@pytest.fixture
def store(table) -> ApiKeyStore:
    return ApiKeyStore(table)


@pytest.fixture
def build(validator, store):
    def build(
        *, easy_auth: bool = False, local_dev: bool = False, with_validator: bool = True, with_keys: bool = True
    ) -> Authenticator:
        return Authenticator(
            easy_auth=easy_auth,
            validator=validator if with_validator else None,
            key_store=store if with_keys else None,
            local_dev=local_dev,
            env={},
        )

    return build


async def rejected(authenticator: Authenticator, headers: dict[str, str]) -> str:
    with pytest.raises(GatewayError) as raised:
        await authenticator.authenticate(headers)
    assert raised.value.status == 401
    assert raised.value.headers.get("WWW-Authenticate", "").startswith("Bearer")
    for value in headers.values():
        assert value not in raised.value.message
    return raised.value.message


# --- Easy Auth ----------------------------------------------------------------------------------------------------


async def test_with_easy_auth_on_the_platform_principal_is_the_caller(build):
    caller = await build(easy_auth=True).authenticate({"X-MS-CLIENT-PRINCIPAL": principal_header()})
    assert (caller.id, caller.auth_method) == (f"{TENANT}/{SPOOFED_OID}", "easy-auth")


async def test_with_easy_auth_off_a_spoofed_principal_is_ignored(build):
    message = await rejected(
        build(),
        {
            "x-ms-client-principal": principal_header(),
            "x-ms-client-principal-id": SPOOFED_OID,
            "x-ms-client-principal-name": "admin@contoso.example",
        },
    )
    assert message == NO_CREDENTIALS


async def test_with_easy_auth_off_a_spoofed_principal_does_not_override_a_real_token(build, idp):
    caller = await build().authenticate(
        {"x-ms-client-principal": principal_header(), "authorization": f"Bearer {idp.token()}"}
    )
    assert (caller.id, caller.auth_method) == (f"{TENANT}/{USER_OID}", "entra-token")
    assert ROLE_ADMIN not in caller.roles


async def test_easy_auth_in_allow_anonymous_mode_still_validates_bearer_tokens(build, idp):
    caller = await build(easy_auth=True).authenticate({"Authorization": f"Bearer {idp.token()}"})
    assert caller.auth_method == "entra-token"
    assert "expired" in await rejected(build(easy_auth=True), {"Authorization": f"Bearer {idp.token(exp=1)}"})


# --- API keys ---------------------------------------------------------------------------------------------------


async def test_an_api_key_header_authenticates_with_any_header_case(build, store):
    issued = await store.issue(KEY_OWNER, "tool", None)
    for name in ("api-key", "Api-Key", "API-KEY"):
        caller = await build().authenticate({name: issued.key})
        assert (caller.id, caller.key_id, caller.auth_method) == (KEY_OWNER.id, issued.info.key_id, "api-key")


async def test_an_api_key_sent_as_a_bearer_token_authenticates(build, store):
    # What OpenAI(api_key=...) sends.
    issued = await store.issue(KEY_OWNER, "tool", None)
    caller = await build().authenticate({"Authorization": f"Bearer {issued.key}"})
    assert caller.key_id == issued.info.key_id


async def test_a_bad_api_key_is_a_401_even_in_local_dev_mode(build):
    key = "gwk_0123456789abcdef_" + "A" * 43
    assert await rejected(build(local_dev=True), {"api-key": key}) == "The API key is not valid."


async def test_api_keys_can_be_disabled(build):
    message = await rejected(build(with_keys=False), {"api-key": "gwk_0123456789abcdef_" + "A" * 43})
    assert "API keys are disabled" in message


async def test_a_non_gateway_api_key_is_a_401_outside_local_dev(build):
    assert await rejected(build(), {"api-key": "sk-proj-something"}) == "The API key is not valid."


# --- bearer tokens and other headers -----------------------------------------------------------------------------


async def test_headers_from_a_real_request_are_case_insensitive(build, idp):
    headers = Headers(raw=[(b"authorization", f"Bearer {idp.token()}".encode())])
    assert (await build().authenticate(headers)).id == f"{TENANT}/{USER_OID}"


async def test_a_bad_token_never_falls_through_to_local_dev(build, idp):
    message = await rejected(build(local_dev=True), {"authorization": f"Bearer {idp.token(aud='x')}"})
    assert "another resource" in message


async def test_other_authorization_schemes_are_refused(build):
    message = await rejected(build(), {"Authorization": "Basic dXNlcjpwYXNz"})
    assert message == "The Authorization header must use the Bearer scheme."


async def test_an_empty_bearer_is_refused(build):
    assert await rejected(build(local_dev=True), {"Authorization": "Bearer "}) == "No bearer token was presented."


async def test_bearer_tokens_need_a_configured_validator(build, idp):
    message = await rejected(build(with_validator=False), {"Authorization": f"Bearer {idp.token()}"})
    assert "not configured to validate Microsoft Entra tokens" in message


async def test_no_credentials_is_a_401(build):
    assert await rejected(build(), {"content-type": "application/json"}) == NO_CREDENTIALS


# --- local dev mode -----------------------------------------------------------------------------------------------


async def test_local_dev_without_credentials_is_the_local_developer(build):
    caller = await build(local_dev=True).authenticate({})
    assert caller == LOCAL_DEVELOPER
    assert (caller.id, caller.auth_method) == ("local/developer", "local-dev")
    assert caller.roles == {ROLE_USE, ROLE_USAGE_READ, ROLE_ADMIN}


@pytest.mark.parametrize("headers", [{"api-key": "local"}, {"Authorization": "Bearer local"}])
async def test_local_dev_treats_sdk_placeholder_keys_as_the_local_developer(build, headers):
    assert await build(local_dev=True).authenticate(headers) == LOCAL_DEVELOPER


async def test_local_dev_still_honours_real_credentials(build, store, idp):
    issued = await store.issue(KEY_OWNER, "tool", None)
    assert (await build(local_dev=True).authenticate({"api-key": issued.key})).id == KEY_OWNER.id
    token_caller = await build(local_dev=True).authenticate({"authorization": f"Bearer {idp.token()}"})
    assert token_caller.auth_method == "entra-token"


def test_local_dev_refuses_to_start_in_azure(validator, store):
    with pytest.raises(LocalDevRefused, match="WEBSITE_INSTANCE_ID"):
        Authenticator(
            easy_auth=False,
            validator=validator,
            key_store=store,
            local_dev=True,
            env={"WEBSITE_INSTANCE_ID": "0123abcd"},
        )
