"""Files and batches through the gateway with the official openai SDK: uploaded, run, downloaded, paid once.

Real parts: the gateway process, Azurite, the simulator over HTTP (one or two accounts), AzureOpenAI and OpenAI.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from decimal import Decimal

import httpx
import openai
import pytest
from azure.data.tables import TableServiceClient

from tests.conftest import SimulatorControl
from tests.gateway_process import GatewayProcess
from tests.upstream.servers import simulators

pytestmark = pytest.mark.e2e
PRICES = '{"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.6}}'
API_VERSION = "2024-10-21"


def lines(count: int = 3, model: str = "gpt-4o-mini", **extra) -> bytes:
    return "".join(
        json.dumps(
            {
                "custom_id": f"task-{i}",
                "method": "POST",
                "url": "/chat/completions",
                "body": {"model": model, "messages": [{"role": "user", "content": f"Say hello number {i}"}], **extra},
            }
        )
        + "\n"
        for i in range(count)
    ).encode()


@pytest.fixture(scope="module")
def batch_gateway(simulator, storage_connection_string):
    """A priced gateway whose dev host runs the timers every half second (the settlement timer among them); stopped
    with this module, so its timers do not keep running through the rest of the session."""
    process = GatewayProcess(
        {
            "AZURE_OPENAI_ENDPOINT": simulator.url,
            "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
            "GATEWAY_LOCAL_DEV_AUTH": "true",
            "GATEWAY_PRICES": PRICES,
            "GATEWAY_MAX_OUTPUT_TOKENS": "1000",
            "GATEWAY_ALLOWED_DEPLOYMENTS": "gpt-4o-mini,text-embedding-3-small,gpt-4.1",
            "GATEWAY_DEVHOST_TIMER_SECONDS": "0.5",
            "GATEWAY_MAX_FILE_BYTES": "1000000",
        }
    ).start()
    yield process
    process.stop()


def key_for(gateway, owner_id: str, **policy) -> str:
    response = httpx.post(
        f"{gateway.api}/manage/keys",
        json={
            "name": "batch test",
            "owner": {"id": owner_id, "name": "batch tester", "kind": "app"},
            "roles": ["Gateway.Use"],
        },
    )
    assert response.status_code == 201, response.text
    if policy:
        put = httpx.put(f"{gateway.api}/manage/policies/{owner_id}", json=policy)
        assert put.status_code in (200, 201), put.text
    return response.json()["key"]


def clients(gateway, key: str) -> list[openai.OpenAI]:
    return [
        openai.AzureOpenAI(azure_endpoint=gateway.api, api_key=key, api_version=API_VERSION, max_retries=0),
        openai.OpenAI(base_url=f"{gateway.api}/openai/v1", api_key=key, max_retries=0),
    ]


def ledger_rows(connection_string: str, caller_id: str) -> list[dict]:
    with TableServiceClient.from_connection_string(connection_string) as service:
        table = service.get_table_client("gatewayUsage")
        return list(table.query_entities("CallerId eq @c", parameters={"c": caller_id}))


def callers_requests(sim: SimulatorControl) -> list[dict]:
    """What callers' requests sent upstream (the settlement timer polls open batches on its own: not theirs)."""
    return [r for r in sim.requests() if not (r.get("client_request_id") or "").startswith("timer-")]


def wait_until(predicate, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def simulated_usage(sim: SimulatorControl, client: openai.OpenAI, output_file_id: str) -> tuple[int, int]:
    text = client.files.content(output_file_id).text
    prompt = completion = 0
    for line in text.splitlines():
        usage = json.loads(line)["response"]["body"]["usage"]
        prompt, completion = prompt + usage["prompt_tokens"], completion + usage["completion_tokens"]
    return prompt, completion


@pytest.mark.parametrize("style", ["dated", "v1"])
def test_a_batch_from_upload_to_output_is_charged_once_at_the_batch_rate(
    batch_gateway, sim, storage_connection_string, style
):
    owner = f"tenant-b/{uuid.uuid4()}"
    client = clients(batch_gateway, key_for(batch_gateway, owner))[0 if style == "dated" else 1]

    uploaded = client.files.create(file=("input.jsonl", lines(3)), purpose="batch")
    assert uploaded.id.startswith("file-") and uploaded.purpose == "batch"
    assert [f.id for f in client.files.list()] == [uploaded.id]
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h")
    assert batch.id.startswith("batch_")

    done = wait_until(lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b)
    assert done and done.request_counts.completed == 3
    output = client.files.content(done.output_file_id).text.splitlines()
    assert sorted(json.loads(line)["custom_id"] for line in output) == ["task-0", "task-1", "task-2"]
    assert done.output_file_id in {f.id for f in client.files.list()}  # the output file is the caller's too

    prompt, completion = simulated_usage(sim, client, done.output_file_id)
    time.sleep(1.5)  # the timer runs three more times; two more retrieves: still one settlement
    client.batches.retrieve(batch.id)
    client.batches.retrieve(batch.id)

    def settled():
        rows = ledger_rows(storage_connection_string, owner)
        return [r for r in rows if r["Operation"] == "batch"] and rows

    rows = wait_until(settled)
    batch_rows = [r for r in rows if r["Operation"] == "batch"]
    assert len(batch_rows) == 1
    row = batch_rows[0]
    assert (row["PromptTokens"], row["CompletionTokens"], row["Outcome"]) == (prompt, completion, "completed")
    standard = prompt * Decimal("0.15") + completion * Decimal("0.6")
    assert Decimal(row["Cost"]) == standard / 2 / 1_000_000  # Azure Global Batch: half the standard price
    assert row["PriceVersion"].endswith("#batch")
    management = [r for r in rows if r["Operation"] in ("files", "batches")]
    assert management and all(r["PromptTokens"] == r["CompletionTokens"] == 0 for r in management)

    client.files.delete(uploaded.id)
    assert uploaded.id not in {f.id for f in client.files.list()}


def test_a_caller_at_its_budget_cannot_create_a_batch(batch_gateway, sim):
    owner = f"tenant-b/{uuid.uuid4()}"
    client = clients(batch_gateway, key_for(batch_gateway, owner, limits={"tokens_per_day": 500}))[1]
    uploaded = client.files.create(file=("input.jsonl", lines(3, max_tokens=100)), purpose="batch")
    # 3 lines: 36 prompt tokens plus 3 x 100 output: the first batch holds 336 of the 500 at once.
    first = client.batches.create(input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h")
    sim.reset()
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.batches.create(input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h")
    with pytest.raises(openai.PermissionDeniedError) as chat_refused:  # the same refusal as a chat call's
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], max_tokens=200
        )
    assert refused.value.code == chat_refused.value.code == "tokens_per_day_exceeded"
    for refusal in (refused.value, chat_refused.value):
        assert refusal.response.headers.keys() >= {"retry-after", "retry-after-ms"}
    assert callers_requests(sim) == []  # neither reached the upstream

    # Once the first batch has ended, what it did not use is back: the same batch fits again.
    assert wait_until(lambda: client.batches.retrieve(first.id).status == "completed")
    second = client.batches.create(input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h")
    assert second.status == "validating"


def test_strangers_get_404_and_nothing_reaches_the_upstream(batch_gateway, sim):
    alice = clients(batch_gateway, key_for(batch_gateway, f"tenant-b/{uuid.uuid4()}"))
    bob = clients(batch_gateway, key_for(batch_gateway, f"tenant-b/{uuid.uuid4()}"))
    uploaded = alice[1].files.create(file=("input.jsonl", lines(2)), purpose="batch")
    batch = alice[1].batches.create(input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h")
    sim.reset()
    for client in bob:
        for attempt in (
            lambda client=client: client.files.retrieve(uploaded.id),
            lambda client=client: client.files.content(uploaded.id),
            lambda client=client: client.files.delete(uploaded.id),
            lambda client=client: client.batches.retrieve(batch.id),
            lambda client=client: client.batches.cancel(batch.id),
            lambda client=client: client.batches.create(
                input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h"
            ),
        ):
            with pytest.raises(openai.NotFoundError):
                attempt()
        assert client.files.list().data == []
        assert client.batches.list().data == []
    assert callers_requests(sim) == []  # nothing reached the upstream
    assert [f.id for f in alice[0].files.list()] == [uploaded.id]
    assert [b.id for b in alice[0].batches.list()] == [batch.id]


def test_a_cancelled_batch_settles_to_what_its_output_reported(batch_gateway, sim, storage_connection_string):
    owner = f"tenant-b/{uuid.uuid4()}"
    client = clients(batch_gateway, key_for(batch_gateway, owner))[1]
    uploaded = client.files.create(file=("input.jsonl", lines(4)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h")
    wait_until(lambda client=client: client.batches.retrieve(batch.id).status == "in_progress")
    sim.behave(batch_progress="hold")
    assert client.batches.cancel(batch.id).status == "cancelling"
    done = wait_until(lambda: (b := client.batches.retrieve(batch.id)).status == "cancelled" and b)
    assert done and done.request_counts.completed == 2  # the simulator keeps half of a started batch
    prompt, completion = simulated_usage(sim, client, done.output_file_id)
    rows = wait_until(lambda: [r for r in ledger_rows(storage_connection_string, owner) if r["Operation"] == "batch"])
    assert [(r["PromptTokens"], r["CompletionTokens"], r["Outcome"]) for r in rows] == [
        (prompt, completion, "cancelled")
    ]


# --- a pool of two accounts: files and batches stay where they were created ---------------------------------------


@pytest.fixture(scope="module")
def two_accounts(storage_connection_string):
    with simulators(2) as controls:
        pools = {
            "*": [{"label": "a", "endpoint": controls[0].url}, {"label": "b", "endpoint": controls[1].url}],
        }
        gateway = GatewayProcess(
            {
                "GATEWAY_BACKENDS": json.dumps(pools),
                "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
                "GATEWAY_LOCAL_DEV_AUTH": "true",
                "GATEWAY_ALLOWED_DEPLOYMENTS": "gpt-4o-mini,text-embedding-3-small,gpt-4.1",
            }
        ).start()
        try:
            yield gateway, controls
        finally:
            gateway.stop()


def test_file_and_batch_calls_always_reach_the_account_holding_the_file(two_accounts):
    gateway, (a, b) = two_accounts
    client = clients(gateway, key_for(gateway, f"tenant-b/{uuid.uuid4()}"))[1]
    for _ in range(6):  # weights spread new files over both accounts; each one's later calls follow it
        a.reset()
        b.reset()
        uploaded = client.files.create(file=("input.jsonl", lines(2)), purpose="batch")
        holder, other = (a, b) if a.requests() else (b, a)
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h")
        client.files.retrieve(uploaded.id)
        client.files.content(uploaded.id)
        done = wait_until(lambda batch=batch: (x := client.batches.retrieve(batch.id)).status == "completed" and x)
        client.files.content(done.output_file_id)
        client.batches.list()
        client.files.delete(uploaded.id)
        assert len(callers_requests(holder)) >= 8 and callers_requests(other) == []


# --- bad input: refused before anything is sent or recorded ---------------------------------------------------------


def upload_raw(gateway, key: str, body, content_type: str, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{gateway.api}/openai/v1/files",
        content=body,
        headers={"authorization": f"Bearer {key}", "content-type": content_type, **(headers or {})},
        timeout=30,
    )


def multipart(purpose: str, content: bytes, content_type: str = "application/jsonl") -> tuple[bytes, str]:
    request = httpx.Request(
        "POST", "http://x/", data={"purpose": purpose}, files={"file": ("input.jsonl", content, content_type)}
    )
    return request.read(), request.headers["content-type"]


BAD_FILES = {
    "not json": (b'{"custom_id": "a", oops}\n', "Line 1"),
    "NaN": (
        b'{"custom_id": "a", "method": "POST", "url": "/chat/completions", "body": {"model": "gpt-4o-mini", '
        b'"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}}\n',
        "Line 1",
    ),
    "lone surrogate": (
        b'{"custom_id": "\\ud800", "method": "POST", "url": "/chat/completions", "body": {"model": "gpt-4o-mini"}}\n',
        "Line 1",
    ),
    "not an object": (b"[1, 2]\n", "Line 1"),
    "no custom_id": (lines(1).replace(b'"custom_id": "task-0", ', b""), "Line 1"),
    "no method": (lines(1).replace(b'"method": "POST", ', b""), "Line 1"),
    "no url": (lines(1).replace(b'"url": "/chat/completions", ', b""), "Line 1"),
    "no body": (b'{"custom_id": "a", "method": "POST", "url": "/chat/completions"}\n', "Line 1"),
    "duplicate custom_id": (lines(2).replace(b"task-1", b"task-0"), "Line 2"),
    "model not allowed": (lines(2) + lines(1, model="gpt-4.1").replace(b"task-0", b"task-9"), "Line 3"),
    "unknown deployment": (lines(1, model="no-such-model"), "Line 1"),
    "another caller's response": (lines(1, previous_response_id="resp_0123456789abcdef"), "Line 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_malformed_batch_file_is_refused_naming_its_line(batch_gateway, sim, storage_connection_string, case):
    owner = f"tenant-b/{uuid.uuid4()}"
    key = key_for(batch_gateway, owner, allowed_deployments=["gpt-4o-mini"])
    content, where = BAD_FILES[case]
    body, content_type = multipart("batch", content)
    sim.reset()
    response = upload_raw(batch_gateway, key, body, content_type)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert where in error["message"] and error["param"] == "file"
    assert callers_requests(sim) == []
    time.sleep(0.6)  # a ledger flush interval: refused input is not recorded
    assert ledger_rows(storage_connection_string, owner) == []
    assert clients(batch_gateway, key)[1].files.list().data == []


def test_uploads_are_refused_for_size_type_and_purpose_before_anything_is_sent(batch_gateway, sim):
    key = key_for(batch_gateway, f"tenant-b/{uuid.uuid4()}")
    body, content_type = multipart("batch", lines(1))
    sim.reset()
    declared = http.client.HTTPConnection(httpx.URL(batch_gateway.api).host, httpx.URL(batch_gateway.api).port)
    declared.putrequest("POST", "/api/openai/v1/files")
    for name, value in {"authorization": f"Bearer {key}", "content-type": content_type}.items():
        declared.putheader(name, value)
    declared.putheader("content-length", str(600 * 1000 * 1000))  # refused on its header, before any byte is read
    declared.endheaders(body[:100])
    refused = declared.getresponse()
    assert refused.status == 413 and json.loads(refused.read())["error"]["code"] == "request_too_large"
    declared.close()

    def chunked():  # no content-length: refused at the first chunk past the limit
        yield body
        for _ in range(40):
            yield b"x" * 64 * 1024

    streamed = upload_raw(batch_gateway, key, chunked(), content_type)
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "request_too_large"
    wrong_type = upload_raw(batch_gateway, key, b'{"purpose": "batch"}', "application/x-www-form-urlencoded")
    assert wrong_type.status_code == 415
    unknown = upload_raw(batch_gateway, key, *multipart("homework", lines(1)))
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "purpose"
    image = upload_raw(batch_gateway, key, *multipart("batch", lines(1), "image/png"))
    assert image.status_code == 400 and image.json()["error"]["code"] == "invalid_file_type"
    cookie_only = httpx.post(
        f"{batch_gateway.api}/openai/v1/files", content=body, headers={"content-type": content_type, "cookie": "x=1"}
    )
    assert cookie_only.status_code == 403  # a form on another site could send this: refused
    assert callers_requests(sim) == []


# An id that decodes to a path ("%2F", "..") matches no route: the host answers 404 and no function runs. Every other
# hostile id reaches the route and is refused by its shape.
HOSTILE_IDS = {
    "file-abc%2F..%2Fbatches": 404,
    "%2e%2e": 400,
    "file-" + "a" * 200: 400,
    "file-abc%0Adef": 400,
    "file-abc%00": 400,
    "file-a.b": 400,
    "file-abc%25": 400,
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE_IDS))
def test_hostile_ids_are_refused_and_nothing_is_sent(batch_gateway, sim, hostile):
    key = key_for(batch_gateway, f"tenant-b/{uuid.uuid4()}")
    sim.reset()
    headers = {"api-key": key}
    batch_id = hostile.replace("file-", "batch_")
    for method, path in (
        ("GET", f"openai/files/{hostile}?api-version={API_VERSION}"),
        ("GET", f"openai/v1/files/{hostile}/content"),
        ("DELETE", f"openai/v1/files/{hostile}"),
        ("GET", f"openai/v1/batches/{batch_id}"),
        ("POST", f"openai/v1/batches/{batch_id}/cancel"),
    ):
        response = httpx.request(method, f"{batch_gateway.api}/{path}", headers=headers)
        assert response.status_code == HOSTILE_IDS[hostile], (path, response.text)
        if response.status_code == 400:
            assert response.json()["error"]["code"] == "invalid_id"
    created = httpx.post(
        f"{batch_gateway.api}/openai/v1/batches",
        headers=headers,
        json={"input_file_id": hostile, "endpoint": "/chat/completions", "completion_window": "24h"},
    )
    assert created.status_code == 400 and created.json()["error"]["param"] == "input_file_id"
    assert callers_requests(sim) == []


def test_lists_are_the_caller_s_own_in_pages(batch_gateway, sim):
    client = clients(batch_gateway, key_for(batch_gateway, f"tenant-b/{uuid.uuid4()}"))[1]
    ids = [client.files.create(file=(f"f{i}.jsonl", lines(1)), purpose="batch").id for i in range(3)]
    first = client.files.list(limit=2)
    assert [f.id for f in first.data] == ids[::-1][:2] and first.has_more  # newest first
    rest = client.files.list(limit=2, after=first.data[-1].id)
    assert [f.id for f in rest.data] == [ids[0]] and not rest.has_more
    assert [f.id for f in client.files.list(limit=2, order="asc")] == ids  # the SDK follows the pages
    assert client.files.list(purpose="assistants").data == []
    with pytest.raises(openai.BadRequestError):
        client.files.list(limit=0)
