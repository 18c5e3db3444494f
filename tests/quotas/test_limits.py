"""Limits and windows: pure rules."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.quotas.enforcer import with_quota_headers
from shared.quotas.limits import Limit, LimitError, LimitOverrides, Limits, Window, to_units
from shared.quotas.windows import window_end, window_key


def test_an_absent_override_takes_the_default_and_an_explicit_null_is_unlimited():
    defaults = Limits({Limit.TOKENS_PER_DAY: 1000, Limit.REQUESTS_PER_MINUTE: 60})
    overrides = LimitOverrides.parse({"tokens_per_day": None, "tokens_per_month": 5000}, "limits")
    resolved = overrides.over(defaults)
    assert resolved.get(Limit.TOKENS_PER_DAY) is None
    assert resolved.get(Limit.REQUESTS_PER_MINUTE) == 60
    assert resolved.get(Limit.TOKENS_PER_MONTH) == 5000
    assert dict(resolved.active()) == {Limit.REQUESTS_PER_MINUTE: 60, Limit.TOKENS_PER_MONTH: 5000}


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"tokens_per_week": 5}, "limits.tokens_per_week"),
        ({"tokens_per_day": -1}, "limits.tokens_per_day"),
        ({"tokens_per_day": 1.5}, "limits.tokens_per_day"),
        ({"tokens_per_day": True}, "limits.tokens_per_day"),
        ({"tokens_per_day": "100"}, "limits.tokens_per_day"),
        ({"tokens_per_day": 10**16}, "limits.tokens_per_day"),
        ({"cost_usd_per_month": float("nan")}, "limits.cost_usd_per_month"),
        ({"cost_usd_per_month": float("inf")}, "limits.cost_usd_per_month"),
        ({"cost_usd_per_month": "1e999"}, "limits.cost_usd_per_month"),
        ({"cost_usd_per_month": -0.01}, "limits.cost_usd_per_month"),
        ([1], "limits"),
    ],
)
def test_bad_limits_name_their_field(raw, field):
    with pytest.raises(LimitError) as caught:
        LimitOverrides.parse(raw, "limits")
    assert caught.value.field == field


def test_cost_budgets_are_counted_in_whole_nano_dollars():
    overrides = LimitOverrides.parse({"cost_usd_per_month": 12.345678901}, "limits")
    assert to_units(Limit.COST_USD_PER_MONTH, overrides.values[Limit.COST_USD_PER_MONTH]) == 12_345_678_901
    assert overrides.to_json(decimal_as_text=True) == {"cost_usd_per_month": "12.345678901"}
    assert to_units(Limit.COST_USD_PER_MONTH, Decimal("0.0000000019")) == 1  # rounded down: never more budget


@pytest.mark.parametrize(
    "window, now, key, end",
    [
        (
            Window.MINUTE,
            datetime(2026, 12, 1, 13, 45, 59, 999999, UTC),
            "2026-12-01T13:45",
            datetime(2026, 12, 1, 13, 46, tzinfo=UTC),
        ),
        (Window.DAY, datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), "2026-12-31", datetime(2027, 1, 1, tzinfo=UTC)),
        (Window.MONTH, datetime(2026, 12, 31, 23, 59, tzinfo=UTC), "2026-12", datetime(2027, 1, 1, tzinfo=UTC)),
        (Window.MONTH, datetime(2028, 2, 29, 12, tzinfo=UTC), "2028-02", datetime(2028, 3, 1, tzinfo=UTC)),
        (Window.MONTH, datetime(2026, 1, 31, tzinfo=UTC), "2026-01", datetime(2026, 2, 1, tzinfo=UTC)),
    ],
)
def test_windows_are_utc_calendar_periods(window, now, key, end):
    assert window_key(window, now) == key
    assert window_end(window, now) == end


def test_the_caller_sees_the_stricter_of_its_own_and_the_upstreams_rate_limit():
    upstream = {"x-ratelimit-limit-tokens": "150000", "x-ratelimit-remaining-tokens": "149000", "x-request-id": "u"}
    ours = {
        "x-ratelimit-limit-tokens": "5000",
        "x-ratelimit-remaining-tokens": "4000",
        "x-gateway-quota-remaining-tokens-day": "90000",
        "x-gateway-quota-limit-tokens-day": "100000",
    }
    merged = with_quota_headers(upstream, ours)
    assert (merged["x-ratelimit-limit-tokens"], merged["x-ratelimit-remaining-tokens"]) == ("5000", "4000")
    assert merged["x-gateway-quota-remaining-tokens-day"] == "90000"
    assert merged["x-request-id"] == "u"
    loose = {"x-ratelimit-limit-tokens": "900000", "x-ratelimit-remaining-tokens": "899000"}
    assert with_quota_headers(upstream, loose)["x-ratelimit-remaining-tokens"] == "149000"
