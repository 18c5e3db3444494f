"""A model call that passed the guardrails: what to forward and what to expect back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.protocol.operations import Operation


@dataclass(frozen=True)
class ModelCall:
    operation: Operation
    deployment: str
    api_version: str | None  # None on the v1 API
    body: dict[str, Any]
    stream: bool
    client_wants_stream_usage: bool
    prompt_tokens_estimate: int
    max_output_tokens: int | None
