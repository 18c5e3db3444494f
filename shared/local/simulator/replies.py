"""What the simulated model answers: deterministic, but of the form the request asks for.

A real model's words cannot be simulated, its form can, and the form is what client libraries parse: tool
calls whose arguments validate against the tool's schema, JSON that validates against ``response_format``,
``n`` choices, a reply cut at ``max_tokens`` (``finish_reason: "length"``) or before a ``stop`` sequence.
Everything derives from a seed hashed from the request body, so the same request gets the same answer.

Which form (docs/decisions.md D27, D71):
- tools offered and ``tool_choice`` not ``none``: ``auto`` calls the tools the last user message asks for (a topic
  word of the message, stemmed, is a word of the tool's name or description), in the order the message mentions
  them, only the best match unless ``parallel_tool_calls`` allows more, each at most once per user turn, and
  answers in text when nothing is asked for or everything asked for was called; ``required`` calls a tool not yet
  called since the last user message (the best match among them, else the first), any tool once all were called;
  a named tool is always that tool. Free-text arguments take the message's capitalised names in turn, so
  "weather in Paris" asks for Paris;
- a final answer follows ``response_format``/``text.format``: a schema-valid object for ``json_schema``, a JSON
  object for ``json_object``, otherwise the simulator's plain sentence.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from shared.local.simulator.schema_values import value_for
from shared.local.simulator.text import content_words

DEFAULT_REPLY_TOKENS = 12
_SENTENCE = (
    "the gateway answered this request from the local simulator with a short deterministic reply "
    "so that tests can count every token exactly and compare what callers see with what was recorded"
).split()
_PIECE = re.compile(r"\s*(?:\w+|[^\w\s])|\s+$")
_NAME = re.compile(r"\b[A-Z][a-z]+\b")

Counter = Callable[[str], int]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # as generated; may be cut short by the token limit
    pieces: tuple[str, ...]  # the argument fragments as streamed


@dataclass(frozen=True)
class Choice:
    index: int
    content: str | None
    pieces: tuple[str, ...]  # content as streamed, one generation step each
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    completion_tokens: int  # reasoning tokens included, as Azure counts them
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class Ask:
    """The parts of a request that shape the answer, the same for chat completions and responses."""

    seed: str
    choices: int = 1
    limit: int | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = "auto"  # "auto", "none", "required" or a tool's name
    parallel_tool_calls: bool = True
    after_tool_result: bool = False
    called_since_user: tuple[str, ...] = ()  # tools the conversation called after its last user message
    last_user_text: str = ""
    output_format: str = "text"  # "text", "json_object" or "json_schema"
    output_schema: dict[str, Any] | None = None
    reply_tokens: int = DEFAULT_REPLY_TOKENS
    logprobs: bool = False
    top_logprobs: int = 0
    reasoning_tokens: int = 0  # reasoning models think before answering; the limit covers both


_TRANSPORT_FIELDS = frozenset({"stream", "stream_options"})  # how the answer travels, not what it is


def seed_of(body: dict[str, Any]) -> str:
    """The same request, streamed or not, gets the same answer."""
    shaping = {k: v for k, v in body.items() if k not in _TRANSPORT_FIELDS}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()


def pieces_of(text: str) -> list[str]:
    """Split text into generation steps (a word or a punctuation mark with its leading space); joined, the text."""
    return _PIECE.findall(text)


def names_in(text: str) -> list[str]:
    """Capitalised words past the first, in order ("weather in Paris and Tokyo" -> Paris, Tokyo): what a model
    would put in a tool's free-text arguments."""
    found = _NAME.findall(text)
    first = _NAME.match(text.lstrip())
    if first and found and found[0] == first.group(0):
        found = found[1:]
    return list(dict.fromkeys(found))


def answer(ask: Ask, count: Counter) -> list[Choice]:
    """The choices; a reasoning model first spends its reasoning tokens, and a limit they exhaust leaves an
    empty answer with ``finish_reason: "length"``, as o-series and gpt-5 deployments do."""
    thinking = ask.reasoning_tokens
    if not thinking:
        return [_choice(ask, index, count) for index in range(ask.choices)]
    if ask.limit is not None and ask.limit <= thinking:
        return [Choice(i, "", (), (), "length", ask.limit, ask.limit) for i in range(ask.choices)]
    visible = replace(ask, limit=None if ask.limit is None else ask.limit - thinking)
    return [
        replace(c, completion_tokens=c.completion_tokens + thinking, reasoning_tokens=thinking)
        for c in (_choice(visible, index, count) for index in range(ask.choices))
    ]


def _choice(ask: Ask, index: int, count: Counter) -> Choice:
    seed = f"{ask.seed}:{index}"
    calls = _tools_to_call(ask)
    names = names_in(ask.last_user_text)
    if calls:
        budget = ask.limit
        made: list[ToolCall] = []
        used = 0
        cut = False
        for position, tool in enumerate(calls):
            value = value_for(tool.parameters, f"{seed}:{tool.name}", names)
            arguments = json.dumps(value, separators=(",", ":"))
            kept, spent, truncated = _take(pieces_of(arguments), None if budget is None else budget - used, count)
            spent += count(tool.name)
            made.append(ToolCall(_call_id(seed, position), tool.name, "".join(kept), tuple(kept)))
            used += spent
            if truncated:
                cut = True
                break
        finish = "length" if cut else ("stop" if ask.tool_choice not in ("auto", "required") else "tool_calls")
        return Choice(index, None, (), tuple(made), finish, used)

    if ask.output_format == "json_schema":
        value = value_for(ask.output_schema or {}, seed, names)
        return _text_choice(index, pieces_of(json.dumps(value)), ask, count)
    if ask.output_format == "json_object":
        value = {"answer": "".join(_sentence(index, 6, count)).strip()}
        return _text_choice(index, pieces_of(json.dumps(value)), ask, count)
    return _text_choice(index, _sentence(index, ask.reply_tokens, count), ask, count)


def _text_choice(index: int, pieces: list[str], ask: Ask, count: Counter) -> Choice:
    """Cut at the first stop sequence (finish ``stop``, the sequence not included), then at the token limit."""
    text = "".join(pieces)
    stop_at = min((text.find(s) for s in ask.stop if s and s in text), default=-1)
    if stop_at >= 0:
        pieces = _cut_text(pieces, stop_at)
    kept, used, truncated = _take(pieces, ask.limit, count)
    finish = "length" if truncated else "stop"
    return Choice(index, "".join(kept), tuple(kept), (), finish, used)


def _take(pieces: Sequence[str], budget: int | None, count: Counter) -> tuple[list[str], int, bool]:
    kept: list[str] = []
    used = 0
    for piece in pieces:
        tokens = count(piece)
        if budget is not None and used + tokens > budget:
            return kept, used, True
        kept.append(piece)
        used += tokens
    return kept, used, False


def _cut_text(pieces: list[str], at: int) -> list[str]:
    kept: list[str] = []
    length = 0
    for piece in pieces:
        if length + len(piece) > at:
            if at > length:
                kept.append(piece[: at - length])
            break
        kept.append(piece)
        length += len(piece)
    return kept


def _sentence(index: int, tokens: int, count: Counter) -> list[str]:
    """The simulator's sentence (choice ``index`` starts ``index`` words in), exactly ``tokens`` tokens long: a word
    that would overshoot under the deployment's tokenizer is skipped for the next one that fits."""
    pieces: list[str] = []
    used = misses = 0
    position = index
    while used < tokens and misses < len(_SENTENCE):
        piece = (" " if pieces else "") + _SENTENCE[position % len(_SENTENCE)]
        position += 1
        spent = count(piece)
        if 0 < spent and used + spent <= tokens:
            pieces.append(piece)
            used += spent
            misses = 0
        else:
            misses += 1
    return pieces


def _call_id(seed: str, position: int) -> str:
    return "call_" + hashlib.sha256(f"{seed}:call:{position}".encode()).hexdigest()[:24]


def _tools_to_call(ask: Ask) -> list[Tool]:
    """Which tools the model calls (docs/decisions.md D71): only tools the last user turn asks for under ``auto``,
    each at most once per user turn; under ``required`` a tool not yet called since that turn, so a loop that
    offers a ``final_result`` tool beside the app's tools ends with it."""
    if not ask.tools or ask.tool_choice == "none":
        return []
    if ask.tool_choice not in ("auto", "required", None):
        return [t for t in ask.tools if t.name == ask.tool_choice][:1]
    called = set(ask.called_since_user)
    fresh = [t for t in ask.tools if t.name not in called]
    if ask.tool_choice == "required":
        candidates = fresh or list(ask.tools)  # every tool called already: any may be called again
        matches = _asked_for(candidates, ask.last_user_text)
        if not matches:
            return [candidates[0]]
    else:
        if ask.after_tool_result and not called:
            return []  # results of calls this request does not show (previous_response_id): answer them
        matches = _asked_for(fresh, ask.last_user_text)
        if not matches:
            return []  # nothing asked for: the model answers in text
    if not ask.parallel_tool_calls:
        return [min(matches, key=lambda m: (-m[0], m[1], m[2]))[3]]
    return [m[3] for m in sorted(matches, key=lambda m: (m[1], m[2]))]  # in the order the prompt asks


def _asked_for(tools: Sequence[Tool], text: str) -> list[tuple[int, int, int, Tool]]:
    """The tools whose name or description shares a topic word with the text: (distinct words shared, position of
    the first one in the text, position of the tool, tool)."""
    words = content_words(text)
    matches = []
    for position, tool in enumerate(tools):
        vocabulary = _tool_words(tool)
        mentioned = [i for i, word in enumerate(words) if word in vocabulary]
        if mentioned:
            matches.append((len({words[i] for i in mentioned}), mentioned[0], position, tool))
    return matches


def _tool_words(tool: Tool) -> set[str]:
    return {w for w in content_words(f"{tool.name} {tool.description}") if len(w) > 2 and w not in _GENERIC}


# Words any tool's description may use without saying what it is for.
_GENERIC = frozenset(
    content_words("tool function call calls return returns value values result results current given specified use")
)


def logprobs_for(piece: str, seed: str, top: int) -> dict[str, Any]:
    """One content token's logprob entry, shaped as the chat API returns it; values are deterministic."""
    digest = hashlib.sha256(f"{seed}:{piece}".encode()).digest()
    logprob = -round(digest[0] / 255 * 2, 6)
    alternatives = [{"token": piece, "logprob": logprob, "bytes": list(piece.encode())}]
    for rank in range(1, top):
        other = f"{piece}{rank}"
        alternatives.append(
            {
                "token": other,
                "logprob": round(logprob - rank - digest[rank % 32] / 255, 6),
                "bytes": list(other.encode()),
            }
        )
    return {"token": piece, "logprob": logprob, "bytes": list(piece.encode()), "top_logprobs": alternatives[:top]}
