"""The OpenAI-compatible operations the gateway serves, and where each goes upstream."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote


class ApiStyle(StrEnum):
    """Where the deployment and the api-version go."""

    DEPLOYMENTS = "deployments"  # dated API, deployment in the path: /openai/deployments/{d}/...?api-version=
    DATED = "dated"  # dated API, deployment as the body's "model": /openai/responses?api-version=
    V1 = "v1"  # v1 API, deployment as the body's "model", no api-version: /openai/v1/...

    @property
    def deployment_in_path(self) -> bool:
        return self is ApiStyle.DEPLOYMENTS

    @property
    def dated(self) -> bool:
        return self is not ApiStyle.V1


@dataclass(frozen=True)
class Operation:
    name: str  # for logs and usage records: "chat.completions", "embeddings", ...
    path: str  # below the deployment (dated API) or below /openai/v1
    style: ApiStyle
    # Body fields that cap the output, in the order the upstream honours them.
    output_limit_fields: tuple[str, ...] = ()
    can_stream: bool = True

    def upstream_path(self, deployment: str) -> str:
        """Path below the Azure OpenAI endpoint's ``/openai`` root (``/v1`` is part of the v1 client's base URL)."""
        if self.style.deployment_in_path:
            return f"/deployments/{quote(deployment, safe='')}/{self.path}"
        return f"/{self.path}"


_CHAT_LIMITS = ("max_completion_tokens", "max_tokens")

CHAT = Operation("chat.completions", "chat/completions", ApiStyle.DEPLOYMENTS, _CHAT_LIMITS)
COMPLETIONS = Operation("completions", "completions", ApiStyle.DEPLOYMENTS, ("max_tokens",))
EMBEDDINGS = Operation("embeddings", "embeddings", ApiStyle.DEPLOYMENTS, can_stream=False)
RESPONSES = Operation("responses", "responses", ApiStyle.DATED, ("max_output_tokens",))

V1_CHAT = Operation("chat.completions", "chat/completions", ApiStyle.V1, _CHAT_LIMITS)
V1_EMBEDDINGS = Operation("embeddings", "embeddings", ApiStyle.V1, can_stream=False)
V1_RESPONSES = Operation("responses", "responses", ApiStyle.V1, ("max_output_tokens",))
