"""Finance's view: every call lands in the usage ledger exactly once, with exact tokens and cost."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e
HELLO = [{"role": "user", "content": "Hello there, gateway!"}]  # 12 prompt tokens (o200k_base, chat overhead)
PRICES = '{"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.6}}'


@pytest.fixture(scope="module")
def priced(start_gateway, simulator, storage_connection_string):
    return start_gateway(
        {
            "AZURE_OPENAI_ENDPOINT": simulator.url,
            "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
            "GATEWAY_LOCAL_DEV_AUTH": "true",  # the local developer is the admin issuing keys below
            "GATEWAY_PRICES": PRICES,
        }
    )


def key_for(gateway, owner_id: str, roles: list[str]) -> str:
    response = httpx.post(
        f"{gateway.api}/manage/keys",
        json={"name": "usage test", "owner": {"id": owner_id, "name": "=SUM(1+1)", "kind": "app"}, "roles": roles},
    )
    assert response.status_code == 201, response.text
    return response.json()["key"]


def rebuild_today(gateway) -> None:
    today = datetime.now(UTC).date().isoformat()
    response = httpx.post(f"{gateway.api}/manage/usage/rebuild", json={"from": today, "to": today}, timeout=60)
    assert response.status_code in (200, 202), response.text
    job, deadline = response.json(), time.monotonic() + 60
    while job["status"] == "running" and time.monotonic() < deadline:  # a slow machine: the job carries on
        time.sleep(0.2)
        job = httpx.get(job["status_url"]).json()
    assert job["status"] == "done", job


def wait_for_usage(gateway, owner_id: str, requests: int) -> list[dict]:
    """/api/usage reads the daily table: roll today up (as the timer does) until the ledger has the calls."""
    deadline = time.monotonic() + 10
    while True:
        rebuild_today(gateway)
        data = httpx.get(f"{gateway.api}/usage", params={"caller_id": owner_id, "group_by": "caller,deployment"}).json()
        if sum(row["requests"] for row in data["data"]) >= requests or time.monotonic() > deadline:
            return data["data"]
        time.sleep(0.1)


def test_every_call_is_recorded_once_with_exact_tokens_and_cost(priced, sim):
    owner = f"tenant-x/{uuid.uuid4()}"
    key = key_for(priced, owner, ["Gateway.Use"])
    azure = openai.AzureOpenAI(azure_endpoint=priced.api, api_key=key, api_version="2024-10-21", max_retries=0)

    azure.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # 12 + 12
    list(azure.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))  # 12 + 12, usage injected
    azure.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=5)  # 12 + 5
    azure.embeddings.create(model="text-embedding-3-small", input="one two three")  # 3 + 0, unpriced
    sim.behave(fault="429", times=1)
    with pytest.raises(openai.RateLimitError):
        azure.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # a request, no tokens

    rows = {row["deployment"]: row for row in wait_for_usage(priced, owner, 5)}
    chat, embed = rows["gpt-4o-mini"], rows["text-embedding-3-small"]
    assert (chat["requests"], chat["failed_requests"]) == (4, 1)
    assert (chat["prompt_tokens"], chat["completion_tokens"], chat["total_tokens"]) == (36, 29, 65)
    assert chat["estimated_requests"] == 0
    assert Decimal(chat["cost"]) == (36 * Decimal("0.15") + 29 * Decimal("0.6")) / 1_000_000  # exact
    assert chat["caller_id"] == owner and chat["currency"] == "USD"
    assert (embed["requests"], embed["prompt_tokens"], embed["unpriced_requests"], embed["cost"]) == (1, 3, 1, "0")

    time.sleep(0.5)  # nothing arrives twice
    assert sum(r["requests"] for r in wait_for_usage(priced, owner, 5)) == 5


def test_usage_needs_the_usage_read_role_and_exports_csv(priced):
    owner = f"tenant-x/{uuid.uuid4()}"
    user_key = key_for(priced, owner, ["Gateway.Use"])
    forbidden = httpx.get(f"{priced.api}/usage", headers={"api-key": user_key})
    assert forbidden.status_code == 403 and "Usage.Read" in forbidden.json()["error"]["message"]

    finance = key_for(priced, f"tenant-x/{uuid.uuid4()}", ["Usage.Read"])
    openai.OpenAI(base_url=f"{priced.api}/openai/v1", api_key=user_key).chat.completions.create(
        model="gpt-4o-mini", messages=HELLO
    )
    wait_for_usage(priced, owner, 1)
    csv = httpx.get(
        f"{priced.api}/usage",
        headers={"api-key": finance},
        params={"caller_id": owner, "format": "csv", "group_by": "caller,day"},
    )
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    header, row, total = csv.text.strip().splitlines()
    assert header.startswith('"CallerId","CallerName","CostCenter","Owner","Department","Tags","Day","Requests",')
    assert row.startswith(f'"{owner}","\'=SUM(1+1)",') and '"1","0","12","12","24",' in row  # formula neutralised
    assert total.startswith('"TOTAL",')


@pytest.mark.parametrize(
    "params, code",
    [
        ({"from": "2026-13-01"}, "invalid_date"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "invalid_date"),
        ({"from": "2025-01-01", "to": "2026-12-31"}, "range_too_long"),
        ({"group_by": "caller,colour"}, "invalid_request"),
    ],
)
def test_bad_usage_queries(priced, params, code):
    response = httpx.get(f"{priced.api}/usage", params=params)
    assert response.status_code == 400 and response.json()["error"]["code"] == code
