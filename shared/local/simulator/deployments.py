"""Which deployments the simulator serves, and what each one's model family implies.

Azure OpenAI answers only for deployments that exist (404 ``DeploymentNotFound`` otherwise), and a
deployment's model decides its tokenizer, its context window and what it can do (chat or embeddings,
whether ``dimensions`` is accepted). The simulator keeps the same facts so that an app developed against
it meets the same limits it will meet in Azure. Figures are from Microsoft's model pages (docs/decisions.md D26).

``SIMULATOR_DEPLOYMENTS`` (JSON object, deployment name -> model family) replaces the default list, e.g.
``{"chat": "gpt-4.1", "embed": "text-embedding-3-large"}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

DEPLOYMENTS_SETTING = "SIMULATOR_DEPLOYMENTS"

Kind = Literal["chat", "embeddings", "images", "transcription", "speech"]


@dataclass(frozen=True)
class ModelFamily:
    name: str
    kind: Kind
    encoding: str  # the tiktoken encoding of the family: o200k_base or cl100k_base
    context_window: int  # tokens the prompt (plus, for chat, the requested completion) may take
    max_output_tokens: int = 0
    dimensions: int = 0  # embeddings: the native vector length
    accepts_dimensions: bool = False  # embeddings: whether ``dimensions`` may shorten the vector
    reasoning: bool = False  # o-series and gpt-5: ``max_completion_tokens`` only, no ``max_tokens``
    max_input_tokens: int | None = None  # where the prompt alone has a lower limit than the window (gpt-5)
    version: str = ""  # the model version a deployment of the family gets by default (docs/decisions.md D71)

    @property
    def input_limit(self) -> int:
        return self.max_input_tokens or self.context_window

    @property
    def reply_name(self) -> str:
        """What Azure OpenAI puts in a reply's ``model``: the model's dated name for families whose versions are
        dates (``gpt-4o-mini-2024-07-18``), the family's name for those whose versions are numbers (embeddings,
        ``gpt-4``, ``gpt-35-turbo``), never the deployment's name."""
        return f"{self.name}-{self.version}" if self.version else self.name


FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in (
        ModelFamily("gpt-4o", "chat", "o200k_base", 128_000, 16_384, version="2024-08-06"),
        ModelFamily("gpt-4o-mini", "chat", "o200k_base", 128_000, 16_384, version="2024-07-18"),
        ModelFamily("gpt-4.1", "chat", "o200k_base", 1_047_576, 32_768, version="2025-04-14"),
        ModelFamily("gpt-4.1-mini", "chat", "o200k_base", 1_047_576, 32_768, version="2025-04-14"),
        ModelFamily("gpt-4.1-nano", "chat", "o200k_base", 1_047_576, 32_768, version="2025-04-14"),
        ModelFamily("o3-mini", "chat", "o200k_base", 200_000, 100_000, reasoning=True, version="2025-01-31"),
        ModelFamily("o4-mini", "chat", "o200k_base", 200_000, 100_000, reasoning=True, version="2025-04-16"),
        ModelFamily(
            "gpt-5",
            "chat",
            "o200k_base",
            400_000,
            128_000,
            reasoning=True,
            max_input_tokens=272_000,
            version="2025-08-07",
        ),
        ModelFamily(
            "gpt-5-mini",
            "chat",
            "o200k_base",
            400_000,
            128_000,
            reasoning=True,
            max_input_tokens=272_000,
            version="2025-08-07",
        ),
        ModelFamily(
            "gpt-5-nano",
            "chat",
            "o200k_base",
            400_000,
            128_000,
            reasoning=True,
            max_input_tokens=272_000,
            version="2025-08-07",
        ),
        ModelFamily("gpt-4", "chat", "cl100k_base", 8_192, 8_192),
        ModelFamily("gpt-35-turbo", "chat", "cl100k_base", 16_385, 4_096),
        ModelFamily(
            "text-embedding-3-small", "embeddings", "cl100k_base", 8_191, dimensions=1536, accepts_dimensions=True
        ),
        ModelFamily(
            "text-embedding-3-large", "embeddings", "cl100k_base", 8_191, dimensions=3072, accepts_dimensions=True
        ),
        ModelFamily("text-embedding-ada-002", "embeddings", "cl100k_base", 8_191, dimensions=1536),
        # Images and audio (shared/local/simulator/media.py): the unit each is counted in is the gateway's fact.
        ModelFamily("dall-e-3", "images", "cl100k_base", 0, version="3.0"),
        ModelFamily("gpt-image-1", "images", "o200k_base", 0, version="2025-04-15"),
        ModelFamily("whisper", "transcription", "cl100k_base", 0, version="001"),
        ModelFamily("gpt-4o-transcribe", "transcription", "o200k_base", 0, version="2025-03-20"),
        ModelFamily("gpt-4o-mini-transcribe", "transcription", "o200k_base", 0, version="2025-03-20"),
        ModelFamily("tts", "speech", "cl100k_base", 0, version="001"),
        ModelFamily("tts-hd", "speech", "cl100k_base", 0, version="001"),
        ModelFamily("gpt-4o-mini-tts", "speech", "o200k_base", 0, version="2025-03-20"),
    )
}

# Deployment name -> model family: what the tests, the README and `make run` use, named after their model as
# most Azure deployments are.
DEFAULT_DEPLOYMENTS: dict[str, str] = {
    name: name
    for name in (
        "gpt-4o-mini",
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.1-mini",
        "o4-mini",
        "gpt-5-mini",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
        "dall-e-3",
        "gpt-image-1",
        "whisper",
        "gpt-4o-transcribe",
        "tts",
        "gpt-4o-mini-tts",
    )
}


@dataclass(frozen=True)
class Deployment:
    name: str
    model: ModelFamily


class DeploymentsError(ValueError):
    pass


def deployments_from(mapping: Mapping[str, str]) -> dict[str, Deployment]:
    """Deployment name -> model family name, checked: unknown families are named in the error."""
    deployments: dict[str, Deployment] = {}
    for name, family in mapping.items():
        if not isinstance(name, str) or not name or not isinstance(family, str):
            raise DeploymentsError(f"{DEPLOYMENTS_SETTING}: each entry maps a deployment name to a model family name")
        if family not in FAMILIES:
            raise DeploymentsError(
                f"{DEPLOYMENTS_SETTING}: deployment {name!r} names an unknown model family {family!r}; "
                f"known: {', '.join(sorted(FAMILIES))}"
            )
        deployments[name] = Deployment(name, FAMILIES[family])
    return deployments


def deployments_from_env(env: Mapping[str, str]) -> dict[str, Deployment]:
    raw = env.get(DEPLOYMENTS_SETTING, "").strip()
    if not raw:
        return deployments_from(DEFAULT_DEPLOYMENTS)
    try:
        mapping = json.loads(raw)
    except json.JSONDecodeError as error:
        raise DeploymentsError(f"{DEPLOYMENTS_SETTING} is not valid JSON: {error}") from None
    if not isinstance(mapping, dict) or not mapping:
        raise DeploymentsError(f"{DEPLOYMENTS_SETTING} must be a non-empty JSON object: deployment -> model family")
    return deployments_from(mapping)
