"""Property, over real HTTP against the gateway process: a request made hostile in at least one way gets an
OpenAI-shaped 4xx with ``x-gateway-request-id``, never a 5xx, and nothing reaches the upstream (the simulator).

Each example takes a plausible request (route, body, headers) and poisons it once: a body strict JSON refuses, bytes
that are not JSON, an api-version or deployment that is not one, a body not declared JSON, a broken credential, a
cookie from another origin, a malformed caller id. Random noise headers ride along.
"""

from __future__ import annotations

import json
from datetime import date
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.auth.identity import canonical_caller_id
from shared.http.handling import is_json_media_type
from shared.json_body import InvalidJson, loads_strict
from shared.protocol.api_versions import is_api_version
from shared.protocol.deployments import is_deployment_name
from tests.auth.test_authenticator_hostile import headers as hostile_credential_headers
from tests.hostile import header_values, noise_headers, path_segment, poisoned_bodies, segment_bytes

pytestmark = pytest.mark.e2e

VALID_CHAT = json.dumps({"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o-mini"}).encode()
VALID_EMBED = json.dumps({"model": "text-embedding-3-small", "input": "hi"}).encode()
DATED = "/openai/deployments/{deployment}/chat/completions?api-version={version}"
V1 = "/openai/v1/chat/completions"
POLICY = "/manage/policies/{tenant}/{principal}"


def _not_a_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return bool(text)  # an empty 'from' means "the start of the month"
    return False


def _not_a_json_object(raw: bytes) -> bool:
    try:
        return not isinstance(loads_strict(raw), dict)
    except InvalidJson:
        return True


@st.composite
def hostile_requests(draw: st.DrawFn) -> tuple[str, str, dict[str, bytes], bytes]:
    """(method, path under /api, headers, body), poisoned once."""
    headers: dict[str, bytes] = {"content-type": b"application/json"}
    method, path, body = "POST", DATED.format(deployment="gpt-4o-mini", version="2024-10-21"), VALID_CHAT
    poison = draw(
        st.sampled_from(
            [
                "json atom",
                "not json",
                "api-version",
                "deployment",
                "model",
                "content-type",
                "credential",
                "cookie",
                "policy path",
                "policy body",
                "key body",
                "usage query",
            ]
        )
    )
    if poison == "json atom":
        path = draw(st.sampled_from([path, V1, "/openai/v1/embeddings", "/openai/v1/responses"]))
        body = draw(poisoned_bodies()).encode("utf-8", "surrogatepass")
    elif poison == "not json":
        path = draw(st.sampled_from([path, V1]))
        body = draw(st.binary(max_size=300).filter(_not_a_json_object))
    elif poison == "api-version":
        version = draw(st.text(max_size=40).filter(lambda v: not is_api_version(v)))
        path = DATED.format(deployment="gpt-4o-mini", version=quote(version.encode("utf-8", "surrogatepass"), safe=""))
    elif poison == "deployment":
        raw = draw(segment_bytes.filter(lambda b: not is_deployment_name(b.decode("utf-8", "replace"))))
        path = DATED.format(deployment=path_segment(raw), version="2024-10-21")
    elif poison == "model":
        model = draw(st.text(max_size=80).filter(lambda m: not is_deployment_name(m)) | st.integers() | st.none())
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
        path = V1
    elif poison == "content-type":
        value = draw(header_values.filter(lambda v: not is_json_media_type(v.decode("latin-1"))))
        headers["content-type"] = value
        path = draw(st.sampled_from([path, V1, "/manage/keys"]))
    elif poison == "credential":
        method, path = draw(st.sampled_from([(method, path), ("GET", "/me"), ("GET", "/usage"), ("POST", V1)]))
        scheme = draw(st.sampled_from(["authorization", "api-key"]))
        junk = draw(header_values)
        headers[scheme] = (b"Bearer gwk_" if scheme == "authorization" else b"gwk_") + junk
        if draw(st.booleans()) and scheme == "authorization":
            headers[scheme] = b"Basic " + junk
    elif poison == "cookie":
        headers["cookie"] = b"AppServiceAuthSession=" + draw(header_values)
        origin = draw(st.none() | st.sampled_from([b"https://evil.example", b"null"]) | header_values)
        if origin is not None and b"127.0.0.1" not in origin:
            headers["origin"] = origin
        method, path, body = "PUT", POLICY.format(tenant="local", principal="developer"), b'{"note": "x"}'
    elif poison == "policy path":
        tenant, principal = draw(segment_bytes), draw(segment_bytes)
        if canonical_caller_id(f"{tenant.decode('utf-8', 'replace')}/{principal.decode('utf-8', 'replace')}"):
            principal += b"\x00"
        method, body = draw(st.sampled_from(["PUT", "GET"])), b'{"note": "x"}'
        path = POLICY.format(tenant=path_segment(tenant), principal=path_segment(principal))
    elif poison == "policy body":
        method, path = "PUT", POLICY.format(tenant="hostile", principal="caller")
        body = draw(poisoned_bodies()).encode("utf-8", "surrogatepass")
    elif poison == "key body":
        path, body = "/manage/keys", draw(poisoned_bodies()).encode("utf-8", "surrogatepass")
    else:  # "usage query": at least one parameter that is not what it must be
        method, body = "GET", b""
        params = {
            "from": draw(st.text(max_size=30).filter(_not_a_date)),
            "to": draw(st.none() | st.text(max_size=30)),
            "group_by": draw(st.none() | st.text(max_size=30)),
            "caller_id": draw(st.none() | st.text(max_size=200)),
            "format": draw(st.none() | st.sampled_from(["csv", "json"]) | st.text(max_size=10)),
        }
        encoded = "&".join(
            f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
            for k, v in params.items()
            if v is not None
        )
        path = f"/usage?{encoded}"
    for name, value in draw(noise_headers).items():
        # With the cookie poison, a credential header would make the cookie no longer the credential.
        if name not in headers and not (poison == "cookie" and name in ("origin", "authorization", "api-key")):
            headers[name] = value
    return method, path, headers, body


@pytest.fixture(scope="module")
def client(gateway):
    with httpx.Client(base_url=gateway.api, timeout=30) as http:
        yield http


@given(hostile=hostile_requests())
def test_hostile_requests_get_an_openai_shaped_4xx_and_reach_nothing(client, sim, hostile):
    method, path, headers, body = hostile
    response = client.request(method, path, headers=headers, content=body)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers.get("x-gateway-request-id")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "type", "param"} and error["message"] and error["code"]
    assert sim.requests() == []


def hostile_credentials() -> st.SearchStrategy[dict[str, bytes]]:
    """At least one credential header, each hostile: a secured gateway must refuse every one (Easy Auth is off,
    so a principal alone is no credential)."""
    return hostile_credential_headers.filter(lambda h: "authorization" in h or "api-key" in h)


@pytest.fixture(scope="module")
def secured_client(secured):
    with httpx.Client(base_url=secured.api, timeout=30) as http:
        yield http


@given(
    headers=hostile_credentials(),
    target=st.sampled_from([("GET", "/me"), ("POST", V1), ("GET", "/manage/keys"), ("GET", "/usage")]),
)
def test_hostile_credentials_over_http_get_a_401_and_reach_nothing(secured_client, sim, headers, target):
    method, path = target
    response = secured_client.request(
        method, path, headers={"content-type": "application/json", **headers}, content=VALID_CHAT
    )
    assert response.status_code in (401, 503), (response.status_code, response.text[:300])
    assert response.headers.get("x-gateway-request-id")
    assert set(response.json()["error"]) == {"code", "message", "type", "param"}
    assert sim.requests() == []
