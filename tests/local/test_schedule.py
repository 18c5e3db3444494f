"""NCRONTAB schedules as the local dev host reads them from timer functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.local.schedule import Schedule, parse_schedule
from shared.timers import REPLAY_SCHEDULE


def _next(expression: str, after: datetime) -> datetime:
    schedule = parse_schedule(expression)
    assert isinstance(schedule, Schedule)
    return schedule.next_after(after)


def test_every_five_minutes_on_the_minute():
    at = datetime(2026, 12, 1, 13, 52, 44, 500, tzinfo=UTC)
    assert _next(REPLAY_SCHEDULE, at) == datetime(2026, 12, 1, 13, 55, 0, tzinfo=UTC)
    assert _next(REPLAY_SCHEDULE, datetime(2026, 12, 1, 13, 55, 0, tzinfo=UTC)) == datetime(
        2026, 12, 1, 14, 0, 0, tzinfo=UTC
    )


def test_ranges_lists_and_weekdays():
    # 09:30:15 on weekdays (1-5, Monday to Friday); 2026-12-05 is a Saturday.
    friday_evening = datetime(2026, 12, 4, 18, 0, 0, tzinfo=UTC)
    assert _next("15 30 9 * * 1-5", friday_evening) == datetime(2026, 12, 7, 9, 30, 15, tzinfo=UTC)
    assert _next("0 0 0 1 1,7 *", friday_evening) == datetime(2027, 1, 1, tzinfo=UTC)


def test_an_interval_and_bad_schedules():
    assert parse_schedule("00:00:30") == timedelta(seconds=30)
    for bad in ("*/5 * * * *", "0 */5 * * * MON", "61 * * * * *", "00:00:00"):
        with pytest.raises(ValueError):
            parse_schedule(bad)
