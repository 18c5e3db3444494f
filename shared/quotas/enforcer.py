"""Quota decisions for model calls: what a call must hold before it is forwarded, and what it used after.

A call reserves, on every limit that applies to its caller (and to its deployment, where the caller's policy
sets per-deployment limits): one request; its prompt tokens plus its output allowance (``max_tokens`` and
friends, or the configured allowance when it set none); and the cost of those tokens at today's price. When it
ends it settles to the upstream's reported usage and the rest returns to the local balance.

Refusals (see docs/quotas.md): a per-minute limit answers 429 with ``retry-after``/``retry-after-ms`` set to
when the minute rolls over; a day or month budget answers 403 (retrying will not help before the reset, and
SDKs retry 429s on their own) with ``retry-after`` and the reset time in the message. A call that can never fit
(it needs more than the whole limit) is 403 too. Budget that is only held by other busy instances is a 429 to
retry in about a second, not a refusal of an exhausted budget.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from shared.accounting.prices import Price
from shared.auth.identity import Caller
from shared.errors import GatewayError
from shared.policy.callers import CallerPolicyStore
from shared.protocol.calls import ModelCall
from shared.protocol.usage import Usage
from shared.quotas.counters import CounterId
from shared.quotas.leases import (
    IDLE_RETURN_SECONDS,
    KEEPER_INTERVAL_SECONDS,
    LocalCounter,
    QuotaLeases,
    QuotaStorageError,
)
from shared.quotas.limits import NANO_USD_PER_USD, Limit, Unit
from shared.quotas.output import OutputBound, output_bound
from shared.quotas.reconcile import LedgerTokens, reconcile_folded_counters
from shared.quotas.windows import window_end, window_key
from shared.settings import QuotaSettings

log = logging.getLogger(__name__)

HELD_ELSEWHERE_RETRY_SECONDS = IDLE_RETURN_SECONDS + 2 * KEEPER_INTERVAL_SECONDS

# Response headers: the per-minute ones are the names Azure OpenAI uses, so SDKs and tools read them as usual.
_HEADER_NAMES = {
    Limit.REQUESTS_PER_MINUTE: ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests"),
    Limit.TOKENS_PER_MINUTE: ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens"),
    Limit.TOKENS_PER_DAY: ("x-gateway-quota-limit-tokens-day", "x-gateway-quota-remaining-tokens-day"),
    Limit.TOKENS_PER_MONTH: ("x-gateway-quota-limit-tokens-month", "x-gateway-quota-remaining-tokens-month"),
    Limit.COST_USD_PER_MONTH: ("x-gateway-quota-limit-cost-usd-month", "x-gateway-quota-remaining-cost-usd-month"),
}


@dataclass(frozen=True)
class Hold:
    limit: Limit
    local: LocalCounter
    amount: int


@dataclass
class QuotaReservation:
    holds: list[Hold] = field(default_factory=list)
    price: Price | None = None
    output_cap: int | None = None  # the output limit the gateway sends upstream for a budgeted call that set none

    @property
    def headers(self) -> dict[str, str]:
        """Limits and what is left, the tightest scope per limit (caller-wide or this deployment's)."""
        tightest: dict[Limit, Hold] = {}
        for hold in self.holds:
            current = tightest.get(hold.limit)
            if current is None or hold.local.remaining < current.local.remaining:
                tightest[hold.limit] = hold
        headers = {}
        for limit, hold in tightest.items():
            limit_name, remaining_name = _HEADER_NAMES[limit]
            headers[limit_name] = _units_text(limit, hold.local.limit)
            headers[remaining_name] = _units_text(limit, hold.local.remaining)
        return headers


class QuotaEnforcer:
    def __init__(
        self,
        settings: QuotaSettings,
        leases: QuotaLeases,
        policies: CallerPolicyStore,
        prices: Mapping[str, Price],
        *,
        output_ceiling: int,
    ) -> None:
        self._clock = leases.clock
        self._settings = settings
        self._leases = leases
        self._policies = policies
        self._prices = prices
        self._allowance = settings.output_allowance or output_ceiling

    async def aclose(self) -> None:
        await self._leases.aclose()

    async def delete_expired_counters(self) -> int:
        """Counter rows of windows that ended are dead weight: the cleanup timer deletes them."""
        return await self._leases.store.delete_expired(self._clock())

    async def reconcile(self, ledger_tokens: LedgerTokens) -> int:
        """Correct counters that counted a dead instance's lease as spent, from the ledger (docs/quotas.md)."""
        return await reconcile_folded_counters(self._leases.store, ledger_tokens, self._clock())

    async def limits_for(self, caller: Caller, deployment: str | None = None) -> list[tuple[str, Limit, int]]:
        """(scope, limit, value in counter units) of every limit that applies to the caller (and deployment)."""
        policy = await self._policies.get(caller.id)
        plans = [(caller.id, limit, units) for limit, units in policy.limits.over(self._settings.defaults).active()]
        if deployment is not None and deployment in policy.deployment_limits:
            scope = f"{caller.id}|{deployment}"
            plans += [(scope, limit, units) for limit, units in policy.deployment_limits[deployment].alone().active()]
        return plans

    async def status(self, caller: Caller) -> dict[str, object]:
        """Limits and what is left in the current windows (``/api/me``); per-deployment limits included.

        ``used`` is what instances have committed (they commit at least every few seconds while busy);
        ``remaining`` is what the caller can still be admitted for, leases held by calls in flight excluded.
        """
        now = self._clock()
        result: dict[str, object] = {}
        for scope, limit, units in await self.limits_for(caller):
            result[limit.value] = await self._status_of(
                CounterId(scope, limit, window_key(limit.window, now)), units, now
            )
        policy = await self._policies.get(caller.id)
        per_deployment: dict[str, object] = {}
        for deployment, overrides in sorted(policy.deployment_limits.items()):
            scope = f"{caller.id}|{deployment}"
            per_deployment[deployment] = {
                limit.value: await self._status_of(CounterId(scope, limit, window_key(limit.window, now)), units, now)
                for limit, units in overrides.alone().active()
            }
        if per_deployment:
            result["deployments"] = per_deployment
        return result

    async def _status_of(self, counter: CounterId, units: int, now: datetime) -> dict[str, object]:
        stored = await self._leases.store.read(counter, units)
        local = self._leases.find(counter)
        remaining = local.remaining if local is not None else stored.free + stored.own
        return {
            "limit": _units_number(counter.limit, units),
            "used": _units_number(counter.limit, stored.used),
            "remaining": _units_number(counter.limit, remaining),
            "resets_at": window_end(counter.limit.window, now).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def output_bound(self, call: ModelCall) -> OutputBound:
        """What the call can generate, in all of its generations, and the cap to send when it set none."""
        return output_bound(call, self._allowance)

    async def reserve(self, caller: Caller, call: ModelCall, price: Price | None = None) -> QuotaReservation:
        """Hold what the call can cost on every limit that applies; ``price`` is the version the call is charged at
        (fixed when it is admitted, so the ledger row and the cost budget agree)."""
        if price is None:
            price = self._prices.get(call.deployment)
        plans = await self.limits_for(caller, call.deployment)
        if not plans:
            return QuotaReservation(price=price)
        bound = self.output_bound(call)
        tokens = call.prompt_tokens_estimate + bound.tokens
        needs = {Unit.REQUESTS: 1, Unit.TOKENS: tokens, Unit.NANO_USD: 0}
        if any(limit.unit is Unit.NANO_USD for _, limit, _ in plans):
            if price is None:
                raise GatewayError(
                    403,
                    f"The deployment '{call.deployment}' has no price configured, so it cannot be used under a cost "
                    "budget; ask the gateway's administrator to add its price (GATEWAY_PRICES).",
                    code="cost_budget_unpriced",
                )
            if call.media is not None:  # images and audio: every unit the call may use, at its rate
                reserved = call.media.bound()
                if not price.covers(reserved):
                    raise GatewayError(
                        403,
                        f"The price of the deployment '{call.deployment}' has no rate for this call's unit "
                        f"({call.media.unit.value}), so it cannot be used under a cost budget; ask the gateway's "
                        "administrator to add it.",
                        code="cost_budget_unpriced",
                    )
                needs[Unit.NANO_USD] = price.usage_nano_usd(reserved)
            else:
                needs[Unit.NANO_USD] = price.cost_nano_usd(call.prompt_tokens_estimate, bound.tokens)
        budgeted = any(limit.unit is not Unit.REQUESTS for _, limit, _ in plans)
        now = self._clock()
        # A budgeted call without an output limit gets the reserved one sent upstream, which then enforces it (D68).
        reservation = QuotaReservation(price=price, output_cap=bound.cap if budgeted else None)
        leasing: list[Hold] = []  # limits whose local balance cannot cover the call: a storage change each
        try:
            for scope, limit, units in plans:
                need = needs[limit.unit]
                end = window_end(limit.window, now)
                if need > units:
                    raise _never_fits(limit, need, units, call, tokens)
                local = self._leases.local(CounterId(scope, limit, window_key(limit.window, now)), units, end)
                if self._leases.take(local, need):  # the common case: no storage, no await
                    reservation.holds.append(Hold(limit, local, need))
                else:
                    leasing.append(Hold(limit, local, need))
            if leasing:
                # A caller's first call in a while: its counters' storage changes run together, so the call waits
                # for one round of changes, not one per limit (D67). Each hold joins the reservation the moment it
                # is granted, so a refusal or a cancellation gives back exactly what was taken.
                async def lease(hold: Hold) -> None:
                    await self._hold(hold.local, hold.limit, hold.amount, now)
                    reservation.holds.append(hold)

                if len(leasing) == 1:
                    await lease(leasing[0])
                else:
                    outcomes = await asyncio.gather(*(lease(hold) for hold in leasing), return_exceptions=True)
                    refusals = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
                    if refusals:
                        raise refusals[0]  # the first limit in plan order that refused, as when they ran in turn
        except BaseException:
            for hold in reservation.holds:  # give back what was held before the refusal: nothing was used
                self._leases.release(hold.local, hold.amount, 0)
            raise
        return reservation

    async def give_back(
        self,
        caller: Caller,
        deployment: str,
        price: Price | None,
        charged: Usage,
        used: Usage,
        *,
        since: datetime,
    ) -> None:
        """A call that runs for hours (a batch) is charged its whole hold when it starts; when it ends, the difference
        to what it used is settled on the caller's token and cost budgets whose window is still the one it was charged
        in (rate windows ended long ago): what it did not use goes back, what it used beyond the hold (a batch line
        without an output limit, when the allowance is below the model's maximum) is charged. Local only, like
        ``settle``: the keeper commits it."""
        now = self._clock()
        for scope, limit, units in await self.limits_for(caller, deployment):
            if limit.unit is Unit.REQUESTS or limit.is_rate:
                continue
            key = window_key(limit.window, now)
            if window_key(limit.window, since) != key or (limit.unit is Unit.NANO_USD and price is None):
                continue
            unused = self._used(limit, price, charged) - self._used(limit, price, used)
            if unused:
                local = self._leases.local(CounterId(scope, limit, key), units, window_end(limit.window, now))
                self._leases.release(local, 0, -unused)

    def settle(self, reservation: QuotaReservation, usage: Usage | None) -> None:
        """Charge what the call used against what it held (local only: no storage, cannot fail)."""
        for hold in reservation.holds:
            self._leases.release(hold.local, hold.amount, self._used(hold.limit, reservation.price, usage))
        reservation.holds = []

    async def _hold(self, local: LocalCounter, limit: Limit, need: int, now: datetime) -> None:
        try:
            denied = await self._leases.reserve(local, need)
        except QuotaStorageError as exc:
            if not self._settings.fail_open:
                log.error("quota storage unavailable (%s): refusing the call (fail-closed)", exc)
                raise GatewayError(
                    503,
                    "The gateway cannot check your quota right now (its storage is unreachable); retry shortly.",
                    code="quota_unavailable",
                    headers={"retry-after": "5"},
                ) from exc
            log.warning("quota storage unavailable (%s): admitting against this instance's own limit (fail-open)", exc)
            if not self._leases.admit_locally(local, need):
                raise _exhausted(limit, local, now, held_elsewhere=False) from exc
            return
        if denied is not None:
            raise _exhausted(limit, local, now, held_elsewhere=denied.held_elsewhere)

    @staticmethod
    def _used(limit: Limit, price: Price | None, usage: Usage | None) -> int:
        if limit.unit is Unit.REQUESTS:
            return 1
        if usage is None:
            return 0
        if limit.unit is Unit.TOKENS:
            return usage.total_tokens
        assert price is not None  # reserve refused cost budgets without a price
        return price.usage_nano_usd(usage)


def with_quota_headers(upstream: Mapping[str, str], quota: Mapping[str, str]) -> dict[str, str]:
    """The upstream's headers plus the caller's quota headers; where both have a rate limit (requests or tokens per
    minute), the caller sees whichever leaves less."""
    merged = dict(upstream)
    lowered = {name.lower(): name for name in upstream}
    for name, value in quota.items():
        if name.startswith("x-ratelimit-remaining-"):
            theirs = lowered.get(name)
            limit_name = name.replace("-remaining-", "-limit-")
            if theirs is not None and _as_int(upstream[theirs]) <= int(value):
                continue  # the upstream's limit is the stricter one: leave its pair
            for stale in (theirs, lowered.get(limit_name)):
                if stale is not None:
                    merged.pop(stale, None)
            merged[name] = value
            merged[limit_name] = quota[limit_name]
        elif not name.startswith("x-ratelimit-limit-"):
            merged[name] = value
    return merged


def _as_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 2**63


def _units_number(limit: Limit, units: int) -> int | float:
    return float(Decimal(units) / NANO_USD_PER_USD) if limit.unit is Unit.NANO_USD else units


def _units_text(limit: Limit, units: int) -> str:
    if limit.unit is Unit.NANO_USD:
        return str((Decimal(units) / NANO_USD_PER_USD).quantize(Decimal("0.000001")))
    return str(units)


def _retry_headers(seconds: float) -> dict[str, str]:
    milliseconds = max(1, math.ceil(seconds * 1000))
    return {"retry-after": str(math.ceil(milliseconds / 1000)), "retry-after-ms": str(milliseconds)}


def _exhausted(limit: Limit, local: LocalCounter, now: datetime, *, held_elsewhere: bool) -> GatewayError:
    reset = local.window_end
    until_reset = (reset - now).total_seconds()
    code = f"{limit.value}_exceeded"
    if held_elsewhere:
        wait = min(until_reset, HELD_ELSEWHERE_RETRY_SECONDS)
        return GatewayError(
            429,
            f"Your {limit.value.replace('_', ' ')} budget is in use by calls in flight; retry in a moment.",
            code=code,
            headers=_retry_headers(wait),
        )
    reset_text = reset.strftime("%Y-%m-%dT%H:%M:%SZ")
    if limit.is_rate:
        return GatewayError(
            429,
            f"You have reached your limit of {_units_text(limit, local.limit)} {limit.value.replace('_', ' ')}; "
            f"the window resets at {reset_text}.",
            code=code,
            headers=_retry_headers(until_reset),
        )
    return GatewayError(
        403,
        f"Your {limit.value.replace('_', ' ')} quota of {_units_text(limit, local.limit)} is used up; it resets at "
        f"{reset_text}.",
        code=code,
        headers=_retry_headers(until_reset),
    )


def _per_generation(call: ModelCall) -> str:
    return f" for {call.generations} generations" if call.generations > 1 else ""


def _never_fits(limit: Limit, need: int, units: int, call: ModelCall, tokens: int) -> GatewayError:
    if limit.unit is Unit.REQUESTS:
        detail = f"your {limit.value.replace('_', ' ')} limit is {units}"
    elif call.media is not None:  # images and audio: what the request asked for, in its unit
        detail = (
            f"this {call.operation.name} call needs {_units_text(limit, need)} at most (what it asked for, in "
            f"{call.media.unit.value}), more than your whole {limit.value.replace('_', ' ')} limit of "
            f"{_units_text(limit, units)}"
        )
    else:
        allowance = tokens - call.prompt_tokens_estimate
        detail = (
            f"this call needs {_units_text(limit, need)} ({call.prompt_tokens_estimate} prompt tokens plus an output "
            f"allowance of {allowance}{_per_generation(call)}), more than your whole "
            f"{limit.value.replace('_', ' ')} limit of {_units_text(limit, units)}; lower max_tokens (or "
            "max_completion_tokens / max_output_tokens)"
        )
    return GatewayError(403, f"This call cannot fit your quota: {detail}.", code=f"{limit.value}_exceeded")
