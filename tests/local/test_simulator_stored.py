"""The simulator's stored responses, as one Azure OpenAI account keeps them (shared/local/simulator/stored_responses.py)."""

from __future__ import annotations

import httpx
import pytest

from shared.local.simulator.app import create_app

AUTH = {"authorization": "Bearer local-simulator-token"}


@pytest.fixture
async def client():
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app({})), base_url="http://sim", headers=AUTH
    ) as c:
        yield c


async def create(client: httpx.AsyncClient, **body) -> dict:
    answer = await client.post("/openai/v1/responses", json={"model": "gpt-4o-mini", "input": "Hello there", **body})
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize("prefix", ["/openai/v1", "/openai"])
async def test_a_stored_response_is_retrieved_listed_and_deleted(client, prefix):
    query = "" if prefix == "/openai/v1" else "?api-version=2025-04-01-preview"
    made = await create(client)
    assert made["id"].startswith("resp_") and len(made["id"]) > 40
    got = (await client.get(f"{prefix}/responses/{made['id']}{query}")).json()
    assert got["id"] == made["id"] and got["status"] == "completed" and got["usage"] == made["usage"]
    items = (await client.get(f"{prefix}/responses/{made['id']}/input_items{query}")).json()
    assert items["object"] == "list" and items["data"][0]["content"][0]["text"] == "Hello there"
    deleted = await client.delete(f"{prefix}/responses/{made['id']}{query}")
    assert deleted.json() == {"id": made["id"], "object": "response.deleted", "deleted": True}
    gone = await client.get(f"{prefix}/responses/{made['id']}{query}")
    assert gone.status_code == 404 and "not found" in gone.json()["error"]["message"]


async def test_unknown_and_unstored_ids_answer_as_azure_does(client):
    assert (await client.get("/openai/v1/responses/resp_" + "0" * 48)).status_code == 404
    unstored = await create(client, store=False)
    assert (await client.get(f"/openai/v1/responses/{unstored['id']}")).status_code == 404
    chained = await client.post(
        "/openai/v1/responses", json={"model": "gpt-4o-mini", "input": "Hi", "previous_response_id": unstored["id"]}
    )
    assert chained.status_code == 400 and chained.json()["error"]["code"] == "previous_response_not_found"
    assert chained.json()["error"]["param"] == "previous_response_id"


async def test_a_background_response_progresses_one_step_per_retrieve(client):
    await client.post("/_simulator/behaviours", json={"background_steps": 2})
    made = await create(client, background=True)
    assert made["status"] == "queued" and made["usage"] is None
    seen = [(await client.get(f"/openai/v1/responses/{made['id']}")).json() for _ in range(3)]
    assert [s["status"] for s in seen] == ["in_progress", "in_progress", "completed"]
    assert seen[-1]["usage"]["output_tokens"] > 0
    log = (await client.get("/_simulator/requests")).json()
    assert log[0]["usage"]["completion_tokens"] == seen[-1]["usage"]["output_tokens"]


async def test_cancel_stops_a_background_response_and_refuses_others(client):
    await client.post("/_simulator/behaviours", json={"background_steps": 5})
    made = await create(client, background=True)
    cancelled = (await client.post(f"/openai/v1/responses/{made['id']}/cancel")).json()
    assert cancelled["status"] == "cancelled" and cancelled["usage"] is None
    assert (await client.get(f"/openai/v1/responses/{made['id']}")).json()["status"] == "cancelled"
    plain = await create(client)
    assert (await client.post(f"/openai/v1/responses/{plain['id']}/cancel")).status_code == 400


async def test_input_items_paginate(client):
    made = await create(client, input=[{"role": "user", "content": f"turn {n}"} for n in range(5)])
    url = f"/openai/v1/responses/{made['id']}/input_items"
    first = (await client.get(url, params={"limit": 2, "order": "asc"})).json()
    assert [i["content"][0]["text"] for i in first["data"]] == ["turn 0", "turn 1"] and first["has_more"]
    rest = (await client.get(url, params={"limit": 10, "order": "asc", "after": first["last_id"]})).json()
    assert [i["content"][0]["text"] for i in rest["data"]] == ["turn 2", "turn 3", "turn 4"] and not rest["has_more"]
    assert (await client.get(url, params={"limit": 0})).status_code == 400


async def test_models_are_listed_by_model_name(client):
    listed = (await client.get("/openai/v1/models")).json()
    assert listed["object"] == "list" and "gpt-4o-mini-2024-07-18" in {m["id"] for m in listed["data"]}
