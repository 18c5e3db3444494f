"""What one backend's recent answers say about it: cooling after a 429, and a circuit breaker for failures.

Two different conditions, kept apart on purpose:

* **Cooling** is the upstream telling us exactly when it will take calls again (``retry-after-ms``, else
  ``retry-after``, else a default). The backend is skipped until that instant, to the millisecond, on
  ``time.monotonic`` (wall-clock jumps cannot shorten or stretch it). A 429 is a healthy answer: it closes the
  circuit like any other answer.
* **The circuit breaker** covers backends that fail without saying when to come back: 5xx, timeouts, refused
  or broken connections. After ``failures`` consecutive failures the circuit opens for ``open_seconds``; then
  it half-opens, and exactly one real call (the probe) may go there. The pool fails over if the probe fails,
  so the caller behind it is not the one who pays; success closes the circuit, failure reopens it.

All state is per process (see docs/decisions.md D43), and every method is synchronous: on one event loop no
two calls can interleave inside them, so no lock is needed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

# A retry-after beyond this is taken as this: a backend is looked at again within the hour.
MAX_COOLING_SECONDS = 3600.0


class Circuit(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BackendHealth:
    def __init__(self, *, failures_to_open: int, open_seconds: float) -> None:
        self._failures_to_open = failures_to_open
        self._open_seconds = open_seconds
        self.cooling_until = 0.0  # time.monotonic() before which the backend is skipped (rate limited)
        self.open_until = 0.0  # while the circuit is open: when it half-opens
        self.failures = 0  # consecutive failures
        self._circuit = Circuit.CLOSED
        self._probing = False  # a half-open circuit has its one probe in flight

    def circuit(self, now: float) -> Circuit:
        if self._circuit is Circuit.OPEN and now >= self.open_until:
            self._circuit = Circuit.HALF_OPEN
        return self._circuit

    def can_take(self, now: float) -> bool:
        """Whether a call may be sent here now."""
        if now < self.cooling_until:
            return False
        circuit = self.circuit(now)
        if circuit is Circuit.OPEN:
            return False
        return not (circuit is Circuit.HALF_OPEN and self._probing)

    def available_at(self, now: float) -> float:
        """The earliest instant this backend may take a call (``now`` if it may now; ``inf`` if it waits on a probe)."""
        at = max(now, self.cooling_until)
        circuit = self.circuit(now)
        if circuit is Circuit.OPEN:
            at = max(at, self.open_until)
        elif circuit is Circuit.HALF_OPEN and self._probing:
            return math.inf
        return at

    def cooling(self, now: float) -> bool:
        return now < self.cooling_until

    # --- outcomes of an attempt ------------------------------------------------------------------------------

    def attempt(self, now: float) -> None:
        """A call is being sent here; in a half-open circuit it is the probe (the only one until it ends)."""
        if self.circuit(now) is Circuit.HALF_OPEN:
            self._probing = True

    def answered(self) -> None:
        """Any coherent answer (2xx, 4xx, 429) proves the backend is up: the circuit closes."""
        self.failures = 0
        self._circuit = Circuit.CLOSED
        self._probing = False

    def rate_limited(self, now: float, seconds: float) -> None:
        self.answered()
        self.cooling_until = max(self.cooling_until, now + min(seconds, MAX_COOLING_SECONDS))

    def failed(self, now: float) -> None:
        """A 5xx, timeout or connection failure."""
        self.failures += 1
        if self._probing or self.failures >= self._failures_to_open:
            self._circuit = Circuit.OPEN
            self.open_until = now + self._open_seconds
            self._probing = False

    def abandoned(self) -> None:
        """The attempt ended without an outcome (the caller went away): a half-open circuit may probe again."""
        self._probing = False

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "circuit": self.circuit(now).value,
            "cooling_ms": max(0, math.ceil((self.cooling_until - now) * 1000)),
            "open_ms": max(0, math.ceil((self.open_until - now) * 1000)) if self._circuit is Circuit.OPEN else 0,
            "consecutive_failures": self.failures,
        }


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The upstream's wait hint: ``retry-after-ms`` (Azure OpenAI's, in milliseconds), else ``retry-after``
    (whole seconds or an HTTP date); None when neither is present and valid."""
    millis = _non_negative(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _non_negative(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip()
    # Digits with an optional fraction only: float() would also take "nan", "inf", "1e9" and "_".
    if not text or not text.replace(".", "", 1).isdigit() or not text.isascii():
        return None
    return float(text)
