"""The HTTP edge every function goes through, and what every non-model endpoint does around its action.

:func:`new_blueprint` gives blueprints whose routes are all wrapped by :func:`at_the_edge`, so no function can
forget what every response needs:

* an ``x-gateway-request-id`` (one id per invocation, also the one the model-call path and the logs use);
* a refusal, before anything else runs, of cross-site shaped requests: a state-changing request with a body
  must say ``Content-Type: application/json`` (an HTML form cannot), and one that a browser cookie
  authenticates must come from the gateway's own origin;
* no unhandled exception: whatever escapes is logged with the request id and answered OpenAI-shaped.

:func:`authenticated` adds, for management endpoints: authentication, a 503 (not a 500) when the gateway cannot
start or Table Storage fails in a way a retry can fix, and a log line with the request id for every error.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import azure.functions as func
from starlette.requests import Request
from starlette.responses import Response

from shared.auth.identity import Caller
from shared.errors import (
    REQUEST_ID_HEADER,
    GatewayError,
    error_response,
    forbidden,
    gateway_unavailable,
    internal_error_response,
    new_request_id,
    storage_refused,
    storage_unavailable,
)
from shared.json_body import parse_json_object, read_body
from shared.runtime import Runtime, Services
from shared.storage.tables import is_storage_outage, storage_refusal_status

log = logging.getLogger(__name__)

MANAGEMENT_BODY_LIMIT = 64 * 1024
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Action = Callable[[Services, Caller], Awaitable[Response]]
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Response]])


class GatewayBlueprint(func.Blueprint):
    """A blueprint of anonymous HTTP functions whose every route runs :func:`at_the_edge`."""

    def route(self, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        register = super().route(*args, **kwargs)

        def decorator(handler: Callable[..., Awaitable[Response]]) -> Any:
            return register(at_the_edge(handler))

        return decorator


def new_blueprint() -> func.Blueprint:
    """Easy Auth and the gateway authenticate, not function keys."""
    return GatewayBlueprint(http_auth_level=func.AuthLevel.ANONYMOUS)  # type: ignore[no-untyped-call]


def at_the_edge(handler: Handler) -> Handler:
    """Wrap a function handler (``handler(req)``): request id, cross-site refusal, no unhandled exception.

    ``functools.wraps`` keeps the name, docstring and ``Request`` annotation the Functions worker indexes.
    """

    function = handler.__name__  # logs name the function, never the (caller-controlled) path

    @functools.wraps(handler)
    async def edge(req: Request) -> Response:
        request_id = new_request_id()
        try:
            refuse_cross_site(req)
            response = await handler(req)
        except GatewayError as error:
            log_refusal(function, error, request_id)
            response = error_response(error, request_id)
        except Exception:
            log.exception("request %s failed in %s", request_id, function)
            response = internal_error_response(request_id)
        response.headers.setdefault(REQUEST_ID_HEADER, request_id)
        return response

    return edge  # type: ignore[return-value]


# --- cross-site requests ---------------------------------------------------------------------------------------


def refuse_cross_site(request: Request) -> None:
    """Refuse what a page on another site could make a browser send with the user's cookies.

    A cross-site HTML form can POST ``text/plain``, ``application/x-www-form-urlencoded`` or ``multipart/form-data``
    without a CORS preflight; ``application/json`` needs one, which the gateway never approves. And where the
    only credential is a cookie (an Easy Auth session), the browser's ``Origin`` must be the gateway's own.
    """
    if request.method.upper() not in STATE_CHANGING_METHODS:
        return
    content_type = request.headers.get("content-type")
    if _has_body(request) and not is_json_media_type(content_type) and not _upload_with_header_credential(request):
        raise GatewayError(
            415,
            "Send the request body as JSON with 'Content-Type: application/json'.",
            code="unsupported_media_type",
            param="Content-Type",
        )
    if _cookie_is_the_credential(request) and not _same_origin(request):
        raise forbidden(
            "A request authenticated by a browser session must come from the gateway's own origin.",
            code="cross_origin_refused",
        )


def is_json_media_type(value: str | None) -> bool:
    """``application/json`` or ``application/<x>+json``, with or without parameters such as ``charset``."""
    if not value:
        return False
    media_type = value.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() != "0"
    return "transfer-encoding" in request.headers


def _upload_with_header_credential(request: Request) -> bool:
    """A ``multipart/form-data`` upload (images to edit, audio to transcribe) that carries its credential in a header:
    a cross-site form can send multipart, but never with an ``Authorization`` or ``api-key`` header, so only a cookie
    could make it count, and such a request is still refused."""
    media_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    return (
        media_type == "multipart/form-data"
        and not _cookie_is_the_credential(request)
        and ("authorization" in request.headers or "api-key" in request.headers)
    )


def _cookie_is_the_credential(request: Request) -> bool:
    headers = request.headers
    return "cookie" in headers and "authorization" not in headers and "api-key" not in headers


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return False
    host = urlsplit(origin).netloc.lower()
    own = {
        value.split(",")[0].strip().lower()
        for value in (request.headers.get("x-forwarded-host"), request.headers.get("host"))
        if value
    }
    return bool(host) and host in own


# --- management endpoints --------------------------------------------------------------------------------------


async def authenticated(runtime: Runtime, request: Request, action: Action) -> Response:
    """Build the services, authenticate, run ``action``; every failure is an OpenAI-shaped response."""
    try:
        services = await runtime.services()
    except Exception:
        log.exception("the gateway could not start (Table Storage or upstream client set-up failed)")
        raise gateway_unavailable() from None
    try:
        caller = await services.authenticator.authenticate(request.headers)  # API keys are read from storage
        return await action(services, caller)
    except GatewayError:
        raise
    except Exception as exc:
        if is_storage_outage(exc):
            log.warning("Table Storage failed: %s", type(exc).__name__)
            raise storage_unavailable() from None
        status = storage_refusal_status(exc)
        if status is not None:  # validation should have refused it first; still the request's problem, not a 500
            code = getattr(exc, "error_code", None)
            code = str(getattr(code, "value", code) or "unknown")  # the SDK gives a TableErrorCode or a string
            log.warning("Table Storage refused a request: %s %s", getattr(exc, "status_code", None), code)
            raise storage_refused(status, code) from None
        raise


def log_refusal(function: str, error: GatewayError, request_id: str) -> None:
    """One line per error answer: function, status, code and request id (never content, paths or credentials)."""
    level = logging.WARNING if error.status >= 500 else logging.INFO
    log.log(
        level,
        "request %s to %s answered %d %s",
        request_id,
        function,
        error.status,
        error.code,
        extra={"gateway_request_id": request_id, "gateway_status": error.status, "gateway_error_code": error.code},
    )


async def json_body(request: Request) -> dict[str, Any]:
    return parse_json_object(await read_body(request, MANAGEMENT_BODY_LIMIT))
