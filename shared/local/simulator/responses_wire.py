"""The Responses API on the wire: the response object and its stream of typed events.

A function call is an output item of type ``function_call`` (``call_id``, ``name``, ``arguments``); streamed, it
is announced by ``response.output_item.added`` with empty arguments, filled by
``response.function_call_arguments.delta`` events and closed by ``...arguments.done`` and
``response.output_item.done``. A reply cut by ``max_output_tokens`` ends ``incomplete`` with
``incomplete_details.reason = "max_output_tokens"`` (stream: ``response.incomplete``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

from shared.local.simulator.chat_wire import sse
from shared.local.simulator.replies import Ask, Choice, logprobs_for


def _status(choice: Choice) -> str:
    return "incomplete" if choice.finish_reason == "length" else "completed"


def _logprobs(pieces: tuple[str, ...] | list[str], ask: Ask) -> list[dict[str, Any]]:
    """Output text logprobs, when ``include`` asks for ``message.output_text.logprobs``."""
    return [logprobs_for(p, f"{ask.seed}:0", ask.top_logprobs) for p in pieces] if ask.logprobs else []


def _output(rid: str, ask: Ask, choice: Choice) -> list[dict[str, Any]]:
    if choice.tool_calls:
        return [
            {
                "type": "function_call",
                "id": f"fc_sim{rid}_{position}",
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
                "status": "completed",
            }
            for position, call in enumerate(choice.tool_calls)
        ]
    return [
        {
            "type": "message",
            "id": f"msg_sim{rid}",
            "status": _status(choice),
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": choice.content or "",
                    "annotations": [],
                    "logprobs": _logprobs(choice.pieces, ask),
                }
            ],
        }
    ]


def response(
    rid: str, model: str, prompt: int, body: dict[str, Any], ask: Ask, choice: Choice, status: str | None = None
) -> dict[str, Any]:
    final = status is None
    status = status or _status(choice)
    text = body.get("text") if isinstance(body.get("text"), dict) else {}
    return {
        "id": f"resp_sim{rid}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "temperature": 1.0,
        "top_p": 1.0,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "text": {"format": (text or {}).get("format") or {"type": "text"}},
        "output": _output(rid, ask, choice) if final else [],
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": choice.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": choice.reasoning_tokens},
            "total_tokens": prompt + choice.completion_tokens,
        }
        if final
        else None,
    }


def response_events(rid: str, model: str, prompt: int, body: dict[str, Any], ask: Ask, choice: Choice) -> Iterator[str]:
    seq = itertools.count()

    def event(kind: str, **fields: Any) -> str:
        return sse({"type": kind, "sequence_number": next(seq), **fields}, kind)

    started = response(rid, model, prompt, body, ask, choice, status="in_progress")
    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    done = response(rid, model, prompt, body, ask, choice)
    for output_index, item in enumerate(done["output"]):
        if item["type"] == "function_call":
            call = choice.tool_calls[output_index]
            yield event(
                "response.output_item.added",
                output_index=output_index,
                item={**item, "arguments": "", "status": "in_progress"},
            )
            for piece in call.pieces:
                yield event(
                    "response.function_call_arguments.delta", item_id=item["id"], output_index=output_index, delta=piece
                )
            yield event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=output_index,
                name=call.name,
                arguments=call.arguments,
            )
            yield event("response.output_item.done", output_index=output_index, item=item)
            continue
        yield event(
            "response.output_item.added",
            output_index=output_index,
            item={**item, "status": "in_progress", "content": []},
        )
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        where = {"item_id": item["id"], "output_index": output_index, "content_index": 0}
        yield event("response.content_part.added", **where, part=part)
        for piece in choice.pieces:
            yield event("response.output_text.delta", **where, delta=piece, logprobs=_logprobs([piece], ask))
        yield event(
            "response.output_text.done", **where, text=choice.content or "", logprobs=_logprobs(choice.pieces, ask)
        )
        yield event("response.content_part.done", **where, part=item["content"][0])
        yield event("response.output_item.done", output_index=output_index, item=item)
    yield event(f"response.{done['status']}", response=done)
