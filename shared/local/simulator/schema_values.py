"""A value that validates against a JSON schema, chosen deterministically from a seed.

Tool-call arguments and ``json_schema`` structured output must parse and validate on the client
(langchain's parsers, the openai SDK's ``parse``, pydantic models), so the simulator builds a conforming
instance instead of prose: every property is filled (strict mode requires them all, and a non-strict schema
accepts them), enums and consts are honoured, ``$ref`` into ``$defs``/``definitions`` is followed, the first
alternative of ``anyOf``/``oneOf`` that is not null is taken, numeric and length bounds are respected.
Schemas the simulator cannot satisfy (a ``pattern`` on a string, say) still get a value of the right type.
"""

from __future__ import annotations

import math
import random
import re
from typing import Any

_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
    "romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()
_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
}
MAX_DEPTH = 12  # recursive schemas (a tree node referring to itself) stop here with the smallest valid value
MAX_VALUES = 10_000  # values (and string characters / 10) one instance may take: bounds time and memory
SHRINK_DEPTH = 6  # from here on: only required properties, null where allowed, fewest array items
_PATTERN_CANDIDATES = (
    "alpha",
    "Alpha",
    "ALPHA",
    "alpha_bravo",
    "alpha-bravo",
    "a1",
    "A1",
    "123",
    "12345",
    "2026-01-01",
    "00:00",
    "someone@example.com",
    "https://example.com/",
    "+15550100",
    "AB-123",
    "ab12cd",
    "",
)


class SchemaTooLarge(ValueError):
    """The schema's smallest instance is larger than the simulator builds (``minItems``/``minLength`` in the
    millions, or nested so that they multiply)."""


def value_for(schema: Any, seed: str, names: list[str] | None = None) -> Any:
    """A deterministic instance of ``schema`` (same schema, seed and names, same value). Free-text strings take
    ``names`` (words from the prompt, say) in turn before made-up words; the names used are removed from the list,
    so several values built from one list (parallel tool calls) each get the next name."""
    root = schema if isinstance(schema, dict) else {}
    return _Builder(root, random.Random(seed), names if names is not None else []).build(root, 0)


class _Builder:
    def __init__(self, root: dict[str, Any], rng: random.Random, names: list[str]) -> None:
        self.root = root
        self.rng = rng
        self.names = names
        self.budget = MAX_VALUES

    def spend(self, amount: int) -> None:
        self.budget -= amount
        if self.budget < 0:
            raise SchemaTooLarge(f"the schema's instances need more than {MAX_VALUES} values")

    def resolve(self, schema: Any, depth: int) -> dict[str, Any]:
        seen = 0
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < MAX_DEPTH:
            target = self._lookup(schema["$ref"])
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **siblings}
            seen += 1
        return schema if isinstance(schema, dict) else {}

    def _lookup(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}
        node: Any = self.root
        for part in ref.lstrip("#").strip("/").split("/") if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return {}
            node = node[part]
        return node

    def build(self, schema: Any, depth: int) -> Any:
        if depth > 4 * MAX_DEPTH:  # a schema that requires itself forever has no finite instance
            return {}
        self.spend(1)
        schema = self.resolve(schema, depth)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[self.rng.randrange(len(enum))]
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                resolved = [self.resolve(o, depth) for o in options]
                wanted = (lambda o: self._type_of(o) == "null") if depth >= SHRINK_DEPTH else None
                chosen = next((o for o in resolved if wanted and wanted(o)), None) or next(
                    (o for o in resolved if self._type_of(o) != "null"), resolved[0]
                )
                base = {k: v for k, v in schema.items() if k != key}
                return self.build({**base, **chosen}, depth + 1)
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in all_of:
                part = self.resolve(part, depth)
                merged["properties"] = {**merged.get("properties", {}), **part.get("properties", {})}
                merged["required"] = [*merged.get("required", []), *part.get("required", [])]
                merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
            return self.build(merged, depth + 1)
        kind = self._type_of(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "string":
            return self._string(schema)
        if kind == "integer":
            return int(self._number(schema, integer=True))
        if kind == "number":
            return self._number(schema, integer=False)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema)  # no type at all: any value validates; a word reads best

    @staticmethod
    def _type_of(schema: dict[str, Any]) -> str | None:
        kind = schema.get("type")
        if isinstance(kind, list):
            non_null = [k for k in kind if k != "null"]
            kind = non_null[0] if non_null else (kind[0] if kind else None)
        if isinstance(kind, str):
            return kind
        if "properties" in schema:
            return "object"
        if "items" in schema:
            return "array"
        return None

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = schema.get("required")
        required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        names = list(properties) + [r for r in required if r not in properties]
        if depth >= SHRINK_DEPTH:
            names = required  # only what must be there, so recursion ends
        result: dict[str, Any] = {}
        for name in names:
            result[name] = self.build(properties.get(name, {}), depth + 1)
        return result

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        low = _int(schema.get("minItems"), 0)
        high = _int(schema.get("maxItems"), max(low, 2))
        count = min(max(low, 0 if depth >= SHRINK_DEPTH else min(2, high)), high)
        self.spend(count)
        prefix = schema.get("prefixItems")
        items = schema.get("items", {})
        values: list[Any] = []
        if isinstance(prefix, list):
            values = [self.build(p, depth + 1) for p in prefix]
        while len(values) < count:
            values.append(self.build(items if isinstance(items, dict) else {}, depth + 1))
        if schema.get("uniqueItems") and all(isinstance(v, str) for v in values):
            values = [f"{v} {i}" if i else v for i, v in enumerate(values)]
        return values

    def _string(self, schema: dict[str, Any]) -> str:
        form = schema.get("format")
        if isinstance(form, str) and form in _FORMATS:
            return _FORMATS[form]
        low = _int(schema.get("minLength"), 0)
        high = _int(schema.get("maxLength"), 10_000)
        self.spend(low // 10)
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            try:
                matcher = re.compile(pattern)
            except re.error:
                matcher = None
            words = [self.rng.choice(_WORDS) for _ in range(3)]
            for candidate in (*words, "_".join(words), *_PATTERN_CANDIDATES):
                if matcher and matcher.search(candidate) and low <= len(candidate) <= high:
                    return candidate
        if self.names and low <= len(self.names[0]) <= high:
            return self.names.pop(0)
        text = " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(1, 3)))
        while len(text) < low:
            text += " " + self.rng.choice(_WORDS)
        return text[:high] if high >= low else text[:low]

    def _number(self, schema: dict[str, Any], integer: bool) -> float:
        low = _num(schema.get("minimum"))
        high = _num(schema.get("maximum"))
        exclusive_low = _num(schema.get("exclusiveMinimum"))
        exclusive_high = _num(schema.get("exclusiveMaximum"))
        step = 1.0 if integer else 0.5
        if exclusive_low is not None:
            low = max(low, exclusive_low + step) if low is not None else exclusive_low + step
        if exclusive_high is not None:
            high = min(high, exclusive_high - step) if high is not None else exclusive_high - step
        low = low if low is not None else (high - 100 if high is not None else 0.0)
        high = high if high is not None else low + 100
        if integer:
            low_int, high_int = math.ceil(low), math.floor(high)
            if low_int > high_int:
                return float(low_int)
            value = float(self.rng.randint(low_int, high_int))
        else:
            value = round(self.rng.uniform(low, high), 2)
            value = min(max(value, low), high)
        multiple = _num(schema.get("multipleOf"))
        if multiple and multiple > 0:
            value = math.ceil(low / multiple) * multiple
            if integer:
                value = float(int(value))
        return value


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
