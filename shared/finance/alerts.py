"""Budget alerts: a caller crossing a share of a monthly limit (80 % and 100 % of ``tokens_per_month`` or
``cost_usd_per_month`` by default) emits one metric, one log event and, if configured, one webhook call, exactly
once per caller, limit, threshold and month, however many instances check.

The rollup timer checks after each run (every 5 minutes), from the daily usage table (the same figures as
``/api/usage/budgets``). Exactly once: an event is emitted only by the instance whose conditional insert of its
marker entity (``budget-alerts-2026-11`` / ``{caller}|{limit}|{threshold}``, in the rollup's internal hourly table)
succeeds; Table Storage refuses a second insert of the same key with 409, so a second instance, or a second run,
does nothing. The e-mail goes through the Azure Monitor alert rule on the metric (bicep/modules/observability.bicep,
the existing action group); the webhook is optional (https only; its secret signs the body and is never logged).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables.aio import TableClient

from shared import telemetry
from shared.finance.budgets import month_budgets
from shared.finance.usage_report import UsageQuery, daily_rows
from shared.quotas.limits import Limit
from shared.settings.sections import BudgetAlertSettings
from shared.storage.tables import table_key

log = logging.getLogger("gateway.budgets")

ALERT_LIMITS = (Limit.TOKENS_PER_MONTH, Limit.COST_USD_PER_MONTH)
MAX_ALERT_CALLERS = 10_000
WEBHOOK_TIMEOUT_SECONDS = 10.0
SIGNATURE_HEADER = "x-gateway-signature"  # "sha256=<hex HMAC-SHA256 of the body with the webhook secret>"


Post = Callable[[str, bytes, Mapping[str, str]], Awaitable[int]]


async def post_json(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, data=body, headers=dict(headers), allow_redirects=False) as response:
            return response.status


class BudgetAlerts:
    def __init__(
        self,
        markers: TableClient,
        daily: TableClient,
        limits_of: Callable[[str, str], Awaitable[list[tuple[str, Limit, int]]]],
        settings: BudgetAlertSettings,
        post: Post = post_json,
    ) -> None:
        self._markers, self._daily, self._limits_of = markers, daily, limits_of
        self.settings = settings
        self._post = post

    async def check(self, now: datetime) -> list[dict[str, Any]]:
        """Emit every threshold the month so far has crossed and no instance has emitted yet; returns them."""
        today = now.astimezone(UTC).date()
        month = today.strftime("%Y-%m")
        query = UsageQuery(today.replace(day=1), today, ())
        budgets = await month_budgets(daily_rows(self._daily, query), self._limits_of, MAX_ALERT_CALLERS)
        events = []
        for entry in budgets:
            for name, line in entry["limits"].items():
                if name not in {limit.value for limit in ALERT_LIMITS} or line.get("percent") is None:
                    continue
                for threshold in self.settings.thresholds:
                    if line["percent"] < threshold:
                        break
                    event = {
                        "event": "budget_threshold_crossed",
                        "month": month,
                        "caller_id": entry["caller_id"],
                        "caller_name": entry["caller_name"],
                        "limit": name,
                        "threshold_percent": threshold,
                        "percent": line["percent"],
                        "used": line["used"],
                        "limit_value": line["limit"],
                    }
                    if await self._claim(event):
                        await self._emit(event)
                        events.append(event)
        return events

    async def _claim(self, event: Mapping[str, Any]) -> bool:
        """The one instance whose insert succeeds emits the event (409: another instance or run already did)."""
        entity = {
            "PartitionKey": f"budget-alerts-{event['month']}",
            "RowKey": f"{table_key(event['caller_id'])}|{event['limit']}|{event['threshold_percent']}",
            "Percent": float(event["percent"]),
            "At": datetime.now(UTC),
        }
        try:
            await self._markers.create_entity(entity)
        except ResourceExistsError:
            return False
        return True

    async def _emit(self, event: Mapping[str, Any]) -> None:
        telemetry.record_budget_threshold(str(event["limit"]), int(event["threshold_percent"]))
        log.warning(
            "budget threshold crossed: %s used %s%% of %s in %s (threshold %s%%)",
            event["caller_id"],
            event["percent"],
            event["limit"],
            event["month"],
            event["threshold_percent"],
            extra={f"gateway_budget_{k}": v for k, v in event.items() if k != "event"},
        )
        if self.settings.webhook_url is None:
            return
        body = json.dumps(event, sort_keys=True).encode()
        headers = {"content-type": "application/json"}
        if self.settings.webhook_secret:
            digest = hmac.new(self.settings.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
        try:
            status = await self._post(self.settings.webhook_url, body, headers)
        except Exception as exc:  # the metric and the log event stand; the webhook is best effort
            log.warning("budget alert webhook failed (%s)", type(exc).__name__)
            return
        if not 200 <= status < 300:
            log.warning("budget alert webhook answered %s", status)
