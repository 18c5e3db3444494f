"""Admission control's count: a slot is freed once, however many paths release it."""

from __future__ import annotations

import pytest

from shared.errors import GatewayError
from shared.upstream.admission import Admission


def test_past_the_bound_the_call_is_refused_503_with_retry_after():
    admission = Admission(limit=2)
    admission.enter()
    admission.enter()
    with pytest.raises(GatewayError) as refused:
        admission.enter()
    assert (refused.value.status, refused.value.code) == (503, "gateway_overloaded")
    assert refused.value.headers["retry-after"] == "1"
    assert (admission.in_flight, admission.refused) == (2, 1)


def test_a_slot_released_twice_frees_one_place():
    admission = Admission(limit=2)
    slot = admission.enter()
    admission.enter()
    slot.release()
    slot.release()  # the relay's finally and the abandoned-stream task may both release it
    assert admission.in_flight == 1
    admission.enter()
    assert admission.in_flight == 2
