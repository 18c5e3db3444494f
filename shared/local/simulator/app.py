"""The simulator's HTTP surface (a FastAPI app), shaped like Azure OpenAI.

Routes, the control surface (``/_simulator/behaviours``, ``/_simulator/requests``) and the order Azure checks a
request in: authentication, api-version, JSON, the deployment (404 ``DeploymentNotFound`` for one that is not
configured), the operation the deployment's model supports, then scripted faults, then the request itself
(reading.py) and the answer (replies.py, chat_wire.py, responses_wire.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import secrets
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from shared.hosting import running_in_azure
from shared.local.simulator import (
    azure_errors,
    chat_wire,
    files_batches,
    media,
    reading,
    responses_wire,
    stored_responses,
)
from shared.local.simulator.azure_errors import AzureError
from shared.local.simulator.behaviours import Behaviour, BehaviourBook
from shared.local.simulator.deployments import Deployment, deployments_from, deployments_from_env
from shared.local.simulator.replies import DEFAULT_REPLY_TOKENS, Counter, answer
from shared.local.simulator.schema_values import SchemaTooLarge
from shared.local.simulator.stored_responses import ResponseStore
from shared.local.simulator.text import count_tokens, embedding, encode_base64
from shared.protocol.api_versions import is_api_version, version_date
from shared.protocol.tokens import Encoding

STREAM_USAGE_SINCE = (2024, 9, 1)
RECORDED_REQUESTS = 200
MAX_EMBEDDING_INPUTS = 2048
_OPERATION_NAMES = {
    "chat.completions": "chatCompletion",
    "completions": "completion",
    "embeddings": "embeddings",
    "responses": "responses",
}
logger = logging.getLogger(__name__)


class SimulatorRefused(RuntimeError):
    pass


def create_app(env: Mapping[str, str] | None = None, deployments: Mapping[str, str] | None = None) -> FastAPI:
    """Build the simulator. Refuses inside Azure App Service/Functions: it must never stand in for a real model.

    ``deployments`` (deployment name -> model family) replaces the list from ``SIMULATOR_DEPLOYMENTS`` or the defaults.
    """
    environment = env if env is not None else os.environ
    if running_in_azure(environment):
        raise SimulatorRefused(
            "The Azure OpenAI simulator is for local development and tests only and refuses to run in Azure. "
            "Set AZURE_OPENAI_ENDPOINT to the real (private) Azure OpenAI endpoint."
        )
    served: dict[str, Deployment] = (
        deployments_from(deployments) if deployments is not None else deployments_from_env(environment)
    )
    app = FastAPI(title="Azure OpenAI simulator", docs_url=None, redoc_url=None, openapi_url=None)
    book = BehaviourBook()
    recorded: deque[dict[str, Any]] = deque(maxlen=RECORDED_REQUESTS)
    ids = itertools.count(1)
    stored = ResponseStore()  # this account's stored responses

    # --- control surface for tests and demos ------------------------------------------------------------

    @app.get("/_simulator/behaviours")
    async def list_behaviours() -> list[dict[str, Any]]:
        return book.list()

    @app.post("/_simulator/behaviours", status_code=201)
    async def add_behaviour(behaviour: Behaviour) -> dict[str, Any]:
        book.add(behaviour)
        return behaviour.model_dump()

    @app.delete("/_simulator/behaviours", status_code=204)
    async def clear_behaviours() -> Response:
        book.clear()
        return Response(status_code=204)

    @app.get("/_simulator/requests")
    async def list_requests() -> list[dict[str, Any]]:
        return list(recorded)

    @app.delete("/_simulator/requests", status_code=204)
    async def clear_requests() -> Response:
        recorded.clear()
        return Response(status_code=204)

    @app.get("/_simulator/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/_simulator/deployments")
    async def list_deployments() -> dict[str, Any]:
        return {
            name: {
                "model": d.model.name,
                "reply_model": d.model.reply_name,
                "context_window": d.model.context_window,
                "encoding": d.model.encoding,
            }
            for name, d in served.items()
        }

    # --- the Azure OpenAI surface ---------------------------------------------------------------------------

    async def handle(request: Request, operation: str, deployment_name: str | None, dated: bool) -> Response:
        if not request.headers.get("authorization", "").lower().startswith("bearer "):
            return _error(
                401,
                "PermissionDenied",
                "Access denied: this resource accepts Microsoft Entra tokens only (local auth is disabled).",
            )
        api_version = request.query_params.get("api-version")
        if dated and (not api_version or not is_api_version(api_version)):
            return _error(400, "BadRequest", "Missing or invalid api-version query parameter.")
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, or nesting past the parser's own limit
            return _error(400, "BadRequest", "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return _azure(azure_errors.invalid_request("The request body must be a JSON object.", None, "invalid_type"))
        try:
            reading.check_nesting(body)  # before anything walks it, the request log's JSON encoder included
        except AzureError as error:
            return _azure(error)
        if deployment_name is None:
            deployment_name = body.get("model")
            if not isinstance(deployment_name, str):
                return _azure(
                    azure_errors.invalid_request(
                        "Missing required parameter: 'model'.", "model", "missing_required_parameter"
                    )
                )
        entry: dict[str, Any] = {
            "path": request.url.path,
            "query": dict(request.query_params),
            "deployment": deployment_name,
            "body": body,
            "authorization": "bearer" if request.headers.get("authorization") else None,
            "api_key_header": "api-key" in request.headers,
            "client_request_id": request.headers.get("x-ms-client-request-id"),
            "usage": None,  # what the answer generated, set once it is known (even if a fault cuts it off)
        }
        recorded.append(entry)
        deployment = served.get(deployment_name)
        if deployment is None:
            return _azure(azure_errors.deployment_not_found())
        if deployment.model.kind != ("embeddings" if operation == "embeddings" else "chat"):
            return _azure(azure_errors.operation_not_supported(_OPERATION_NAMES[operation], deployment.model.name))
        if "stream_options" in body and dated and not _supports_stream_usage(api_version):
            return _error(400, "BadRequest", "Unrecognized request argument supplied: stream_options")

        behaviour = book.take(deployment_name)
        if behaviour.first_byte_delay_ms:
            await asyncio.sleep(behaviour.first_byte_delay_ms / 1000)
        if behaviour.fault == "429":
            return _rate_limited(behaviour, operation, api_version)
        if behaviour.fault in ("500", "503"):
            return _error(
                int(behaviour.fault),
                "InternalServerError" if behaviour.fault == "500" else "ServiceUnavailable",
                "The simulator was told to fail this request.",
            )
        try:
            return _answer(operation, body, deployment, behaviour, f"{next(ids):06d}", entry, stored)
        except AzureError as error:
            return _azure(error)
        except SchemaTooLarge as error:
            return _azure(azure_errors.invalid_request(f"Invalid schema: {error}.", None, "invalid_value"))
        except Exception as error:  # a body shape nothing above foresaw: still Azure's 400, never a 500
            logger.warning("simulator could not answer a %s request: %s", operation, type(error).__name__)
            return _azure(
                azure_errors.invalid_request(
                    f"The simulator could not process this request ({type(error).__name__}).", None, None
                )
            )

    @app.post("/openai/deployments/{deployment}/chat/completions")
    async def chat(deployment: str, request: Request) -> Response:
        return await handle(request, "chat.completions", deployment, dated=True)

    @app.post("/openai/deployments/{deployment}/completions")
    async def completions(deployment: str, request: Request) -> Response:
        return await handle(request, "completions", deployment, dated=True)

    @app.post("/openai/deployments/{deployment}/embeddings")
    async def embeddings(deployment: str, request: Request) -> Response:
        return await handle(request, "embeddings", deployment, dated=True)

    @app.post("/openai/responses")
    async def responses(request: Request) -> Response:
        return await handle(request, "responses", None, dated=True)

    @app.post("/openai/v1/chat/completions")
    async def v1_chat(request: Request) -> Response:
        return await handle(request, "chat.completions", None, dated=False)

    @app.post("/openai/v1/embeddings")
    async def v1_embeddings(request: Request) -> Response:
        return await handle(request, "embeddings", None, dated=False)

    @app.post("/openai/v1/responses")
    async def v1_responses(request: Request) -> Response:
        return await handle(request, "responses", None, dated=False)

    def answer_line(operation: str, body: dict[str, Any], deployment_name: str) -> tuple[int, dict[str, Any]]:
        """A batch line, answered as the same live call would be (same usage), without scripted faults."""
        deployment = served.get(deployment_name)
        if deployment is None:
            return 404, azure_errors.deployment_not_found().body
        if (deployment.model.kind == "embeddings") != (operation == "embeddings"):
            return 400, azure_errors.operation_not_supported(_OPERATION_NAMES[operation], deployment.model.name).body
        try:
            reply = _answer(
                operation, {**body, "stream": False}, deployment, Behaviour(), f"{next(ids):06d}", {}, stored
            )
        except AzureError as error:
            return error.status, error.body
        except Exception as error:  # noqa: BLE001 - a line nothing foresaw is that line's 400, never the batch's 500
            return 400, azure_errors.invalid_request(f"The line could not be processed ({type(error).__name__}).").body
        return reply.status_code, json.loads(bytes(reply.body))

    files_batches.register(app, book, recorded, answer_line)

    # --- stored responses and models (stored_responses.py) ------------------------------------------------------

    def stored_call(request: Request, action: str, response_id: str | None, dated: bool) -> Response | None:
        """Authentication, api-version and the request log for the routes without a body; None: go on."""
        if not request.headers.get("authorization", "").lower().startswith("bearer "):
            return _error(401, "PermissionDenied", "Access denied: this resource accepts Microsoft Entra tokens only.")
        api_version = request.query_params.get("api-version")
        if dated and (not api_version or not is_api_version(api_version)):
            return _error(400, "BadRequest", "Missing or invalid api-version query parameter.")
        recorded.append(
            {
                "path": request.url.path,
                "method": request.method,
                "query": dict(request.query_params),
                "deployment": stored.deployment_of(response_id) if response_id else None,
                "action": action,
                "response_id": response_id,
                "body": None,
                "authorization": "bearer",
                "api_key_header": "api-key" in request.headers,
                "client_request_id": request.headers.get("x-ms-client-request-id"),
                "usage": None,
            }
        )
        return None

    async def on_stored(request: Request, action: str, response_id: str | None, dated: bool) -> Response:
        refused = stored_call(request, action, response_id, dated)
        if refused is not None:
            return refused
        try:
            if action == "models":
                return JSONResponse(stored_responses.models_list(served), headers=_headers())
            assert response_id is not None
            if action == "retrieve":
                if request.query_params.get("stream") == "true":
                    after = request.query_params.get("starting_after")
                    events = list(stored.replay(response_id, int(after) if after and after.isdigit() else None))
                    return _stream(events, Behaviour())
                return JSONResponse(stored.retrieve(response_id), headers=_headers())
            if action == "delete":
                return JSONResponse(stored.delete(response_id), headers=_headers())
            if action == "cancel":
                return JSONResponse(stored.cancel(response_id), headers=_headers())
            limit, order, after = stored_responses.list_params(dict(request.query_params))
            return JSONResponse(stored.input_items(response_id, limit, order, after), headers=_headers())
        except AzureError as error:
            return _azure(error)

    for prefix, dated in (("/openai", True), ("/openai/v1", False)):

        def routes(prefix: str = prefix, dated: bool = dated) -> None:
            @app.get(f"{prefix}/responses/{{response_id}}")
            async def retrieve(response_id: str, request: Request) -> Response:
                return await on_stored(request, "retrieve", response_id, dated)

            @app.delete(f"{prefix}/responses/{{response_id}}")
            async def delete(response_id: str, request: Request) -> Response:
                return await on_stored(request, "delete", response_id, dated)

            @app.post(f"{prefix}/responses/{{response_id}}/cancel")
            async def cancel(response_id: str, request: Request) -> Response:
                return await on_stored(request, "cancel", response_id, dated)

            @app.get(f"{prefix}/responses/{{response_id}}/input_items")
            async def input_items(response_id: str, request: Request) -> Response:
                return await on_stored(request, "input_items", response_id, dated)

            @app.get(f"{prefix}/models")
            async def models(request: Request) -> Response:
                return await on_stored(request, "models", None, dated)

        routes()

    @app.delete("/_simulator/responses", status_code=204)
    async def clear_responses() -> Response:
        stored.clear()
        return Response(status_code=204)

    media.register(app, served, book, recorded, _azure)  # images and audio
    return app


# --- answering ---------------------------------------------------------------------------------------------


def _answer(
    operation: str,
    body: dict[str, Any],
    deployment: Deployment,
    behaviour: Behaviour,
    rid: str,
    entry: dict[str, Any],
    stored: ResponseStore,
) -> Response:
    model = deployment.model.reply_name  # as Azure names the model in replies, not the deployment
    reply_tokens = behaviour.completion_tokens or DEFAULT_REPLY_TOKENS
    stream = body.get("stream") is True
    include_usage = isinstance(body.get("stream_options"), dict) and body["stream_options"].get("include_usage") is True
    if operation == "embeddings":
        vectors = _embeddings(deployment, body)
        entry["usage"] = {"prompt_tokens": vectors["usage"]["prompt_tokens"], "completion_tokens": 0}
        return _json(vectors, behaviour)
    if operation == "chat.completions":
        ask, prompt = reading.chat_ask(body, deployment, reply_tokens)
        choices = answer(ask, _count(deployment))
        entry["usage"] = _generated(prompt, choices)
        if stream:
            return _stream(chat_wire.chat_chunks(rid, model, prompt, ask, choices, include_usage), behaviour)
        return _json(chat_wire.chat_completion(rid, model, prompt, ask, choices), behaviour)
    if operation == "completions":
        ask, prompt = reading.completions_ask(body, deployment, reply_tokens)
        choices = answer(ask, _count(deployment))
        entry["usage"] = _generated(prompt, choices)
        if stream:
            return _stream(chat_wire.completion_chunks(rid, model, prompt, ask, choices, include_usage), behaviour)
        return _json(chat_wire.completion(rid, model, prompt, ask, choices), behaviour)
    stored.check_previous(body)
    ask, prompt = reading.responses_ask(body, deployment, reply_tokens)
    [choice] = answer(ask, _count(deployment))
    entry["usage"] = _generated(prompt, [choice])
    rid = secrets.token_hex(20)  # ids as random as Azure's: two accounts never make the same one
    final = responses_wire.response(rid, model, prompt, body, ask, choice)
    name = str(body.get("model") or "")
    if stream:
        events = list(responses_wire.response_events(rid, model, prompt, body, ask, choice))
        stored.keep(final, body, name, background_steps=behaviour.background_steps, events=events)
        return _stream(events, behaviour)
    background = body.get("background") is True
    events = list(responses_wire.response_events(rid, model, prompt, body, ask, choice)) if background else []
    created = stored.keep(final, body, name, background_steps=behaviour.background_steps, events=events)
    return _json(created, behaviour)


def _generated(prompt: int, choices: list[Any]) -> dict[str, int]:
    """The usage the whole answer reports (the request log's record, for tests that compare it with the ledger)."""
    return {"prompt_tokens": prompt, "completion_tokens": sum(choice.completion_tokens for choice in choices)}


def _count(deployment: Deployment) -> Counter:
    """The token counter for a deployment: its model family's encoding, as Azure counts."""
    encoding = Encoding(deployment.model.encoding)
    return lambda text: count_tokens(text, encoding)


def _embeddings(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    family = deployment.model
    inputs = body.get("input")
    if isinstance(inputs, str):
        items: list[Any] = [inputs]
    elif isinstance(inputs, list) and inputs and all(isinstance(i, int) and not isinstance(i, bool) for i in inputs):
        items = [inputs]  # one pre-tokenized input
    elif isinstance(inputs, list) and inputs:
        items = inputs
    else:
        raise azure_errors.invalid_request(
            "'input' must be a non-empty string, an array of strings or an array of token arrays.",
            "input",
            "invalid_value",
        )
    if len(items) > MAX_EMBEDDING_INPUTS:
        raise azure_errors.invalid_request(
            f"Too many inputs. The max number of inputs is {MAX_EMBEDDING_INPUTS}.", "input", "invalid_value"
        )
    requested = body.get("dimensions")
    if requested is not None:
        if not family.accepts_dimensions:
            raise azure_errors.invalid_request(
                "This model does not support specifying dimensions.", "dimensions", "invalid_value"
            )
        if isinstance(requested, bool) or not isinstance(requested, int) or not 1 <= requested <= family.dimensions:
            raise azure_errors.invalid_request(
                f"Invalid value for 'dimensions': it must be an integer between 1 and {family.dimensions}.",
                "dimensions",
                "invalid_value",
            )
    dimensions = requested or family.dimensions
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise azure_errors.invalid_request(
            "Invalid value for 'encoding_format': expected 'float' or 'base64'.", "encoding_format", "invalid_value"
        )
    data = []
    tokens = 0
    for index, item in enumerate(items):
        if isinstance(item, str):
            text, count = item, _count(deployment)(item)
        elif isinstance(item, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            text, count = " ".join(map(str, item)), len(item)
        else:
            raise azure_errors.invalid_request(
                f"Invalid type for 'input[{index}]': expected a string or an array of integers.",
                f"input[{index}]",
                "invalid_type",
            )
        if count > family.input_limit:
            raise azure_errors.context_length_exceeded(family.input_limit, count, None, "input")
        reading.check_content_filter(text)
        tokens += count
        vector = embedding(text, dimensions, salt=family.name)
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": encode_base64(vector) if encoding == "base64" else vector,
            }
        )
    return {
        "object": "list",
        "model": family.reply_name,
        "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _supports_stream_usage(api_version: str | None) -> bool:
    return api_version is not None and is_api_version(api_version) and version_date(api_version) >= STREAM_USAGE_SINCE


def _headers() -> dict[str, str]:
    return {
        "apim-request-id": str(uuid.uuid4()),
        "x-request-id": str(uuid.uuid4()),
        "x-ms-region": "Local Simulator",
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "599",
        "x-ratelimit-limit-tokens": "100000",
        "x-ratelimit-remaining-tokens": "99000",
    }


def _azure(error: AzureError) -> JSONResponse:
    return JSONResponse(error.body, status_code=error.status, headers={**_headers(), **error.headers})


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return _azure(AzureError(status, {"error": {"code": code, "message": message}}, headers or {}))


def _rate_limited(behaviour: Behaviour, operation: str, api_version: str | None) -> JSONResponse:
    seconds = behaviour.retry_after_seconds
    millis = behaviour.retry_after_ms if behaviour.retry_after_ms is not None else seconds * 1000
    return _error(
        429,
        "429",
        f"Requests to the {operation} operation under Azure OpenAI API version {api_version or 'v1'} have exceeded "
        f"the token rate limit of the simulated deployment. Please retry after {seconds} seconds.",
        headers={
            "retry-after": str(seconds),
            "retry-after-ms": str(millis),
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-requests": f"{seconds}s",
            "x-ratelimit-reset-tokens": f"{seconds}s",
        },
    )


def _json(payload: dict[str, Any], behaviour: Behaviour) -> Response:
    if behaviour.fault == "cutoff":
        encoded = json.dumps(payload).encode()

        async def half() -> AsyncIterator[bytes]:
            yield encoded[: len(encoded) // 2]
            raise ConnectionAbortedError("simulated cut-off")

        return StreamingResponse(half(), media_type="application/json", headers=_headers())
    return JSONResponse(payload, headers=_headers())


def _stream(events: Iterable[str], behaviour: Behaviour) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        sent = 0
        for event in events:
            if behaviour.fault == "cutoff" and sent >= behaviour.cutoff_after_chunks:
                # Drop the connection mid-stream: no [DONE], no usage chunk, an incomplete chunked body.
                raise ConnectionAbortedError("simulated cut-off")
            if sent and behaviour.chunk_delay_ms:
                await asyncio.sleep(behaviour.chunk_delay_ms / 1000)
            yield event.encode()
            sent += 1

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={**_headers(), "cache-control": "no-cache"}
    )
