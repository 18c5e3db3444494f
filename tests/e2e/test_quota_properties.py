"""The quota invariant as a property (docs/quotas.md): for generated mixes of call shapes (chat with n, with and
without output limits, streamed or not, reasoning models, Responses, embeddings) and injected upstream faults
(timeouts, cut-off streams, 429, 500), sent at once through two gateway processes that share one Azurite:

* the caller's committed use never exceeds its limit (ledger and quota counter);
* every call that ran upstream is on the ledger with at least the tokens the upstream generated for it, never 0.

CI runs a bounded profile; ``GATEWAY_PROPERTY_EXAMPLES=200`` runs a longer one locally.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from azure.data.tables import TableClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.storage.tables import QUOTA_TABLE, USAGE_TABLE
from tests.conftest import SimulatorControl
from tests.e2e.test_quotas import issue_key, put_policy

pytestmark = pytest.mark.e2e
EXAMPLES = int(os.environ.get("GATEWAY_PROPERTY_EXAMPLES", "12"))
UPSTREAM_TIMEOUT = 0.6


@dataclass(frozen=True)
class Shape:
    kind: str  # chat | responses | embeddings
    deployment: str
    stream: bool
    n: int
    max_output: int | None
    gateway: int


shapes = st.one_of(
    st.builds(
        Shape,
        kind=st.just("chat"),
        deployment=st.sampled_from(["gpt-4o-mini", "o4-mini"]),
        stream=st.booleans(),
        n=st.integers(1, 3),
        max_output=st.sampled_from([None, 5, 40]),
        gateway=st.integers(0, 1),
    ),
    st.builds(
        Shape,
        kind=st.just("responses"),
        deployment=st.sampled_from(["gpt-4o-mini", "o4-mini"]),
        stream=st.booleans(),
        n=st.just(1),
        max_output=st.sampled_from([None, 20, 60]),
        gateway=st.integers(0, 1),
    ),
    st.builds(
        Shape,
        kind=st.just("embeddings"),
        deployment=st.just("text-embedding-3-small"),
        stream=st.just(False),
        n=st.just(1),
        max_output=st.none(),
        gateway=st.integers(0, 1),
    ),
)
faults = st.lists(st.sampled_from(["cutoff", "429", "500", "timeout"]), max_size=3)


@pytest.fixture(scope="module")
def pair(start_gateway, gateway_env):
    env = {
        **gateway_env,
        "GATEWAY_ALLOWED_DEPLOYMENTS": "gpt-4o-mini,o4-mini,text-embedding-3-small",
        "GATEWAY_UPSTREAM_TIMEOUT_SECONDS": str(UPSTREAM_TIMEOUT),
    }
    return [start_gateway(env) for _ in range(2)]


def request_of(shape: Shape, i: int) -> tuple[str, dict]:
    text = f"Property check number {i}: tell me about quotas."
    if shape.kind == "embeddings":
        return "embeddings", {"model": shape.deployment, "input": text}
    if shape.kind == "responses":
        body: dict = {"model": shape.deployment, "input": text, "stream": shape.stream, "store": False}
        if shape.max_output is not None:
            body["max_output_tokens"] = shape.max_output
        return "responses", body
    body = {"model": shape.deployment, "messages": [{"role": "user", "content": text}], "stream": shape.stream}
    if shape.n > 1:
        body["n"] = shape.n
    if shape.max_output is not None:
        body["max_completion_tokens"] = shape.max_output
    return "chat/completions", body


async def send(http: httpx.AsyncClient, gateway, key: str, shape: Shape, i: int) -> int:
    path, body = request_of(shape, i)
    async with http.stream(
        "POST", f"{gateway.api}/openai/v1/{path}", json=body, headers={"api-key": key}, timeout=20
    ) as response:
        await response.aread()
        if response.status_code >= 500:  # an upstream 500 passes through as it is; the gateway never fails itself
            assert response.json()["error"]["code"] != "internal_error", response.text
        return response.status_code


def rows_of(connection_string: str, owner: str) -> list[dict]:
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    with TableClient.from_connection_string(connection_string, USAGE_TABLE) as table:
        return [
            dict(row)
            for row in table.query_entities(
                "PartitionKey ge @day and CallerId eq @owner", parameters={"day": today, "owner": owner}
            )
        ]


def committed(connection_string: str, owner: str) -> int:
    with TableClient.from_connection_string(connection_string, QUOTA_TABLE) as table:
        rows = list(table.query_entities("Scope eq @owner", parameters={"owner": owner}))
    return sum(int(getattr(row["Used"], "value", row["Used"])) for row in rows)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 12,  # CI: the same examples every run, reported as found (no minutes of shrinking)
    phases=[Phase.explicit, Phase.generate] if EXAMPLES <= 12 else list(Phase),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(calls=st.lists(shapes, min_size=1, max_size=6), injected=faults, limit=st.sampled_from([150, 700, 4000]))
def test_no_caller_passes_its_limit_and_every_call_that_ran_is_charged(
    pair, simulator, gateway_env, calls, injected, limit
):
    connection = gateway_env["GATEWAY_STORAGE_CONNECTION_STRING"]
    sim = SimulatorControl(simulator.url)
    sim.reset()
    owner = f"prop-{uuid.uuid4().hex[:10]}/app"
    key = issue_key(pair[0], owner)
    put_policy(pair[1], owner, {"limits": {"tokens_per_day": limit}})
    for fault in injected:
        if fault == "timeout":
            sim.behave(first_byte_delay_ms=int(UPSTREAM_TIMEOUT * 1000) + 400, times=1)
        else:
            sim.behave(fault=fault, cutoff_after_chunks=2, times=1)

    async def run() -> list[int]:
        async with httpx.AsyncClient() as http:
            return await asyncio.gather(*(send(http, pair[s.gateway], key, s, i) for i, s in enumerate(calls)))

    statuses = asyncio.run(run())
    time.sleep(UPSTREAM_TIMEOUT + 1.0)  # answers the gateway gave up on finish upstream; the ledger flushes
    seen = [entry for entry in sim.requests() if entry["usage"] is not None]  # answered (or began to) upstream
    rows = rows_of(connection, owner)
    by_request = {row["RowKey"]: row for row in rows}

    charged = sum(row["PromptTokens"] + row["CompletionTokens"] for row in rows)
    assert charged <= limit, (charged, limit, statuses)
    for entry in seen:
        row = by_request.get(entry["client_request_id"])
        assert row is not None, ("a call that ran upstream is missing from the ledger", entry["body"])
        generated = entry["usage"]["prompt_tokens"] + entry["usage"]["completion_tokens"]
        recorded = row["PromptTokens"] + row["CompletionTokens"]
        assert recorded >= generated > 0, (recorded, generated, row["Outcome"], entry["body"])
    # The counters hold what was charged once the instances have committed it (an idle balance goes back in ~1 s).
    deadline = time.monotonic() + 5
    while committed(connection, owner) != charged and time.monotonic() < deadline:
        time.sleep(0.2)
    assert committed(connection, owner) == charged <= limit
