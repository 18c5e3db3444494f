"""Reading a request body: bounded in size, and a JSON object.

Used by every endpoint that takes a body; a body that fails here gets a 4xx that says why, never a 500.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from shared.errors import GatewayError, bad_request


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes; refuse larger bodies without buffering them."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _too_large(limit)
        except ValueError:
            raise bad_request("The Content-Length header is not a number.", code="invalid_content_length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"The request body is larger than this gateway accepts ({limit} bytes).",
        code="request_too_large",
    )


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise bad_request("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = json.loads(raw)
    except UnicodeDecodeError:
        raise bad_request("The request body is not UTF-8 encoded JSON.", code="invalid_json") from None
    except json.JSONDecodeError as exc:
        raise bad_request(
            f"The request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.",
            code="invalid_json",
        ) from None
    except (ValueError, RecursionError):  # e.g. an integer of thousands of digits, or nesting thousands deep
        raise bad_request(
            "The request body is JSON this gateway does not accept (absurdly large numbers or nesting).",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    return body
