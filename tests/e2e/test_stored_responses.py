"""Stored responses end to end: the official openai SDK (dated ``AzureOpenAI`` and v1 ``OpenAI``) through a gateway
process whose upstream is the simulator and whose storage is Azurite. Every route, a background response polled to
completion and charged once, two callers who cannot see each other's responses, quotas, hostile ids, Realtime."""

from __future__ import annotations

import time
import uuid

import httpx
import openai
import pytest
from azure.data.tables import TableClient

from shared.storage.tables import USAGE_TABLE

pytestmark = pytest.mark.e2e

API_VERSION = "2025-04-01-preview"
MINI = "gpt-4o-mini"
ADMIN = {"api-key": "local"}  # local dev mode: the local developer holds Gateway.Admin


def issue_key(gateway, owner_id: str) -> str:
    response = httpx.post(
        f"{gateway.api}/manage/keys",
        headers=ADMIN,
        timeout=10,
        json={"name": "stored responses", "owner": {"id": owner_id, "kind": "app"}, "roles": ["Gateway.Use"]},
    )
    assert response.status_code == 201, response.text
    return response.json()["key"]


def client(gateway, key: str, style: str) -> openai.OpenAI:
    if style == "v1":
        return openai.OpenAI(base_url=f"{gateway.api}/openai/v1", api_key=key, max_retries=0)
    return openai.AzureOpenAI(azure_endpoint=gateway.api, api_key=key, api_version=API_VERSION, max_retries=0)


@pytest.fixture(scope="module")
def callers(gateway):
    """Two API-key callers of the default test gateway (each its own owner)."""
    return {name: issue_key(gateway, f"tests/{name}-{uuid.uuid4().hex[:8]}") for name in ("alice", "bob")}


def ledger_rows(connection_string: str, request_ids: set[str], *, wait_for: int | None = None) -> list[dict]:
    query = " or ".join(f"RowKey eq '{request_id}'" for request_id in sorted(request_ids))
    deadline = time.monotonic() + 20
    with TableClient.from_connection_string(connection_string, USAGE_TABLE) as table:
        while True:
            rows = [dict(entity) for entity in table.query_entities(query)]
            if len(rows) >= (wait_for or len(request_ids)) or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)


def upstream_calls(sim) -> list[dict]:
    return [r for r in sim.requests() if "/responses" in r["path"] or r["path"].endswith("/models")]


@pytest.mark.parametrize("style", ["dated", "v1"])
def test_every_stored_response_route_works_for_its_owner(gateway, sim, callers, style):
    sdk = client(gateway, callers["alice"], style)
    first = sdk.responses.create(model=MINI, input="Remember the number 7.")
    assert first.id.startswith("resp_") and first.status == "completed"
    second = sdk.responses.create(model=MINI, input="Which number?", previous_response_id=first.id)
    assert second.previous_response_id == first.id

    got = sdk.responses.retrieve(first.id)
    assert got.id == first.id and got.usage.output_tokens == first.usage.output_tokens
    items = sdk.responses.input_items.list(second.id, limit=5, order="asc")
    assert [item.content[0].text for item in items.data] == ["Which number?"]

    sdk.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):  # the gateway forgot it with the upstream: nothing is forwarded
        sdk.responses.create(model=MINI, input="Again", previous_response_id=first.id)

    models = {model.id for model in sdk.models.list()}
    assert models == {"gpt-4o-mini", "text-embedding-3-small", "gpt-4.1"}  # GATEWAY_ALLOWED_DEPLOYMENTS


def test_a_streamed_response_is_owned_from_its_first_event(gateway, sim, callers):
    sdk = client(gateway, callers["alice"], "v1")
    with sdk.responses.stream(model=MINI, input="Stream a short story.") as stream:
        final = stream.get_final_response()
    assert sdk.responses.retrieve(final.id).id == final.id
    follow = sdk.responses.create(model=MINI, input="And then?", previous_response_id=final.id)
    assert follow.status == "completed"


@pytest.mark.parametrize("style", ["dated", "v1"])
def test_a_background_response_is_polled_to_completion_and_charged_once(
    gateway, sim, callers, style, storage_connection_string
):
    sim.behave(background_steps=3)
    sdk = client(gateway, callers["alice"], style)
    raw = sdk.responses.with_raw_response.create(model=MINI, input="Write a long essay", background=True)
    created = raw.parse()
    request_id = raw.headers["x-gateway-request-id"]
    assert created.status == "queued"

    polls = []
    response = created
    while response.status in ("queued", "in_progress"):
        response = sdk.responses.retrieve(created.id)
        polls.append(response.status)
        assert len(polls) < 10
    assert polls == ["in_progress", "in_progress", "in_progress", "completed"]
    for _ in range(2):  # retrieved again: settled already, nothing charged twice
        sdk.responses.retrieve(created.id)

    [reported] = [r["usage"] for r in sim.requests() if r.get("body") and r["body"].get("background")]
    [row] = [r for r in ledger_rows(storage_connection_string, {request_id}) if r["RowKey"] == request_id]
    assert (row["PromptTokens"], row["CompletionTokens"]) == (reported["prompt_tokens"], reported["completion_tokens"])
    assert (row["PromptTokens"], row["CompletionTokens"]) == (response.usage.input_tokens, response.usage.output_tokens)
    assert row["Operation"] == "responses" and row["Outcome"] == "background_completed" and not row["Estimated"]
    time.sleep(0.6)  # a second row would have been flushed by now
    assert len(ledger_rows(storage_connection_string, {request_id})) == 1


def test_a_cancelled_background_response_settles_to_what_it_reported(gateway, sim, callers, storage_connection_string):
    sim.behave(background_steps=5)
    sdk = client(gateway, callers["alice"], "v1")
    raw = sdk.responses.with_raw_response.create(model=MINI, input="Write a long essay", background=True)
    created, request_id = raw.parse(), raw.headers["x-gateway-request-id"]
    cancelled = sdk.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    [row] = ledger_rows(storage_connection_string, {request_id})
    assert (row["PromptTokens"], row["CompletionTokens"], row["Outcome"]) == (0, 0, "background_cancelled")


def test_reads_are_recorded_without_tokens(gateway, sim, callers, storage_connection_string):
    sdk = client(gateway, callers["alice"], "v1")
    made = sdk.responses.create(model=MINI, input="hello")
    ids = {
        sdk.responses.with_raw_response.retrieve(made.id).headers["x-gateway-request-id"]: "responses.retrieve",
        sdk.responses.input_items.with_raw_response.list(made.id).headers["x-gateway-request-id"]: (
            "responses.input_items"
        ),
        sdk.models.with_raw_response.list().headers["x-gateway-request-id"]: "models.list",
        sdk.responses.with_raw_response.delete(made.id).headers["x-gateway-request-id"]: "responses.delete",
    }
    rows = ledger_rows(storage_connection_string, set(ids))
    assert {row["RowKey"]: row["Operation"] for row in rows} == ids
    assert all(row["PromptTokens"] == row["CompletionTokens"] == 0 for row in rows)


@pytest.mark.parametrize("style", ["dated", "v1"])
def test_another_callers_response_is_not_found_and_nothing_reaches_the_upstream(gateway, sim, callers, style):
    alice = client(gateway, callers["alice"], style)
    bob = client(gateway, callers["bob"], style)
    sim.behave(background_steps=50)
    mine = alice.responses.create(model=MINI, input="A secret: 1234", background=True)
    sim.reset()

    attempts = {
        "retrieve": lambda: bob.responses.retrieve(mine.id),
        "cancel": lambda: bob.responses.cancel(mine.id),
        "delete": lambda: bob.responses.delete(mine.id),
        "input items": lambda: bob.responses.input_items.list(mine.id),
        "previous_response_id": lambda: bob.responses.create(model=MINI, input="?", previous_response_id=mine.id),
    }
    unknown_id = "resp_" + "ab" * 24
    for name, attempt in attempts.items():
        with pytest.raises(openai.NotFoundError) as refused:
            attempt()
        # the same answer as for an id that does not exist: no existence oracle
        assert mine.id in str(refused.value.message), name
        assert refused.value.status_code == 404, name
    with pytest.raises(openai.NotFoundError) as unknown:
        bob.responses.retrieve(unknown_id)
    assert unknown.value.body == {**unknown.value.body, "code": "not_found"}
    assert upstream_calls(sim) == []  # nothing of Bob's reached the upstream
    assert alice.responses.retrieve(mine.id).id == mine.id  # still Alice's, untouched
    alice.responses.cancel(mine.id)


def test_a_caller_at_its_budget_cannot_start_a_background_response(gateway, sim):
    owner = f"tests/budget-{uuid.uuid4().hex[:8]}"
    key = issue_key(gateway, owner)
    response = httpx.put(
        f"{gateway.api}/manage/policies/{owner}", headers=ADMIN, json={"limits": {"tokens_per_day": 600}}, timeout=10
    )
    assert response.status_code == 200, response.text
    sdk = client(gateway, key, "v1")
    sim.behave(background_steps=50)
    first = sdk.responses.create(model=MINI, input="Write", background=True, max_output_tokens=500)
    assert first.status == "queued"  # held in full: prompt + 500 reserved, charged until it settles
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sdk.responses.create(model=MINI, input="Write more", background=True, max_output_tokens=500)
    assert refused.value.code in ("tokens_per_day_exceeded", "quota_exceeded") or refused.value.status_code == 403
    sdk.responses.cancel(first.id)


@pytest.mark.parametrize(
    "path",
    [
        "/openai/v1/responses/resp_abc%2F..%2Fdeployments",
        "/openai/v1/responses/..",
        "/openai/v1/responses/resp_" + "a" * 300,
        "/openai/v1/responses/resp_abcdefgh%0A",
        "/openai/v1/responses/file-abcdefghijkl",
        "/openai/responses/resp_abc%252Fx?api-version=2025-04-01-preview",
    ],
)
def test_hostile_ids_are_refused_before_any_lookup(gateway, sim, callers, path):
    response = httpx.get(f"{gateway.api}{path}", headers={"api-key": callers["alice"]}, timeout=10)
    assert response.status_code in (400, 404), response.text  # 404: a path the host itself never routes here
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "invalid_id"
    assert upstream_calls(sim) == []


def test_bad_list_parameters_are_refused(gateway, sim, callers):
    sdk = client(gateway, callers["alice"], "v1")
    made = sdk.responses.create(model=MINI, input="hello")
    sim.reset()
    url = f"{gateway.api}/openai/v1/responses/{made.id}/input_items"
    for params in ({"limit": "0"}, {"limit": "1e3"}, {"order": "up"}, {"after": "msg_x/../y"}, {"include[]": "x"}):
        response = httpx.get(url, params=params, headers={"api-key": callers["alice"]}, timeout=10)
        assert response.status_code == 400, (params, response.text)
    assert upstream_calls(sim) == []


@pytest.mark.parametrize("path", ["/openai/realtime", "/openai/v1/realtime", "/openai/v1/realtime/client_secrets"])
def test_realtime_is_refused_with_the_reason(gateway, path):
    response = httpx.get(f"{gateway.api}{path}", headers={"api-key": "local"}, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "realtime_not_supported"
    assert "WebSocket" in response.json()["error"]["message"]
