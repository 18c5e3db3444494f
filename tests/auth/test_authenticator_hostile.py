"""Property: hostile credential headers (Easy Auth principals, bearer tokens, API keys) give a caller with a
canonical id, or a 401/503 GatewayError; never another exception (which the edge would turn into a 500)."""

from __future__ import annotations

import asyncio
import base64
import json

from hypothesis import given
from hypothesis import strategies as st

from shared.auth.authenticator import Authenticator
from shared.auth.entra import EntraTokenValidator
from shared.auth.identity import canonical_caller_id
from shared.errors import GatewayError
from tests.hostile import Raw, header_values, hostile_keys, hostile_values, render
from tests.identity_provider import CLIENT_ID, TENANT

claim_types = st.sampled_from(
    [
        "oid",
        "tid",
        "name",
        "roles",
        "http://schemas.microsoft.com/identity/claims/objectidentifier",
        "http://schemas.microsoft.com/identity/claims/tenantid",
    ]
)
claims = st.lists(
    st.fixed_dictionaries({"typ": claim_types | hostile_values, "val": hostile_values | st.text(max_size=80)}),
    max_size=6,
)
principals = st.fixed_dictionaries(
    {"claims": claims | hostile_values},
    optional={"name_typ": hostile_values, "role_typ": hostile_values, "auth_typ": hostile_values},
) | st.dictionaries(hostile_keys, hostile_values, max_size=4)


def encode_principal(principal: object) -> bytes:
    return base64.b64encode(render(principal).encode("utf-8", "surrogatepass"))


def jwt_like(header: object, payload: object, signature: bytes) -> bytes:
    def part(value: object) -> bytes:
        return base64.urlsafe_b64encode(render(value).encode("utf-8", "surrogatepass")).rstrip(b"=")

    return part(header) + b"." + part(payload) + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")


tokens = st.builds(
    jwt_like,
    st.fixed_dictionaries({"alg": st.sampled_from(["RS256", "none", "HS256"]) | hostile_values, "kid": hostile_values}),
    st.fixed_dictionaries(
        {"tid": st.just(TENANT) | hostile_values},
        optional={"aud": st.just(CLIENT_ID) | hostile_values, "exp": hostile_values, "oid": hostile_values},
    ),
    st.binary(max_size=64),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "x-ms-client-principal": st.builds(encode_principal, principals) | header_values,
        "authorization": st.builds(lambda t: b"Bearer " + t, tokens) | header_values,
        "api-key": header_values | st.just(b"gwk_0123456789abcdef_" + b"A" * 43),
    },
)


@given(headers=headers)
def test_hostile_credentials_give_a_canonical_caller_or_a_401(idp, headers):
    validator = EntraTokenValidator([TENANT], CLIENT_ID, idp.authority, refresh_cooldown_seconds=3600)
    authenticator = Authenticator(easy_auth=True, validator=validator, key_store=None, local_dev=False, env={})
    decoded = {name: value.decode("latin-1") for name, value in headers.items()}
    try:
        caller = asyncio.run(authenticator.authenticate(decoded))
    except GatewayError as error:
        assert error.status in (401, 503), (error.status, error.message)
        json.dumps(error.body(), allow_nan=False).encode("utf-8")
        return
    assert canonical_caller_id(caller.id) == caller.id
    json.dumps([caller.id, caller.name, caller.tenant, sorted(caller.roles)], allow_nan=False).encode("utf-8")


def test_a_principal_with_a_lone_surrogate_name_is_malformed_not_a_crash(idp):
    principal = {
        "claims": [{"typ": "oid", "val": "a"}, {"typ": "tid", "val": "t"}, {"typ": "name", "val": Raw('"\\ud800"')}]
    }
    authenticator = Authenticator(easy_auth=True, validator=None, key_store=None, local_dev=False, env={})
    try:
        asyncio.run(authenticator.authenticate({"x-ms-client-principal": encode_principal(principal).decode()}))
    except GatewayError as error:
        assert error.status == 401 and "malformed" in error.message
    else:
        raise AssertionError("a principal that cannot be written back as JSON was accepted")
