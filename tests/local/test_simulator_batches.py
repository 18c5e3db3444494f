"""The simulator's files and batches, as one Azure OpenAI account keeps them (simulator/files_batches.py)."""

from __future__ import annotations

import json

import httpx
import pytest

AUTH = {"authorization": "Bearer local"}
LINES = "".join(
    json.dumps(
        {
            "custom_id": f"t{i}",
            "method": "POST",
            "url": "/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hello {i}"}]},
        }
    )
    + "\n"
    for i in range(4)
).encode()


def _batch(url: str) -> dict:
    uploaded = httpx.post(
        f"{url}/openai/files?api-version=2024-10-21",
        headers=AUTH,
        data={"purpose": "batch"},
        files={"file": ("in.jsonl", LINES)},
    )
    assert uploaded.status_code == 201 and uploaded.json()["id"].startswith("file-")
    created = httpx.post(
        f"{url}/openai/v1/batches",
        headers=AUTH,
        json={"input_file_id": uploaded.json()["id"], "endpoint": "/chat/completions", "completion_window": "24h"},
    )
    assert created.status_code == 200 and created.json()["status"] == "validating"
    return created.json()


def _read(url: str, batch_id: str) -> dict:
    return httpx.get(f"{url}/openai/v1/batches/{batch_id}", headers=AUTH).json()


def test_a_batch_steps_through_its_statuses_and_answers_each_line_as_a_live_call(simulator, sim):
    batch = _batch(simulator.url)
    assert [_read(simulator.url, batch["id"])["status"] for _ in range(4)] == [
        "in_progress",
        "finalizing",
        "completed",
        "completed",
    ]
    done = _read(simulator.url, batch["id"])
    assert done["request_counts"] == {"total": 4, "completed": 4, "failed": 0}
    output = httpx.get(f"{simulator.url}/openai/v1/files/{done['output_file_id']}/content", headers=AUTH).text
    lines = [json.loads(line) for line in output.splitlines()]
    live = httpx.post(
        f"{simulator.url}/openai/v1/chat/completions",
        headers=AUTH,
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello 0"}]},
    ).json()
    first = next(line for line in lines if line["custom_id"] == "t0")
    assert first["response"]["status_code"] == 200 and first["response"]["body"]["usage"] == live["usage"]


@pytest.mark.parametrize(
    ("progress", "status", "completed"), [("fail", "failed", 0), ("expire", "expired", 2), ("complete", "completed", 4)]
)
def test_the_batch_progress_knob_decides_how_a_batch_ends(simulator, sim, progress, status, completed):
    sim.behave(batch_progress=progress)
    batch = _batch(simulator.url)
    done = _read(simulator.url, batch["id"])
    assert (done["status"], done["request_counts"]["completed"]) == (status, completed)


def test_cancel_holds_what_was_done_and_unknown_ids_are_azure_404s(simulator, sim):
    batch = _batch(simulator.url)
    _read(simulator.url, batch["id"])  # in_progress
    sim.behave(batch_progress="hold")
    assert _read(simulator.url, batch["id"])["status"] == "in_progress"
    cancelled = httpx.post(f"{simulator.url}/openai/v1/batches/{batch['id']}/cancel", headers=AUTH).json()
    assert cancelled["status"] == "cancelling"
    done = _read(simulator.url, batch["id"])
    assert (done["status"], done["request_counts"]["completed"]) == ("cancelled", 2)
    for path in (
        "files/file-0123456789abcdef",
        "batches/batch_0123456789abcdef",
        "files/file-0123456789abcdef/content",
    ):
        missing = httpx.get(f"{simulator.url}/openai/v1/{path}", headers=AUTH)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"
    assert httpx.get(f"{simulator.url}/openai/files", headers=AUTH).status_code == 400  # dated needs api-version
    assert httpx.get(f"{simulator.url}/openai/v1/files").status_code == 401
