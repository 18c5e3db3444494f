"""Property: whatever a caller sends, the guard either refuses it with an OpenAI-shaped 4xx, or describes a call
that can be forwarded as strict JSON (so nothing downstream can fail on it with a 500)."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

from hypothesis import example, given
from hypothesis import strategies as st
from starlette.requests import Request

from shared.errors import GatewayError
from shared.policy.guard import guard
from shared.protocol import operations
from shared.protocol.api_versions import is_api_version
from shared.protocol.deployments import is_deployment_name
from shared.settings import GuardrailSettings
from tests.hostile import model_bodies, poisoned_bodies, raw_bodies, render

SETTINGS = GuardrailSettings(
    allowed_deployments=None, max_request_bytes=64 * 1024, max_prompt_tokens=4000, max_output_tokens=1000
)
OPERATIONS = [
    operations.CHAT,
    operations.COMPLETIONS,
    operations.EMBEDDINGS,
    operations.RESPONSES,
    operations.V1_CHAT,
    operations.V1_EMBEDDINGS,
    operations.V1_RESPONSES,
]


def request(body: bytes, api_version: str | None) -> Request:
    query = f"api-version={quote(api_version, safe='')}".encode() if api_version is not None else b""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/openai/x",
        "query_string": query,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


api_versions = st.none() | st.sampled_from(["2024-10-21", "2025-04-01-preview"]) | st.text(max_size=25)
bodies = (
    model_bodies.map(lambda b: render(b).encode("utf-8", "surrogatepass"))
    | poisoned_bodies().map(lambda t: t.encode("utf-8", "surrogatepass"))
    | raw_bodies
)


@given(
    operation=st.sampled_from(OPERATIONS),
    body=bodies,
    api_version=api_versions,
    deployment=st.sampled_from(["gpt-4o-mini", "text-embedding-3-small"]) | st.text(max_size=80),
)
@example(
    operation=operations.CHAT,
    body=b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    api_version="2024-10-21",
    deployment="gpt-4o-mini",
)
@example(operation=operations.CHAT, body=b'{"messages": []}', api_version="2024-10-21\n", deployment="gpt-4o-mini")
def test_the_guard_refuses_with_a_4xx_or_passes_only_forwardable_calls(operation, body, api_version, deployment):
    try:
        call = asyncio.run(guard(request(body, api_version), operation, SETTINGS, deployment))
    except GatewayError as error:
        assert 400 <= error.status < 500, (error.status, error.message)
        payload = json.dumps(error.body(), allow_nan=False, ensure_ascii=False).encode("utf-8")
        assert set(json.loads(payload)["error"]) == {"code", "message", "type", "param"}
        return
    # Accepted: everything about it must survive strict JSON encoding and whole-value checks.
    json.dumps(call.body, allow_nan=False, ensure_ascii=False).encode("utf-8")
    assert is_deployment_name(call.deployment)
    assert call.api_version is None or is_api_version(call.api_version)
    assert call.prompt_tokens_estimate >= 0


@given(body=poisoned_bodies(), operation=st.sampled_from(OPERATIONS))
def test_a_poisoned_body_never_passes_the_guard(body, operation):
    raw = body.encode("utf-8", "surrogatepass")
    try:
        asyncio.run(guard(request(raw, "2024-10-21"), operation, SETTINGS, "gpt-4o-mini"))
    except GatewayError as error:
        assert error.status == 400 or error.status == 413
    else:
        raise AssertionError(f"accepted: {body[:200]!r}")
