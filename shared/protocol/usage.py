"""Token usage as the upstream reports it, or as estimated when it could not report it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False  # True when the upstream gave no usage (cut-off stream, old api-version)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_usage(usage: Any) -> Usage | None:
    """Read an OpenAI ``usage`` object of any operation (chat/completions/embeddings or responses)."""
    if not isinstance(usage, dict):
        return None
    if "input_tokens" in usage or "output_tokens" in usage:  # Responses API
        return Usage(
            prompt_tokens=_int(usage.get("input_tokens")),
            completion_tokens=_int(usage.get("output_tokens")),
            cached_tokens=_int((usage.get("input_tokens_details") or {}).get("cached_tokens")),
            reasoning_tokens=_int((usage.get("output_tokens_details") or {}).get("reasoning_tokens")),
        )
    return Usage(
        prompt_tokens=_int(usage.get("prompt_tokens")),
        completion_tokens=_int(usage.get("completion_tokens")),
        cached_tokens=_int((usage.get("prompt_tokens_details") or {}).get("cached_tokens")),
        reasoning_tokens=_int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens")),
    )


def usage_from_body(body: Any) -> Usage | None:
    return parse_usage(body.get("usage")) if isinstance(body, dict) else None
