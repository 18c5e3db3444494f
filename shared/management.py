"""Caller-facing and admin endpoints: who am I, API keys, caller policies.

Admin operations need the ``Gateway.Admin`` app role; keys can never carry it (an API key that could mint
more keys would outlive any review of who holds it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shared.authorization import CallerPolicy, require_role
from shared.errors import GatewayError, bad_request, not_found
from shared.guard import parse_json_object, read_body
from shared.identity import ROLE_ADMIN, ROLE_USAGE_READ, ROLE_USE, Caller
from shared.ledger import parse_grouping, parse_range, summarize, to_csv
from shared.responses import error_response, internal_error_response
from shared.runtime import Runtime

log = logging.getLogger(__name__)

MANAGEMENT_BODY_LIMIT = 64 * 1024
KEY_ROLES = frozenset({ROLE_USE, ROLE_USAGE_READ})
MAX_KEY_DAYS = 365


async def handle(runtime: Runtime, request: Request,
                 action: Callable[[Caller], Awaitable[Response]]) -> Response:
    """Authenticate, run the action, and turn failures into OpenAI-shaped errors."""
    try:
        gateway = await runtime.gateway()
        caller = await gateway.authenticator.authenticate(request.headers)
        return await action(caller)
    except GatewayError as error:
        return error_response(error)
    except Exception:
        log.exception("management request failed")
        return internal_error_response("-")


async def _json_body(request: Request) -> dict[str, Any]:
    return parse_json_object(await read_body(request, MANAGEMENT_BODY_LIMIT))


# --- GET /api/me -----------------------------------------------------------------------------------------------


async def me(runtime: Runtime, request: Request) -> Response:
    async def action(caller: Caller) -> Response:
        settings = runtime.settings
        policy = await runtime.policies.get(caller.id)
        allowed: list[str] | None
        if policy.allowed_deployments is None:
            allowed = sorted(settings.allowed_deployments) if settings.allowed_deployments is not None else None
        elif settings.allowed_deployments is None:
            allowed = sorted(policy.allowed_deployments)
        else:
            allowed = sorted(policy.allowed_deployments & settings.allowed_deployments)
        return JSONResponse({
            "id": caller.id,
            "name": caller.name,
            "tenant": caller.tenant,
            "kind": caller.kind,
            "roles": sorted(caller.roles),
            "auth_method": caller.auth_method,
            "key_id": caller.key_id,
            "can_call_models": caller.has_role(ROLE_USE),
            "allowed_deployments": allowed,  # null: every deployment the gateway serves
            "limits": {
                "max_request_bytes": settings.max_request_bytes,
                "max_prompt_tokens": settings.max_prompt_tokens,
                "max_output_tokens": settings.max_output_tokens,
            },
        })

    return await handle(runtime, request, action)


# --- /api/manage/keys -------------------------------------------------------------------------------------------


def _key_store(runtime: Runtime):
    if runtime.api_keys is None:
        raise not_found("Gateway API keys are disabled (GATEWAY_API_KEYS_ENABLED=false).", code="api_keys_disabled")
    return runtime.api_keys


def _key_owner(admin: Caller, body: dict[str, Any]) -> Caller:
    """The principal a new key acts as: the admin by default, or the named owner (an app or a user)."""
    roles = body.get("roles", [ROLE_USE])
    if not isinstance(roles, list) or not roles or not set(roles) <= KEY_ROLES:
        raise bad_request(f"'roles' must be a non-empty subset of {sorted(KEY_ROLES)}; keys never carry "
                          f"{ROLE_ADMIN}.", param="roles")
    owner = body.get("owner")
    if owner is None:
        granted = frozenset(roles) & admin.roles  # a key never grants more than its owner has
        if not granted:
            raise bad_request("You hold none of the requested roles, so a key for yourself could do nothing.",
                              param="roles")
        return Caller(admin.id, admin.name, admin.tenant, admin.kind, granted, "api-key")
    if not isinstance(owner, dict) or not isinstance(owner.get("id"), str) or not owner["id"].strip():
        raise bad_request("'owner' must be an object with an 'id' (e.g. '<tenant id>/<object id>').", param="owner")
    kind = owner.get("kind", "app")
    if kind not in ("user", "app"):
        raise bad_request("'owner.kind' must be 'user' or 'app'.", param="owner.kind")
    return Caller(owner["id"].strip(), str(owner.get("name") or owner["id"]), owner.get("tenant"), kind,
                  frozenset(roles), "api-key")


def _expiry(body: dict[str, Any]) -> datetime | None:
    days = body.get("expires_in_days", 90)
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_KEY_DAYS:
        raise bad_request(f"'expires_in_days' must be a whole number from 1 to {MAX_KEY_DAYS}, or null.",
                          param="expires_in_days")
    return datetime.now(UTC) + timedelta(days=days)


async def create_key(runtime: Runtime, request: Request) -> Response:
    async def action(caller: Caller) -> Response:
        require_role(caller, ROLE_ADMIN)
        body = await _json_body(request)
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
            raise bad_request("'name' is required (1 to 100 characters), e.g. the tool that will use the key.",
                              param="name")
        issued = await _key_store(runtime).issue(_key_owner(caller, body), name.strip(), _expiry(body))
        return JSONResponse(_jsonable(issued), status_code=201)

    return await handle(runtime, request, action)


async def list_keys(runtime: Runtime, request: Request) -> Response:
    async def action(caller: Caller) -> Response:
        require_role(caller, ROLE_ADMIN)
        owner = request.query_params.get("owner_id")
        keys = await _key_store(runtime).list_keys(owner_id=owner)
        return JSONResponse({"data": [_jsonable(k) for k in keys]})

    return await handle(runtime, request, action)


async def rotate_key(runtime: Runtime, request: Request) -> Response:
    async def action(caller: Caller) -> Response:
        require_role(caller, ROLE_ADMIN)
        rotated = await _key_store(runtime).rotate(request.path_params["key_id"])
        return JSONResponse(_jsonable(rotated))

    return await handle(runtime, request, action)


async def revoke_key(runtime: Runtime, request: Request) -> Response:
    async def action(caller: Caller) -> Response:
        require_role(caller, ROLE_ADMIN)
        await _key_store(runtime).revoke(request.path_params["key_id"])
        return Response(status_code=204)

    return await handle(runtime, request, action)


# --- /api/manage/policies/{tenant}/{principal} -----------------------------------------------------------------------


def _policy_caller_id(request: Request) -> str:
    return f"{request.path_params['tenant']}/{request.path_params['principal']}"


async def get_policy(runtime: Runtime, request: Request) -> Response:
    async def action(caller: Caller) -> Response:
        require_role(caller, ROLE_ADMIN)
        return JSONResponse((await runtime.policies.get(_policy_caller_id(request))).to_json())

    return await handle(runtime, request, action)


async def put_policy(runtime: Runtime, request: Request) -> Response:
    async def action(caller: Caller) -> Response:
        require_role(caller, ROLE_ADMIN)
        policy = CallerPolicy.from_request(_policy_caller_id(request), await _json_body(request))
        await runtime.policies.put(policy)
        log.info("caller policy updated", extra={"gateway_policy_caller": policy.caller_id,
                                                  "gateway_admin": caller.id})
        return JSONResponse(policy.to_json())

    return await handle(runtime, request, action)


def _jsonable(value: Any) -> Any:
    """Dataclasses / dicts from the key store as JSON (datetimes as ISO 8601)."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        value = asdict(value)
    return json.loads(json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)))


# --- GET /api/usage: finance --------------------------------------------------------------------------------------


async def usage(runtime: Runtime, request: Request) -> Response:
    """Usage and cost per group over a date range (UTC days): JSON, or CSV with ``format=csv``."""

    async def action(caller: Caller) -> Response:
        require_role(caller, ROLE_USAGE_READ)
        params = request.query_params
        first, last = parse_range(params.get("from"), params.get("to"))
        groups = parse_grouping(params.get("group_by"))
        rows = await runtime.ledger.rows(first, last, caller_id=params.get("caller_id"))
        summary = summarize(rows, groups)
        if params.get("format") == "csv":
            return Response(to_csv(summary), media_type="text/csv", headers={
                "content-disposition": f'attachment; filename="usage-{first}-{last}.csv"'})
        return JSONResponse({"from": first.isoformat(), "to": last.isoformat(), "group_by": list(groups),
                             "data": summary})

    return await handle(runtime, request, action)
