"""The finance dashboard in headless Chromium (Debian ``chromium``, no network but the local gateway): the figures
it shows equal ``/api/usage``. ``.ci/run`` installs chromium; without it this test skips and says so."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from azure.data.tables.aio import TableServiceClient

from shared.accounting.ledger import UsageLedger, UsageRecord
from shared.accounting.prices import parse_prices
from shared.storage.tables import USAGE_TABLE
from tests.azurite import Azurite
from tests.gateway_process import GatewayProcess

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PRICES = '{"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.6}, "gpt-4.1": {"input": 2, "output": 8}}'
NOW = datetime.now(UTC)
LAST_MONTH = (NOW.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
SCREENSHOT_DIR = Path(os.environ.get("TMPDIR", "/tmp"))


@pytest.fixture(scope="module")
def dashboard_gateway(simulator, tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (`apt-get install -y chromium`; .ci/run installs it)")
    storage = Azurite().start()
    asyncio.run(_traffic(storage.connection_string))
    gateway = GatewayProcess(
        {
            "GATEWAY_LEDGER_JOURNAL_DIR": str(tmp_path_factory.mktemp("dashboard-journal")),
            "AZURE_OPENAI_ENDPOINT": simulator.url,
            "GATEWAY_STORAGE_CONNECTION_STRING": storage.connection_string,
            "GATEWAY_LOCAL_DEV_AUTH": "true",
            "GATEWAY_PRICES": PRICES,
            "GATEWAY_DEFAULT_COST_USD_PER_MONTH": "5",
        }
    ).start()
    try:
        for name, center in (("alice", "CC-100"), ("bob", "CC-200"), ("carol", "CC-100")):
            policy = {"cost_center": center, "owner": name.title(), "department": "R&D", "tags": {"team": name}}
            assert httpx.put(f"{gateway.api}/manage/policies/dash/{name}", json=policy).status_code == 200
        first = (NOW.replace(day=1) - timedelta(days=1)).replace(day=1).date().isoformat()
        rebuilt = httpx.post(
            f"{gateway.api}/manage/usage/rebuild", json={"from": first, "to": NOW.date().isoformat()}, timeout=120
        )
        assert rebuilt.status_code == 200, rebuilt.text
        yield gateway
    finally:
        gateway.stop()
        storage.stop()


async def _traffic(connection: str) -> None:
    prices = parse_prices(PRICES)
    async with TableServiceClient.from_connection_string(connection) as service:
        await service.create_table_if_not_exists(USAGE_TABLE)
        ledger = UsageLedger(service.get_table_client(USAGE_TABLE), flush_seconds=60)
        month_start = (NOW.replace(day=1) - timedelta(days=1)).replace(day=1, hour=9, minute=0, second=0, microsecond=0)
        moments = [month_start + timedelta(days=d, hours=d % 5) for d in range(0, 28, 2)]
        moments += [max(NOW - timedelta(minutes=m), NOW.replace(hour=0, minute=0)) for m in (1, 2, 3)]  # today
        for n, at in enumerate(moments):
            for caller, deployment, scale in (
                ("alice", "gpt-4o-mini", 3),
                ("bob", "gpt-4.1", 1),
                ("carol", "gpt-4o-mini", 1),
            ):
                prompt, completion = 1000 * scale + n * 37, 300 * scale + n * 11
                cost = prices[deployment].cost_of(prompt, completion)
                await ledger.record(
                    UsageRecord(
                        str(uuid.uuid4()),
                        at,
                        f"dash/{caller}",
                        caller.title(),
                        "dash",
                        "api-key",
                        None,
                        "chat.completions",
                        deployment,
                        False,
                        200,
                        "completed",
                        prompt,
                        completion,
                        0,
                        0,
                        False,
                        float(cost),
                        5,
                        str(cost),
                        "USD",
                        prices[deployment].version,
                    )
                )
        assert await ledger.flush(30)
        await ledger.close()


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


def _chromium(url: str, *extra: str, profile: Path) -> str:
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no network beyond the local gateway
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


def _figures(dom: str) -> dict[str, list[tuple[str, str | None]]]:
    parser = Figures()
    parser.feed(dom)
    assert parser.loaded == "true", dom[-3000:]
    return parser.figures


@pytest.mark.parametrize("month", [None, LAST_MONTH])
def test_the_dashboard_shows_the_figures_of_api_usage(dashboard_gateway, month, tmp_path):
    api = dashboard_gateway.api
    url = f"{api}/dashboard" + (f"?month={month}" if month else "")
    figures = _figures(_chromium(url, "--dump-dom", profile=tmp_path / "profile"))
    shown_month = month or NOW.strftime("%Y-%m")

    totals = httpx.get(f"{api}/usage", params={"month": shown_month, "group_by": ""}).json()["totals"]
    assert figures["month-cost"] == [(f"USD {totals['cost']}", totals["cost"])]
    assert figures["month-tokens"] == [(f"{totals['total_tokens']:,}", str(totals["total_tokens"]))]
    assert figures["month-requests"][0][1] == str(totals["requests"])
    today = NOW.date().isoformat()
    today_totals = httpx.get(f"{api}/usage", params={"from": today, "to": today, "group_by": ""}).json()["totals"]
    assert figures["today-cost"] == [(f"USD {today_totals['cost']}", today_totals["cost"])]
    assert Decimal(today_totals["cost"]) > 0

    callers = httpx.get(f"{api}/usage", params={"month": shown_month, "group_by": "caller"}).json()["data"]
    ranked = sorted(callers, key=lambda r: Decimal(r["cost"]), reverse=True)
    assert [t for t, _ in figures["spender-name"]] == [r["caller_name"] for r in ranked]
    assert [t for t, _ in figures["spender-cost"]] == [r["cost"] for r in ranked]
    assert [t for t, _ in figures["spender-tokens"]] == [f"{r['total_tokens']:,}" for r in ranked]
    centers = httpx.get(f"{api}/usage", params={"month": shown_month, "group_by": "cost_center"}).json()["data"]
    assert {t for t, _ in figures["cost-center-name"]} == {"CC-100", "CC-200"}
    assert [t for t, _ in figures["cost-center-cost"]] == [r["cost"] for r in centers]
    assert len(figures["burn"]) == 3  # one cost budget per caller

    if month:  # a month with a chart worth looking at
        shot = SCREENSHOT_DIR / "finance-dashboard.png"
        _chromium(url, f"--screenshot={shot}", "--window-size=1280,1400", profile=tmp_path / "profile2")
        assert shot.stat().st_size > 10_000


def test_the_dashboard_needs_usage_read_and_its_assets_are_local(dashboard_gateway):
    api = dashboard_gateway.api
    key = httpx.post(
        f"{api}/manage/keys",
        json={"name": "user", "owner": {"id": "dash/dave", "name": "Dave", "kind": "app"}, "roles": ["Gateway.Use"]},
    ).json()["key"]
    assert httpx.get(f"{api}/dashboard", headers={"api-key": key}).status_code == 403
    page = httpx.get(f"{api}/dashboard")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http://www.w3.org", "")  # nothing loaded from elsewhere
    script = httpx.get(f"{api}/dashboard/assets/dashboard.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{api}/dashboard/assets/..%2Findex.html").status_code == 404
