"""Reserve before forwarding, settle after: the seam where quotas and the usage ledger live.

``reserve`` runs before a model call is forwarded and may refuse it (a 429/403 GatewayError); ``settle``
runs exactly once after the call ended, however it ended (complete, upstream error, cut-off stream,
caller gone), with the usage the upstream reported or an estimate flagged as such. Settling writes the
call to the usage ledger (with its exact cost at the price version in force) and logs one line of counts and
identifiers, never prompt or completion text.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.accounting.ledger import UsageLedger, UsageRecord
from shared.accounting.prices import Price, PriceBook, money_text
from shared.auth.identity import Caller
from shared.policy.callers import CallerPolicyStore
from shared.protocol.calls import ModelCall
from shared.protocol.usage import Usage
from shared.quotas.enforcer import QuotaEnforcer, QuotaReservation
from shared.telemetry import UNOBSERVED, Observation

log = logging.getLogger("gateway.usage")


@dataclass
class Reservation:
    request_id: str
    caller: Caller
    call: ModelCall
    quota: QuotaReservation = field(default_factory=QuotaReservation)
    started: float = field(default_factory=time.monotonic)
    settled: bool = False
    backend: str | None = None  # the label of the upstream backend whose answer the caller got
    observation: Observation = UNOBSERVED  # the call's span and metrics (shared.telemetry)
    # The caller's chargeback attributes when the call was admitted; fixed on its ledger row (docs/finance.md).
    chargeback: Mapping[str, Any] | None = None

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
        # The policy is cached (authorization has just read it): its chargeback attributes go on the ledger row.
        chargeback = (await self.policies.get(caller.id)).chargeback() if self.policies is not None else None
        quota = await self.quotas.reserve(caller, call) if self.quotas is not None else QuotaReservation()
        return Reservation(request_id, caller, call, quota, chargeback=chargeback)

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

    async def _record(self, reservation: Reservation, usage: Usage, status: int, outcome: str) -> float | None:
        if self.quotas is not None:
            self.quotas.settle(reservation.quota, usage)  # synchronous, before any await: nothing can skip it
        caller, call = reservation.caller, reservation.call
        at = datetime.now(UTC)
        price = self.prices.at(call.deployment, at)  # the version in force now; its id goes on the row
        cost = price.cost(usage) if price else None
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


def _chargeback_fields(chargeback: Mapping[str, Any] | None) -> dict[str, str | None]:
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
