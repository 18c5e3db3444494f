"""Chat and legacy completions on the wire: JSON bodies and SSE chunks as Azure OpenAI sends them.

Streams follow Azure's order: a first chunk with only ``prompt_filter_results`` (empty id and model), then per
choice a role chunk, content or tool-call deltas (a tool call's first delta carries its index, id, type and
name with empty arguments; later deltas carry argument fragments under the same index), a final chunk with
``finish_reason``, and with ``include_usage`` a last chunk with no choices and the usage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from shared.local.simulator.replies import Ask, Choice, logprobs_for

FILTER_OK = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


def sse(data: dict[str, Any] | str, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


def usage(prompt: int, choices: list[Choice]) -> dict[str, Any]:
    completion = sum(c.completion_tokens for c in choices)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": sum(c.reasoning_tokens for c in choices)},
    }


def _completion_tokens(choices: list[Choice]) -> int:
    return sum(c.completion_tokens for c in choices)


def _logprobs(choice: Choice, ask: Ask) -> dict[str, Any] | None:
    if not ask.logprobs:
        return None
    seed = f"{ask.seed}:{choice.index}"
    content = [logprobs_for(p, seed, ask.top_logprobs) for p in choice.pieces] if choice.pieces else None
    return {"content": content, "refusal": None}


def _message(choice: Choice) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.content, "refusal": None}
    if choice.tool_calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in choice.tool_calls
        ]
    return message


def chat_completion(rid: str, model: str, prompt: int, ask: Ask, choices: list[Choice]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-sim{rid}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_simulator",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTER_OK}],
        "choices": [
            {
                "index": choice.index,
                "message": _message(choice),
                "finish_reason": choice.finish_reason,
                "logprobs": _logprobs(choice, ask),
                "content_filter_results": FILTER_OK,
            }
            for choice in choices
        ],
        "usage": usage(prompt, choices),
    }


def chat_chunks(
    rid: str, model: str, prompt: int, ask: Ask, choices: list[Choice], include_usage: bool
) -> Iterator[str]:
    base = {
        "id": f"chatcmpl-sim{rid}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_simulator",
    }
    usage_null = {"usage": None} if include_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": index, "delta": delta, "finish_reason": finish, **extra}
        return sse({**base, "choices": [choice], **usage_null})

    # Azure sends the prompt filter results first, in a chunk with no choices and an empty id and model.
    yield sse(
        {
            "id": "",
            "object": "",
            "created": 0,
            "model": "",
            "choices": [],
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTER_OK}],
        }
    )
    for choice in choices:
        if choice.tool_calls:
            first = choice.tool_calls[0]
            yield chunk(
                choice.index,
                {"role": "assistant", "content": None, "tool_calls": [_call_head(0, first)]},
                logprobs=None,
            )
            for position, call in enumerate(choice.tool_calls):
                if position:
                    yield chunk(choice.index, {"tool_calls": [_call_head(position, call)]}, logprobs=None)
                for piece in call.pieces:
                    yield chunk(
                        choice.index,
                        {"tool_calls": [{"index": position, "function": {"arguments": piece}}]},
                        logprobs=None,
                    )
        else:
            yield chunk(choice.index, {"role": "assistant", "content": ""}, logprobs=None)
            seed = f"{ask.seed}:{choice.index}"
            for piece in choice.pieces:
                logprobs = (
                    {"content": [logprobs_for(piece, seed, ask.top_logprobs)], "refusal": None}
                    if ask.logprobs
                    else None
                )
                yield chunk(choice.index, {"content": piece}, content_filter_results=FILTER_OK, logprobs=logprobs)
        yield chunk(choice.index, {}, choice.finish_reason, logprobs=None)
    if include_usage:
        yield sse({**base, "choices": [], "usage": usage(prompt, choices)})
    yield sse("[DONE]")


def _call_head(position: int, call: Any) -> dict[str, Any]:
    return {"index": position, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}


def _legacy_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _legacy_logprobs(
    pieces: tuple[str, ...] | list[str], seed: str, ask: Ask, offset: int = 0
) -> dict[str, Any] | None:
    """Legacy completions' logprobs: parallel lists of tokens, their logprobs, top alternatives and text offsets."""
    if not ask.logprobs:
        return None
    entries = [logprobs_for(p, seed, ask.top_logprobs) for p in pieces]
    offsets = []
    for piece in pieces:
        offsets.append(offset)
        offset += len(piece)
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
        "text_offset": offsets,
    }


def completion(rid: str, model: str, prompt: int, ask: Ask, choices: list[Choice]) -> dict[str, Any]:
    return {
        "id": f"cmpl-sim{rid}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": c.index,
                "text": c.content or "",
                "finish_reason": c.finish_reason,
                "logprobs": _legacy_logprobs(c.pieces, f"{ask.seed}:{c.index}", ask),
            }
            for c in choices
        ],
        "usage": _legacy_usage(prompt, _completion_tokens(choices)),
    }


def completion_chunks(
    rid: str, model: str, prompt: int, ask: Ask, choices: list[Choice], include_usage: bool
) -> Iterator[str]:
    base = {"id": f"cmpl-sim{rid}", "object": "text_completion", "created": int(time.time()), "model": model}
    for choice in choices:
        offset = 0
        for piece in choice.pieces:
            logprobs = _legacy_logprobs([piece], f"{ask.seed}:{choice.index}", ask, offset)
            offset += len(piece)
            yield sse(
                {
                    **base,
                    "choices": [{"index": choice.index, "text": piece, "finish_reason": None, "logprobs": logprobs}],
                }
            )
        yield sse(
            {
                **base,
                "choices": [
                    {"index": choice.index, "text": "", "finish_reason": choice.finish_reason, "logprobs": None}
                ],
            }
        )
    if include_usage:
        yield sse({**base, "choices": [], "usage": _legacy_usage(prompt, _completion_tokens(choices))})
    yield sse("[DONE]")
