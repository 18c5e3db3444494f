"""JSON in settings, read strictly: no NaN/Infinity, no key given twice (the second would silently win)."""

from __future__ import annotations

import json
from typing import Any


def strict_loads(text: str) -> Any:
    """Like ``json.loads``; raises ``ValueError`` for NaN/Infinity and for duplicate keys."""
    return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_refuse_duplicates)


def _refuse_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not a number JSON allows")


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {json.dumps(key)} appears twice")
        result[key] = value
    return result
