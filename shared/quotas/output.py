"""How many output tokens a call can be charged for, before it runs (pure: no I/O).

A call generates ``generations`` outputs (``n``, or ``best_of`` on legacy completions), each up to its output
limit, and ``usage`` counts them all. The limit is the caller's (``max_tokens`` / ``max_completion_tokens`` /
``max_output_tokens``); a call that set none is bounded by what the gateway sends upstream in its place for
budgeted callers (D68): the output allowance, lowered to the model's maximum output where that is known, or for
legacy completions Azure's own default of 16 tokens. What the upstream enforces is what is reserved, so a call
can never be charged more than it held.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.protocol.calls import ModelCall
from shared.protocol.models import model_output
from shared.protocol.operations import OperationKind

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # Azure OpenAI legacy completions: max_tokens defaults to 16


@dataclass(frozen=True)
class OutputBound:
    tokens: int  # output tokens the call may be charged for, all generations together
    cap: int | None  # the per-generation limit to send upstream when the call set none (None: it set one)


def output_bound(call: ModelCall, allowance: int) -> OutputBound:
    kind = call.operation.kind
    if call.media is not None:  # images and audio: the bound their guard derived (shared.protocol.media), no cap
        return OutputBound(call.media.bound_output_tokens, None)
    if kind is OperationKind.EMBEDDINGS:
        return OutputBound(0, None)
    if call.max_output_tokens is not None:
        return OutputBound(call.max_output_tokens * call.generations, None)
    if kind is OperationKind.COMPLETIONS:
        cap = COMPLETIONS_DEFAULT_MAX_TOKENS
    else:
        known = model_output(call.model_name)
        cap = min(allowance, known.max_output_tokens) if known is not None else allowance
    return OutputBound(cap * call.generations, cap)
