"""A local Azure OpenAI simulator: the upstream for local runs and tests, never for Azure.

It speaks the same HTTP as Azure OpenAI for the operations the gateway serves (chat completions with and
without streaming and ``include_usage``, legacy completions, embeddings, responses) for a configured list of
deployments, with deterministic answers of the form the request asks for (tool calls, schema-valid JSON,
n choices, limits, stop sequences, logprobs) so that real client libraries get past their first step, Azure's
errors (DeploymentNotFound, context_length_exceeded, content_filter) in Azure's shapes, and scripted
misbehaviour (429 with ``retry-after``/``retry-after-ms``, 5xx, slow or cut-off streams) through its control
endpoint ``/_simulator/behaviours``.
"""

from shared.local.simulator.app import create_app

__all__ = ["create_app"]
