"""``GET /api/me``: who the gateway thinks the caller is, and what it may do.

No ``from __future__ import annotations`` here: the Functions worker reads the handlers' ``Request`` annotation.
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import JSONResponse, Request, Response

from shared.auth.identity import ROLE_USE, Caller
from shared.http.handling import authenticated, new_blueprint
from shared.policy.authorization import allowed_deployments
from shared.runtime import Runtime, Services
from shared.text import well_formed


def blueprint(runtime: Runtime) -> func.Blueprint:
    bp = new_blueprint()

    @bp.route(route="me", methods=["GET"])
    async def me(req: Request) -> Response:
        async def action(services: Services, caller: Caller) -> Response:
            guardrails = services.settings.guardrails
            usable = allowed_deployments(await services.policies.get(caller.id), guardrails)
            allowed = sorted(usable) if usable is not None else None
            return JSONResponse(
                well_formed(
                    {
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
                            "max_request_bytes": guardrails.max_request_bytes,
                            "max_prompt_tokens": guardrails.max_prompt_tokens,
                            "max_output_tokens": guardrails.max_output_tokens,
                        },
                        # Per-caller quotas in their current UTC windows: limit, used, remaining, resets_at.
                        "quotas": await services.quotas.status(caller),
                    }
                )  # whatever was stored before names were cleaned, the answer encodes
            )

        return await authenticated(runtime, req, action)

    return bp
