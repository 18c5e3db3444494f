"""The simulator's HTTP surface (a FastAPI app), shaped like Azure OpenAI."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from shared.hosting import running_in_azure
from shared.local.simulator.behaviours import Behaviour, BehaviourBook
from shared.local.simulator.text import (
    chat_prompt_tokens,
    count_tokens,
    count_value_tokens,
    embedding,
    encode_base64,
    reply_tokens,
)
from shared.protocol.api_versions import is_api_version, version_date

DEFAULT_REPLY_TOKENS = 12
DEFAULT_DIMENSIONS = 1536
STREAM_USAGE_SINCE = (2024, 9, 1)
RECORDED_REQUESTS = 200
_FILTER_OK = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


class SimulatorRefused(RuntimeError):
    pass


def create_app(env: dict[str, str] | None = None) -> FastAPI:
    """Build the simulator. Refuses inside Azure App Service/Functions: it must never stand in for a real model."""
    if running_in_azure(env if env is not None else os.environ):
        raise SimulatorRefused(
            "The Azure OpenAI simulator is for local development and tests only and refuses to run in Azure. "
            "Set AZURE_OPENAI_ENDPOINT to the real (private) Azure OpenAI endpoint."
        )
    app = FastAPI(title="Azure OpenAI simulator", docs_url=None, redoc_url=None, openapi_url=None)
    book = BehaviourBook()
    recorded: deque[dict[str, Any]] = deque(maxlen=RECORDED_REQUESTS)
    ids = itertools.count(1)

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

    # --- the Azure OpenAI surface ---------------------------------------------------------------------------

    async def handle(request: Request, operation: str, deployment: str | None, dated: bool) -> Response:
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
        except json.JSONDecodeError:
            return _error(400, "BadRequest", "The request body is not valid JSON.")
        if deployment is None:
            deployment = body.get("model")
            if not isinstance(deployment, str):
                return _error(400, "BadRequest", "'model' is required.")
        recorded.append(
            {
                "path": request.url.path,
                "query": dict(request.query_params),
                "deployment": deployment,
                "body": body,
                "authorization": "bearer" if request.headers.get("authorization") else None,
                "api_key_header": "api-key" in request.headers,
            }
        )
        if "stream_options" in body and dated and not _supports_stream_usage(api_version):
            return _error(400, "BadRequest", "Unrecognized request argument supplied: stream_options")

        behaviour = book.take(deployment)
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

        request_id = f"{next(ids):06d}"
        if operation == "chat.completions":
            reply = _Reply(behaviour, _limit(body, "max_completion_tokens", "max_tokens"))
            prompt = chat_prompt_tokens(body.get("messages") or [])
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return _stream(_chat_chunks(request_id, deployment, prompt, reply, include_usage), behaviour)
            return _json(_chat_completion(request_id, deployment, prompt, reply), behaviour)
        if operation == "completions":
            reply = _Reply(behaviour, _limit(body, "max_tokens"))
            prompt = count_value_tokens(body.get("prompt"))
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return _stream(_completion_chunks(request_id, deployment, prompt, reply, include_usage), behaviour)
            return _json(_completion(request_id, deployment, prompt, reply), behaviour)
        if operation == "embeddings":
            return _json(_embeddings(deployment, body), behaviour)
        reply = _Reply(behaviour, _limit(body, "max_output_tokens"))
        prompt = count_value_tokens(body.get("input")) + count_value_tokens(body.get("instructions"))
        if body.get("stream"):
            return _stream(_response_events(request_id, deployment, prompt, reply), behaviour)
        return _json(_response(request_id, deployment, prompt, reply, "completed"), behaviour)

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

    return app


# --- helpers -----------------------------------------------------------------------------------------------


class _Reply:
    """How many tokens to reply with, and why the reply ends."""

    def __init__(self, behaviour: Behaviour, limit: int | None) -> None:
        wanted = behaviour.completion_tokens or DEFAULT_REPLY_TOKENS
        self.tokens = reply_tokens(min(wanted, limit) if limit else wanted)
        self.finish_reason = "length" if limit is not None and limit < wanted else "stop"

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def _limit(body: dict[str, Any], *fields: str) -> int | None:
    for field in fields:
        value = body.get(field)
        if isinstance(value, int):
            return value
    return None


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


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers={**_headers(), **(headers or {})}
    )


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


def _sse(data: dict[str, Any] | str, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _chat_completion(rid: str, model: str, prompt: int, reply: _Reply) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-sim{rid}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_simulator",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _FILTER_OK}],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text, "refusal": None},
                "finish_reason": reply.finish_reason,
                "logprobs": None,
                "content_filter_results": _FILTER_OK,
            }
        ],
        "usage": _usage(prompt, len(reply.tokens)),
    }


def _chat_chunks(rid: str, model: str, prompt: int, reply: _Reply, include_usage: bool) -> Iterator[str]:
    created = int(time.time())
    base = {
        "id": f"chatcmpl-sim{rid}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_simulator",
    }
    # Azure sends the prompt filter results first, in a chunk with no choices and an empty id and model.
    yield _sse(
        {
            "id": "",
            "object": "",
            "created": 0,
            "model": "",
            "choices": [],
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _FILTER_OK}],
        }
    )
    usage_null = {"usage": None} if include_usage else {}
    yield _sse(
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
            **usage_null,
        }
    )
    for token in reply.tokens:
        yield _sse(
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": token},
                        "finish_reason": None,
                        "content_filter_results": _FILTER_OK,
                    }
                ],
                **usage_null,
            }
        )
    yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}], **usage_null})
    if include_usage:
        yield _sse({**base, "choices": [], "usage": _usage(prompt, len(reply.tokens))})
    yield _sse("[DONE]")


def _completion(rid: str, model: str, prompt: int, reply: _Reply) -> dict[str, Any]:
    return {
        "id": f"cmpl-sim{rid}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": reply.text, "finish_reason": reply.finish_reason, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": len(reply.tokens),
            "total_tokens": prompt + len(reply.tokens),
        },
    }


def _completion_chunks(rid: str, model: str, prompt: int, reply: _Reply, include_usage: bool) -> Iterator[str]:
    base = {"id": f"cmpl-sim{rid}", "object": "text_completion", "created": int(time.time()), "model": model}
    for token in reply.tokens:
        yield _sse({**base, "choices": [{"index": 0, "text": token, "finish_reason": None, "logprobs": None}]})
    yield _sse({**base, "choices": [{"index": 0, "text": "", "finish_reason": reply.finish_reason, "logprobs": None}]})
    if include_usage:
        yield _sse(
            {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": len(reply.tokens),
                    "total_tokens": prompt + len(reply.tokens),
                },
            }
        )
    yield _sse("[DONE]")


def _embeddings(model: str, body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    items = [inputs] if isinstance(inputs, str) else list(inputs or [])
    if items and all(isinstance(i, int) for i in items):
        items = [items]  # one pre-tokenized input
    requested = body.get("dimensions")
    dimensions = requested if isinstance(requested, int) else DEFAULT_DIMENSIONS
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for index, item in enumerate(items):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        tokens += count_tokens(item) if isinstance(item, str) else len(item)
        vector = embedding(text, dimensions)
        data.append(
            {"object": "embedding", "index": index, "embedding": encode_base64(vector) if as_base64 else vector}
        )
    return {"object": "list", "model": model, "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _response(rid: str, model: str, prompt: int, reply: _Reply, status: str) -> dict[str, Any]:
    done = status == "completed"
    return {
        "id": f"resp_sim{rid}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "text": {"format": {"type": "text"}},
        "output": [
            {
                "type": "message",
                "id": f"msg_sim{rid}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
            }
        ]
        if done
        else [],
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": len(reply.tokens),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + len(reply.tokens),
        }
        if done
        else None,
    }


def _response_events(rid: str, model: str, prompt: int, reply: _Reply) -> Iterator[str]:
    seq = itertools.count()
    item_id = f"msg_sim{rid}"
    in_progress = _response(rid, model, prompt, reply, "in_progress")
    yield _sse({"type": "response.created", "sequence_number": next(seq), "response": in_progress}, "response.created")
    yield _sse(
        {"type": "response.in_progress", "sequence_number": next(seq), "response": in_progress}, "response.in_progress"
    )
    item = {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}
    yield _sse(
        {"type": "response.output_item.added", "sequence_number": next(seq), "output_index": 0, "item": item},
        "response.output_item.added",
    )
    part = {"type": "output_text", "text": "", "annotations": []}
    yield _sse(
        {
            "type": "response.content_part.added",
            "sequence_number": next(seq),
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "part": part,
        },
        "response.content_part.added",
    )
    for token in reply.tokens:
        yield _sse(
            {
                "type": "response.output_text.delta",
                "sequence_number": next(seq),
                "item_id": item_id,
                "output_index": 0,
                "content_index": 0,
                "delta": token,
                "logprobs": [],
            },
            "response.output_text.delta",
        )
    yield _sse(
        {
            "type": "response.output_text.done",
            "sequence_number": next(seq),
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "text": reply.text,
            "logprobs": [],
        },
        "response.output_text.done",
    )
    done = _response(rid, model, prompt, reply, "completed")
    yield _sse(
        {
            "type": "response.output_item.done",
            "sequence_number": next(seq),
            "output_index": 0,
            "item": done["output"][0],
        },
        "response.output_item.done",
    )
    yield _sse({"type": "response.completed", "sequence_number": next(seq), "response": done}, "response.completed")
