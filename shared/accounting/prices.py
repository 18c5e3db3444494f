"""Prices per deployment, to turn token counts into cost at the moment a call is recorded.

``GATEWAY_PRICES`` is JSON: ``{"<deployment>": {"input": 0.15, "cached_input": 0.075, "output": 0.60}}`` in
US dollars per million tokens (``cached_input`` defaults to ``input``). The cost is computed when the call
settles and stored with the call, so a later price change never re-prices history. Deployments without a
price are recorded with no cost (``null``), not with zero.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal

from shared.protocol.usage import Usage

PER_TOKENS = 1_000_000


class PriceError(ValueError):
    pass


@dataclass(frozen=True)
class Price:
    input: float
    cached_input: float
    output: float

    def cost_nano_usd(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> int:
        """The cost in whole billionths of a dollar, rounded up: exact integers for quota budgets."""
        cached = min(cached_tokens, prompt_tokens)
        micro_usd_per_million = (  # USD per million tokens x 10^9 nano-USD per USD / 10^6 tokens
            (prompt_tokens - cached) * Decimal(str(self.input))
            + cached * Decimal(str(self.cached_input))
            + completion_tokens * Decimal(str(self.output))
        ) * 1000
        return math.ceil(micro_usd_per_million)

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        return (
            (usage.prompt_tokens - cached) * self.input
            + cached * self.cached_input
            + usage.completion_tokens * self.output
        ) / PER_TOKENS


def parse_prices(text: str | None) -> dict[str, Price]:
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise PriceError(f"is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise PriceError('must be a JSON object such as {"gpt-4o-mini": {"input": 0.15, "output": 0.6}}')
    prices = {}
    for deployment, entry in raw.items():
        if not isinstance(entry, dict) or not {"input", "output"} <= entry.keys():
            raise PriceError(f"needs 'input' and 'output' (USD per million tokens) for {deployment!r}")
        values = {
            k: entry.get(k, entry["input"] if k == "cached_input" else None)
            for k in ("input", "cached_input", "output")
        }
        numbers = {k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        if len(numbers) != len(values) or not all(0 <= v < math.inf for v in numbers.values()):
            raise PriceError(f"prices for {deployment!r} must be finite numbers, 0 or more")
        prices[deployment] = Price(numbers["input"], numbers["cached_input"], numbers["output"])
    return prices
