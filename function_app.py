"""Azure Functions entry point (Python v2 programming model).

Every HTTP function takes the FastAPI ``Request`` of ``azurefunctions-extensions-http-fastapi``: with that
extension imported, HTTP streaming is on for the whole app and plain ``func.HttpRequest`` functions would
fail indexing. Routes sit under the default ``api`` prefix; none is a catch-all, so the host's
by-name route precedence cannot shadow one with another.

The handlers only route; the request path lives in ``shared.pipeline``.
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from shared import management, operations, probes
from shared.runtime import runtime_from_environment

# Settings are read and validated here, at start-up: a bad setting stops indexing with a message naming it.
runtime = runtime_from_environment()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


# --- Azure OpenAI dated API: AzureOpenAI(azure_endpoint="https://<app>/api", api_version=...) ---------------


@app.route(route="openai/deployments/{deployment}/chat/completions", methods=["POST"])
async def deployments_chat_completions(req: Request) -> Response:
    return await runtime.model_call(req, operations.CHAT, req.path_params["deployment"])


@app.route(route="openai/deployments/{deployment}/completions", methods=["POST"])
async def deployments_completions(req: Request) -> Response:
    return await runtime.model_call(req, operations.COMPLETIONS, req.path_params["deployment"])


@app.route(route="openai/deployments/{deployment}/embeddings", methods=["POST"])
async def deployments_embeddings(req: Request) -> Response:
    return await runtime.model_call(req, operations.EMBEDDINGS, req.path_params["deployment"])


@app.route(route="openai/responses", methods=["POST"])
async def dated_responses(req: Request) -> Response:
    return await runtime.model_call(req, operations.RESPONSES)


# --- v1 API: OpenAI(base_url="https://<app>/api/openai/v1"), model = deployment name ------------------------


@app.route(route="openai/v1/chat/completions", methods=["POST"])
async def v1_chat_completions(req: Request) -> Response:
    return await runtime.model_call(req, operations.V1_CHAT)


@app.route(route="openai/v1/embeddings", methods=["POST"])
async def v1_embeddings(req: Request) -> Response:
    return await runtime.model_call(req, operations.V1_EMBEDDINGS)


@app.route(route="openai/v1/responses", methods=["POST"])
async def v1_responses(req: Request) -> Response:
    return await runtime.model_call(req, operations.V1_RESPONSES)


# --- probes ---------------------------------------------------------------------------------------------------


@app.route(route="health", methods=["GET"])
async def health(req: Request) -> Response:
    return probes.health()


@app.route(route="ready", methods=["GET"])
async def ready(req: Request) -> Response:
    return await probes.ready(runtime)


# --- identity and administration ---------------------------------------------------------------------------------


@app.route(route="usage", methods=["GET"])
async def usage(req: Request) -> Response:
    return await management.usage(runtime, req)


@app.route(route="me", methods=["GET"])
async def me(req: Request) -> Response:
    return await management.me(runtime, req)


@app.route(route="manage/keys", methods=["POST"])
async def manage_create_key(req: Request) -> Response:
    return await management.create_key(runtime, req)


@app.route(route="manage/keys", methods=["GET"])
async def manage_list_keys(req: Request) -> Response:
    return await management.list_keys(runtime, req)


@app.route(route="manage/keys/{key_id}/rotate", methods=["POST"])
async def manage_rotate_key(req: Request) -> Response:
    return await management.rotate_key(runtime, req)


@app.route(route="manage/keys/{key_id}", methods=["DELETE"])
async def manage_revoke_key(req: Request) -> Response:
    return await management.revoke_key(runtime, req)


@app.route(route="manage/policies/{tenant}/{principal}", methods=["GET"])
async def manage_get_policy(req: Request) -> Response:
    return await management.get_policy(runtime, req)


@app.route(route="manage/policies/{tenant}/{principal}", methods=["PUT"])
async def manage_put_policy(req: Request) -> Response:
    return await management.put_policy(runtime, req)
