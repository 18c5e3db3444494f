"""Reserve before forwarding, settle after: the seam where quotas and the usage ledger live.

``reserve`` runs before a model call is forwarded and may refuse it (a 429/403 GatewayError); ``settle``
runs exactly once after the call ended, however it ended (complete, upstream error, cut-off stream,
caller gone), with the usage the upstream reported or an estimate flagged as such. Settling writes the
call to the usage ledger (with its exact cost at the price version in force when the call was admitted, the
same price its cost budget was charged at) and logs one line of counts and identifiers, never prompt or
completion text.

A call that may have run upstream without reporting its usage (a timeout, a connection lost after sending, a
body or stream that broke off) is charged conservatively (:meth:`Reservation.conservative`): its prompt plus
everything it reserved for output, or what was observed when that is more, flagged ``estimated``. When the pool
sends such a call again to another backend, the attempt that may have run is charged on a ledger row of its own
and the new attempt holds quota of its own first (:meth:`Accounting.another_attempt`): every attempt that may
have run is paid for, and none runs without its reservation (docs/quotas.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from azure.core.exceptions import AzureError

from shared.accounting.ledger import UsageLedger, UsageRecord
from shared.accounting.prices import Price, PriceBook, money_text
from shared.auth.identity import Caller
from shared.errors import GatewayError
from shared.policy.callers import CallerPolicyStore
from shared.protocol.calls import ModelCall
from shared.protocol.media import Unit
from shared.protocol.usage import Usage
from shared.quotas.enforcer import QuotaEnforcer, QuotaReservation
from shared.quotas.output import output_bound
from shared.telemetry import UNOBSERVED, Observation

log = logging.getLogger("gateway.usage")

# Ledger rows of earlier attempts of a call that the pool sent again: ``<request id>~1``, ``~2``, ...
ATTEMPT_SEPARATOR = "~"
DEFAULT_ALLOWANCE = 16_384  # without quotas (tests): the guardrails' default output ceiling


@dataclass(frozen=True)
class AttemptFailure:
    """An upstream attempt that gave no answer but may have run: where, and the status it would have answered."""

    backend: str | None
    status: int


@dataclass
class Reservation:
    request_id: str
    caller: Caller
    call: ModelCall
    quota: QuotaReservation = field(default_factory=QuotaReservation)
    output_tokens: int = 0  # output the call may be charged for, all generations together (shared.quotas.output)
    started: float = field(default_factory=time.monotonic)
    settled: bool = False
    backend: str | None = None  # the label of the upstream backend whose answer the caller got
    observation: Observation = UNOBSERVED  # the call's span and metrics (shared.telemetry)
    # The caller's chargeback attributes when the call was admitted; fixed on its ledger row (docs/finance.md).
    chargeback: Mapping[str, Any] | None = None
    attempts: int = 1  # upstream attempts that hold quota: earlier ones may have run and were charged

    @property
    def price(self) -> Price | None:
        """The price version the call is charged at: the one in force when it was admitted."""
        return self.quota.price

    def conservative(self, observed: Usage | None = None) -> Usage:
        """What to charge a call that may have run but reported no usage: the prompt plus all the output it
        reserved, or what was observed when that is more; flagged as estimated."""
        if self.call.media is not None:  # images and audio: every unit reserved (shared.protocol.media)
            return self.call.media.bound()
        prompt = self.call.prompt_tokens_estimate
        if observed is not None:
            prompt = max(prompt, observed.prompt_tokens)
        output = max(self.output_tokens, observed.completion_tokens if observed is not None else 0)
        return Usage(prompt, output, estimated=True)

    def claim(self) -> bool:
        """Take the one right to settle this call (synchronous, so no await can race it)."""
        if self.settled:
            return False
        self.settled = True
        return True


class Accounting:
    def __init__(
        self,
        ledger: UsageLedger,
        prices: PriceBook | Mapping[str, Price],
        quotas: QuotaEnforcer | None = None,
        policies: CallerPolicyStore | None = None,
    ) -> None:
        self.ledger = ledger
        self.prices = prices if isinstance(prices, PriceBook) else PriceBook(prices)
        self.quotas = quotas
        self.policies = policies

    async def reserve(self, caller: Caller, call: ModelCall, request_id: str) -> Reservation:
        """Hold the call's quota (refusing it with a 429/403/503 GatewayError), before anything is forwarded."""
        await self.prices.ensure_current()
        price = self.prices.at(call.deployment, datetime.now(UTC))
        # The policy is cached (authorization has just read it): its chargeback attributes go on the ledger row.
        chargeback = (await self.policies.get(caller.id)).chargeback() if self.policies is not None else None
        quota = await self._hold(caller, call, price)
        bound = self.quotas.output_bound(call) if self.quotas is not None else output_bound(call, DEFAULT_ALLOWANCE)
        return Reservation(request_id, caller, call, quota, output_tokens=bound.tokens, chargeback=chargeback)

    async def _hold(self, caller: Caller, call: ModelCall, price: Price | None) -> QuotaReservation:
        if self.quotas is None:
            return QuotaReservation(price=price)
        return await self.quotas.reserve(caller, call, price)

    async def another_attempt(self, reservation: Reservation, failed: AttemptFailure) -> bool:
        """Before the pool sends a call again after an attempt that may have run: hold quota for the new attempt
        (False, and no new attempt, if the caller's limits cannot cover it), then charge the failed attempt
        conservatively on a ledger row of its own."""
        try:
            quota = await self._hold(reservation.caller, reservation.call, reservation.price)
        except (GatewayError, AzureError) as refusal:  # refused, or the quota could not be checked
            log.info(
                "request %s: no further attempt (%s): the attempt that may have run used the caller's quota",
                reservation.request_id,
                getattr(refusal, "code", None) or type(refusal).__name__,
            )
            return False
        failed_attempt = replace(
            reservation,
            request_id=f"{reservation.request_id}{ATTEMPT_SEPARATOR}{reservation.attempts}",
            backend=failed.backend,
            observation=UNOBSERVED,
        )
        reservation.quota = quota
        reservation.attempts += 1
        await self._record(failed_attempt, failed_attempt.conservative(), failed.status, "upstream_unavailable")
        return True

    async def settle(self, reservation: Reservation, usage: Usage | None, status: int, *, outcome: str) -> None:
        """Settle once: the first call records, any later one does nothing."""
        if reservation.claim():
            await self.record(reservation, usage, status, outcome=outcome)

    async def record(self, reservation: Reservation, usage: Usage | None, status: int, *, outcome: str) -> None:
        """Record a call whose settlement the caller has already claimed."""
        usage = usage or Usage()
        with reservation.observation.settle_step():
            cost_usd = await self._record(reservation, usage, status, outcome)
        reservation.observation.settled(usage, status, outcome, cost_usd)

    async def record_request(
        self, caller: Caller, call: ModelCall, request_id: str, status: int, *, outcome: str, backend: str | None = None
    ) -> None:
        """Record a request that uses no tokens (a stored response read, deleted or cancelled, the models listed):
        a ledger row of its own operation with 0 tokens, so finance sees every request (D-number in decisions.md).
        Nothing is reserved for it, and it does not count against ``requests_per_minute``."""
        chargeback = (await self.policies.get(caller.id)).chargeback() if self.policies is not None else None
        reservation = Reservation(request_id, caller, call, chargeback=chargeback, backend=backend, settled=True)
        await self._record(reservation, Usage(), status, outcome)

    async def _record(self, reservation: Reservation, usage: Usage, status: int, outcome: str) -> float | None:
        if self.quotas is not None:
            self.quotas.settle(reservation.quota, usage)  # synchronous, before any await: nothing can skip it
        caller, call = reservation.caller, reservation.call
        at = datetime.now(UTC)
        price = reservation.price  # the version in force when the call was admitted; its id goes on the row
        cost = price.cost(usage) if price and price.covers(usage) else None
        record = UsageRecord(
            request_id=reservation.request_id,
            at=at,
            caller_id=caller.id,
            caller_name=caller.name,
            tenant=caller.tenant,
            auth_method=caller.auth_method,
            key_id=caller.key_id,
            operation=call.operation.name,
            deployment=call.deployment,
            stream=call.stream,
            status=status,
            outcome=outcome,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            estimated=usage.estimated,
            **_unit_fields(call, usage),
            cost_usd=float(cost) if cost is not None else None,  # the old float column, for older readers
            duration_ms=round((time.monotonic() - reservation.started) * 1000),
            backend=reservation.backend,
            cost=money_text(cost) if cost is not None else None,
            currency=price.currency if price else None,
            price_version=price.version if price else None,
            **_chargeback_fields(reservation.chargeback),
            shard=self.ledger.shard_at(at),
        )
        # A local diagnostic: with Azure Monitor this logger is capped at WARNING (shared/telemetry/setup.py), since
        # a line per call is the costliest telemetry there is and the ledger row, span and metrics hold the facts.
        if log.isEnabledFor(logging.INFO):  # capped: not even its attributes are built
            _log_settled(record, usage)
        await self.ledger.record(record)
        return record.cost_usd


def _unit_fields(call: ModelCall, usage: Usage) -> dict[str, Any]:
    """Images and audio: the unit the call is counted in, how many, and the token kinds kept apart (docs/finance.md).
    Text operations leave the columns out (their unit is tokens)."""
    if call.media is None:
        return {}
    unit = call.media.unit
    quantity = {
        Unit.TOKENS: str(usage.total_tokens),
        Unit.IMAGES: str(usage.images),
        Unit.AUDIO_SECONDS: str(Decimal(usage.audio_ms) / 1000),
        Unit.CHARACTERS: str(usage.characters),
    }[unit]
    return {
        "unit": unit.value,
        "units": quantity,
        "image_variant": usage.image_variant or None,
        "audio_input_tokens": usage.audio_input_tokens,
        "audio_output_tokens": usage.audio_output_tokens,
        "image_input_tokens": usage.image_input_tokens,
        "image_output_tokens": usage.image_output_tokens,
    }


def _chargeback_fields(chargeback: Mapping[str, Any] | None) -> dict[str, Any]:
    if chargeback is None:
        return {}
    tags = dict(chargeback.get("tags") or {})
    return {
        "cost_center": str(chargeback.get("cost_center") or ""),
        "owner": str(chargeback.get("owner") or ""),
        "department": str(chargeback.get("department") or ""),
        "tags": json.dumps(dict(sorted(tags.items())), ensure_ascii=False) if tags else "",
    }


def _log_settled(record: UsageRecord, usage: Usage) -> None:
    log.info(
        "model call %s settled: %s %s by %s status=%s outcome=%s tokens=%d+%d%s",
        record.request_id,
        record.operation,
        record.deployment,
        record.caller_id,
        record.status,
        record.outcome,
        usage.prompt_tokens,
        usage.completion_tokens,
        " (estimated)" if usage.estimated else "",
        # Flat, primitive attributes: Azure Monitor turns them into customDimensions of the trace record.
        extra={
            f"gateway_{key}": value
            for key, value in {
                "request_id": record.request_id,
                "caller_id": record.caller_id,
                "auth_method": record.auth_method,
                "operation": record.operation,
                "deployment": record.deployment,
                "stream": record.stream,
                "status": record.status,
                "outcome": record.outcome,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
                "usage_estimated": usage.estimated,
                "duration_ms": record.duration_ms,
                "backend": record.backend or "",
            }.items()
        },
    )
