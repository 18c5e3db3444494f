"""The management and finance APIs (keys, policies, prices, rebuild, usage queries and budgets) over real HTTP, on a
gateway with a Table Storage of its own (so what the examples create stays here): the defects found by the attack
suite, each as a test, then properties: whatever a request holds, the answer is never a 5xx, and every error is
OpenAI-shaped.

Example counts come from the Hypothesis profile (tests/hostile.py: ``ci`` by default, ``HYPOTHESIS_PROFILE=long``
for a local soak run)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.azurite import Azurite
from tests.hostile import json_values, printable_text

pytestmark = pytest.mark.e2e

POLICY = "/manage/policies/{tenant}/{principal}"
TODAY = datetime.now(UTC).date()


@pytest.fixture(scope="module")
def storage():
    server = Azurite().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(start_gateway, simulator, storage):
    gateway = start_gateway(
        {
            "AZURE_OPENAI_ENDPOINT": simulator.url,
            "GATEWAY_STORAGE_CONNECTION_STRING": storage.connection_string,
            "GATEWAY_LOCAL_DEV_AUTH": "true",  # the local developer holds Gateway.Admin and Usage.Read
            "GATEWAY_ALLOWED_DEPLOYMENTS": "gpt-4o-mini,text-embedding-3-small",
        }
    )
    with httpx.Client(base_url=gateway.api, timeout=60) as http:
        yield http


def refused(response: httpx.Response, param: str | None = None, status: int = 400) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:500])
    error = response.json()["error"]
    assert set(error) == {"code", "message", "type", "param"} and error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error


def no_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    assert response.headers.get("x-gateway-request-id")
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "type", "param"}


# --- the defects, one test each ----------------------------------------------------------------------------------


def test_a_key_cannot_be_issued_without_an_expiry_and_one_left_out_gets_the_default(client):
    refused(client.post("/manage/keys", json={"name": "forever", "expires_in_days": None}), "expires_in_days")
    refused(client.post("/manage/keys", json={"name": "too long", "expires_in_days": 366}), "expires_in_days")
    issued = client.post("/manage/keys", json={"name": "defaulted"})
    assert issued.status_code == 201, issued.text
    expires = datetime.fromisoformat(issued.json()["expires_at"])
    assert timedelta(days=89) < expires - datetime.now(UTC) <= timedelta(days=90)
    rotated = client.post(f"/manage/keys/{issued.json()['key_id']}/rotate")
    assert rotated.json()["expires_at"] == issued.json()["expires_at"]  # rotation keeps the bound


@pytest.mark.parametrize(
    "name, param",
    [
        ("tool\u202e", "name"),  # a bidi override
        ("tool\u2028two", "name"),  # a line separator
        ("x" * 101, "name"),
    ],
)
def test_key_names_are_one_line_of_printable_text(client, name, param):
    refused(client.post("/manage/keys", json={"name": name}), param)


def test_a_key_owner_name_is_one_line_of_printable_text(client):
    owner = {"id": "tenant-a/app-b", "name": "App\u2066B", "kind": "app"}
    refused(client.post("/manage/keys", json={"name": "for an app", "owner": owner}), "owner.name")


@pytest.mark.parametrize(
    "body, param",
    [
        ({"allowed_deployments": [f"{n:03d}-" + "d" * 60 for n in range(600)]}, "allowed_deployments"),
        (
            {"deployment_limits": {f"dep-{n:04d}": {"tokens_per_day": 1000} for n in range(1500)}},
            "deployment_limits",
        ),
    ],
)
def test_a_policy_that_table_storage_would_refuse_is_a_400_naming_the_field(client, body, param):
    assert len(json.dumps(body)) < 64 * 1024  # under the body limit: only the storage limit refuses it
    error = refused(client.put(POLICY.format(tenant="big", principal="policy"), json=body), param)
    assert error["code"] == "policy_too_large"
    assert client.get(POLICY.format(tenant="big", principal="policy")).json()["allowed_deployments"] is None


@pytest.mark.parametrize(
    "effective_from",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00Z"],
)
def test_a_price_effective_from_out_of_range_is_a_400(client, effective_from):
    body = {"deployment": "gpt-4o-mini", "input": 1, "output": 2, "effective_from": effective_from}
    refused(client.post("/manage/prices", json=body), "effective_from")


@pytest.mark.parametrize(
    "params",
    [
        {"month": "9999-12"},
        {"month": "0001-01"},
        {"from": "9999-12-31", "to": "9999-12-31"},
        {"from": "0001-01-01", "to": "0001-01-31"},
    ],
)
def test_usage_days_out_of_range_are_a_400(client, params):
    refused(client.get("/usage", params=params))
    refused(client.get("/usage", params={**params, "format": "csv"}))
    if "month" in params:
        refused(client.get("/usage/budgets", params=params))


def test_a_rebuild_of_days_out_of_range_is_a_400(client):
    refused(client.post("/manage/usage/rebuild", json={"from": "0001-01-01", "to": "0001-01-02"}))


# --- properties: no input makes a 5xx ------------------------------------------------------------------------------

tz_offsets = st.sampled_from(["Z", "+00:00", "+14:00", "-12:00", "+05:30", "-23:59", "+23:59", ""])
timestamps = st.builds(
    lambda when, tz: when.strftime("%Y-%m-%dT%H:%M:%S") + tz,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    tz_offsets,
)
days = st.dates().map(lambda d: d.strftime("%Y-%m-%d"))  # strftime keeps 4 digits where isoformat would not
near_days = st.integers(-400, 400).map(lambda n: (TODAY + timedelta(days=n)).isoformat())
months = st.dates().map(lambda d: d.strftime("%Y-%m"))
anything = json_values | st.text(max_size=40)
deployment_names = st.sampled_from(["gpt-4o-mini", "text-embedding-3-small", "x" * 64]) | printable_text
caller_ids = st.sampled_from(["local/developer", "tenant-a/app-b", "TENANT-A/App-B"]) | st.text(max_size=140)


@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "name": st.text(max_size=120) | anything,
            "owner": st.fixed_dictionaries(
                {},
                optional={
                    "id": caller_ids | anything,
                    "name": st.text(max_size=220) | anything,
                    "kind": st.sampled_from(["user", "app"]) | anything,
                    "tenant": st.text(max_size=70) | anything,
                },
            )
            | anything,
            "roles": st.lists(st.sampled_from(["Gateway.Use", "Usage.Read", "Gateway.Admin"]), max_size=3) | anything,
            "expires_in_days": st.integers(-10, 1000) | anything,
        },
    )
)
def test_issuing_keys_never_answers_5xx(client, body):
    response = client.post("/manage/keys", json=body)
    no_server_error(response)
    if response.status_code == 201:
        issued = response.json()
        expires = datetime.fromisoformat(issued["expires_at"])
        assert expires <= datetime.now(UTC) + timedelta(days=365)
        no_server_error(client.post(f"/manage/keys/{issued['key_id']}/rotate"))
        no_server_error(client.delete(f"/manage/keys/{issued['key_id']}"))


limit_values = st.integers(-5, 10**20) | st.floats(allow_nan=False, allow_infinity=False) | st.none() | anything
limits = st.dictionaries(
    st.sampled_from(["tokens_per_day", "tokens_per_minute", "requests_per_minute", "cost_per_month", "x"]),
    limit_values,
    max_size=4,
)


@given(
    target=st.tuples(st.sampled_from(["tenant-a", "big"]), st.sampled_from(["app-b", "policy"])),
    body=st.fixed_dictionaries(
        {},
        optional={
            "allowed_deployments": st.none() | st.lists(deployment_names, max_size=700) | anything,
            "note": st.text(max_size=600) | anything,
            "limits": limits | anything,
            "deployment_limits": st.dictionaries(deployment_names, limits, max_size=30) | anything,
            "cost_center": st.text(max_size=210) | anything,
            "owner": st.text(max_size=210) | anything,
            "department": st.text(max_size=210) | anything,
            "tags": st.dictionaries(st.text(max_size=70), st.text(max_size=300) | anything, max_size=25) | anything,
        },
    ),
)
def test_writing_policies_never_answers_5xx(client, target, body):
    path = POLICY.format(tenant=target[0], principal=target[1])
    response = client.put(path, json=body)
    no_server_error(response)
    no_server_error(client.get(path))


@given(
    body=st.fixed_dictionaries(
        {"deployment": deployment_names | anything},
        optional={
            "input": st.decimals(allow_nan=False, allow_infinity=False).map(float) | anything,
            "cached_input": st.floats(allow_nan=False, allow_infinity=False) | anything,
            "output": st.integers(-10, 10**12) | anything,
            "currency": st.sampled_from(["USD", "EUR", "usd"]) | anything,
            "effective_from": timestamps | anything,
        },
    )
)
def test_adding_prices_never_answers_5xx(client, body):
    no_server_error(client.post("/manage/prices", json=body))


def _one_day_if_valid(start: object, end: object) -> object:
    """A valid rebuild rolls up every day of its range (a day is ~200 storage reads, seconds on a loaded machine; the
    finance end-to-end tests rebuild real ranges): a valid range here is shortened to its first day."""
    try:
        first, last = date.fromisoformat(str(start)), date.fromisoformat(str(end))
    except ValueError:
        return end
    return start if first < last else end


@settings(max_examples=max(10, settings.default.max_examples // 3))  # a third of the profile's examples
@given(start=days | anything, end=days | anything)
def test_rebuilding_never_answers_5xx(client, start, end):
    end = _one_day_if_valid(start, end)
    response = client.post("/manage/usage/rebuild", json={"from": start, "to": end})
    event(f"rebuild answered {response.status_code}")
    no_server_error(response)


@given(
    params=st.fixed_dictionaries(
        {},
        optional={
            "from": days | near_days | st.text(max_size=12),
            "to": days | near_days | st.text(max_size=12),
            "month": months | st.text(max_size=8),
            "group_by": st.sampled_from(["caller", "deployment,day", "month,cost_center", ""]) | st.text(max_size=20),
            "caller_id": caller_ids,
            "deployment": deployment_names,
            "cost_center": st.text(max_size=40),
            "format": st.sampled_from(["json", "csv", "focus"]) | st.text(max_size=6),
        },
    ),
    path=st.sampled_from(["/usage", "/usage/budgets", "/manage/prices"]),
)
def test_usage_queries_never_answer_5xx(client, params, path):
    encoded = {k: v.encode("utf-8", "surrogatepass") for k, v in params.items()}
    no_server_error(client.get(path, params=encoded))
