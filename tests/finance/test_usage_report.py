"""Finance's summaries, CSV and FOCUS exports over daily table rows."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from shared.accounting.prices import Price
from shared.errors import GatewayError
from shared.finance.exports import FOCUS_COLUMNS, FocusContext, focus_records, summary_csv
from shared.finance.usage_report import csv_line, parse_query, summarize, to_csv
from tests.finance.focus_conformance import violations


def row(day: str, caller: str, deployment: str, prompt: int, completion: int, cost: str, **extra) -> dict:
    return {
        "PartitionKey": day,
        "Day": day,
        "Month": day[:7],
        "CallerId": caller,
        "CallerName": caller.upper(),
        "Deployment": deployment,
        "Requests": 2,
        "FailedRequests": 1,
        "PromptTokens": prompt,
        "CompletionTokens": completion,
        "CachedTokens": extra.pop("cached", 0),
        "ReasoningTokens": 0,
        "CostExact": cost,
        "Currency": "USD",
        "PriceVersions": extra.pop("versions", "m@seed-1"),
        "CostCenter": extra.pop("cost_center", "CC-1"),
        "Owner": "Ann",
        "Department": "R&D",
        "Tags": '{"app": "x"}',
    }


ROWS = [
    row("2026-10-31", "t/alice", "m", 100, 10, "0.1"),
    row("2026-11-01", "t/alice", "m", 200, 20, "0.2"),
    row("2026-11-01", "t/bob", "m", 300, 30, "0.3", cost_center="CC-2"),
    row("2026-11-01", "t/bob", "e", 5, 0, "0"),
]


async def rows_of(rows):
    for r in rows:
        yield r


@pytest.mark.parametrize(
    "groups, expected",
    [
        (("caller",), {("t/alice",): "0.3", ("t/bob",): "0.3"}),
        (("month",), {("2026-10",): "0.1", ("2026-11",): "0.5"}),
        (("day", "deployment"), {("2026-10-31", "m"): "0.1", ("2026-11-01", "m"): "0.5", ("2026-11-01", "e"): "0"}),
        (("cost_center",), {("CC-1",): "0.3", ("CC-2",): "0.3"}),
        ((), {(): "0.6"}),
    ],
)
async def test_every_grouping_sums_to_the_same_totals(groups, expected):
    summary = await summarize(rows_of(ROWS), groups)
    names = ["caller_id" if g == "caller" else g for g in groups]
    assert {tuple(r[n] for n in names): r["cost"] for r in summary.rows} == expected
    assert summary.totals.cost == Decimal("0.6") and summary.totals.prompt_tokens == 605
    assert summary.totals.requests == 8 and summary.totals.failed_requests == 4


async def test_grouping_by_caller_carries_the_chargeback_attributes():
    alice = (await summarize(rows_of(ROWS), ("caller",))).rows[0]
    assert (alice["caller_name"], alice["cost_center"], alice["owner"], alice["tags"]) == (
        "T/ALICE",
        "CC-1",
        "Ann",
        {"app": "x"},
    )


def test_csv_fields_are_quoted_and_injection_safe_on_every_line():
    line = csv_line(["=SUM(1+1)", "a\r\nb\tc\x00\u2028", '+1 "x"', "-2", " @cmd", Decimal("0.00001575"), None, 7])
    assert line == '"\'=SUM(1+1)","a  b c  ","\'+1 ""x""","\'-2","\' @cmd","0.00001575","","7"\r\n'
    text = to_csv([{"name": "ok"}, {"name": "=HYPERLINK()"}])
    assert text.splitlines() == ['"name"', '"ok"', '"\'=HYPERLINK()"']


async def test_summary_csv_ends_with_a_totals_row_and_parses_back():
    summary = await summarize(rows_of(ROWS), ("caller", "deployment"))
    parsed = list(csv.DictReader(io.StringIO("".join(summary_csv(summary)))))
    assert parsed[-1]["CallerId"] == "TOTAL" and parsed[-1]["Cost"] == "0.6"
    assert sum(Decimal(r["Cost"]) for r in parsed[:-1]) == Decimal("0.6")
    assert "e" not in parsed[0]["Cost"]  # never scientific notation
    assert list(parsed[0])[:4] == ["CallerId", "CallerName", "CostCenter", "Owner"]  # the daily table's names


CONTEXT = FocusContext.build(None, "https://aoai-swc.openai.azure.com/", "swedencentral", "USD", None)


def focus_file(rows: list[dict], prices: dict) -> tuple[list[str], list[dict[str, str]]]:
    """The export as finance reads it: the CSV text parsed back."""
    text = "".join(
        csv_line(r.get(c) for c in FOCUS_COLUMNS) for row in rows for r in focus_records(row, prices.get, CONTEXT)
    )
    return list(FOCUS_COLUMNS), list(csv.DictReader(io.StringIO(csv_line(FOCUS_COLUMNS) + text)))


def test_focus_splits_by_token_kind_at_list_prices_and_sums_exactly():
    price = Price(Decimal("0.15"), Decimal("0.075"), Decimal("0.6"), "USD", "m@v1")
    cost = (Decimal(60) * Decimal("0.15") + 40 * Decimal("0.075") + 10 * Decimal("0.6")) / 1_000_000
    daily = row("2026-11-01", "t/alice", "m", 100, 10, str(cost), cached=40, versions="m@v1")
    records = focus_records(daily, {"m@v1": price}.get, CONTEXT)
    assert [r["ConsumedQuantity"] for r in records] == [60, 40, 10]
    assert [r["ListUnitPrice"] for r in records] == [Decimal("0.15"), Decimal("0.075"), Decimal("0.6")]
    assert sum(r["BilledCost"] for r in records) == cost
    first = records[0]
    assert (first["ChargePeriodStart"], first["ChargePeriodEnd"]) == ("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z")
    assert (first["BillingPeriodStart"], first["BillingPeriodEnd"]) == ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    assert first["ResourceId"] == "https://aoai-swc.openai.azure.com/openai/deployments/m"
    assert first["PricingUnit"] == "1000000 Tokens" and first["RegionId"] == "swedencentral"


def test_a_caller_tag_cannot_override_the_gateways_cost_center():
    daily = {**row("2026-11-01", "t/alice", "m", 10, 0, "0", versions=""), "Tags": '{"cost_center": "FAKE"}'}
    [record] = focus_records(daily, {}.get, CONTEXT)
    assert record["Tags"] == {
        "cost_center": "FAKE",
        "gateway/cost_center": "CC-1",
        "gateway/owner": "Ann",
        "gateway/department": "R&D",
    }
    assert record["x_CostCenter"] == "CC-1"


def test_the_focus_export_conforms_to_focus_1_2():
    """Every mandatory column present, typed, non-null and formatted, on every kind of row the gateway has: a
    split by token kind, an unpriced deployment, a legacy float cost, a price version no longer known, no tokens."""
    price = Price(Decimal("0.15"), Decimal("0.075"), Decimal("0.6"), "USD", "m@v1")
    rows = [
        row("2026-11-30", "t/alice", "m", 100, 10, "0.000018", cached=40, versions="m@v1"),
        {**row("2026-11-30", "t/alice", "e", 70, 0, "0", versions=""), "Currency": "", "UnpricedRequests": 3},
        row("2026-11-30", "t/bob", "m", 3, 0, "0.0000001", versions="legacy-float"),
        row("2026-12-01", "t/bob", "m", 3, 0, "0.0000001", versions="m@gone"),
        row("2026-12-01", "t/bob", "m", 0, 0, "0", versions="m@v1"),
    ]
    header, records = focus_file(rows, {"m@v1": price})
    assert violations(header, records) == []
    unpriced = [r for r in records if r["ResourceName"] == "e"]
    assert [(r["x_PricingStatus"], r["BillingCurrency"], r["ListUnitPrice"]) for r in unpriced] == [
        ("Unpriced", "USD", "0")
    ]
    assert "unpriced" in unpriced[0]["ChargeDescription"]
    assert sum(Decimal(r["BilledCost"]) for r in records) == Decimal("0.0000182")
    assert sum(int(r["x_Requests"] or 0) for r in records) == 4 * 2  # the row without tokens has no charge


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-13-01"},
        {"from": "20261101"},
        {"month": "2026-1"},
        {"month": "2026-11", "from": "2026-11-01"},
        {"group_by": "caller,caller"},
        {"group_by": "operation"},
        {"caller_id": "a\nb"},
    ],
)
def test_bad_queries_are_refused(params):
    with pytest.raises(GatewayError) as caught:
        parse_query(params)
    assert caught.value.status == 400


def test_a_month_is_its_first_to_last_day():
    query = parse_query({"month": "2026-02", "group_by": "", "cost_center": "CC-1"})
    assert (query.first.isoformat(), query.last.isoformat(), query.groups) == ("2026-02-01", "2026-02-28", ())
    assert query.cost_center == "CC-1"


def test_a_carriage_return_in_a_name_cannot_start_a_row_with_a_formula():
    text = csv_line(["t/mallory", "Mallory\r=1+1"]) + csv_line(["t/eve", "Eve\n@SUM(A1)\r\n+cmd|' /C calc'!A0"])
    lines = text.split("\r\n")[:-1]
    assert len(lines) == 2  # every physical line is one record: no field holds a line break
    assert [row[1] for row in csv.reader(io.StringIO(text))] == ["Mallory =1+1", "Eve @SUM(A1)  +cmd|' /C calc'!A0"]


def test_caller_filters_compare_canonical_ids():
    assert parse_query({"caller_id": "TENANT/Object-1"}).caller_id == "tenant/object-1"
    with pytest.raises(GatewayError) as caught:
        parse_query({"caller_id": "no-slash"})
    assert caught.value.code == "invalid_caller_id"


async def test_totals_only_csv_is_one_total_line():
    """group_by= (totals only): the header and one line marked TOTAL, never the same figures twice."""
    lines = list(summary_csv(await summarize(rows_of(ROWS), ())))
    assert len(lines) == 2
    [total] = list(csv.DictReader(io.StringIO("".join(lines))))
    assert total["Total"] == "TOTAL" and total["Cost"] == "0.6"


async def test_grouping_and_filtering_by_department_owner_and_tag():
    rows = [
        {**row("2026-11-01", "t/alice", "m", 10, 0, "0.1"), "Department": "R&D", "Tags": '{"app": "chat"}'},
        {**row("2026-11-01", "t/bob", "m", 20, 0, "0.2"), "Department": "Sales", "Tags": '{"app": "batch"}'},
        {**row("2026-11-02", "t/carol", "m", 30, 0, "0.4"), "Department": "R&D", "Owner": "Cy", "Tags": "{}"},
    ]
    by_department = await summarize(rows_of(rows), ("department",))
    assert [(r["department"], r["cost"]) for r in by_department.rows] == [("R&D", "0.5"), ("Sales", "0.2")]
    by_tag = await summarize(rows_of(rows), ("tag:app", "owner"))
    assert [(r["tag:app"], r["owner"], r["cost"]) for r in by_tag.rows] == [
        ("", "Cy", "0.4"),
        ("batch", "Ann", "0.2"),
        ("chat", "Ann", "0.1"),
    ]
    by_caller = await summarize(rows_of(rows), ("caller", "department"))
    assert "department" in by_caller.rows[0] and by_caller.rows[0]["cost_center"] == "CC-1"
    query = parse_query({"department": "R&D", "owner": "Cy", "tag": "app:chat:x", "group_by": "tag:app"})
    assert (query.department, query.owner, query.tag, query.groups) == ("R&D", "Cy", ("app", "chat:x"), ("tag:app",))
    for bad in ({"tag": "app"}, {"tag": "1app:x"}, {"group_by": "tag:"}, {"group_by": "tag:a b"}):
        with pytest.raises(GatewayError):
            parse_query(bad)
