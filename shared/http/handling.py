"""What every non-model endpoint does around its action: authenticate, then turn failures into OpenAI-shaped
errors."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import azure.functions as func
from starlette.requests import Request
from starlette.responses import Response

from shared.auth.identity import Caller
from shared.errors import GatewayError, error_response, internal_error_response
from shared.json_body import parse_json_object, read_body
from shared.runtime import Runtime, Services

log = logging.getLogger(__name__)

MANAGEMENT_BODY_LIMIT = 64 * 1024

Action = Callable[[Services, Caller], Awaitable[Response]]


def new_blueprint() -> func.Blueprint:
    """A blueprint of anonymous HTTP functions: Easy Auth and the gateway authenticate, not function keys."""
    return func.Blueprint(http_auth_level=func.AuthLevel.ANONYMOUS)  # type: ignore[no-untyped-call]


async def authenticated(runtime: Runtime, request: Request, action: Action) -> Response:
    try:
        services = await runtime.services()
        caller = await services.authenticator.authenticate(request.headers)
        return await action(services, caller)
    except GatewayError as error:
        return error_response(error)
    except Exception:
        log.exception("management request failed")
        return internal_error_response("-")


async def json_body(request: Request) -> dict[str, Any]:
    return parse_json_object(await read_body(request, MANAGEMENT_BODY_LIMIT))
