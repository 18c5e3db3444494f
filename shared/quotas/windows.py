"""Fixed UTC windows: the minute, the calendar day and the calendar month an instant falls in (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.quotas.limits import Window


def window_start(window: Window, now: datetime) -> datetime:
    now = now.astimezone(UTC)
    if window is Window.MINUTE:
        return now.replace(second=0, microsecond=0)
    if window is Window.DAY:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def window_end(window: Window, now: datetime) -> datetime:
    start = window_start(window, now)
    if window is Window.MINUTE:
        return start + timedelta(minutes=1)
    if window is Window.DAY:
        return start + timedelta(days=1)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def window_key(window: Window, now: datetime) -> str:
    """A sortable name of the window: ``2026-12-01T13:45``, ``2026-12-01``, ``2026-12``."""
    start = window_start(window, now)
    if window is Window.MINUTE:
        return start.strftime("%Y-%m-%dT%H:%M")
    if window is Window.DAY:
        return start.strftime("%Y-%m-%d")
    return start.strftime("%Y-%m")
