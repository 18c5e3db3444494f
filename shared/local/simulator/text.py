"""Deterministic text, tokens and vectors for the simulator."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from typing import Any

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORDS = (
    "the gateway answered this request from the local simulator with a short deterministic reply "
    "so that tests can count every token exactly and compare what callers see with what was recorded"
).split()


def count_tokens(text: str) -> int:
    """The simulator's tokenizer: a word or a punctuation mark is one token."""
    return len(_TOKEN.findall(text))


def count_value_tokens(value: Any) -> int:
    if isinstance(value, str):
        return count_tokens(value)
    if isinstance(value, list):
        return sum(count_value_tokens(v) for v in value)
    if isinstance(value, dict):
        return sum(count_value_tokens(v) for k, v in value.items() if k not in ("role", "type"))
    return 0


def chat_prompt_tokens(messages: list[Any]) -> int:
    return sum(3 + count_value_tokens(m) for m in messages) + 3


def reply_tokens(n: int) -> list[str]:
    """``n`` tokens of reply text; each item is one token including its leading space."""
    return [(" " if i else "") + _WORDS[i % len(_WORDS)] for i in range(n)]


def embedding(text: str, dimensions: int) -> list[float]:
    """A unit vector derived from the text's hash: equal texts, equal vectors."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def encode_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
