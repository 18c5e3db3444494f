"""JSON in settings, read strictly: what request bodies refuse (NaN/Infinity, 1e999, lone surrogates, absurd
nesting: :func:`shared.json_body.loads_strict`), and no key given twice (the second would silently win)."""

from __future__ import annotations

import json
from typing import Any

from shared.json_body import loads_strict


def strict_loads(text: str) -> Any:
    """Like ``json.loads``; raises ``ValueError`` for duplicate keys and for anything request bodies refuse."""
    json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_refuse_duplicates)
    return loads_strict(text.encode("utf-8"))


def _refuse_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not a number JSON allows")


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {json.dumps(key)} appears twice")
        result[key] = value
    return result
