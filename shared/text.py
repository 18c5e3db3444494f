"""Text that came from outside (tokens, principals, stored rows) made safe to show, store and encode.

Python strings can hold what no UTF-8 encoder writes: lone UTF-16 surrogates (JSON's ``"\\ud800"`` decodes to one).
A name holding one breaks every JSON or CSV answer it appears in, so names are cleaned once where they enter the
gateway (:func:`display_text`), and what finance and ``/api/me`` read back from storage is made encodable
(:func:`well_formed`) so a row written before that cannot take a view down.
"""

from __future__ import annotations

import unicodedata
from typing import Any

REPLACEMENT = "\ufffd"
# Line breaks and tabs become a space; other control and format characters (bidi overrides and isolates,
# zero-width characters, the BOM) are removed: a name is one line that reads as what it is.
_LINE_BREAKING = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x85\u2028\u2029")
_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def well_formed(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (dict keys and values, list items) replaced by U+FFFD;
    anything else (numbers, times, a storage SDK's typed values) as it is.

    A surrogate pair split across two code points (as JSON escapes write astral characters) is joined back."""
    if isinstance(value, str):
        return _well_formed_text(value)
    if isinstance(value, dict):
        return {well_formed(k): well_formed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [well_formed(v) for v in value]
    return value


def _well_formed_text(value: str) -> str:
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return value


def display_text(value: str, limit: int) -> str:
    """One line of at most ``limit`` characters: lone surrogates replaced by U+FFFD, line breaks and tabs made
    spaces, other control and format characters removed, surrounding space stripped."""
    text = _well_formed_text(value)
    if not text.isprintable():
        text = "".join(
            " " if ch in _LINE_BREAKING else ch
            for ch in text
            if ch in _LINE_BREAKING or unicodedata.category(ch) not in _REMOVED_CATEGORIES
        )
    return text.strip()[:limit].strip()


def is_display_text(value: object, limit: int) -> bool:
    """Is ``value`` already what :func:`display_text` would make of it (what a request body must send)?"""
    return isinstance(value, str) and display_text(value, limit) == value
