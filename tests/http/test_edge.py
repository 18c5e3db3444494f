"""Hostile input at the HTTP edge, over real HTTP against the gateway process (issue 9's defects, one test each)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.http.conftest import admin_headers, assert_openai_error, bearer
from tests.identity_provider import TENANT, USER_OID

pytestmark = pytest.mark.e2e

API_VERSION = "2024-10-21"
CHAT_PATH = "/openai/deployments/gpt-4o-mini/chat/completions"
HELLO = [{"role": "user", "content": "Hello there, gateway!"}]
JSON = {"content-type": "application/json"}


def chat(gateway, raw: bytes | str, *, query: str = f"?api-version={API_VERSION}", headers=None) -> httpx.Response:
    return httpx.post(f"{gateway.api}{CHAT_PATH}{query}", content=raw, headers={**JSON, **(headers or {})})


# --- strict JSON: non-finite numbers and lone surrogates are a 400 that names the place ---------------------------

HOSTILE_BODIES = [
    ('{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "temperature"),
    ('{"messages": [{"role": "user", "content": "hi"}], "temperature": Infinity}', "temperature"),
    ('{"messages": [{"role": "user", "content": "hi"}], "top_p": -Infinity}', "top_p"),
    ('{"messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}', "temperature"),
    ('{"messages": [{"role": "user", "content": "hi \\ud800"}]}', "messages[0].content"),
    ('{"messages": [{"role": "user", "content": "hi"}], "user": "\\udfff"}', "user"),
    ('{"messages": [{"role": "user", "content": "hi"}], "metadata": {"k": "\\ud83d"}}', "metadata.k"),
    ('{"messages": [{"role": "user", "content": "hi"}], "metadata": {"\\ud800": "v"}}', "metadata"),
]


@pytest.mark.parametrize("raw, param", HOSTILE_BODIES)
def test_non_finite_numbers_and_lone_surrogates_are_a_400_naming_the_place(gateway, sim, usage_rows, raw, param):
    response = chat(gateway, raw)
    error = assert_openai_error(response, 400, "invalid_json")
    assert error["param"] == param
    request_id = response.headers["x-gateway-request-id"]
    assert sim.requests() == []  # nothing forwarded
    assert usage_rows(request_id) == []  # nothing recorded, least of all a gateway_error
    assert request_id not in gateway.output()  # no traceback logged for it


def test_a_valid_surrogate_pair_is_an_ordinary_character(gateway, sim):
    response = chat(gateway, '{"messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}]}')
    assert response.status_code == 200, response.text
    assert sim.requests()[0]["body"]["messages"][0]["content"] == "smile \U0001f600"


def test_management_bodies_are_parsed_strictly_too(gateway):
    response = httpx.put(
        f"{gateway.api}/manage/policies/{TENANT}/{USER_OID}",
        content='{"allowed_deployments": null, "note": "\\ud800"}',
        headers=JSON,
    )
    assert assert_openai_error(response, 400, "invalid_json")["param"] == "note"


# --- patterns guard whole values -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2024-10-21%0A", "2024-10-21%0D%0A", "%0A2024-10-21", "2024-10-21%00"])
def test_an_api_version_with_a_line_break_is_refused_and_not_forwarded(gateway, sim, version):
    response = chat(gateway, '{"messages": [{"role": "user", "content": "hi"}]}', query=f"?api-version={version}")
    assert assert_openai_error(response, 400, "invalid_api_version")["param"] == "api-version"
    assert sim.requests() == []


@pytest.mark.parametrize("name", ["gpt-4o-mini%0A", "gpt-4o-mini%20", "%2E%2E", "a" * 65])
def test_a_deployment_name_must_match_whole(gateway, sim, name):
    response = httpx.post(
        f"{gateway.api}/openai/deployments/{name}/chat/completions?api-version={API_VERSION}",
        json={"messages": HELLO},
    )
    assert response.status_code in (400, 404) and response.headers["x-gateway-request-id"]
    assert sim.requests() == []


def test_a_v1_model_name_with_a_trailing_newline_is_refused(gateway, sim):
    response = httpx.post(
        f"{gateway.api}/openai/v1/chat/completions", json={"model": "gpt-4o-mini\n", "messages": HELLO}
    )
    assert assert_openai_error(response, 400, "invalid_deployment")["param"] == "model"
    assert sim.requests() == []


@pytest.mark.parametrize("key_id", ["0123456789abcdef%0A", "x" * 1200, "0123456789abcdef0"])
def test_key_ids_in_paths_must_match_whole(gateway, key_id):
    assert_openai_error(httpx.delete(f"{gateway.api}/manage/keys/{key_id}"), 404, "key_not_found")


# --- over-long and malformed ids never reach Table Storage --------------------------------------------------------


@pytest.mark.parametrize(
    "tenant, principal",
    [
        ("t", "x" * 1200),
        ("x" * 1200, "p"),
        (TENANT, "not%20a%20guid"),
        (TENANT, "%00"),
        (TENANT, "a%23b"),
        (TENANT, "{" + USER_OID + "}"),
    ],
)
def test_a_policy_for_a_malformed_caller_id_is_a_400_not_a_storage_error(gateway, tenant, principal):
    put = httpx.put(f"{gateway.api}/manage/policies/{tenant}/{principal}", json={"allowed_deployments": None})
    assert assert_openai_error(put, 400, "invalid_caller_id")["param"] == "caller_id"
    get = httpx.get(f"{gateway.api}/manage/policies/{tenant}/{principal}")
    assert_openai_error(get, 400, "invalid_caller_id")


def test_usage_and_key_listing_refuse_malformed_caller_ids(gateway):
    assert_openai_error(httpx.get(f"{gateway.api}/usage", params={"caller_id": "x" * 2000}), 400, "invalid_caller_id")
    listed = httpx.get(f"{gateway.api}/manage/keys", params={"owner_id": "a/b/c"})
    assert assert_openai_error(listed, 400, "invalid_caller_id")["param"] == "owner_id"


# --- canonical ids: a policy written in upper case holds for the caller -------------------------------------------


def test_a_policy_written_for_an_upper_case_guid_applies_to_the_caller(secured, issuer, sim):
    oid = "eeeeeeee-0000-4000-8000-0000000000ab"
    put = httpx.put(
        f"{secured.api}/manage/policies/{TENANT.upper()}/{oid.upper()}",
        headers=admin_headers(issuer),
        json={"allowed_deployments": ["text-embedding-3-small"]},
    )
    assert put.status_code == 200, put.text
    assert put.json()["caller_id"] == f"{TENANT}/{oid}"  # stored and shown canonical
    read_back = httpx.get(f"{secured.api}/manage/policies/{TENANT}/{oid}", headers=admin_headers(issuer))
    assert read_back.json()["allowed_deployments"] == ["text-embedding-3-small"]

    user = bearer(issuer.token(oid=oid))  # Entra sends the GUIDs in lower case
    refused = httpx.post(f"{secured.api}{CHAT_PATH}?api-version={API_VERSION}", headers=user, json={"messages": HELLO})
    assert_openai_error(refused, 403, "deployment_not_allowed")
    assert sim.requests() == []


def test_an_upper_case_token_identity_is_the_same_caller(secured, issuer):
    oid = "eeeeeeee-0000-4000-8000-0000000000ac"
    me = httpx.get(f"{secured.api}/me", headers=bearer(issuer.token(oid=oid.upper()))).json()
    assert me["id"] == f"{TENANT}/{oid}" and me["tenant"] == TENANT


# --- an admin cannot mint itself a model-calling key by naming itself as owner -------------------------------------


@pytest.mark.parametrize(
    "spell", [str, str.upper, lambda i: f"  {i}  ", lambda i: i.split("/")[0].upper() + "/" + i.split("/")[1]]
)
def test_an_admin_naming_itself_as_owner_gets_only_roles_it_holds(secured, issuer, spell):
    from tests.http.conftest import ADMIN_OID

    admin_id = f"{TENANT}/{ADMIN_OID}"
    response = httpx.post(
        f"{secured.api}/manage/keys",
        headers=admin_headers(issuer),  # Gateway.Admin only: no Gateway.Use
        json={"name": "self", "roles": ["Gateway.Use"], "owner": {"id": spell(admin_id), "kind": "user"}},
    )
    assert assert_openai_error(response, 400)["param"] == "roles"


def test_an_admin_key_for_itself_carries_only_the_roles_it_holds(secured, issuer):
    from tests.http.conftest import ADMIN_OID

    issued = httpx.post(
        f"{secured.api}/manage/keys",
        headers=admin_headers(issuer, roles=["Gateway.Admin", "Usage.Read"]),
        json={
            "name": "self",
            "roles": ["Gateway.Use", "Usage.Read"],
            "owner": {"id": f"{TENANT.upper()}/{ADMIN_OID.upper()}"},
        },
    )
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert body["roles"] == ["Usage.Read"] and body["owner"]["id"] == f"{TENANT}/{ADMIN_OID}"
    assert body["issued_by"] == f"{TENANT}/{ADMIN_OID}"
    model_call = httpx.post(
        f"{secured.api}{CHAT_PATH}?api-version={API_VERSION}",
        headers={"api-key": body["key"]},
        json={"messages": HELLO},
    )
    assert_openai_error(model_call, 403, "missing_role")


def test_a_key_for_another_principal_is_canonical_and_records_who_issued_it(secured, issuer):
    other = "ffffffff-0000-4000-8000-0000000000ad"
    issued = httpx.post(
        f"{secured.api}/manage/keys",
        headers=admin_headers(issuer),
        json={"name": "ci", "owner": {"id": f"{TENANT}/{other.upper()}", "name": "CI bot"}},
    ).json()
    assert issued["owner"] == {"id": f"{TENANT}/{other}", "name": "CI bot", "tenant": TENANT, "kind": "app"}
    listed = httpx.get(
        f"{secured.api}/manage/keys", headers=admin_headers(issuer), params={"owner_id": f"{TENANT}/{other.upper()}"}
    ).json()["data"]
    assert [k["key_id"] for k in listed] == [issued["key_id"]]
    me = httpx.get(f"{secured.api}/me", headers={"api-key": issued["key"]}).json()
    assert me["id"] == f"{TENANT}/{other}"


def test_an_owner_tenant_that_contradicts_the_owner_id_is_refused(secured, issuer):
    response = httpx.post(
        f"{secured.api}/manage/keys",
        headers=admin_headers(issuer),
        json={"name": "ci", "owner": {"id": f"{TENANT}/{USER_OID}", "tenant": "another-tenant"}},
    )
    assert assert_openai_error(response, 400)["param"] == "owner.tenant"


# --- every response of every function carries x-gateway-request-id -----------------------------------------------


def test_every_function_answers_with_a_request_id(gateway):
    responses = [
        httpx.get(f"{gateway.api}/health"),
        httpx.get(f"{gateway.api}/ready"),
        httpx.get(f"{gateway.api}/me"),
        httpx.get(f"{gateway.api}/usage"),
        httpx.get(f"{gateway.api}/manage/keys"),
        httpx.get(f"{gateway.api}/manage/policies/{TENANT}/{USER_OID}"),
        httpx.post(f"{gateway.api}/openai/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"}),
    ]
    ids = [r.headers.get("x-gateway-request-id") for r in responses]
    assert all(r.status_code == 200 for r in responses), [(r.url, r.status_code) for r in responses]
    assert all(ids) and len(set(ids)) == len(ids)


def test_management_errors_carry_a_request_id_and_are_logged_with_it(secured, issuer):
    unauthenticated = httpx.get(f"{secured.api}/manage/keys")
    assert_openai_error(unauthenticated, 401)
    forbidden = httpx.get(f"{secured.api}/manage/keys", headers=bearer(issuer.token()))
    assert_openai_error(forbidden, 403, "missing_role")
    me = httpx.get(f"{secured.api}/me")
    assert_openai_error(me, 401)
    for response in (unauthenticated, forbidden):
        request_id = response.headers["x-gateway-request-id"]
        assert _logged(secured, request_id), request_id


def _logged(gateway, request_id: str) -> bool:
    deadline = time.monotonic() + 10  # written before the response, but the log file may lag a little
    while request_id not in gateway.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    return request_id in gateway.output()


def test_the_model_call_is_recorded_under_the_request_id_of_its_response(gateway, usage_rows):
    response = httpx.post(f"{gateway.api}/openai/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
    assert response.status_code == 200
    request_id = response.headers["x-gateway-request-id"]
    deadline = time.monotonic() + 15  # settled after the response is sent, in batches; generous on a busy machine
    while not usage_rows(request_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [row["RowKey"] for row in usage_rows(request_id)] == [request_id]


# --- cross-site requests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
)
def test_a_body_that_is_not_declared_json_is_a_415(gateway, sim, content_type):
    headers = {"content-type": content_type} if content_type else {}
    body = b'{"model": "text-embedding-3-small", "input": "x"}'
    response = httpx.post(f"{gateway.api}/openai/v1/embeddings", content=body, headers=headers)
    assert_openai_error(response, 415, "unsupported_media_type")
    put = httpx.put(f"{gateway.api}/manage/policies/{TENANT}/{USER_OID}", content=b"{}", headers=headers)
    assert_openai_error(put, 415, "unsupported_media_type")
    rotate = httpx.post(f"{gateway.api}/manage/keys/0123456789abcdef/rotate", content=b"x=1", headers=headers)
    assert_openai_error(rotate, 415, "unsupported_media_type")
    assert sim.requests() == []


def test_json_with_a_charset_is_accepted(gateway):
    response = httpx.post(
        f"{gateway.api}/openai/v1/embeddings",
        content=b'{"model": "text-embedding-3-small", "input": "x"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200, response.text


def test_a_cookie_authenticated_state_change_must_come_from_the_gateways_origin(gateway):
    cookie = {"cookie": "AppServiceAuthSession=abc"}
    url = f"{gateway.api}/manage/policies/{TENANT}/{USER_OID}"
    for origin in (None, "https://evil.example", "null"):
        headers = {**cookie, **({"origin": origin} if origin else {})}
        response = httpx.put(url, json={"allowed_deployments": None}, headers=headers)
        assert_openai_error(response, 403, "cross_origin_refused")
    own = f"http://127.0.0.1:{gateway.port}"
    assert httpx.put(url, json={"allowed_deployments": None}, headers={**cookie, "origin": own}).status_code == 200
    # A bearer credential is not sent by the browser on its own: no Origin needed then.
    assert httpx.get(f"{gateway.api}/me", headers=cookie).status_code == 200  # reads are not state changes
