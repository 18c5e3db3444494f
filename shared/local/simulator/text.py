"""Deterministic text, tokens and vectors for the simulator."""

from __future__ import annotations

import base64
import hashlib
import math
import re
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


_WORD = re.compile(r"[^\W_]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# Function words carry no topic: left out of embeddings and of matching a prompt to a tool.
STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from into onto about as is are was were be been being am
    do does did doing have has had having i me my we our you your he she it its they them their this that these those
    what which who whom whose when where why how can could would should will shall may might must not no so than too
    very just also there here please let lets any some all each get set""".split()
)
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "es", "ed", "ly", "s")


def stem(word: str) -> str:
    """A crude suffix-stripping stem ("resetting" -> "reset", "cities" -> "city", "changes" and "changing" ->
    "chang"): enough for inflections of one word to meet; deterministic, no vocabulary."""
    for suffix in _SUFFIXES:
        if not word.endswith(suffix) or len(word) - len(suffix) < 3:
            continue
        root = word[: -len(suffix)]
        if suffix == "es" and not root.endswith(("s", "x", "z", "ch", "sh")):
            root = word[:-1]  # "changes" -> "change", "boxes" -> "box"
        elif suffix in ("ies", "ied"):
            root += "y"
        elif len(root) > 3 and root[-1] == root[-2] and root[-1] not in "lsz":
            root = root[:-1]  # "resett" -> "reset"
        word = root
        break
    if len(word) > 3 and word.endswith("e") and not word.endswith("ee"):
        word = word[:-1]  # "change" and "chang(ing)" meet
    return word


def content_words(text: str) -> list[str]:
    """The text's topic words, lowercased and stemmed, in order: camelCase and snake_case names split into words,
    function words left out."""
    words = (w.lower() for w in _WORD.findall(_CAMEL.sub(" ", text)))
    return [stem(w) for w in words if w not in STOPWORDS]


def embedding(text: str, dimensions: int, salt: str = "") -> list[float]:
    """A unit vector in which similar texts lie close (docs/decisions.md D71): signed feature hashing of the text's
    stemmed content words (weight 1), adjacent word pairs (0.5) and each word's character trigrams (0.25 each), so
    texts sharing words or word parts get a high cosine similarity. ``salt`` (the model family) gives each model
    its own space, as real models have. Deterministic: equal texts, equal vectors."""
    features: dict[str, float] = {}
    words = content_words(text)
    for word in words:
        features["w:" + word] = features.get("w:" + word, 0.0) + 1.0
        padded = f"<{word}>"
        for i in range(len(padded) - 2):
            gram = "c:" + padded[i : i + 3]
            features[gram] = features.get(gram, 0.0) + 0.25
    for first, second in zip(words, words[1:], strict=False):
        features[f"b:{first} {second}"] = features.get(f"b:{first} {second}", 0.0) + 0.5
    if not features:
        features["t:" + text] = 1.0  # no words at all (punctuation, whitespace): still a unit vector of its own
    values = [0.0] * dimensions
    for feature, weight in features.items():
        digest = hashlib.blake2b(f"{salt}|{feature}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
        bucket = int.from_bytes(digest[:7], "little") % dimensions
        values[bucket] += weight if digest[7] & 1 else -weight
    norm = math.sqrt(sum(v * v for v in values))
    if norm == 0.0:  # features cancelled out in a tiny dimension
        values[0], norm = 1.0, 1.0
    return [v / norm for v in values]


def encode_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
