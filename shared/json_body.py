"""Reading a request body: bounded in size, and a JSON object.

Used by every endpoint that takes a body; a body that fails here gets a 4xx that says why, never a 500.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.requests import Request

from shared.errors import GatewayError, bad_request


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes; refuse larger bodies without buffering them."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _too_large(limit)
        except ValueError:
            raise bad_request("The Content-Length header is not a number.", code="invalid_content_length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"The request body is larger than this gateway accepts ({limit} bytes).",
        code="request_too_large",
    )


class _NonFinite:
    """Stands in for ``NaN``, ``Infinity``, ``-Infinity`` or an overflowing number until its place is known."""

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


class InvalidJson(ValueError):
    """Not JSON, or JSON this gateway does not accept; ``param`` says where, when known."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object parsed strictly (:func:`loads_strict`), or a 400 ``invalid_json`` that says what is wrong."""
    try:
        body = loads_strict(raw)
    except InvalidJson as exc:
        raise bad_request(exc.message, code="invalid_json", param=exc.param) from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    return body


def loads_strict(raw: bytes) -> Any:
    """Parse JSON as RFC 8259 and UTF-8 define it, or raise :class:`InvalidJson`.

    Python's ``json`` accepts more than JSON: the constants ``NaN``/``Infinity``/``-Infinity``, numbers that
    overflow to infinity (``1e999``), lone UTF-16 surrogates (``"\\ud800"``) that no UTF-8 encoder can write
    back, and UTF-16/32 bodies. Each is refused here, naming where it was, so nothing downstream (forwarding,
    token estimates, the ledger, an error message) meets a value it cannot encode.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJson("The request body is not UTF-8 encoded JSON.") from None
    if not text.strip():
        raise InvalidJson("The request body is empty; send a JSON object.")
    non_finite: list[_NonFinite] = []

    def constant(name: str) -> _NonFinite:
        non_finite.append(_NonFinite(name))
        return non_finite[-1]

    def number(digits: str) -> float | _NonFinite:
        value = _parse_float(digits)
        if isinstance(value, _NonFinite):
            non_finite.append(value)
        return value

    try:
        document = json.loads(text, parse_constant=constant, parse_float=number)
    except json.JSONDecodeError as exc:
        raise InvalidJson(
            f"The request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
    except (ValueError, RecursionError):  # e.g. an integer of thousands of digits, or nesting thousands deep
        raise InvalidJson(
            "The request body is JSON this gateway does not accept (absurdly large numbers or nesting)."
        ) from None
    if non_finite or _SURROGATE_ESCAPE.search(raw) or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        _refuse_what_json_does_not_allow(document)  # something to find: walk the document to say where it is
    return document


# Where a lone surrogate can come from: a \uD800-\uDFFF escape (UTF-8 itself cannot carry one, the decoder refuses it).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


MAX_DEPTH = 100  # far deeper than any OpenAI request (tool schemas included); bounds every recursive reader after us


def _refuse_what_json_does_not_allow(document: Any) -> None:
    """Walk the parsed document iteratively for non-finite numbers, lone surrogates (in keys and values) and
    nesting deeper than :data:`MAX_DEPTH`, which would make later recursive code (token estimates, encoding the
    forwarded body) fail where the stack is deeper than the parser's."""
    pending: list[tuple[str, int, Any]] = [("", 0, document)]
    while pending:
        path, depth, value = pending.pop()
        if depth > MAX_DEPTH:
            raise InvalidJson(f"The request body is nested more than {MAX_DEPTH} levels deep.", _param(path))
        if isinstance(value, _NonFinite):
            raise InvalidJson(
                f"The request body contains the number {value.text!r}{_at(path)}; JSON numbers must be finite.",
                _param(path),
            )
        if isinstance(value, str):
            if _has_lone_surrogate(value):
                raise InvalidJson(
                    f"The request body contains a lone UTF-16 surrogate escape{_at(path)}; strings must be valid "
                    "Unicode.",
                    _param(path),
                )
        elif isinstance(value, dict):
            for key, item in value.items():
                if _has_lone_surrogate(key):
                    raise InvalidJson(
                        f"The request body has a key with a lone UTF-16 surrogate escape{_at(path)}; keys must be "
                        "valid Unicode.",
                        _param(path),
                    )
                pending.append((f"{path}.{key}" if path else key, depth + 1, item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{index}]", depth + 1, item) for index, item in enumerate(value))


def _has_lone_surrogate(text: str) -> bool:
    # json.loads pairs a valid high+low escape into one code point, so any surrogate left is a lone one.
    return any("\ud800" <= ch <= "\udfff" for ch in text)


MAX_PARAM_CHARS = 100  # a path is built from the caller's keys: keep what is echoed back short


def _param(path: str) -> str | None:
    return path[:MAX_PARAM_CHARS] or None


def _at(path: str) -> str:
    return f" at '{path[:MAX_PARAM_CHARS]}'" if path else ""
