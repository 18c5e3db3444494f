"""Guardrails: what the gateway accepts before anything is reserved or forwarded.

Each check fails with a 4xx OpenAI-shaped error that names the offending parameter; nothing that fails
here reaches the upstream or is recorded as usage.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request

from shared.errors import bad_request, not_found
from shared.json_body import parse_json_object, read_body
from shared.protocol.api_versions import is_api_version
from shared.protocol.calls import ModelCall
from shared.protocol.deployments import is_deployment_name
from shared.protocol.operations import Operation, OperationKind
from shared.protocol.tokens import count_prompt, encoding_for_model
from shared.settings import GuardrailSettings
from shared.stateful.ids import check_object_id, referenced_objects

INLINE_COUNT_BYTES = 64 * 1024
MAX_CHOICES = 128  # OpenAI's bound on ``n``
MAX_BEST_OF = 20  # and on ``best_of`` (legacy completions)


def _excerpt(value: object, limit: int = 40) -> str:
    """A caller's value as echoed in a message: quoted, and short whatever the caller sent."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def check_deployment(name: Any, settings: GuardrailSettings, *, param: str | None = None) -> str:
    if not isinstance(name, str) or not name:
        raise bad_request(
            "A deployment name is required (the 'model' field on the v1 API).", code="missing_model", param=param
        )
    if not is_deployment_name(name):
        raise bad_request(
            "The deployment name may use letters, digits, '.', '_' and '-' only (at most 64 characters).",
            code="invalid_deployment",
            param=param,
        )
    if settings.allowed_deployments is not None and name not in settings.allowed_deployments:
        raise not_found(f"The deployment '{name}' is not available through this gateway.", code="DeploymentNotFound")
    return name


def check_api_version(request: Request, operation: Operation) -> str | None:
    if not operation.style.dated:
        return None
    version = request.query_params.get("api-version")
    if not version:
        raise bad_request(
            "The 'api-version' query parameter is required, e.g. ?api-version=2024-10-21.",
            code="missing_api_version",
            param="api-version",
        )
    if not is_api_version(version):
        raise bad_request(
            f"The api-version {_excerpt(version)} is not a valid Azure OpenAI API version (e.g. 2024-10-21).",
            code="invalid_api_version",
            param="api-version",
        )
    return version


def _check_types(body: dict[str, Any], operation: Operation) -> None:
    if "stream" in body and not isinstance(body["stream"], bool):
        raise bad_request("'stream' must be true or false.", code="invalid_type", param="stream")
    if body.get("stream") and not operation.can_stream:
        raise bad_request(f"{operation.name} does not support streaming.", code="invalid_value", param="stream")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise bad_request("'stream_options' must be an object.", code="invalid_type", param="stream_options")
        if "include_usage" in options and not isinstance(options["include_usage"], bool):
            raise bad_request(
                "'stream_options.include_usage' must be true or false.",
                code="invalid_type",
                param="stream_options.include_usage",
            )
    if operation.kind is OperationKind.CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise bad_request(
                "'messages' must be a non-empty array of message objects.", code="invalid_type", param="messages"
            )
    elif operation.kind is OperationKind.COMPLETIONS:
        if not isinstance(body.get("prompt"), (str, list)):
            raise bad_request("'prompt' must be a string or an array.", code="invalid_type", param="prompt")
    elif operation.kind is OperationKind.EMBEDDINGS:
        value = body.get("input")
        if not isinstance(value, (str, list)) or value in ("", []):
            raise bad_request("'input' must be a non-empty string or array.", code="invalid_type", param="input")
    elif operation.kind is OperationKind.RESPONSES:
        if not isinstance(body.get("input"), (str, list)):
            raise bad_request(
                "'input' must be a string or an array of input items.", code="invalid_type", param="input"
            )


def _check_output_limit(body: dict[str, Any], operation: Operation, settings: GuardrailSettings) -> int | None:
    limit: int | None = None
    for field in operation.output_limit_fields:
        if field not in body or body[field] is None:
            continue
        value = body[field]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad_request(f"'{field}' must be a positive integer.", code="invalid_type", param=field)
        if value > settings.max_output_tokens:
            raise bad_request(
                f"'{field}' is {_excerpt(value)}, above this gateway's ceiling of {settings.max_output_tokens} tokens.",
                code="max_tokens_too_large",
                param=field,
            )
        limit = value if limit is None else min(limit, value)
    return limit


def _positive_count(body: dict[str, Any], field: str, ceiling: int) -> int:
    value = body.get(field)
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ceiling:
        raise bad_request(
            f"'{field}' must be a whole number from 1 to {ceiling}; got {_excerpt(value)}.",
            code="invalid_value",
            param=field,
        )
    return value


def _check_generations(body: dict[str, Any], operation: Operation) -> int:
    """How many outputs the call asks the upstream to generate (each up to the output limit): ``n``, or
    ``best_of`` when larger (legacy completions generate ``best_of`` candidates and return ``n``)."""
    if operation.kind is OperationKind.CHAT:
        return _positive_count(body, "n", MAX_CHOICES)
    if operation.kind is OperationKind.COMPLETIONS:
        n = _positive_count(body, "n", MAX_CHOICES)
        best_of = _positive_count(body, "best_of", MAX_BEST_OF) if body.get("best_of") is not None else n
        if best_of < n:
            raise bad_request(
                f"'best_of' ({best_of}) must be at least 'n' ({n}).", code="invalid_value", param="best_of"
            )
        return max(n, best_of)
    return 1


def _check_stored_fields(body: dict[str, Any], operation: Operation) -> None:
    """``store``, ``background`` and the stored objects a Responses call references: their types, and the shape of
    every id (checked again against its owner before anything is forwarded, shared.stateful.responses).

    A background response runs on after the call returns: it is reserved now and settled when it finishes
    (docs/quotas.md); Azure keeps it to be polled, so it must be stored."""
    if operation.kind is not OperationKind.RESPONSES:
        return
    for name in ("store", "background"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise bad_request(f"'{name}' must be true or false.", code="invalid_type", param=name)
    if body.get("background") is True and body.get("store") is False:
        raise bad_request(
            "A background response must be stored (Azure keeps it for you to poll): drop 'store': false.",
            code="invalid_value",
            param="store",
        )
    for kind, object_id, param in referenced_objects(body):
        check_object_id(kind, object_id, param)
    items = body.get("input")
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict) and item.get("type") == "item_reference":
                # An item of a stored response, named by its id only: the gateway records who owns responses, not
                # each item in them, so it could not tell whether the item is the caller's (docs/stateful.md).
                raise bad_request(
                    "Input items that reference a stored item by id ('item_reference') are not available through "
                    "this gateway; chain the response with 'previous_response_id' or send the item itself.",
                    code="item_reference_not_supported",
                    param=f"input[{index}]",
                )


async def count_prompt_tokens(
    body: dict[str, Any], operation: Operation, deployment: str, settings: GuardrailSettings, *, size: int
) -> int:
    """The prompt's tokens with the deployment's model tokenizer: exact for text, never under for the rest.

    The BPE costs about 0.1-0.2 ms of CPU per KB (up to ~0.4 ms on adversarial text, D24); bodies above
    ``INLINE_COUNT_BYTES`` are counted on a worker thread (tiktoken releases the GIL), so one large prompt does
    not stall every other request on the event loop.
    """
    model = settings.deployment_models.get(deployment, deployment)
    encoding = encoding_for_model(model)
    if size <= INLINE_COUNT_BYTES:
        return count_prompt(operation.kind, body, encoding, model=model)
    return await asyncio.to_thread(count_prompt, operation.kind, body, encoding, model=model)


def guard_body(body: dict[str, Any], operation: Operation, settings: GuardrailSettings) -> ModelCall:
    """The guardrails of :func:`guard` applied to a request body that did not come as an HTTP request of its own (a
    line of a batch input file, where ``model`` names the deployment); the prompt is counted here, inline."""
    deployment = check_deployment(body.get("model"), settings, param="model")
    _check_types(body, operation)
    max_output = _check_output_limit(body, operation, settings)
    generations = _check_generations(body, operation)
    _check_stored_fields(body, operation)
    if body.get("background") is True or any(True for _ in referenced_objects(body)):
        # A batch line runs inside Azure, where the gateway cannot check whose stored object it names.
        raise bad_request(
            "A batch request may not run in the background or reference stored objects (previous_response_id, "
            "conversation, files).",
            code="invalid_value",
        )
    model = settings.deployment_models.get(deployment, deployment)
    prompt_tokens = count_prompt(operation.kind, body, encoding_for_model(model), model=model)
    if prompt_tokens > settings.max_prompt_tokens:
        raise bad_request(
            f"The prompt is {prompt_tokens} tokens, above this gateway's limit of {settings.max_prompt_tokens}.",
            code="prompt_too_large",
        )
    return ModelCall(
        operation=operation,
        deployment=deployment,
        api_version=None,
        body=body,
        stream=False,
        client_wants_stream_usage=False,
        prompt_tokens_estimate=prompt_tokens,
        max_output_tokens=max_output,
        generations=generations,
        model=model,
    )


async def guard(
    request: Request, operation: Operation, settings: GuardrailSettings, deployment: str | None
) -> ModelCall:
    """Apply every guardrail to an incoming model request and describe what to forward."""
    api_version = check_api_version(request, operation)
    raw = await read_body(request, settings.max_request_bytes)
    body = parse_json_object(raw)
    if operation.style.deployment_in_path:
        deployment = check_deployment(deployment, settings)
    else:
        deployment = check_deployment(body.get("model"), settings, param="model")
    _check_types(body, operation)
    max_output = _check_output_limit(body, operation, settings)
    generations = _check_generations(body, operation)
    _check_stored_fields(body, operation)
    prompt_tokens = await count_prompt_tokens(body, operation, deployment, settings, size=len(raw))
    if prompt_tokens > settings.max_prompt_tokens:
        raise bad_request(
            f"The prompt is {prompt_tokens} tokens, above this gateway's limit of {settings.max_prompt_tokens}.",
            code="prompt_too_large",
        )
    stream = bool(body.get("stream", False))
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage", False))
    return ModelCall(
        operation=operation,
        deployment=deployment,
        api_version=api_version,
        body=body,
        stream=stream,
        client_wants_stream_usage=wants_usage,
        prompt_tokens_estimate=prompt_tokens,
        max_output_tokens=max_output,
        generations=generations,
        model=settings.deployment_models.get(deployment, deployment),
    )
