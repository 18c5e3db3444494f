"""Hypothesis strategies for what a hostile caller sends: JSON-ish bodies with the atoms Python's ``json`` lets
through (NaN, Infinity, 1e999, lone surrogates, absurd integers and nesting), header values, path segments.

Profiles: ``ci`` (the default, 150 examples per test) and ``long`` (3,000), chosen with ``HYPOTHESIS_PROFILE``;
the README's Tests section has the command for a long local run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_from_bytes

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# CI: enough examples to exercise every poison several times in bounded time; "long" for a local soak run.
settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("long", parent=settings.get_profile("ci"), max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass(frozen=True, repr=False)
class Raw:
    """JSON text written as it is: how a hostile caller writes what ``json.dumps`` would never produce."""

    text: str

    def __repr__(self) -> str:  # short, so Hypothesis can show strategies holding 5,000-character atoms
        return f"Raw({self.text[:40]!r}{'…' if len(self.text) > 40 else ''})"


NON_FINITE = [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e999"), Raw("-1E400"), Raw("123.0e100000")]
LONE_SURROGATES = [Raw('"\\ud800"'), Raw('"x\\udfff"'), Raw('"\\ud83d end"'), Raw('"\\udc00\\ud800"')]
ABSURD = [Raw("1" * 5000), Raw("[" * 3000 + "]" * 3000), Raw('{"a":' * 3000 + "1" + "}" * 3000)]
POISON_ATOMS = st.sampled_from(NON_FINITE + LONE_SURROGATES)


def render(value: Any) -> str:
    """JSON text for a value that may hold :class:`Raw` atoms (as values, or as keys)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{_key(k)}:{render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(v) for v in value) + "]"
    return json.dumps(value)


def _key(key: Any) -> str:
    return key.text if isinstance(key, Raw) else json.dumps(key)


printable_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | printable_text
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(printable_text, children, max_size=4),
    max_leaves=12,
)
hostile_values = json_values | st.sampled_from(NON_FINITE + LONE_SURROGATES + ABSURD)
hostile_keys = printable_text | st.sampled_from(LONE_SURROGATES)
deployments = st.sampled_from(["gpt-4o-mini", "text-embedding-3-small", "gpt-4.1"]) | printable_text

# What a model call carries, each field possibly hostile, plus anything else.
model_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": deployments | hostile_values,
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "system"]) | hostile_values, "content": hostile_values}
            ),
            max_size=3,
        )
        | hostile_values,
        "input": hostile_values,
        "prompt": hostile_values,
        "user": hostile_values,
        "metadata": st.dictionaries(hostile_keys, hostile_values, max_size=3) | hostile_values,
        "temperature": hostile_values,
        "max_tokens": hostile_values,
        "stream": st.booleans() | hostile_values,
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": hostile_values}) | hostile_values,
    },
)
raw_bodies = st.binary(max_size=200)


@st.composite
def poisoned_bodies(draw: st.DrawFn) -> str:
    """A model-call body with at least one atom strict JSON refuses, somewhere a caller controls."""
    body: dict[Any, Any] = draw(model_bodies)
    atom = draw(POISON_ATOMS)
    where = draw(
        st.sampled_from(["content", "user", "metadata value", "metadata key", "temperature", "top key", "list"])
    )
    if where == "content":
        body["messages"] = [{"role": "user", "content": atom}]
    elif where == "metadata value":
        body["metadata"] = {"k": atom}
    elif where == "metadata key":
        body["metadata"] = {draw(st.sampled_from(LONE_SURROGATES)): "v"}  # a number cannot be a key
    elif where == "top key":
        body[Raw('"\\udbff"')] = atom
    elif where == "list":
        body["input"] = [1, "two", [atom]]
    else:
        body[where] = atom
    return render(body)


# --- header values and path segments -------------------------------------------------------------------------------

# What HTTP/1.1 lets through in a header value (h11 refuses control characters and edge whitespace).
_header_bytes = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), min_size=1, max_size=300
).map(lambda t: t.strip(" ").encode("latin-1"))
header_values = _header_bytes.filter(bool) | st.sampled_from(
    [
        b"Bearer",
        b"Bearer gwk_",
        b"Bearer a.b.c",
        b"Basic Zm9vOmJhcg==",
        b"gwk_0123456789abcdef_" + b"A" * 43,
        b"\xff\xfe",
    ]
)
NOISE_HEADERS = [
    "authorization",
    "api-key",
    "x-ms-client-principal",
    "x-ms-client-principal-id",
    "cookie",
    "origin",
    "x-forwarded-host",
    "accept",
    "user-agent",
    "traceparent",
    "x-ms-client-request-id",
]
noise_headers = st.dictionaries(st.sampled_from(NOISE_HEADERS), header_values, max_size=3)


def path_segment(raw: bytes) -> str:
    """Percent-encode every byte that is not unreserved, dots included (so '..' is not normalised away)."""
    return quote_from_bytes(raw, safe="").replace(".", "%2E")


# No '/': an encoded slash is decoded before routing, and a different route is the host's business, not ours.
segment_bytes = st.binary(min_size=1, max_size=1500).filter(lambda b: b"/" not in b) | st.sampled_from(
    [b"..", b".", b"%", b"a" * 1200, b"\x00", b"\r\n", b"\xed\xa0\x80", b"gpt-4o-mini\n", b"{x}"]
)
