"""Pre-flight prompt token counts: exact for text, conservative (never under) for what cannot be exact.

Quotas reserve and guardrails judge a request BEFORE it reaches Azure OpenAI, so the count has to match
the ``usage.prompt_tokens`` the upstream will report. Text is counted with the model's real BPE
(:mod:`shared.protocol.encodings`), and chat messages with the chat format's fixed overhead (OpenAI
cookbook "How to count tokens with tiktoken": 3 tokens per message, 1 more for a ``name``, 3 to prime the
reply; verified there against the API's usage for gpt-4o and gpt-4). What the upstream renders in ways
that are not published -- tool definitions, tool calls, response schemas, images, audio, files -- is
estimated from above: the JSON of the thing (more verbose than the internal rendering) plus a fixed
overhead, images at the largest published per-image cost, audio at the lowest bitrate the formats allow.
The rules and their sources: docs/decisions.md D21.

``estimate_prompt_tokens`` (4 bytes per token, no vocabulary) stays for callers that have no encoding.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from shared.protocol.encodings import DEFAULT_ENCODING, Encoding, encoder, encoding_for_model, family_encoding
from shared.protocol.operations import OperationKind

__all__ = [
    "DEFAULT_ENCODING",
    "Encoding",
    "count_prompt",
    "count_text",
    "encoding_for_model",
    "estimate_prompt_tokens",
    "estimate_text_tokens",
    "texts_in",
    "tokens_for_bytes",
]

# Chat format (cookbook rule, gpt-3.5-turbo-0613 and every later chat model).
TOKENS_PER_MESSAGE = 3  # <|start|>{role}\n ... <|end|>
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3  # <|start|>assistant<|message|>

# Estimated parts, each an upper bound (D21).
TOKENS_PER_FUNCTION = 10  # cookbook's per-function overhead: 7 (gpt-4o), 10 (gpt-4); the larger one
TOOLS_BLOCK_OVERHEAD = 12  # cookbook's closing overhead of the tools block
TOKENS_PER_TOOL_CALL = TOKENS_PER_MESSAGE  # each call is rendered like a message of its own
SCHEMA_OVERHEAD = TOOLS_BLOCK_OVERHEAD  # a response schema is rendered into the system header like tools

# Images: the per-image maximum of the published formulas (detail high/auto, largest image). Tile models:
# base + at most 8 tiles (gpt-4o 85 + 8 x 170 = 1445); patch models: at most 1536 patches x the model's
# multiplier (gpt-4.1-nano 2.46 -> 3779). gpt-4o-mini bills images at 2833 + 8 x 5667 to keep gpt-4o's
# image price, far above the rest, so it gets its own ceiling.
IMAGE_CEILING = 3779
GPT_4O_MINI_IMAGE_CEILING = 2833 + 8 * 5667
# Audio: ~10 tokens per second of audio; the lowest bitrates the formats accept (8 kbit/s mp3 = 1,000 B/s,
# 8 kHz 16-bit wav = 16,000 B/s), with a factor 2 margin, bound the seconds from above.
AUDIO_BYTES_PER_TOKEN = {"wav": 800, "pcm16": 800}
AUDIO_BYTES_PER_TOKEN_DEFAULT = 50  # mp3 and anything else

BYTES_PER_TOKEN = 4
PER_MESSAGE_OVERHEAD = 4


def count_text(text: str, encoding: Encoding = DEFAULT_ENCODING) -> int:
    """The exact number of tokens of ``text`` (special-token strings count as the plain text they are).

    tiktoken's regex overflows its stack on whitespace runs of about a million characters and then raises a
    Rust panic, which is a ``BaseException`` (openai/tiktoken#15, #258). Such a text counts as its UTF-8 size:
    a token is at least one byte, so that is an upper bound, and a body must never turn into a 500.
    """
    if not text:
        return 0
    try:
        return len(encoder(encoding).encode_ordinary(text))
    except BaseException as error:
        if type(error).__name__ != "PanicException":
            raise
        return len(text.encode("utf-8", "surrogatepass"))


def count_prompt(
    kind: OperationKind, body: dict[str, Any], encoding: Encoding = DEFAULT_ENCODING, *, model: str = ""
) -> int:
    """The prompt tokens of a request body, as the upstream's ``usage`` will report them (or more).

    ``model`` (model or deployment name) only matters for images, whose cost differs by model; without it
    images get the highest ceiling of any model.
    """
    counter = _Counter(encoding, model)
    if kind is OperationKind.CHAT:
        return counter.chat(body)
    if kind is OperationKind.COMPLETIONS:
        return counter.prompts(body.get("prompt")) + counter.prompts(body.get("suffix"))
    if kind is OperationKind.EMBEDDINGS:
        return counter.prompts(body.get("input"))
    return counter.responses(body)


class _Counter:
    def __init__(self, encoding: Encoding, model: str) -> None:
        self.encoding = encoding
        self.image_ceiling = _image_ceiling(model)

    def text(self, text: str) -> int:
        return count_text(text, self.encoding)

    def json(self, value: Any) -> int:
        """Tokens of a value's JSON (default separators): the upper bound for what renders in unpublished ways."""
        if value is None:
            return 0
        return self.text(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))

    # Chat completions -------------------------------------------------------------------------------

    def chat(self, body: dict[str, Any]) -> int:
        total = REPLY_PRIMING
        messages = body.get("messages")
        if isinstance(messages, list):
            total += sum(self.message(m) for m in messages)
        total += self.tools(body.get("tools")) + self.tools(body.get("functions"))
        if isinstance(body.get("tool_choice"), dict):
            total += self.json(body["tool_choice"])
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            total += SCHEMA_OVERHEAD + self.json(response_format.get("json_schema"))
        # Predicted outputs: tokens of the prediction that the answer does not use are billed as completion tokens
        # beyond the output limit, so the reservation counts the prediction with the prompt (docs/quotas.md).
        prediction = body.get("prediction")
        if isinstance(prediction, dict):
            total += self.content(prediction.get("content"))
        elif prediction is not None:
            total += self.json(prediction)
        return total

    def message(self, message: Any) -> int:
        if not isinstance(message, dict):
            return TOKENS_PER_MESSAGE + self.json(message)
        total = TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "content":
                total += self.content(value)
            elif key == "name" and isinstance(value, str):
                total += self.text(value) + TOKENS_PER_NAME
            elif key == "tool_calls" and isinstance(value, list):
                total += sum(TOKENS_PER_TOOL_CALL + self.json(call) for call in value)
            elif key == "function_call":
                total += TOKENS_PER_TOOL_CALL + self.json(value)
            elif isinstance(value, str):
                total += self.text(value)  # role, tool_call_id, refusal...
            else:
                total += self.json(value)
        return total

    def content(self, content: Any) -> int:
        if isinstance(content, str):
            return self.text(content)
        if isinstance(content, list):
            return sum(self.part(p) for p in content)
        return self.json(content)

    def part(self, part: Any) -> int:
        """One content part of a chat message or a Responses input message."""
        if not isinstance(part, dict):
            return self.json(part)
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
            return self.text(part["text"])
        if kind == "refusal" and isinstance(part.get("refusal"), str):
            return self.text(part["refusal"])
        if kind in ("image_url", "input_image"):
            return self.image_ceiling
        if kind == "input_audio":
            return _audio_tokens(part.get("input_audio"))
        return self.json(part)  # files (inline base64 counts far above its content), unknown parts

    def tools(self, tools: Any) -> int:
        if not isinstance(tools, list) or not tools:
            return 0
        return TOOLS_BLOCK_OVERHEAD + sum(TOKENS_PER_FUNCTION + self.json(tool) for tool in tools)

    # Legacy completions and embeddings --------------------------------------------------------------

    def prompts(self, value: Any) -> int:
        """A string, a list of strings, a token array or a list of token arrays."""
        if value is None:
            return 0
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            if all(isinstance(v, int) for v in value):
                return len(value)
            return sum(self.prompts(v) for v in value)
        return self.json(value)

    # Responses --------------------------------------------------------------------------------------

    def responses(self, body: dict[str, Any]) -> int:
        total = REPLY_PRIMING
        instructions = body.get("instructions")
        if isinstance(instructions, str):
            total += self.message({"role": "system", "content": instructions})
        items = body.get("input")
        if isinstance(items, str):
            total += self.message({"role": "user", "content": items})
        elif isinstance(items, list):
            total += sum(self.item(i) for i in items)
        total += self.tools(body.get("tools"))
        if isinstance(body.get("tool_choice"), dict):
            total += self.json(body["tool_choice"])
        text = body.get("text")
        if (
            isinstance(text, dict)
            and isinstance(text.get("format"), dict)
            and text["format"].get("type") == "json_schema"
        ):
            total += SCHEMA_OVERHEAD + self.json(text["format"])
        return total

    def item(self, item: Any) -> int:
        if isinstance(item, dict) and "role" in item and item.get("type", "message") == "message":
            return self.message({k: v for k, v in item.items() if k != "type"})
        if isinstance(item, dict) and item.get("type") == "function_call_output":
            output = item.get("output")
            rest = {k: v for k, v in item.items() if k != "output"}
            return TOKENS_PER_MESSAGE + self.content(output) + self.json(rest)
        return TOKENS_PER_TOOL_CALL + self.json(item)  # function calls, reasoning items, references...


def _image_ceiling(model: str) -> int:
    """gpt-4o-mini's ceiling for gpt-4o-mini, and for any name that could hide it (no family recognised)."""
    name = model.lower()
    if "4o-mini" in name or "4omini" in name or family_encoding(name) is None:
        return GPT_4O_MINI_IMAGE_CEILING
    return IMAGE_CEILING


def _audio_tokens(audio: Any) -> int:
    if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
        return 0
    decoded_bytes = len(audio["data"]) * 3 // 4
    per_token = AUDIO_BYTES_PER_TOKEN.get(str(audio.get("format", "")).lower(), AUDIO_BYTES_PER_TOKEN_DEFAULT)
    return math.ceil(decoded_bytes / per_token)


# Byte-based estimates (no vocabulary) ------------------------------------------------------------------


def tokens_for_bytes(size: int) -> int:
    return -(-size // BYTES_PER_TOKEN)


def estimate_text_tokens(text: str) -> int:
    return tokens_for_bytes(len(text.encode("utf-8"))) if text else 0


def texts_in(value: Any) -> Iterable[str]:
    """Every string inside a JSON value (message contents, content parts, tool arguments, ...).

    Binary payloads such as base64 images are counted like text: an over-estimate, which is the safe side
    for a guardrail.
    """
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from texts_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from texts_in(item)


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """Estimate the prompt of any supported request body (chat, completions, embeddings, responses)."""
    total = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        total += sum(PER_MESSAGE_OVERHEAD + sum(map(estimate_text_tokens, texts_in(m))) for m in messages)
    for key in ("prompt", "input", "instructions", "tools", "functions"):
        if key in body:
            if key == "input" and _is_token_array(body[key]):
                total += _token_array_length(body[key])
            else:
                total += sum(map(estimate_text_tokens, texts_in(body[key])))
    return total


def _is_token_array(value: Any) -> bool:
    # Embeddings accept pre-tokenized input: a list of ints, or a list of lists of ints.
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, int) or (isinstance(v, list) and all(isinstance(i, int) for i in v)) for v in value)
    )


def _token_array_length(value: list[Any]) -> int:
    return sum(len(v) if isinstance(v, list) else 1 for v in value)
