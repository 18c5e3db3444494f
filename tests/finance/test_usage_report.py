"""Finance's summaries of ledger rows."""

from __future__ import annotations

import csv
import io

import pytest

from shared.finance.usage_report import csv_cell, summarize, to_csv
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
    assert to_csv(summarize(rows, ("deployment",))).splitlines()[0].startswith('"deployment","requests",')


def _sheet(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_a_carriage_return_in_a_name_cannot_start_a_row_with_a_formula():
    rows = [
        record(caller="t/mallory").entity() | {"CallerName": "Mallory\r=1+1"},
        record(caller="t/eve").entity() | {"CallerName": "Eve\n@SUM(A1)\r\n+cmd|' /C calc'!A0"},
        record(caller="t/zed").entity() | {"CallerName": "Zed"},
    ]
    text = to_csv(summarize(rows, ("caller",)))
    # Every physical line is one record: no field holds a line break, so no line can begin inside a field.
    lines = text.splitlines()
    assert len(lines) == 4 and "\r" not in text.replace("\r\n", "")
    for line in lines:
        assert line.startswith('"') and line.endswith('"')  # every field quoted
    names = {row[0]: row[1] for row in _sheet(text)[1:]}
    assert names == {"t/eve": "Eve @SUM(A1)  +cmd|' /C calc'!A0", "t/mallory": "Mallory =1+1", "t/zed": "Zed"}


@pytest.mark.parametrize(
    "value, cell",
    [
        ("=1+1", "'=1+1"),
        ("  =1+1", "'  =1+1"),
        ("\t=1+1", "' =1+1"),
        ("\r=1+1", "' =1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(1)", "'@SUM(1)"),
        ("a\x00b\x7fc\x85d\u2028e", "a b c d e"),
        ("Ada Lovelace", "Ada Lovelace"),
        (12, 12),
        (-0.5, -0.5),
    ],
)
def test_cells_are_one_line_and_never_a_formula(value, cell):
    assert csv_cell(value) == cell
