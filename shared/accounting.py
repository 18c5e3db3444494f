"""Reserve before forwarding, settle after: the seam where quotas and the usage ledger live.

``reserve`` runs before a model call is forwarded and may refuse it (a 429/403 GatewayError); ``settle``
runs exactly once after the call ended, however it ended (complete, upstream error, cut-off stream,
caller gone), with the usage the upstream reported or an estimate flagged as such.

This module records every settled call as a structured telemetry event (counts and identifiers only,
never prompt or completion text).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from shared.guard import ModelCall
from shared.identity import Caller
from shared.usage import Usage

log = logging.getLogger("gateway.usage")


@dataclass
class Reservation:
    request_id: str
    caller: Caller
    call: ModelCall
    started: float = field(default_factory=time.monotonic)
    settled: bool = False


class Accounting:
    async def reserve(self, caller: Caller, call: ModelCall, request_id: str) -> Reservation:
        return Reservation(request_id, caller, call)

    async def settle(self, reservation: Reservation, usage: Usage | None, status: int, *, outcome: str) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        usage = usage or Usage()
        # Flat, primitive attributes: Azure Monitor turns them into customDimensions of the trace record.
        log.info(
            "model call %s settled: %s %s by %s status=%s outcome=%s tokens=%d+%d%s",
            reservation.request_id,
            reservation.call.operation.name,
            reservation.call.deployment,
            reservation.caller.id,
            status,
            outcome,
            usage.prompt_tokens,
            usage.completion_tokens,
            " (estimated)" if usage.estimated else "",
            extra={
                f"gateway_{key}": value
                for key, value in {
                    "request_id": reservation.request_id,
                    "caller_id": reservation.caller.id,
                    "auth_method": reservation.caller.auth_method,
                    "operation": reservation.call.operation.name,
                    "deployment": reservation.call.deployment,
                    "stream": reservation.call.stream,
                    "status": status,
                    "outcome": outcome,
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "total_tokens": usage.total_tokens,
                    "usage_estimated": usage.estimated,
                    "duration_ms": round((time.monotonic() - reservation.started) * 1000),
                }.items()
            },
        )
