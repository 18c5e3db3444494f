"""Azure OpenAI dated api-versions: ``2024-10-21`` or ``2025-04-01-preview``."""

from __future__ import annotations

import re

DEFAULT_API_VERSION = "2024-10-21"
# stream_options.include_usage arrived in 2024-09-01-preview (and is part of the v1 API).
DEFAULT_STREAM_USAGE_MIN_API_VERSION = "2024-09-01-preview"

_API_VERSION = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(-preview)?")  # ASCII digits only: \d takes any script's


def is_api_version(value: str) -> bool:
    """A whole-string match: ``2024-10-21\\n`` is not an api-version."""
    return _API_VERSION.fullmatch(value) is not None


def version_date(version: str) -> tuple[int, int, int]:
    """The date of a valid api-version, for ordering (``2024-09-01-preview`` is dated 2024-09-01)."""
    match = _API_VERSION.fullmatch(version)
    if match is None:
        raise ValueError(f"not an api-version: {version!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))
