"""A local Azure OpenAI simulator: the upstream for local runs and tests, never for Azure.

It speaks the same HTTP as Azure OpenAI for the operations the gateway serves (chat completions with and
without streaming and ``include_usage``, legacy completions, embeddings, responses) with deterministic
token counts, and can be told to misbehave (429 with ``retry-after``/``retry-after-ms``, 5xx, slow or
cut-off streams) through its control endpoint ``/_simulator/behaviours``.
"""

from shared.local.simulator.app import create_app

__all__ = ["create_app"]
