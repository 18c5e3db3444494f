"""Building the gateway's own HTTP responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from shared.errors import GatewayError, error_body

REQUEST_ID_HEADER = "x-gateway-request-id"


def error_response(error: GatewayError, request_id: str | None = None) -> JSONResponse:
    headers = dict(error.headers)
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def internal_error_response(request_id: str) -> JSONResponse:
    body = error_body(
        f"The gateway failed to handle this request (request id {request_id}).",
        code="internal_error",
        type="server_error",
    )
    return JSONResponse(body, status_code=500, headers={REQUEST_ID_HEADER: request_id})


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers=dict(headers or {}))
