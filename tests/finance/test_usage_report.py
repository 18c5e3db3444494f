"""Finance's summaries of ledger rows."""

from __future__ import annotations

from shared.finance.usage_report import summarize, to_csv
from tests.accounting.test_ledger import record


def test_summaries_count_failures_estimates_and_unpriced_calls():
    rows = [
        record(prompt=10, completion=5, cost=0.5).entity(),
        record(prompt=1, completion=0, cost=None).entity(),
        record(prompt=0, completion=0, cost=None, status=429).entity(),
        record(prompt=3, completion=2, cost=0.25, estimated=True).entity(),
        record(caller="t/bob", prompt=7, completion=7, cost=1.0).entity(),
    ]
    summary = {r["caller_id"]: r for r in summarize(rows, ("caller",))}
    alice = summary["t/alice"]
    assert (alice["requests"], alice["failed_requests"], alice["estimated_requests"]) == (4, 1, 1)
    assert (alice["prompt_tokens"], alice["completion_tokens"], alice["total_tokens"]) == (14, 7, 21)
    assert (alice["cost_usd"], alice["unpriced_requests"]) == (0.75, 1)  # the 429 had no tokens to price
    assert summary["t/bob"]["caller_name"] == "T/BOB"
    assert to_csv(summarize(rows, ("deployment",))).splitlines()[0].startswith("deployment,requests,")
