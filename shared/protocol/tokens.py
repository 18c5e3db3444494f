"""Token estimates for guardrails and for streams that ended without a usage report.

The gateway never downloads tokenizer vocabularies, so before a request it can only estimate. The estimate
is deliberately generous (about 4 bytes of UTF-8 per token, the usual figure for English with BPE
tokenizers; denser scripts count more bytes and so more tokens). Billing-grade counts always come from the
upstream's ``usage``; an estimate is recorded as such.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

BYTES_PER_TOKEN = 4
PER_MESSAGE_OVERHEAD = 4


def tokens_for_bytes(size: int) -> int:
    return -(-size // BYTES_PER_TOKEN)


def estimate_text_tokens(text: str) -> int:
    return tokens_for_bytes(len(text.encode("utf-8"))) if text else 0


def texts_in(value: Any) -> Iterable[str]:
    """Every string inside a JSON value (message contents, content parts, tool arguments, ...).

    Binary payloads such as base64 images are counted like text: an over-estimate, which is the safe side
    for a guardrail.
    """
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from texts_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from texts_in(item)


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """Estimate the prompt of any supported request body (chat, completions, embeddings, responses)."""
    total = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        total += sum(PER_MESSAGE_OVERHEAD + sum(map(estimate_text_tokens, texts_in(m))) for m in messages)
    for key in ("prompt", "input", "instructions", "tools", "functions"):
        if key in body:
            if key == "input" and _is_token_array(body[key]):
                total += _token_array_length(body[key])
            else:
                total += sum(map(estimate_text_tokens, texts_in(body[key])))
    return total


def _is_token_array(value: Any) -> bool:
    # Embeddings accept pre-tokenized input: a list of ints, or a list of lists of ints.
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, int) or (isinstance(v, list) and all(isinstance(i, int) for i in v)) for v in value)
    )


def _token_array_length(value: list[Any]) -> int:
    return sum(len(v) if isinstance(v, list) else 1 for v in value)
