"""Starlette requests built in memory, for unit tests of steps that take the HTTP request (the guard, bodies)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request


def make_request(
    body: Any = None,
    *,
    raw: bytes | None = None,
    query: str = "",
    headers: dict[str, str] | None = None,
    method: str = "POST",
    path: str = "/api/test",
    chunk_size: int | None = None,
) -> Request:
    """A request whose body is ``raw`` or ``body`` as JSON, delivered in chunks like an ASGI server would."""
    payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    header_list = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if raw is None and chunk_size is None and "content-length" not in (headers or {}):
        header_list.append((b"content-length", str(len(payload)).encode()))
    size = chunk_size or max(len(payload), 1)
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": header_list,
    }
    return Request(scope, receive)
