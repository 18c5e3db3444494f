"""NCRONTAB schedules of timer functions, so the local dev host runs them when Azure would.

Azure Functions timer schedules have six fields, ``{second} {minute} {hour} {day} {month} {day-of-week}``
(day-of-week 0-6, 0 = Sunday), each ``*``, a number, a range ``a-b``, a list ``a,b`` or a step ``*/n`` /
``a-b/n``; App Service plans also accept an interval ``hh:mm:ss``. Month and day names are not supported
here (the gateway's schedules do not use them); an unsupported schedule is refused with a clear error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_INTERVAL = re.compile(r"(\d{2}):(\d{2}):(\d{2})")
_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_SEARCH_LIMIT = 100_000


@dataclass(frozen=True)
class Schedule:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    def next_after(self, moment: datetime) -> datetime:
        """The first matching second strictly after ``moment``."""
        at = moment.replace(microsecond=0) + timedelta(seconds=1)
        for _ in range(_SEARCH_LIMIT):
            if at.month not in self.months:
                at = (at.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0)
            elif at.day not in self.days or (at.weekday() + 1) % 7 not in self.weekdays:
                at = (at + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif at.hour not in self.hours:
                at = (at + timedelta(hours=1)).replace(minute=0, second=0)
            elif at.minute not in self.minutes:
                at = (at + timedelta(minutes=1)).replace(second=0)
            elif at.second not in self.seconds:
                at += timedelta(seconds=1)
            else:
                return at
        raise ValueError("the schedule never fires")


def parse_schedule(expression: str) -> Schedule | timedelta:
    """A six-field NCRONTAB expression, or an ``hh:mm:ss`` interval."""
    interval = _INTERVAL.fullmatch(expression.strip())
    if interval:
        hours, minutes, seconds = (int(g) for g in interval.groups())
        span = timedelta(hours=hours, minutes=minutes, seconds=seconds)
        if span <= timedelta(0):
            raise ValueError(f"timer interval {expression!r} must be positive")
        return span
    fields = expression.split()
    if len(fields) != 6:
        raise ValueError(f"NCRONTAB schedule {expression!r} must have six fields (second minute hour day month dow)")
    sets = [_field(text, low, high, expression) for text, (low, high) in zip(fields, _BOUNDS, strict=True)]
    return Schedule(*sets)


def _field(text: str, low: int, high: int, expression: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"(\*|\d+(?:-\d+)?)(?:/(\d+))?", part)
        if match is None:
            raise ValueError(f"unsupported NCRONTAB field {text!r} in {expression!r}")
        span, step_text = match.groups()
        if span == "*":
            start, stop = low, high
        elif "-" in span:
            start, stop = (int(n) for n in span.split("-"))
        else:
            start = stop = int(span)
            if step_text:
                stop = high
        step = int(step_text) if step_text else 1
        if not (low <= start <= stop <= high) or step < 1:
            raise ValueError(f"NCRONTAB field {text!r} is outside {low}-{high} in {expression!r}")
        values.update(range(start, stop + 1, step))
    return frozenset(values)
