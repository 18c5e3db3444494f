"""Budgets by month from the daily table, and budget alerts emitted exactly once across instances (Azurite)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from datetime import UTC, date, datetime

import pytest

from shared.finance.alerts import SIGNATURE_HEADER, BudgetAlerts
from shared.finance.budgets import month_budgets
from shared.quotas.limits import NANO_USD_PER_USD, Limit
from shared.settings import settings_from_env
from shared.settings.env import SettingsError
from shared.settings.sections import BudgetAlertSettings

NOW = datetime(2026, 12, 20, 12, tzinfo=UTC)


def daily_row(day: str, caller: str, tokens: int, cost: str, deployment: str = "m") -> dict:
    return {
        "PartitionKey": day,
        "RowKey": f"{caller.replace('/', '%2F')}|{deployment}|x",
        "Day": day,
        "CallerId": caller,
        "CallerName": caller.split("/")[1].title(),
        "Deployment": deployment,
        "Requests": 1,
        "PromptTokens": tokens,
        "CompletionTokens": 0,
        "CostExact": cost,
        "Currency": "USD",
    }


async def limits_of(caller_id: str, name: str) -> list[tuple[str, Limit, int]]:
    """The limits in force: 1,000 tokens a month, 2 USD a month, 600 tokens a day, 10 requests a minute."""
    return [
        (caller_id, Limit.TOKENS_PER_MONTH, 1000),
        (caller_id, Limit.COST_USD_PER_MONTH, 2 * NANO_USD_PER_USD),
        (caller_id, Limit.TOKENS_PER_DAY, 600),
        (caller_id, Limit.REQUESTS_PER_MINUTE, 10),
        (f"{caller_id}|e", Limit.TOKENS_PER_MONTH, 100),
    ]


async def put(table, rows: list[dict]) -> None:
    for row in rows:
        await table.upsert_entity(row)


async def test_a_past_month_is_measured_from_its_own_daily_rows(finance_tables):
    """November's budget use is November's usage (not December's counters), against the limits in force."""
    await put(
        finance_tables.daily,
        [
            daily_row("2026-11-02", "t/alice", 300, "0.5"),
            daily_row("2026-11-03", "t/alice", 500, "1.1"),
            daily_row("2026-11-03", "t/alice", 40, "0", deployment="e"),
            daily_row("2026-12-01", "t/alice", 999, "9"),
        ],
    )
    from shared.finance.usage_report import UsageQuery, daily_rows

    query = UsageQuery(date(2026, 11, 1), date(2026, 11, 30), ())
    [alice] = await month_budgets(daily_rows(finance_tables.daily, query), limits_of, 10)
    limits = alice["limits"]
    assert limits["tokens_per_month"] == {"limit": 1000, "used": 840, "percent": 84.0}
    assert limits["cost_usd_per_month"] == {"limit": "2", "used": "1.6", "percent": 80.0}
    assert limits["tokens_per_day"] == {"limit": 600, "used": 540, "peak_day": "2026-11-03", "percent": 90.0}
    assert "requests_per_minute" not in limits  # no monthly meaning
    assert limits["deployments"] == {"e": {"tokens_per_month": {"limit": 100, "used": 40, "percent": 40.0}}}


def alerts(tables, sent: list | None = None, **settings) -> BudgetAlerts:
    async def post(url: str, body: bytes, headers) -> int:
        sent.append((url, body, dict(headers)))
        return 204

    return BudgetAlerts(tables.hourly, tables.daily, limits_of, BudgetAlertSettings(**settings), post=post)


async def test_a_threshold_crossed_emits_one_event_even_on_two_instances(finance_tables, caplog):
    await put(finance_tables.daily, [daily_row("2026-12-03", "t/alice", 850, "0.5")])  # 85 % of the tokens
    sent: list = []
    first, second = alerts(finance_tables, sent), alerts(finance_tables, sent)  # two instances, one table
    with caplog.at_level(logging.WARNING, logger="gateway.budgets"):
        results = await asyncio.gather(first.check(NOW), second.check(NOW))
    events = [e for result in results for e in result]
    assert [(e["limit"], e["threshold_percent"]) for e in events] == [("tokens_per_month", 80)]
    assert len([r for r in caplog.records if "budget threshold crossed" in r.message]) == 1
    assert await first.check(NOW) == [] and await second.check(NOW) == []  # the next timer runs: nothing new

    await put(finance_tables.daily, [daily_row("2026-12-04", "t/alice", 200, "2")])  # 105 % tokens, 125 % cost
    events = await first.check(NOW) + await second.check(NOW)
    assert sorted((e["limit"], e["threshold_percent"]) for e in events) == [
        ("cost_usd_per_month", 80),
        ("cost_usd_per_month", 100),
        ("tokens_per_month", 100),
    ]
    assert sent == []  # no webhook configured


async def test_the_webhook_gets_a_signed_body(finance_tables, caplog):
    await put(finance_tables.daily, [daily_row("2026-12-03", "t/bob", 1000, "0")])
    sent: list = []
    hook = alerts(finance_tables, sent, webhook_url="https://hooks.example/budget?sig=s3cr3t", webhook_secret="k3y")
    with caplog.at_level(logging.DEBUG):
        await hook.check(NOW)
    assert len(sent) == 2  # 80 % and 100 % of the tokens
    url, body, headers = sent[0]
    assert json.loads(body)["caller_id"] == "t/bob"
    assert headers[SIGNATURE_HEADER] == "sha256=" + hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert "k3y" not in caplog.text and "s3cr3t" not in caplog.text
    assert "k3y" not in repr(hook.settings)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"GATEWAY_BUDGET_ALERT_WEBHOOK_URL": "http://hooks.example/x"}, "https"),
        ({"GATEWAY_BUDGET_ALERT_WEBHOOK_URL": "https://u:p@hooks.example/x"}, "https"),
        ({"GATEWAY_BUDGET_ALERT_THRESHOLDS": "80,abc"}, "percentages"),
        ({"GATEWAY_BUDGET_ALERT_THRESHOLDS": "0"}, "percentages"),
    ],
)
def test_alert_settings_are_checked_at_start_up(env, message):
    with pytest.raises(SettingsError, match=message):
        settings_from_env({"GATEWAY_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true", **env})
    good = settings_from_env(
        {"GATEWAY_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true", "GATEWAY_BUDGET_ALERT_THRESHOLDS": "100,50"}
    )
    assert good.accounting.budget_alerts.thresholds == (50, 100)
