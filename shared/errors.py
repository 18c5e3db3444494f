"""OpenAI-shaped errors, and the HTTP responses that carry them.

Every failure the gateway produces itself is a :class:`GatewayError`; :func:`error_response` turns it into
``{"error": {"code", "message", "type", "param"}}`` with the right status, which the ``openai`` SDK
maps onto its own exception classes (400 -> BadRequestError, 401 -> AuthenticationError, ...).
Messages are written for the caller: they say what is wrong and what to do, never echo secrets.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from starlette.responses import JSONResponse

REQUEST_ID_HEADER = "x-gateway-request-id"

# The id of the request being handled: set once per invocation at the HTTP edge (shared/http/handling.py), so
# the model-call path, management logs and every response name the same id.
_request_id: ContextVar[str | None] = ContextVar("gateway_request_id", default=None)


def new_request_id() -> str:
    """Start a request: a fresh id that :func:`current_request_id` returns for the rest of this invocation."""
    request_id = str(uuid.uuid4())
    _request_id.set(request_id)
    return request_id


def current_request_id() -> str:
    """The id of the request being handled (a fresh one outside the HTTP edge, e.g. in a unit test)."""
    return _request_id.get() or new_request_id()


class GatewayError(Exception):
    """An error the gateway answers with, instead of forwarding the request."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        type: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.type = type or _default_type(status)
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.message, code=self.code, type=self.type, param=self.param)


def error_body(message: str, *, code: str, type: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "type": type, "param": param}}


def _default_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 413:
        return "invalid_request_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


# Shorthands for the errors the gateway raises most; each names the status once.


def bad_request(message: str, *, code: str = "invalid_request", param: str | None = None) -> GatewayError:
    return GatewayError(400, message, code=code, param=param)


def unauthorized(message: str, *, code: str = "unauthorized") -> GatewayError:
    # WWW-Authenticate tells tools which scheme to use; no detail about why a token failed leaks here
    # beyond the message, which never contains the token itself.
    return GatewayError(401, message, code=code, headers={"WWW-Authenticate": 'Bearer realm="ai-gateway"'})


def forbidden(message: str, *, code: str = "forbidden") -> GatewayError:
    return GatewayError(403, message, code=code)


def not_found(message: str, *, code: str = "not_found") -> GatewayError:
    return GatewayError(404, message, code=code)


RETRY_AFTER_SECONDS = "5"


def storage_unavailable() -> GatewayError:
    """Table Storage failed in a way a retry can fix (unreachable, throttled, 5xx, refused our credentials)."""
    return GatewayError(
        503,
        "The gateway cannot reach its storage right now; retry shortly.",
        code="storage_unavailable",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def storage_refused(status: int, storage_code: str) -> GatewayError:
    """Table Storage refused what the request would store or change (status 400, 404 or 409, see
    :func:`shared.storage.tables.storage_refusal_status`); ``storage_code`` is the service's error code."""
    messages = {
        400: "Table Storage refused to store this (e.g. a value too large); send less.",
        404: "What this request refers to is not in the gateway's storage.",
        409: "What this request changes was changed at the same time; retry.",
    }
    return GatewayError(status, f"{messages[status]} (storage error {storage_code})", code="storage_refused")


def gateway_unavailable() -> GatewayError:
    """The gateway's services could not be built (storage or upstream client set-up failed)."""
    return GatewayError(
        503,
        "The gateway cannot reach its storage right now; retry shortly.",
        code="gateway_unavailable",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


# --- as HTTP responses -----------------------------------------------------------------------------------------


def error_response(error: GatewayError, request_id: str | None = None) -> JSONResponse:
    headers = {**error.headers, REQUEST_ID_HEADER: request_id or current_request_id()}
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def internal_error_response(request_id: str | None = None) -> JSONResponse:
    request_id = request_id or current_request_id()
    body = error_body(
        f"The gateway failed to handle this request (request id {request_id}).",
        code="internal_error",
        type="server_error",
    )
    return JSONResponse(body, status_code=500, headers={REQUEST_ID_HEADER: request_id})
