"""Telemetry the request path reports to: OpenTelemetry spans and metrics, or nothing at all.

The runtime installs one :class:`Telemetry` at start-up (:func:`shared.telemetry.setup.configure`); the rest
of the gateway reports through the functions here and never sees a provider or an exporter:

    observation = telemetry.observe_request(operation, request_id)   # the request path, once per call
    telemetry.record_backend_event(label, "cooling")                 # the backend pool
    telemetry.record_ledger_write_failure(rows)                      # the usage ledger

Until something is installed (and whenever ``GATEWAY_TELEMETRY=off``) these are no-ops: no tracer, no
meter, no clock reads, so telemetry off costs the request path nothing measurable.
"""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from shared.protocol.operations import Operation
from shared.telemetry import instruments as names
from shared.telemetry.instruments import Instruments
from shared.telemetry.requests import UNOBSERVED, Observation, RequestObservation, Unobserved

__all__ = [
    "UNOBSERVED",
    "Observation",
    "Telemetry",
    "Unobserved",
    "active",
    "install",
    "observe_request",
    "record_backend_event",
    "watch_calls_in_flight",
    "record_ledger_write_failure",
]


class Telemetry:
    """The gateway's instruments over a tracer and meter provider; ``Telemetry()`` is telemetry off."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        max_callers: int = 1000,
        max_deployments: int = 100,
        shutdown: Callable[[], None] | None = None,
    ) -> None:
        self.instruments: Instruments | None = None
        if tracer_provider is not None and meter_provider is not None:
            self.instruments = Instruments(
                tracer_provider, meter_provider, max_callers=max_callers, max_deployments=max_deployments
            )
        self._shutdown = shutdown

    @property
    def enabled(self) -> bool:
        return self.instruments is not None

    def shutdown(self) -> None:
        """Flush and stop the providers this process created (never the Functions worker's)."""
        if self._shutdown is not None:
            self._shutdown()
            self._shutdown = None


DISABLED = Telemetry()
_active = DISABLED


def install(telemetry: Telemetry) -> Telemetry:
    """Make ``telemetry`` the one the gateway reports to; returns the one it replaces."""
    global _active
    previous, _active = _active, telemetry
    return previous


def active() -> Telemetry:
    return _active


def observe_request(operation: Operation, request_id: str) -> Observation:
    instruments = _active.instruments
    if instruments is None:
        return UNOBSERVED
    return RequestObservation(instruments, operation, request_id)


def record_backend_event(label: str, kind: str) -> None:
    """A backend of the pool changed state: ``kind`` is one of ``cooling``, ``recovered``, ``breaker_open``,
    ``breaker_half_open``, ``breaker_closed``, ``failover`` (a bounded set: the workbook charts each)."""
    instruments = _active.instruments
    if instruments is not None:
        instruments.backend_events.add(1, {names.BACKEND: label, names.BACKEND_EVENT: kind})


def record_budget_threshold(limit: str, threshold: int) -> None:
    """A caller crossed a share of a monthly limit (once per caller, limit, threshold and month; the alert rule
    fires on any)."""
    instruments = _active.instruments
    if instruments is not None:
        instruments.budget_thresholds.add(1, {names.QUOTA_LIMIT: limit, names.BUDGET_THRESHOLD: threshold})


def record_ledger_write_failure(rows: int) -> None:
    """Usage rows the ledger gave up writing (the alert rule fires on any)."""
    instruments = _active.instruments
    if instruments is not None:
        instruments.ledger_write_failures.add(rows)


def watch_calls_in_flight(count: Callable[[], int]) -> None:
    """Report ``count()`` as ``gateway.calls.in_flight`` (admission control's count) whenever metrics are collected."""
    instruments = _active.instruments
    if instruments is not None:
        instruments.calls_in_flight = count
