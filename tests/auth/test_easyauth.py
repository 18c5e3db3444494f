"""Callers authenticated by App Service Authentication (the X-MS-CLIENT-PRINCIPAL header)."""

from __future__ import annotations

import base64
import json

import pytest

from shared.auth.easyauth import caller_from_client_principal
from shared.errors import GatewayError
from shared.hosting import easy_auth_enabled
from tests.identity_provider import APP_OID, CALLING_APP, TENANT, USER_OID

OID_URI = "http://schemas.microsoft.com/identity/claims/objectidentifier"
TID_URI = "http://schemas.microsoft.com/identity/claims/tenantid"
SCOPE_URI = "http://schemas.microsoft.com/identity/claims/scope"
ROLE_URI = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
NAME_URI = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"


def principal(claims: list[tuple[str, str]], *, name_typ: str = NAME_URI, role_typ: str = ROLE_URI) -> str:
    body = {
        "auth_typ": "aad",
        "name_typ": name_typ,
        "role_typ": role_typ,
        "claims": [{"typ": typ, "val": val} for typ, val in claims],
    }
    return base64.b64encode(json.dumps(body).encode()).decode()


def rejected(header: str) -> str:
    with pytest.raises(GatewayError) as raised:
        caller_from_client_principal(header)
    assert raised.value.status == 401
    return raised.value.message


@pytest.mark.parametrize(
    "value, enabled", [("True", True), ("true", True), (" TRUE ", True), ("False", False), ("", False), ("1", False)]
)
def test_easy_auth_is_on_only_when_the_platform_says_true(value, enabled):
    assert easy_auth_enabled({"WEBSITE_AUTH_ENABLED": value}) is enabled


def test_easy_auth_is_off_without_the_variable():
    assert easy_auth_enabled({}) is False


def test_a_user_principal_with_long_claim_names():
    caller = caller_from_client_principal(
        principal(
            [
                (OID_URI, USER_OID),
                (TID_URI, TENANT),
                (SCOPE_URI, "access_as_user"),
                (NAME_URI, "ada@contoso.example"),
                ("name", "Ada Lovelace"),
                ("roles", "Gateway.Use"),
                ("roles", "Usage.Read"),
            ]
        )
    )
    assert caller.id == f"{TENANT}/{USER_OID}"
    assert (caller.tenant, caller.kind, caller.auth_method) == (TENANT, "user", "easy-auth")
    assert caller.name == "ada@contoso.example"  # the principal's name_typ wins
    assert caller.roles == {"Gateway.Use", "Usage.Read"}


def test_roles_are_collected_from_every_role_claim_type():
    caller = caller_from_client_principal(
        principal(
            [
                ("oid", USER_OID),
                ("tid", TENANT),
                ("scp", "x"),
                ("roles", "Gateway.Use"),
                (ROLE_URI, "Usage.Read"),
                ("custom_role", "Gateway.Admin"),
                ("groups", "g1"),
            ],
            role_typ="custom_role",
        )
    )
    assert caller.roles == {"Gateway.Use", "Usage.Read", "Gateway.Admin"}


def test_an_app_only_principal_is_an_app_named_by_its_client_id():
    caller = caller_from_client_principal(
        principal(
            [
                ("oid", APP_OID),
                ("tid", TENANT),
                ("appid", CALLING_APP),
                ("roles", "Gateway.Use"),
            ]
        )
    )
    assert (caller.kind, caller.name, caller.id) == ("app", CALLING_APP, f"{TENANT}/{APP_OID}")


def test_idtyp_app_makes_an_app():
    caller = caller_from_client_principal(principal([("oid", APP_OID), ("tid", TENANT), ("idtyp", "app")]))
    assert caller.kind == "app"


def test_a_browser_session_without_scope_or_client_app_is_a_user():
    # Easy Auth sessions come from ID tokens: no scp, no appid/azp.
    caller = caller_from_client_principal(
        principal(
            [
                ("oid", USER_OID),
                ("tid", TENANT),
                ("preferred_username", "ada@contoso.example"),
            ],
            name_typ="",
        )
    )
    assert (caller.kind, caller.name) == ("user", "ada@contoso.example")


def test_unpadded_base64_is_accepted():
    header = principal([("oid", USER_OID), ("tid", TENANT)]).rstrip("=")
    assert caller_from_client_principal(header).id == f"{TENANT}/{USER_OID}"


@pytest.mark.parametrize(
    "header",
    [
        "not base64!!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[1, 2]").decode(),
        base64.b64encode(json.dumps({"claims": "oid"}).encode()).decode(),
        base64.b64encode(json.dumps({"claims": [{"typ": "oid", "val": 7}]}).encode()).decode(),
        base64.b64encode(b"\xff\xfe").decode(),
        "A" * 70_000,
        "",
    ],
)
def test_a_malformed_principal_is_a_401(header):
    assert rejected(header) == "The X-MS-CLIENT-PRINCIPAL header from App Service Authentication is malformed."


def test_a_principal_without_oid_is_a_401():
    assert "no object id ('oid')" in rejected(principal([("tid", TENANT), ("name", "x")]))


def test_a_principal_without_tid_is_a_401():
    assert "no tenant id ('tid')" in rejected(principal([("oid", USER_OID)]))


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("Eve\u202eAdmin", "EveAdmin"),  # a bidi override
        ("Eve\u2028Admin\r\n", "Eve Admin"),  # line breaks
        ("\u200b\u2066 Bob \u2069", "Bob"),  # zero-width space, an isolate
        ("\u0000", USER_OID),  # nothing left: the object id names the caller
        ("é" * 500, "é" * 200),
    ],
)
def test_a_principal_name_is_one_printable_line_of_at_most_200_characters(raw, shown):
    caller = caller_from_client_principal(principal([(OID_URI, USER_OID), (TID_URI, TENANT), (NAME_URI, raw)]))
    assert caller.name == shown
