"""Admission control: how many model calls one worker process holds at once (``GATEWAY_MAX_INFLIGHT_CALLS``, D80).

A model call holds its slot from the moment it arrives until its answer has been relayed to its end: a JSON call
until the handler returns, a stream until its last event went out, the caller hung up or the upstream broke off.
Past the bound a call is refused at once, before its body is read, with an OpenAI-shaped 503 and ``retry-after``:
the SDKs retry it (another instance may take it), instead of the call waiting seconds for a connection or a turn
of a saturated event loop and ending in a 504. The bound is per process, like everything it protects (one event
loop's CPU, one process's memory); the platform adds instances, docs/scale.md sizes them.
"""

from __future__ import annotations

from shared.errors import GatewayError

RETRY_AFTER_SECONDS = "1"


def overloaded() -> GatewayError:
    return GatewayError(
        503,
        "This gateway instance is serving as many calls as it is configured to hold; retry shortly.",
        code="gateway_overloaded",
        headers={"retry-after": RETRY_AFTER_SECONDS},
    )


class Admission:
    """A counter of calls in flight with a ceiling; single event loop, so no lock (nothing awaits in between)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.refused = 0  # since start (the refusals are also counted in gateway.requests, outcome "overloaded")

    def enter(self) -> Slot:
        """A slot for one call, or :func:`overloaded` if every slot is taken."""
        if self.in_flight >= self.limit:
            self.refused += 1
            raise overloaded()
        self.in_flight += 1
        return Slot(self)


class Slot:
    """One admitted call's place; :meth:`release` may be called any number of times, it frees the place once."""

    __slots__ = ("_admission",)

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        admission = self._admission
        if admission is not None:
            self._admission = None
            admission.in_flight -= 1

    @property
    def held(self) -> bool:
        return self._admission is not None
