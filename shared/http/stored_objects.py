"""Routes about stored objects and what a caller may call: stored responses (retrieve, delete, cancel, input items),
the models list, and Realtime's refusal; dated and v1, as Azure OpenAI names them (docs/decisions.md).

Creating a response stays a model call (shared/http/model_calls.py); what happens here lives in shared/stateful.

No ``from __future__ import annotations`` here: the Functions worker reads the handlers' ``Request`` annotation.
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import JSONResponse, Request, Response

from shared.auth.identity import ROLE_USE, Caller
from shared.errors import GatewayError, current_request_id, not_found
from shared.http.handling import authenticated, new_blueprint
from shared.policy.authorization import allowed_deployments, require_role
from shared.policy.guard import check_api_version
from shared.protocol import operations
from shared.protocol.calls import ModelCall
from shared.protocol.deployments import is_deployment_name
from shared.protocol.operations import Operation
from shared.runtime import Runtime, Services
from shared.settings.sections import ANY_DEPLOYMENT

OWNER = "azure-openai-gateway"  # ``owned_by`` of every listed deployment


def blueprint(runtime: Runtime) -> func.Blueprint:
    bp = new_blueprint()

    async def stored_response(req: Request, operation: Operation) -> Response:
        async def action(services: Services, caller: Caller) -> Response:
            response_id = req.path_params["response_id"]
            return await services.stored_responses.call(req, caller, operation, response_id)

        return await authenticated(runtime, req, action)

    # --- stored responses: dated (?api-version=) and v1 -------------------------------------------------------

    @bp.route(route="openai/responses/{response_id}", methods=["GET", "DELETE"])
    async def dated_response(req: Request) -> Response:
        get = req.method == "GET"
        return await stored_response(req, operations.RESPONSES_RETRIEVE if get else operations.RESPONSES_DELETE)

    @bp.route(route="openai/responses/{response_id}/cancel", methods=["POST"])
    async def dated_response_cancel(req: Request) -> Response:
        return await stored_response(req, operations.RESPONSES_CANCEL)

    @bp.route(route="openai/responses/{response_id}/input_items", methods=["GET"])
    async def dated_response_input_items(req: Request) -> Response:
        return await stored_response(req, operations.RESPONSES_INPUT_ITEMS)

    @bp.route(route="openai/v1/responses/{response_id}", methods=["GET", "DELETE"])
    async def v1_response(req: Request) -> Response:
        get = req.method == "GET"
        return await stored_response(req, operations.V1_RESPONSES_RETRIEVE if get else operations.V1_RESPONSES_DELETE)

    @bp.route(route="openai/v1/responses/{response_id}/cancel", methods=["POST"])
    async def v1_response_cancel(req: Request) -> Response:
        return await stored_response(req, operations.V1_RESPONSES_CANCEL)

    @bp.route(route="openai/v1/responses/{response_id}/input_items", methods=["GET"])
    async def v1_response_input_items(req: Request) -> Response:
        return await stored_response(req, operations.V1_RESPONSES_INPUT_ITEMS)

    # --- models: the deployments this caller may use, in OpenAI's list shape ----------------------------------

    async def models(req: Request, operation: Operation, model: str | None = None) -> Response:
        async def action(services: Services, caller: Caller) -> Response:
            require_role(caller, ROLE_USE)
            api_version = check_api_version(req, operation)
            policy = await services.policies.get(caller.id)
            allowed = allowed_deployments(policy, services.settings.guardrails)
            names = sorted(allowed if allowed is not None else known_deployments(services))
            call = ModelCall(operation, ANY_DEPLOYMENT, api_version, {}, False, False, 0, None)
            request_id = current_request_id()
            if model is not None:
                if model not in names:
                    await services.gateway.accounting.record_request(caller, call, request_id, 404, outcome="refused")
                    raise not_found(f"The model '{model}' does not exist or you do not have access to it.")
                names = [model]
            await services.gateway.accounting.record_request(caller, call, request_id, 200, outcome="completed")
            data = [{"id": name, "object": "model", "created": 0, "owned_by": OWNER} for name in names]
            return JSONResponse(data[0] if model is not None else {"object": "list", "data": data})

        return await authenticated(runtime, req, action)

    @bp.route(route="openai/models", methods=["GET"])
    async def dated_models(req: Request) -> Response:
        return await models(req, operations.MODELS)

    @bp.route(route="openai/v1/models", methods=["GET"])
    async def v1_models(req: Request) -> Response:
        return await models(req, operations.V1_MODELS)

    @bp.route(route="openai/v1/models/{model}", methods=["GET"])
    async def v1_model(req: Request) -> Response:
        model = req.path_params["model"]
        if not is_deployment_name(model):
            raise not_found("The model does not exist or you do not have access to it.")
        return await models(req, operations.V1_MODELS, model)

    # --- Realtime: WebSockets cannot pass through Functions HTTP ----------------------------------------------

    async def realtime(req: Request) -> Response:
        raise GatewayError(
            400,
            "The Realtime API needs a WebSocket (or WebRTC) connection, which Azure Functions HTTP triggers cannot "
            "carry, so this gateway does not serve it. Use the Responses or Chat Completions API (streamed), or "
            "connect to Realtime another way your operator provides.",
            code="realtime_not_supported",
        )

    @bp.route(route="openai/realtime", methods=["GET", "POST"])
    async def dated_realtime(req: Request) -> Response:
        return await realtime(req)

    @bp.route(route="openai/v1/realtime", methods=["GET", "POST"])
    async def v1_realtime(req: Request) -> Response:
        return await realtime(req)

    @bp.route(route="openai/v1/realtime/{operation}", methods=["GET", "POST"])
    async def v1_realtime_operation(req: Request) -> Response:
        return await realtime(req)

    return bp


def known_deployments(services: Services) -> set[str]:
    """Without an allowlist, the deployments the gateway's settings name: backend pools, the model map, prices."""
    settings = services.settings
    names = {name for name in settings.upstream.pools if name != ANY_DEPLOYMENT}
    names |= set(settings.guardrails.deployment_models)
    names |= {name for name in services.prices if name != ANY_DEPLOYMENT}
    return {name for name in names if is_deployment_name(name)}
