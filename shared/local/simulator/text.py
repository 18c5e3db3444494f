"""Deterministic text, tokens and vectors for the simulator."""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any

from shared.protocol.encodings import encoder
from shared.protocol.operations import OperationKind
from shared.protocol.tokens import DEFAULT_ENCODING, Encoding, count_prompt, count_text

encoder(DEFAULT_ENCODING)  # loaded when the simulator starts, so no request waits for the vocabulary


def count_tokens(text: str, encoding: Encoding = DEFAULT_ENCODING) -> int:
    """The gateway's exact tokenizer, so the simulator's usage looks like Azure's (o200k_base unless told)."""
    return count_text(text, encoding)


def count_value_tokens(value: Any) -> int:
    """Text tokens of every string in a JSON value; an int (a pre-tokenized token) is one token."""
    if isinstance(value, str):
        return count_tokens(value)
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return 1
    if isinstance(value, list):
        return sum(count_value_tokens(v) for v in value)
    if isinstance(value, dict):
        return sum(count_value_tokens(v) for k, v in value.items() if k not in ("role", "type"))
    return 0


def chat_prompt_tokens(messages: list[Any]) -> int:
    """The chat prompt exactly as the gateway counts it before the call (and Azure after it)."""
    return count_prompt(OperationKind.CHAT, {"messages": messages})


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
