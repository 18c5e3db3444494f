"""What each caller used of each quota limit in a calendar month, from the daily usage table (``/api/usage/budgets``
and the dashboard's budget burn), so a past month is answered with its own usage, not the current counters.

Limits are not versioned: a month is measured against the limits in force now (the caller's policy over the
gateway's defaults), and the answer says so (``limits_in_force``). The monthly limits compare to the month's sums;
``tokens_per_day`` to the month's busiest day; per-minute limits have no monthly meaning and are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from shared.accounting.prices import money_text
from shared.auth.identity import Caller
from shared.finance.daily import daily_totals
from shared.policy.callers import CallerPolicyStore
from shared.quotas.enforcer import QuotaEnforcer
from shared.quotas.limits import NANO_USD_PER_USD, Limit

LIMITS_IN_FORCE = "current: limits are not versioned, so past months are measured against today's limits"
MONTH_LIMITS = (Limit.TOKENS_PER_MONTH, Limit.COST_USD_PER_MONTH, Limit.TOKENS_PER_DAY)


@dataclass
class _Use:
    tokens: int = 0
    cost: Decimal = field(default_factory=Decimal)
    per_day: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, row: Mapping[str, Any]) -> None:
        totals = daily_totals(row)
        self.tokens += totals.total_tokens
        self.cost += totals.cost
        self.per_day[str(row.get("Day") or row.get("PartitionKey", ""))[:10]] += totals.total_tokens


@dataclass
class _Caller:
    name: str = ""
    total: _Use = field(default_factory=_Use)
    deployments: dict[str, _Use] = field(default_factory=lambda: defaultdict(_Use))


def budget_line(limit: Limit, units: int, use: _Use) -> dict[str, Any]:
    """One limit: its value, what the month used of it, and the share (percent, one decimal)."""
    if limit is Limit.COST_USD_PER_MONTH:
        maximum, used = Decimal(units) / NANO_USD_PER_USD, use.cost
        line: dict[str, Any] = {"limit": money_text(maximum), "used": money_text(used)}
    elif limit is Limit.TOKENS_PER_DAY:
        peak_day, used_tokens = max(use.per_day.items(), key=lambda item: (item[1], item[0]), default=("", 0))
        maximum, used = Decimal(units), Decimal(used_tokens)
        line = {"limit": units, "used": used_tokens, "peak_day": peak_day or None}
    else:
        maximum, used = Decimal(units), Decimal(use.tokens)
        line = {"limit": units, "used": use.tokens}
    line["percent"] = float(round(used * 100 / maximum, 1)) if maximum else None
    return line


async def month_budgets(
    rows: AsyncIterator[Mapping[str, Any]],
    limits_of: Callable[[str, str], Awaitable[list[tuple[str, Limit, int]]]],
    max_callers: int,
) -> list[dict[str, Any]]:
    """Per caller with usage in the rows (one month of the daily table): each monthly limit and its use."""
    callers: dict[str, _Caller] = defaultdict(_Caller)
    async for row in rows:
        entry = callers[str(row.get("CallerId", ""))]
        entry.name = entry.name or str(row.get("CallerName", ""))
        entry.total.add(row)
        entry.deployments[str(row.get("Deployment", ""))].add(row)
    data = []
    for caller_id in sorted(callers)[:max_callers]:
        entry = callers[caller_id]
        limits: dict[str, Any] = {}
        deployments: dict[str, dict[str, Any]] = {}
        for scope, limit, units in await limits_of(caller_id, entry.name):
            if limit not in MONTH_LIMITS:
                continue
            if scope == caller_id:
                limits[limit.value] = budget_line(limit, units, entry.total)
            else:  # "{caller}|{deployment}": a limit on one deployment
                deployment = scope.split("|", 1)[1]
                deployments.setdefault(deployment, {})[limit.value] = budget_line(
                    limit, units, entry.deployments.get(deployment, _Use())
                )
        if deployments:
            limits["deployments"] = deployments
        data.append({"caller_id": caller_id, "caller_name": entry.name, "limits": limits})
    return data


def caller_limits(
    quotas: QuotaEnforcer, policies: CallerPolicyStore
) -> Callable[[str, str], Awaitable[list[tuple[str, Limit, int]]]]:
    """(scope, limit, units) of every limit in force now for a caller: caller-wide (scope = the caller id) and per
    deployment (scope ``{caller}|{deployment}``)."""

    async def limits_of(caller_id: str, name: str) -> list[tuple[str, Limit, int]]:
        plans = await quotas.limits_for(Caller(id=caller_id, name=name, tenant=None, kind="app"))
        policy = await policies.get(caller_id)
        for deployment, overrides in sorted(policy.deployment_limits.items()):
            plans += [(f"{caller_id}|{deployment}", limit, units) for limit, units in overrides.alone().active()]
        return plans

    return limits_of
