"""A model call that passed the guardrails: what to forward and what to expect back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.protocol.media import MediaRequest
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
    max_output_tokens: int | None  # the output limit the caller set (per choice), if any
    # How many outputs the upstream generates, each up to the output limit: ``n`` (chat, completions), or
    # ``best_of`` when larger (completions generate best_of candidates and return n). ``usage`` counts them all.
    generations: int = 1
    model: str = ""  # the deployment's model (GATEWAY_DEPLOYMENT_MODELS), else the deployment name
    # Images and audio: what the call asked for in its own unit (shared.protocol.media); None for text operations.
    media: MediaRequest | None = None
    # A multipart upload (shared.protocol.multipart.Form), re-encoded when forwarded; ``body`` then holds its text
    # fields. Closed by the pipeline once the call has been sent.
    form: Any = field(default=None, compare=False)
    # The stored object the call is about (``responses/{id}``, ``files/{id}``), and query parameters forwarded
    # upstream as they are (list pagination, ``include[]``, ``stream``), each already checked by the route.
    object_id: str | None = None
    query: tuple[tuple[str, str], ...] = ()

    @property
    def model_name(self) -> str:
        return self.model or self.deployment
