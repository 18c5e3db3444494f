"""Administration: gateway API keys and per-caller policies (``Gateway.Admin``).

Keys can never carry ``Gateway.Admin`` (an API key that could mint more keys would outlive any review of who
holds it). A key for the admin themself, however the owner is spelled, carries only roles the admin holds.
Ids in paths, queries and bodies are validated and made canonical here, before they reach Table Storage.

No ``from __future__ import annotations`` here: the Functions worker reads the handlers' ``Request`` annotation.
"""

import json
import logging
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
from azurefunctions.extensions.http.fastapi import JSONResponse, Request, Response

from shared.auth.apikeys import DEFAULT_KEY_LIFETIME, MAX_KEY_LIFETIME, MAX_KEY_NAME_CHARS, ApiKeyStore
from shared.auth.identity import MAX_NAME_CHARS, ROLE_ADMIN, ROLE_USAGE_READ, ROLE_USE, Caller, canonical_caller_id
from shared.errors import bad_request, not_found
from shared.http.handling import authenticated, json_body, new_blueprint
from shared.policy.authorization import require_role
from shared.policy.callers import CallerPolicy
from shared.runtime import Runtime, Services
from shared.text import is_display_text, well_formed

log = logging.getLogger(__name__)

KEY_ROLES = frozenset({ROLE_USE, ROLE_USAGE_READ})
MAX_KEY_DAYS = MAX_KEY_LIFETIME.days
DEFAULT_KEY_DAYS = DEFAULT_KEY_LIFETIME.days


def blueprint(runtime: Runtime) -> func.Blueprint:
    bp = new_blueprint()

    # --- /api/manage/keys ----------------------------------------------------------------------------------------

    @bp.route(route="manage/keys", methods=["POST"])
    async def manage_create_key(req: Request) -> Response:
        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_ADMIN)
            body = await json_body(req)
            name = body.get("name")
            if isinstance(name, str):
                name = name.strip()
            if not name or not is_display_text(name, MAX_KEY_NAME_CHARS):
                raise bad_request(
                    f"'name' is required (1 to {MAX_KEY_NAME_CHARS} characters on one line, no control or format "
                    "characters), e.g. the tool that will use the key.",
                    param="name",
                )
            owner = _key_owner(caller, body)
            issued = await _key_store(services).issue(owner, name, _expiry(body), issued_by=caller.id)
            log.info(
                "API key issued",
                extra={"gateway_key_id": issued.info.key_id, "gateway_key_owner": owner.id, "gateway_admin": caller.id},
            )
            return JSONResponse(_jsonable(issued), status_code=201)

        return await authenticated(runtime, req, action)

    @bp.route(route="manage/keys", methods=["GET"])
    async def manage_list_keys(req: Request) -> Response:
        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_ADMIN)
            owner_id = req.query_params.get("owner_id")
            if owner_id is not None:
                owner_id = _caller_id(owner_id, param="owner_id")
            keys = await _key_store(services).list_keys(owner_id=owner_id)
            return JSONResponse({"data": [_jsonable(k) for k in keys]})

        return await authenticated(runtime, req, action)

    @bp.route(route="manage/keys/{key_id}/rotate", methods=["POST"])
    async def manage_rotate_key(req: Request) -> Response:
        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_ADMIN)
            rotated = await _key_store(services).rotate(_key_id(req))
            return JSONResponse(_jsonable(rotated))

        return await authenticated(runtime, req, action)

    @bp.route(route="manage/keys/{key_id}", methods=["DELETE"])
    async def manage_revoke_key(req: Request) -> Response:
        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_ADMIN)
            await _key_store(services).revoke(_key_id(req))
            return Response(status_code=204)

        return await authenticated(runtime, req, action)

    # --- /api/manage/policies/{tenant}/{principal} -----------------------------------------------------------------

    @bp.route(route="manage/policies/{tenant}/{principal}", methods=["GET"])
    async def manage_get_policy(req: Request) -> Response:
        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_ADMIN)
            return JSONResponse(well_formed((await services.policies.get(_policy_caller_id(req))).to_json()))

        return await authenticated(runtime, req, action)

    @bp.route(route="manage/policies/{tenant}/{principal}", methods=["PUT"])
    async def manage_put_policy(req: Request) -> Response:
        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_ADMIN)
            policy = CallerPolicy.from_request(_policy_caller_id(req), await json_body(req))
            await services.policies.put(policy)
            log.info(
                "caller policy updated", extra={"gateway_policy_caller": policy.caller_id, "gateway_admin": caller.id}
            )
            return JSONResponse(policy.to_json())

        return await authenticated(runtime, req, action)

    return bp


def _key_store(services: Services) -> ApiKeyStore:
    if services.api_keys is None:
        raise not_found("Gateway API keys are disabled (GATEWAY_API_KEYS_ENABLED=false).", code="api_keys_disabled")
    return services.api_keys


def _key_owner(admin: Caller, body: dict[str, Any]) -> Caller:
    """The principal a new key acts as: the admin by default, or the named owner (an app or a user).

    A key for the admin themself carries only roles the admin holds, whether the owner is left out or named (in
    any spelling: the id is compared canonical). For another principal the admin decides the roles (D9).
    """
    roles = body.get("roles", [ROLE_USE])
    if (
        not isinstance(roles, list)
        or not roles
        or not all(isinstance(r, str) for r in roles)
        or not set(roles) <= KEY_ROLES
    ):
        raise bad_request(
            f"'roles' must be a non-empty subset of {sorted(KEY_ROLES)}; keys never carry {ROLE_ADMIN}.", param="roles"
        )
    owner = body.get("owner")
    if owner is None or (isinstance(owner, dict) and _caller_id(owner.get("id"), param="owner.id") == admin.id):
        granted = frozenset(roles) & admin.roles  # a key never grants more than its owner has
        if not granted:
            raise bad_request(
                "You hold none of the requested roles, so a key for yourself could do nothing.", param="roles"
            )
        return Caller(admin.id, admin.name, admin.tenant, admin.kind, granted, "api-key")
    if not isinstance(owner, dict):
        raise bad_request("'owner' must be an object with an 'id' (e.g. '<tenant id>/<object id>').", param="owner")
    owner_id = _caller_id(owner.get("id"), param="owner.id")
    tenant = owner_id.split("/")[0]
    if owner.get("tenant") is not None and str(owner["tenant"]).lower() != tenant:
        raise bad_request(
            "'owner.tenant' must be the tenant part of 'owner.id' (or be left out).", param="owner.tenant"
        )
    kind = owner.get("kind", "app")
    if kind not in ("user", "app"):
        raise bad_request("'owner.kind' must be 'user' or 'app'.", param="owner.kind")
    name = owner.get("name") or owner_id
    if not is_display_text(name, MAX_NAME_CHARS):
        raise bad_request(
            f"'owner.name' must be one line of at most {MAX_NAME_CHARS} characters without control or format "
            "characters or surrounding spaces.",
            param="owner.name",
        )
    return Caller(owner_id, name, tenant, kind, frozenset(roles), "api-key")


def _caller_id(value: object, *, param: str) -> str:
    """A canonical caller id (lower case ``{tenant}/{object id}``), or 400 naming ``param``."""
    caller_id = canonical_caller_id(value.strip() if isinstance(value, str) else value)
    if caller_id is None:
        raise bad_request(
            f"'{param}' must be a caller id '<tenant id>/<object id>': two parts of 1 to 64 letters, digits, "
            "'.', '_' or '-', e.g. GUIDs.",
            code="invalid_caller_id",
            param=param,
        )
    return caller_id


def _key_id(request: Request) -> str:
    """Key ids are lower-case hex; the store answers 404 for anything that is not one."""
    return str(request.path_params["key_id"]).lower()


def _expiry(body: dict[str, Any]) -> datetime:
    """Every key expires (D9): ``expires_in_days`` 1 to 365, 90 when left out; ``null`` ("never") is refused."""
    days = body.get("expires_in_days", DEFAULT_KEY_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_KEY_DAYS:
        raise bad_request(
            f"'expires_in_days' must be a whole number from 1 to {MAX_KEY_DAYS} (default {DEFAULT_KEY_DAYS}): "
            "every key expires.",
            param="expires_in_days",
        )
    return datetime.now(UTC) + timedelta(days=days)


def _policy_caller_id(request: Request) -> str:
    return _caller_id(f"{request.path_params['tenant']}/{request.path_params['principal']}", param="caller_id")


def _jsonable(value: Any) -> Any:
    """Dataclasses / dicts from the key store as JSON (datetimes as ISO 8601), encodable whatever was stored."""
    if hasattr(value, "to_json"):
        return well_formed(value.to_json())
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    return json.loads(json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)))
