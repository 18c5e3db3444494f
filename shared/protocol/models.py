"""What a model can generate at most, and whether it reasons: the facts that bound what a call can cost.

The gateway caps the output of calls that set no output limit for callers under a token or cost budget (D68): it
sends ``min(allowance, the model's maximum output)`` upstream, so the upstream itself enforces what was reserved.
The maximum matters because Azure answers 400 when a requested limit exceeds what the model can produce (legacy
gpt-35-turbo: 4,096), so a cap above it would turn working calls into errors.

Figures are Microsoft's "Max Output Tokens" column of the Azure OpenAI models page
(https://learn.microsoft.com/azure/ai-foundry/openai/concepts/models, MicrosoftDocs/azure-ai-docs
``articles/ai-services/openai/concepts/models.md``), the same source as the simulator's families (D26). A model
is matched by its name or the longest known prefix (``gpt-4o-2024-08-06`` is ``gpt-4o``); a deployment's model
comes from ``GATEWAY_DEPLOYMENT_MODELS`` (else the deployment's own name). Unknown models: no maximum is assumed
(the allowance alone is sent) and nothing is taken to reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ModelOutput:
    max_output_tokens: int
    reasoning: bool = False  # spends hidden reasoning tokens, counted as output, that no stream delta shows


# Longest prefixes first is not needed: lookups try every prefix of the name from the longest down.
MODELS: dict[str, ModelOutput] = {
    "gpt-35-turbo": ModelOutput(4_096),
    "gpt-35-turbo-instruct": ModelOutput(4_097),
    "gpt-4": ModelOutput(8_192),
    "gpt-4-32k": ModelOutput(8_192),
    "gpt-4-turbo": ModelOutput(4_096),
    "gpt-4o": ModelOutput(16_384),
    "gpt-4o-mini": ModelOutput(16_384),
    "gpt-4.1": ModelOutput(32_768),
    "gpt-4.1-mini": ModelOutput(32_768),
    "gpt-4.1-nano": ModelOutput(32_768),
    "o1": ModelOutput(100_000, reasoning=True),
    "o1-mini": ModelOutput(65_536, reasoning=True),
    "o3": ModelOutput(100_000, reasoning=True),
    "o3-mini": ModelOutput(100_000, reasoning=True),
    "o3-pro": ModelOutput(100_000, reasoning=True),
    "o4-mini": ModelOutput(100_000, reasoning=True),
    "codex-mini": ModelOutput(100_000, reasoning=True),
    "gpt-5": ModelOutput(128_000, reasoning=True),
    "gpt-5-mini": ModelOutput(128_000, reasoning=True),
    "gpt-5-nano": ModelOutput(128_000, reasoning=True),
    "gpt-5-chat": ModelOutput(16_384),
    "gpt-5.1": ModelOutput(128_000, reasoning=True),
    "gpt-5.2": ModelOutput(128_000, reasoning=True),
    "gpt-5.4": ModelOutput(128_000, reasoning=True),
    "gpt-5.4-mini": ModelOutput(128_000, reasoning=True),
    "davinci-002": ModelOutput(16_384),
    "babbage-002": ModelOutput(16_384),
}


def by_model_name(table: Mapping[str, T], model: str) -> T | None:
    """``table``'s entry for ``model``: a model name, possibly dated (``gpt-4o-2024-08-06``), or a deployment named
    after its model; the longest name in the table that ``model`` starts with, cut at ``-``."""
    name = model.lower()
    while name:
        found = table.get(name)
        if found is not None:
            return found
        cut = name.rfind("-")
        if cut <= 0:
            return None
        name = name[:cut]
    return None


def model_output(model: str) -> ModelOutput | None:
    """The facts of ``model`` (a model name, possibly dated, or a deployment named after its model)."""
    return by_model_name(MODELS, model)


def is_reasoning_model(model: str) -> bool:
    found = model_output(model)
    return found is not None and found.reasoning
