"""The upstream client: the proxy from the environment (read once), lost connections, and what it sends."""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from shared.protocol.calls import ModelCall
from shared.protocol.operations import ApiStyle, Operation, OperationKind
from shared.protocol.payloads import StreamedBody
from shared.settings import UpstreamSettings
from shared.upstream.client import EndpointClient, connection_lost, environment_proxy, simulator_token_provider


def test_the_environment_proxy_applies_unless_no_proxy_names_the_host(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    endpoint = "https://contoso-openai.openai.azure.com"
    assert environment_proxy(endpoint) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert environment_proxy(endpoint) == "http://proxy.internal:3128"
    monkeypatch.setenv("NO_PROXY", ".openai.azure.com")
    assert environment_proxy(endpoint) is None


def _caused_by(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


def test_what_a_lost_connection_means_for_the_call():
    # Writing to a connection that was already closing: never sent, so even a stored call may go again.
    unwritten = connection_lost(
        _caused_by(aiohttp.ClientOSError(None, "Can not write request body"), aiohttp.ClientConnectionResetError())
    )
    assert (unwritten.may_have_run, unwritten.connection_dropped, unwritten.status) == (False, True, 502)
    # Sent, then the server closed or reset the connection without an answer: it may have run.
    for error in (aiohttp.ServerDisconnectedError(), aiohttp.ClientOSError(errno.ECONNRESET, "reset")):
        lost = connection_lost(error)
        assert (lost.may_have_run, lost.connection_dropped) == (True, True)
    broken = connection_lost(aiohttp.ClientPayloadError("truncated"))
    assert (broken.may_have_run, broken.connection_dropped) == (True, False)


# --- what the client sends: any method, object ids and query parameters encoded, uploads streamed ---------------


@dataclass
class Seen:
    requests: list[dict] = field(default_factory=list)


@pytest.fixture
async def echo():
    seen = Seen()

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        seen.requests.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "content_type": request.headers.get("content-type"),
                "content_length": request.headers.get("content-length"),
                "chunked": "chunked" in request.headers.get("transfer-encoding", ""),
                "body": body,
            }
        )
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    client = EndpointClient(f"http://127.0.0.1:{port}", simulator_token_provider(), UpstreamSettings())
    try:
        yield client, seen
    finally:
        await client.aclose()
        await runner.cleanup()


RETRIEVE = Operation(OperationKind.RESPONSES, "responses/{id}", ApiStyle.V1, method="GET")
DELETE_DATED = Operation(OperationKind.RESPONSES, "responses/{id}", ApiStyle.DATED, method="DELETE")
UPLOAD = Operation(OperationKind.RESPONSES, "files", ApiStyle.V1)


def _call(operation: Operation, object_id: str | None = None, query=(), api_version=None) -> ModelCall:
    return ModelCall(operation, "*", api_version, {}, False, False, 0, None, object_id=object_id, query=query)


async def test_a_get_carries_its_object_id_and_query_percent_encoded_and_no_body(echo):
    client, seen = echo
    call = _call(RETRIEVE, "resp_a/../b?c", (("include[]", "a b&c"), ("stream", "true")))
    response = await client.send(call, None, "req")
    assert response.status == 200
    await response.read()
    (request,) = seen.requests
    assert request["method"] == "GET" and request["body"] == b"" and request["content_type"] is None
    assert request["raw_path"] == "/openai/v1/responses/resp_a%2F..%2Fb%3Fc?include%5B%5D=a%20b%26c&stream=true"


async def test_a_dated_delete_keeps_its_api_version_first(echo):
    client, seen = echo
    response = await client.send(_call(DELETE_DATED, "resp_1", (("x", "1"),), "2025-04-01-preview"), None, "req")
    await response.read()
    assert seen.requests[0]["method"] == "DELETE"
    assert seen.requests[0]["raw_path"] == "/openai/responses/resp_1?api-version=2025-04-01-preview&x=1"


async def test_a_streamed_body_goes_with_its_exact_length_not_chunked(echo):
    client, seen = echo
    pieces = [b"--b\r\n", b"x" * 200_000, b"\r\n--b--\r\n"]

    async def source():
        for piece in pieces:
            yield piece

    body = StreamedBody("multipart/form-data; boundary=b", sum(map(len, pieces)), source)
    response = await client.send(_call(UPLOAD), body, "req")
    assert json.loads(await response.read()) == {"ok": True}
    (request,) = seen.requests
    assert request["content_type"] == "multipart/form-data; boundary=b"
    assert request["content_length"] == str(body.length) and not request["chunked"]
    assert request["body"] == b"".join(pieces)
