"""Finance end to end against its own Azurite: traffic across callers, deployments and days (a month boundary and a
price change included), then the ledger, the daily table, ``/api/usage`` in every grouping, the CSV, the FOCUS
export and the CLI all equal what the upstream reported, to the token and to the last decimal of the cost; and the
dashboard in headless Chromium (Debian ``chromium``, no network but the local gateway) shows the figures of
``/api/usage``. ``.ci/run`` installs chromium; without it the browser tests skip and say so."""

from __future__ import annotations

import asyncio
import base64
import csv
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from pathlib import Path

import httpx
import openai
import pytest
from azure.data.tables.aio import TableServiceClient

from shared.accounting.ledger import UsageLedger, UsageRecord
from shared.accounting.prices import Price, PriceBook, PriceVersion, parse_prices, version_id
from shared.finance.daily import integer
from shared.finance.usage_report import ledger_rows
from shared.storage.tables import DAILY_USAGE_TABLE, PRICES_TABLE, USAGE_TABLE
from tests.azurite import ROOT, Azurite
from tests.finance.focus_conformance import violations

pytestmark = pytest.mark.e2e
PRICES = (
    '{"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.6},'
    ' "text-embedding-3-small": {"input": 0.02, "output": 0}}'
)
HELLO = [{"role": "user", "content": "Hello there, finance!"}]
TYPO = "gpt-4o-tpyo"  # a mistyped deployment: calls answered 404, no usage
TODAY = datetime.now(UTC).date()
# The first day of last month: the past traffic straddles its start, a month boundary, and is well in the past.
BOUNDARY = (TODAY.replace(day=1) - timedelta(days=1)).replace(day=1)
PAST_DAYS = [BOUNDARY - timedelta(days=2), BOUNDARY - timedelta(days=1), BOUNDARY, BOUNDARY + timedelta(days=1)]
PRICE_CHANGE = datetime.combine(BOUNDARY - timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=12)
FIRST, LAST = PAST_DAYS[0], TODAY
CHARGEBACK = {
    "alice": {"cost_center": "CC-100", "owner": "Ann", "department": "Research", "tags": {"app": "chat"}},
    "bob": {"cost_center": "CC-200", "owner": "=Bob", "department": "Sales", "tags": {}},
    "carol": {"cost_center": "CC-100", "owner": "Cy", "department": "Research", "tags": {"env": "prod"}},
}


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = (
    "Debian's chromium is not installed (`make browser` or `apt-get install -y chromium`; .ci/run installs it)"
)
NOW = datetime.now(UTC)
LAST_MONTH = BOUNDARY.strftime("%Y-%m")
SCREENSHOT_DIR = Path(os.environ.get("TMPDIR", "/tmp"))


@dataclass(frozen=True)
class Fact:
    """What the upstream reported for one call, and its cost at the price in force."""

    day: str
    caller: str
    deployment: str
    prompt: int
    completion: int
    cached: int
    cost: Decimal
    failed: bool = False


@pytest.fixture(scope="module")
def finance(simulator, tmp_path_factory):
    storage = Azurite().start()
    tenant = f"fin-{uuid.uuid4().hex[:8]}"
    callers = {name: f"{tenant}/{name}" for name in CHARGEBACK}
    # A price change in the past, stored before the gateway starts (the admin endpoint refuses past versions).
    book = PriceBook(parse_prices(PRICES), None)
    changed = PriceVersion(
        "gpt-4o-mini",
        PRICE_CHANGE,
        Price(Decimal("0.3"), Decimal("0.1"), Decimal("1.2"), "USD", version_id("gpt-4o-mini", PRICE_CHANGE)),
    )
    facts = asyncio.run(_past_traffic(storage.connection_string, callers, changed))
    process_env = {
        "GATEWAY_LEDGER_JOURNAL_DIR": str(tmp_path_factory.mktemp("finance-journal")),
        "AZURE_OPENAI_ENDPOINT": simulator.url,
        "GATEWAY_STORAGE_CONNECTION_STRING": storage.connection_string,
        "GATEWAY_LOCAL_DEV_AUTH": "true",
        "GATEWAY_PRICES": PRICES,
        "GATEWAY_DEFAULT_COST_USD_PER_MONTH": "5",  # a budget for the dashboard's budget burn
    }
    from tests.gateway_process import GatewayProcess

    gateway = GatewayProcess(process_env).start()
    try:
        for name, caller_id in callers.items():
            response = httpx.put(f"{gateway.api}/manage/policies/{caller_id}", json=CHARGEBACK[name])
            assert response.status_code == 200, response.text
        facts += _live_traffic(gateway, callers, changed.price)
        _wait_for_ledger(storage.connection_string, len(facts))
        yield gateway, storage, callers, facts, book
    finally:
        gateway.stop()
        storage.stop()


async def _past_traffic(connection: str, callers: dict[str, str], changed: PriceVersion) -> list[Fact]:
    """Rows settled on past days, written by the ledger writer with chosen times, priced as settle prices them."""
    facts = []
    async with TableServiceClient.from_connection_string(connection) as service:
        for name in (USAGE_TABLE, PRICES_TABLE):
            await service.create_table_if_not_exists(name)
        book = PriceBook(parse_prices(PRICES), service.get_table_client(PRICES_TABLE))
        await book.add(changed)
        ledger = UsageLedger(service.get_table_client(USAGE_TABLE), flush_seconds=60)
        n = 0
        for day in PAST_DAYS:
            for hour in (1, 11, 13, 23):
                for name, caller_id in callers.items():
                    for deployment in ("gpt-4o-mini", "text-embedding-3-small", "gpt-4.1"):
                        n += 1
                        at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=hour, minutes=n % 60)
                        prompt, completion, cached = (
                            100 + n,
                            (7 * n) % 50 if "embedding" not in deployment else 0,
                            n % 30,
                        )
                        failed = n % 17 == 0
                        if failed:
                            prompt = completion = cached = 0
                        price = book.at(deployment, at)
                        cost = price.cost_of(prompt, completion, cached) if price else None
                        await ledger.record(
                            _record(caller_id, name, deployment, at, prompt, completion, cached, price, cost, failed)
                        )
                        facts.append(
                            Fact(
                                day.isoformat(),
                                caller_id,
                                deployment,
                                prompt,
                                completion,
                                cached,
                                cost or Decimal(0),
                                failed,
                            )
                        )
            typo_at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=11)
            record = _record(callers["alice"], "alice", TYPO, typo_at, 0, 0, 0, None, None, True)
            await ledger.record(dataclasses.replace(record, status=404))
            facts.append(Fact(day.isoformat(), callers["alice"], TYPO, 0, 0, 0, Decimal(0), True))
        assert await ledger.flush(30)
        await ledger.close()
    return facts


def _record(caller_id, name, deployment, at, prompt, completion, cached, price, cost, failed) -> UsageRecord:
    return UsageRecord(
        request_id=str(uuid.uuid4()),
        at=at,
        caller_id=caller_id,
        caller_name=name.title(),
        tenant=caller_id.split("/")[0],
        auth_method="api-key",
        key_id=None,
        operation="chat.completions",
        deployment=deployment,
        stream=False,
        status=429 if failed else 200,
        outcome="upstream_error" if failed else "completed",
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        reasoning_tokens=0,
        estimated=False,
        cost_usd=float(cost) if cost is not None else None,
        duration_ms=3,
        cost=str(cost) if cost is not None else None,
        currency=price.currency if price else None,
        price_version=price.version if price else None,
        cost_center=CHARGEBACK[name]["cost_center"],  # fixed at settlement, as the gateway does
        owner=CHARGEBACK[name]["owner"],
        department=CHARGEBACK[name]["department"],
        tags=json.dumps(CHARGEBACK[name]["tags"]) if CHARGEBACK[name]["tags"] else "",
    )


def _live_traffic(gateway, callers: dict[str, str], price_now: Price) -> list[Fact]:
    """Today's calls through the gateway with the official SDK; the usage is what the upstream answered."""
    facts = []
    embedding_price = parse_prices(PRICES)["text-embedding-3-small"]
    for name, caller_id in callers.items():
        key = _key(gateway, caller_id, name.title(), ["Gateway.Use"])
        client = openai.AzureOpenAI(azure_endpoint=gateway.api, api_key=key, api_version="2024-10-21", max_retries=0)
        for stream in (False, True):
            if stream:
                chunks = list(
                    client.chat.completions.create(
                        model="gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True}
                    )
                )
                usage = next(c.usage for c in reversed(chunks) if c.usage)
            else:
                usage = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO).usage
            cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
            cached = cached or 0
            cost = price_now.cost_of(usage.prompt_tokens, usage.completion_tokens, cached)
            facts.append(
                Fact(
                    TODAY.isoformat(),
                    caller_id,
                    "gpt-4o-mini",
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    cached,
                    cost,
                )
            )
        embedding = client.embeddings.create(model="text-embedding-3-small", input="one two three " * (len(name)))
        cost = embedding_price.cost_of(embedding.usage.prompt_tokens, 0)
        facts.append(
            Fact(TODAY.isoformat(), caller_id, "text-embedding-3-small", embedding.usage.prompt_tokens, 0, 0, cost)
        )
    return facts


def _key(gateway, owner_id: str, name: str, roles: list[str]) -> str:
    response = httpx.post(
        f"{gateway.api}/manage/keys",
        json={"name": "finance test", "owner": {"id": owner_id, "name": name, "kind": "app"}, "roles": roles},
    )
    assert response.status_code == 201, response.text
    return response.json()["key"]


def _wait_for_ledger(connection: str, rows: int) -> None:
    async def count() -> int:
        async with TableServiceClient.from_connection_string(connection) as service:
            return len(await ledger_rows(service.get_table_client(USAGE_TABLE), FIRST, LAST))

    deadline = time.monotonic() + 15
    while (found := asyncio.run(count())) < rows and time.monotonic() < deadline:
        time.sleep(0.2)
    assert found == rows


def _rebuild(gateway) -> list[dict]:
    """Rebuild FIRST..LAST as finance would: a job (202 + status URL) polled until done; its reports per day."""
    response = httpx.post(
        f"{gateway.api}/manage/usage/rebuild", json={"from": FIRST.isoformat(), "to": LAST.isoformat()}, timeout=60
    )
    assert response.status_code in (200, 202), response.text
    job = response.json()
    deadline = time.monotonic() + 600
    while job["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
        job = httpx.get(job["status_url"], timeout=30).json()
    assert job["status"] == "done", job
    assert job["days"] == job["days_done"] == (LAST - FIRST).days + 1
    return job["data"]


def _expected(facts: list[Fact], key) -> dict[tuple, dict]:
    sums: dict[tuple, dict] = defaultdict(
        lambda: {"requests": 0, "failed": 0, "prompt": 0, "completion": 0, "cached": 0, "cost": Decimal(0)}
    )
    for fact in facts:
        total = sums[key(fact)]
        total["requests"] += 1
        total["failed"] += fact.failed
        total["prompt"] += fact.prompt
        total["completion"] += fact.completion
        total["cached"] += fact.cached
        total["cost"] += fact.cost
    return dict(sums)


def _from_api(rows: list[dict], key) -> dict[tuple, dict]:
    return {
        key(row): {
            "requests": row["requests"],
            "failed": row["failed_requests"],
            "prompt": row["prompt_tokens"],
            "completion": row["completion_tokens"],
            "cached": row["cached_tokens"],
            "cost": Decimal(row["cost"]),
        }
        for row in rows
    }


GROUPINGS = {
    "caller": (lambda f: (f.caller,), lambda r: (r["caller_id"],)),
    "deployment": (lambda f: (f.deployment,), lambda r: (r["deployment"],)),
    "day": (lambda f: (f.day,), lambda r: (r["day"],)),
    "month": (lambda f: (f.day[:7],), lambda r: (r["month"],)),
    "cost_center": (
        lambda f: (CHARGEBACK[f.caller.split("/")[1]]["cost_center"],),
        lambda r: (r["cost_center"],),
    ),
    "caller,deployment,day": (
        lambda f: (f.caller, f.deployment, f.day),
        lambda r: (r["caller_id"], r["deployment"], r["day"]),
    ),
    "": (lambda f: (), lambda r: ()),
}


def test_every_view_equals_the_ledger_and_the_upstream(finance):
    gateway, storage, callers, facts, _ = finance
    _rebuild(gateway)
    everything = _expected(facts, lambda f: ())[()]
    assert everything["cost"] > 0 and len({f.day[:7] for f in facts}) >= 2

    async def tables() -> tuple[list[dict], list[dict]]:
        async with TableServiceClient.from_connection_string(storage.connection_string) as service:
            ledger = await ledger_rows(service.get_table_client(USAGE_TABLE), FIRST, LAST)
            daily = [dict(e) async for e in service.get_table_client(DAILY_USAGE_TABLE).list_entities()]
            return ledger, daily

    ledger, daily = asyncio.run(tables())
    by_caller_deployment_day = _expected(facts, lambda f: (f.caller, f.deployment, f.day))
    ledger_sums = _expected(
        [
            Fact(
                r["PartitionKey"][:10],
                r["CallerId"],
                r["Deployment"],
                r["PromptTokens"],
                r["CompletionTokens"],
                r["CachedTokens"],
                Decimal(r.get("Cost") or 0),
                not 200 <= r["Status"] < 300,
            )
            for r in ledger
        ],
        lambda f: (f.caller, f.deployment, f.day),
    )
    assert ledger_sums == by_caller_deployment_day  # the ledger equals the upstream's usage
    daily_sums: dict[tuple, dict] = defaultdict(
        lambda: {"requests": 0, "failed": 0, "prompt": 0, "completion": 0, "cached": 0, "cost": Decimal(0)}
    )
    for r in daily:  # a day with a price change has a row per price version
        sums = daily_sums[(r["CallerId"], r["Deployment"], r["Day"])]
        for name, column in (("requests", "Requests"), ("failed", "FailedRequests"), ("prompt", "PromptTokens")):
            sums[name] += integer(r[column])
        sums["completion"] += integer(r["CompletionTokens"])
        sums["cached"] += integer(r["CachedTokens"])
        sums["cost"] += Decimal(r["CostExact"])
    assert dict(daily_sums) == by_caller_deployment_day
    assert all(r["Attribution"] == "settlement" for r in daily)  # every row's attributes fixed when it settled
    alice_row = next(r for r in daily if r["CallerId"] == callers["alice"])
    assert (alice_row["CostCenter"], alice_row["Department"], json.loads(alice_row["Tags"])) == (
        "CC-100",
        "Research",
        {"app": "chat"},
    )
    change_day = (BOUNDARY - timedelta(days=1)).isoformat()
    versions = {r["PriceVersions"] for r in daily if r["Deployment"] == "gpt-4o-mini" and r["Day"] == change_day}
    assert len(versions) == 2  # the day of the price change has a row per version

    for grouping, (fact_key, row_key) in GROUPINGS.items():
        response = httpx.get(
            f"{gateway.api}/usage", params={"from": FIRST.isoformat(), "to": LAST.isoformat(), "group_by": grouping}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert _from_api(body["data"], row_key) == _expected(facts, fact_key), grouping
        assert _from_api([body["totals"]], lambda r: ())[()] == everything, grouping

    cost_center = httpx.get(
        f"{gateway.api}/usage",
        params={"from": FIRST.isoformat(), "to": LAST.isoformat(), "cost_center": "CC-100", "group_by": "caller"},
    ).json()
    assert {r["caller_id"] for r in cost_center["data"]} == {callers["alice"], callers["carol"]}
    month = httpx.get(f"{gateway.api}/usage", params={"month": BOUNDARY.strftime("%Y-%m"), "group_by": ""}).json()
    assert Decimal(month["totals"]["cost"]) == sum(
        (f.cost for f in facts if f.day[:7] == BOUNDARY.strftime("%Y-%m")), Decimal(0)
    )

    # CSV: every field quoted, a totals row, exact money.
    text = httpx.get(
        f"{gateway.api}/usage",
        params={
            "from": FIRST.isoformat(),
            "to": LAST.isoformat(),
            "group_by": "caller,deployment,day",
            "format": "csv",
        },
    ).text
    assert all(line.startswith('"') for line in text.splitlines())
    parsed = list(csv.DictReader(io.StringIO(text)))
    total = parsed.pop()
    assert total["CallerId"] == "TOTAL" and Decimal(total["Cost"]) == everything["cost"]
    assert "TOTAL" not in {r["CallerId"] for r in parsed}  # one TOTAL line: a SUM of the others never doubles
    assert (
        _from_api(
            [
                {
                    "caller_id": r["CallerId"],
                    "deployment": r["Deployment"],
                    "day": r["Day"],
                    "requests": int(r["Requests"]),
                    "failed_requests": int(r["FailedRequests"]),
                    "prompt_tokens": int(r["PromptTokens"]),
                    "completion_tokens": int(r["CompletionTokens"]),
                    "cached_tokens": int(r["CachedTokens"]),
                    "cost": r["Cost"],
                }
                for r in parsed
            ],
            lambda r: (r["caller_id"], r["deployment"], r["day"]),
        )
        == by_caller_deployment_day
    )
    assert not any("e-" in r["Cost"] or "E-" in r["Cost"] for r in parsed)
    assert {r["Owner"] for r in parsed if r["CallerId"] == callers["bob"]} == {"'=Bob"}  # neutralised
    totals_only = httpx.get(
        f"{gateway.api}/usage",
        params={"from": FIRST.isoformat(), "to": LAST.isoformat(), "group_by": "", "format": "csv", "bom": "true"},
    )
    assert totals_only.content.startswith(b"\xef\xbb\xbf")  # the UTF-8 BOM Excel needs
    [only] = list(csv.DictReader(io.StringIO(totals_only.content.decode("utf-8-sig"))))
    assert only["Total"] == "TOTAL" and Decimal(only["Cost"]) == everything["cost"]

    # FOCUS: BilledCost and ConsumedQuantity sum to the ledger per caller and deployment.
    focus = httpx.get(
        f"{gateway.api}/usage", params={"from": FIRST.isoformat(), "to": LAST.isoformat(), "format": "focus"}
    ).text
    reader = csv.DictReader(io.StringIO(focus))
    focus_rows = list(reader)
    assert violations(list(reader.fieldnames or []), focus_rows) == []  # FOCUS 1.2 on the real export
    billed: dict[tuple, Decimal] = defaultdict(Decimal)
    quantity: dict[tuple, int] = defaultdict(int)
    for row in focus_rows:
        assert row["BillingCurrency"] == "USD" and row["ChargePeriodStart"].endswith("T00:00:00Z")
        billed[(row["SubAccountId"], row["ResourceName"])] += Decimal(row["BilledCost"])
        quantity[(row["SubAccountId"], row["ResourceName"])] += int(row["ConsumedQuantity"])
    expected = _expected(facts, lambda f: (f.caller, f.deployment))
    charged = {k: v for k, v in expected.items() if v["prompt"] + v["completion"]}  # no usage: no FOCUS charge
    assert dict(billed) == {k: v["cost"] for k, v in charged.items()}
    assert dict(quantity) == {k: v["prompt"] + v["completion"] for k, v in charged.items()}
    assert any(r["ListUnitPrice"] == "0.15" and r["ChargeDescription"].startswith("Input tokens") for r in focus_rows)
    unpriced = [r for r in focus_rows if r["ResourceName"] == "gpt-4.1"]  # no price: flagged, never plain 0
    assert unpriced and all(r["x_PricingStatus"] == "Unpriced" for r in unpriced)
    assert len({r["ResourceId"] for r in focus_rows}) == 3 and TYPO not in focus


def test_the_cli_downloads_the_same_figures(finance, tmp_path):
    gateway, _, callers, facts, _ = finance
    _rebuild(gateway)
    key = _key(gateway, f"fin-reader/{uuid.uuid4().hex[:6]}", "Finance reader", ["Usage.Read"])
    out = tmp_path / "usage.json"
    env = {"PATH": "/usr/bin:/bin", "GATEWAY_API_KEY": key, "GATEWAY_URL": gateway.api}
    args = ["--from", FIRST.isoformat(), "--to", LAST.isoformat(), "--group-by", "caller,deployment"]
    result = subprocess.run(
        [sys.executable, "-m", "tools.usage", *args, "--format", "json", "-o", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(out.read_text())
    key_of = lambda r: (r["caller_id"], r["deployment"])  # noqa: E731
    assert _from_api(body["data"], key_of) == _expected(facts, lambda f: (f.caller, f.deployment))

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.usage",
            "--month",
            BOUNDARY.strftime("%Y-%m"),
            "--format",
            "csv",
            "--group-by",
            "cost_center",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    month_facts = [f for f in facts if f.day[:7] == BOUNDARY.strftime("%Y-%m")]
    assert rows[-1]["CostCenter"] == "TOTAL"
    unpriced = int(rows[-1]["UnpricedRequests"])
    assert unpriced > 0 and f"warning: {unpriced:,} requests used deployments without a price" in result.stderr
    assert Decimal(rows[-1]["Cost"]) == sum((f.cost for f in month_facts), Decimal(0))

    denied = subprocess.run(
        [sys.executable, "-m", "tools.usage", "--month", "2026-11"],
        cwd=ROOT,
        env={**env, "GATEWAY_API_KEY": _key(gateway, callers["alice"], "Alice", ["Gateway.Use"])},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert denied.returncode == 1 and "403" in denied.stderr and "Usage.Read" in denied.stderr


def test_history_never_moves_when_a_cost_center_changes(finance):
    """Changing a caller's chargeback attributes today and rebuilding last month leaves last month's export
    byte-identical: the attributes were fixed when the calls settled."""
    gateway, _, callers, _, _ = finance
    _rebuild(gateway)

    def exports() -> list[str]:
        return [
            httpx.get(f"{gateway.api}/usage", params={"month": LAST_MONTH, "format": f, "group_by": g}).text
            for f, g in (("focus", ""), ("csv", "cost_center"), ("csv", "caller,deployment,day"))
        ]

    before = exports()
    moved = {**CHARGEBACK["alice"], "cost_center": "CC-999", "department": "Elsewhere"}
    assert httpx.put(f"{gateway.api}/manage/policies/{callers['alice']}", json=moved).status_code == 200
    try:
        _rebuild(gateway)
        assert exports() == before and "CC-999" not in "".join(before)
    finally:
        httpx.put(f"{gateway.api}/manage/policies/{callers['alice']}", json=CHARGEBACK["alice"])


def test_rebuilding_twice_gives_identical_rows(finance):
    gateway, storage, *_ = finance

    async def rows() -> list[dict]:
        async with TableServiceClient.from_connection_string(storage.connection_string) as service:
            entities = [dict(e) async for e in service.get_table_client(DAILY_USAGE_TABLE).list_entities()]
        return sorted(entities, key=lambda e: (e["PartitionKey"], e["RowKey"]))

    first_reports = _rebuild(gateway)
    first = asyncio.run(rows())
    second_reports = _rebuild(gateway)
    assert asyncio.run(rows()) == first and len(first) > 0
    assert [r["daily_rows"] for r in first_reports] == [r["daily_rows"] for r in second_reports]


def test_price_versions_are_added_by_admins_for_the_future_only(finance):
    gateway, *_ = finance
    later = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    body = {"deployment": "gpt-4o-mini", "input": 0.2, "output": 0.8, "effective_from": later.isoformat()}
    created = httpx.post(f"{gateway.api}/manage/prices", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["input"] == "0.2" and created.json()["cached_input"] == "0.2"
    listed = httpx.get(f"{gateway.api}/manage/prices", params={"deployment": "gpt-4o-mini"}).json()["data"]
    assert [v["in_force"] for v in listed] == [False, True, False]  # seed, the change in the past, the new one
    assert httpx.post(f"{gateway.api}/manage/prices", json=body).status_code == 409

    past = {**body, "effective_from": "2020-01-01T00:00:00Z"}
    assert httpx.post(f"{gateway.api}/manage/prices", json=past).status_code == 400
    form = httpx.post(f"{gateway.api}/manage/prices", content="deployment=x", headers={"content-type": "text/plain"})
    assert form.status_code == 415
    cross_site = httpx.post(
        f"{gateway.api}/manage/usage/rebuild",
        json={"from": "2026-01-01", "to": "2026-01-01"},
        headers={"origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403 and cross_site.json()["error"]["code"] == "cross_site_request"


def test_finance_endpoints_need_their_roles(finance):
    gateway, _, callers, *_ = finance
    user = _key(gateway, callers["carol"], "Carol", ["Gateway.Use"])
    reader = _key(gateway, f"fin-reader/{uuid.uuid4().hex[:6]}", "Reader", ["Usage.Read"])
    assert httpx.get(f"{gateway.api}/usage", headers={"api-key": user}).status_code == 403
    assert httpx.get(f"{gateway.api}/manage/prices", headers={"api-key": reader}).status_code == 200
    rebuild = httpx.post(
        f"{gateway.api}/manage/usage/rebuild",
        json={"from": "2026-01-01", "to": "2026-01-01"},
        headers={"api-key": reader},
    )
    assert rebuild.status_code == 403
    price = httpx.post(
        f"{gateway.api}/manage/prices", json={"deployment": "x", "input": 1, "output": 1}, headers={"api-key": reader}
    )
    assert price.status_code == 403


# --- the dashboard in a browser ---------------------------------------------------------------------------------


class Figures(HTMLParser):
    """Text and data-value of every element marked ``data-figure`` in the rendered page."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, list[tuple[str, str | None]]] = {}
        self._open: list[tuple[str, str | None]] = []
        self.loaded: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "body":
            self.loaded = attributes.get("data-loaded")
        if "data-figure" in attributes:
            self._open.append((attributes["data-figure"] or "", attributes.get("data-value")))
            self.figures.setdefault(self._open[-1][0], []).append(("", attributes.get("data-value")))

    def handle_data(self, data: str) -> None:
        if self._open:
            name = self._open[-1][0]
            text, value = self.figures[name][-1]
            self.figures[name][-1] = (text + data, value)

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag in ("p", "td"):
            self._open.pop()


# Headless, no first-run work, and no network beyond the local gateway.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def _chromium(url: str, *extra: str, profile: Path) -> str:
    result = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _pipe_fds(commands: int, events: int) -> None:
    """In the child: the DevTools pipe on fds 3 (commands in) and 4 (events out), whatever fds they had."""
    commands, events = os.dup(commands), os.dup(events)  # above 4 now, so neither dup2 below clobbers the other
    os.dup2(commands, 3)
    os.dup2(events, 4)


def _browse(url: str, width: int, height: int, profile: Path) -> tuple[str, bytes]:
    """The rendered page (DOM once the script has loaded it) and a screenshot, at a viewport of ``width`` CSS pixels.
    Headless Chromium's window is at least 500 px wide, so a phone is emulated over the DevTools protocol
    (``--remote-debugging-pipe``: NUL-terminated JSON on fds 3 and 4), as DevTools' device mode does."""
    commands_r, commands_w = os.pipe()
    events_r, events_w = os.pipe()
    chromium = subprocess.Popen(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ],
        close_fds=False,  # closing runs after preexec_fn: it would close fds 3 and 4 again
        preexec_fn=lambda: _pipe_fds(commands_r, events_w),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(commands_r)
    os.close(events_w)
    sink, source, buffer, ids = os.fdopen(commands_w, "wb"), os.fdopen(events_r, "rb"), b"", iter(range(1, 10_000))

    def call(method: str, session: str | None = None, **params: object) -> dict:
        nonlocal buffer
        number = next(ids)
        message = {"id": number, "method": method, "params": params, **({"sessionId": session} if session else {})}
        sink.write(json.dumps(message).encode() + b"\0")
        sink.flush()
        while True:
            while b"\0" not in buffer:
                chunk = source.read1(65536)
                assert chunk, "chromium closed the DevTools pipe"
                buffer += chunk
            line, buffer = buffer.split(b"\0", 1)
            answer = json.loads(line)
            if answer.get("id") == number:
                assert "error" not in answer, answer
                return answer["result"]

    try:
        target = call("Target.createTarget", url="about:blank")["targetId"]
        session = call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        call(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=height,
            deviceScaleFactor=2 if width < 500 else 1,
            mobile=width < 500,
        )
        call("Page.navigate", session, url=url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = call("Runtime.evaluate", session, expression="document.body && document.body.dataset.width")
            if state["result"].get("value"):
                break
            time.sleep(0.2)
        dom = call("Runtime.evaluate", session, expression="document.documentElement.outerHTML")["result"]["value"]
        shot = call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True)["data"]
        return dom, base64.b64decode(shot)
    finally:
        chromium.kill()
        chromium.wait(timeout=30)
        sink.close()
        source.close()


def _figures(dom: str) -> dict[str, list[tuple[str, str | None]]]:
    parser = Figures()
    parser.feed(dom)
    assert parser.loaded == "true", dom[-3000:]
    return parser.figures


def _money(cost: str) -> str:
    """What the dashboard shows for an exact cost: cents, thousands separators, the currency, never a tiny 0."""
    value = Decimal(float(cost))  # the page rounds the double JavaScript holds, half away from zero
    if 0 < value < Decimal("0.005"):
        return "USD <0.01"
    return f"USD {value.quantize(Decimal('0.01'), ROUND_HALF_UP):,.2f}"


@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize("month", [None, LAST_MONTH])
def test_the_dashboard_shows_the_figures_of_api_usage(finance, month, width, tmp_path):
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    gateway, *_ = finance
    _rebuild(gateway)
    api = gateway.api
    url = f"{api}/dashboard" + (f"?month={month}" if month else "")
    dom, png = _browse(url, width, 900, tmp_path / "profile")
    figures = _figures(dom)
    shown_month = month or NOW.strftime("%Y-%m")
    assert int(re.search(r'data-width="(\d+)"', dom).group(1)) <= width  # nothing wider than the screen

    totals = httpx.get(f"{api}/usage", params={"month": shown_month, "group_by": ""}).json()["totals"]
    [(text, value)] = figures["month-cost"]
    assert value == totals["cost"] and text.startswith(_money(totals["cost"]))  # exact in data-value and on hover
    assert figures["month-tokens"] == [(f"{totals['total_tokens']:,}", str(totals["total_tokens"]))]
    assert figures["month-requests"][0][1] == str(totals["requests"])
    assert f"Cost in {shown_month}" in dom
    day = NOW.date().isoformat() if month is None else _last_day(shown_month)
    day_totals = httpx.get(f"{api}/usage", params={"from": day, "to": day, "group_by": ""}).json()["totals"]
    assert figures["today-cost"][0][1] == day_totals["cost"]  # the selected month's day, not today
    assert ("Today so far" in dom) == (month is None)

    callers = httpx.get(f"{api}/usage", params={"month": shown_month, "group_by": "caller"}).json()["data"]
    ranked = sorted(callers, key=lambda r: Decimal(r["cost"]), reverse=True)
    assert [t for t, _ in figures["spender-name"]] == [r["caller_name"] for r in ranked]
    assert [v for _, v in figures["spender-cost"]] == [r["cost"] for r in ranked]
    assert [t for t, _ in figures["spender-cost"]] == [
        _money(r["cost"]) + (" unpriced" if r["unpriced_requests"] else "") for r in ranked
    ]
    assert [t for t, _ in figures["spender-tokens"]] == [f"{r['total_tokens']:,}" for r in ranked]
    centers = httpx.get(f"{api}/usage", params={"month": shown_month, "group_by": "cost_center"}).json()["data"]
    assert {t for t, _ in figures["cost-center-name"]} == {"CC-100", "CC-200"}
    assert [v for _, v in figures["cost-center-cost"]] == [r["cost"] for r in centers]
    shown_deployments = {t for t, _ in figures["deployment-name"]}
    assert TYPO not in shown_deployments and "gpt-4o-mini" in shown_deployments  # no cost line for a typo
    assert len(figures["burn"]) == 3  # one cost budget per caller, the selected month's use
    budgets = httpx.get(f"{api}/usage/budgets", params={"month": shown_month}).json()["data"]
    assert sorted(float(v or 0) for _, v in figures["burn"]) == sorted(
        b["limits"]["cost_usd_per_month"]["percent"] for b in budgets
    )
    assert 'id="export-focus" href="usage?month=' in dom and "format=focus" in dom

    shot = SCREENSHOT_DIR / f"finance-dashboard-{shown_month}-{width}.png"
    shot.write_bytes(png)
    assert len(png) > 10_000


def _last_day(month: str) -> str:
    first = datetime.strptime(f"{month}-01", "%Y-%m-%d").date()
    return ((first + timedelta(days=32)).replace(day=1) - timedelta(days=1)).isoformat()


def test_the_dashboard_needs_usage_read_and_its_assets_are_local(finance):
    api = finance[0].api
    key = httpx.post(
        f"{api}/manage/keys",
        json={
            "name": "user",
            "owner": {"id": "fin-dash/dave", "name": "Dave", "kind": "app"},
            "roles": ["Gateway.Use"],
        },
    ).json()["key"]
    assert httpx.get(f"{api}/dashboard", headers={"api-key": key}).status_code == 403
    page = httpx.get(f"{api}/dashboard")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http://www.w3.org", "")  # nothing loaded from elsewhere
    script = httpx.get(f"{api}/dashboard/assets/dashboard.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{api}/dashboard/assets/..%2Findex.html").status_code == 404
