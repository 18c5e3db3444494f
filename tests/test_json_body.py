"""Strict JSON for every body the gateway parses (shared/json_body.py)."""

from __future__ import annotations

import pytest

from shared.errors import GatewayError
from shared.json_body import MAX_DEPTH, parse_json_object


def refusal(raw: bytes) -> GatewayError:
    with pytest.raises(GatewayError) as raised:
        parse_json_object(raw)
    assert raised.value.status == 400 and raised.value.code == "invalid_json"
    return raised.value


@pytest.mark.parametrize(
    "raw, param, words",
    [
        (b'{"a": NaN}', "a", "'NaN'"),
        (b'{"a": [1, Infinity]}', "a[1]", "'Infinity'"),
        (b'{"a": {"b": -Infinity}}', "a.b", "'-Infinity'"),
        (b'{"a": 1e999}', "a", "'1e999'"),
        (b'{"a": -1E400}', "a", "'-1E400'"),
        (b'{"m": [{"content": "x\\ud800"}]}', "m[0].content", "surrogate"),
        (b'{"m": {"\\udfff": 1}}', "m", "key"),
        (b'{"\\ud800": 1}', None, "key"),
    ],
)
def test_what_python_json_accepts_but_json_does_not_is_a_400_naming_the_place(raw, param, words):
    error = refusal(raw)
    assert error.param == param and words in error.message


@pytest.mark.parametrize(
    "raw",
    [
        '{"a": 1}'.encode("utf-16"),  # json.loads(bytes) would sniff UTF-16/32
        b'{"a": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 bytes
        b"\xef\xbb\xbf{}",  # a byte-order mark
        b"",
        b"   ",
        b"[1, 2]",
        b'{"a": ' + b"1" * 5000 + b"}",
        b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"a": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}",
    ],
)
def test_other_non_json_is_a_400(raw):
    refusal(raw)


def test_valid_json_is_unchanged():
    body = parse_json_object(b'{"a": [1, 2.5, -0.0, 1e308, "\\ud83d\\ude00", null, true], "b": {"c": "d"}}')
    assert body == {"a": [1, 2.5, -0.0, 1e308, "\U0001f600", None, True], "b": {"c": "d"}}
    nested = b'{"a": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert parse_json_object(nested)
