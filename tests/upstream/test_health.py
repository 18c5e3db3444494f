"""A backend's health on its own: the upstream's wait hints, cooling and the circuit breaker's transitions."""

from __future__ import annotations

import math
import time
from email.utils import formatdate

import pytest
from multidict import CIMultiDict

from shared.upstream.health import MAX_COOLING_SECONDS, BackendHealth, Circuit, retry_after_seconds


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "250", "retry-after": "7"}, 0.25),  # the millisecond hint wins
        ({"retry-after-ms": "12.5"}, 0.0125),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "nan", "retry-after": "2"}, 2.0),  # a malformed hint is ignored, not trusted
        ({"retry-after-ms": "-5", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "1e9"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "1_000"}, None),  # float() would take it
        ({"retry-after": " 4 "}, 4.0),
        ({}, None),
    ],
)
def test_retry_after_prefers_milliseconds_and_refuses_what_is_not_a_plain_number(headers, seconds):
    assert retry_after_seconds(CIMultiDict(headers)) == seconds


def test_retry_after_may_be_an_http_date():
    in_ten = formatdate(time.time() + 10, usegmt=True)
    assert 8.5 < (retry_after_seconds(CIMultiDict({"retry-after": in_ten})) or 0) <= 10


def _health() -> BackendHealth:
    return BackendHealth(failures_to_open=3, open_seconds=30)


def test_cooling_lasts_exactly_the_hint_and_a_later_longer_hint_extends_it():
    health = _health()
    health.rate_limited(100.0, 0.25)
    assert not health.can_take(100.2499) and health.can_take(100.25)
    health.rate_limited(100.1, 2)
    health.rate_limited(100.2, 0.01)  # a shorter hint never shortens a cooling already promised
    assert health.available_at(100.3) == pytest.approx(102.1)
    health.rate_limited(0, 10**9)
    assert health.cooling_until == MAX_COOLING_SECONDS


def test_the_circuit_opens_after_consecutive_failures_and_half_opens_for_one_probe():
    health = _health()
    health.failed(0)
    health.failed(1)
    health.answered()  # an answer in between resets the count
    for now in (2, 3, 4):
        health.failed(now)
    assert health.circuit(5) is Circuit.OPEN and not health.can_take(33.9)
    assert health.available_at(10) == 34
    assert health.circuit(34) is Circuit.HALF_OPEN and health.can_take(34)
    health.attempt(34)
    assert not health.can_take(34.1) and math.isinf(health.available_at(34.1))  # only one probe at a time
    health.failed(35)  # a failed probe reopens at once
    assert health.circuit(36) is Circuit.OPEN and health.available_at(36) == 65
    health.attempt(65)
    health.abandoned()  # the probe's caller went away: another call may probe
    assert health.can_take(65.5)
    health.attempt(66)
    health.rate_limited(66.1, 1)  # a 429 is an answer: the backend is up, only busy
    assert health.circuit(66.2) is Circuit.CLOSED and health.can_take(67.1)
