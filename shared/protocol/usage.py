"""Token usage as the upstream reports it, or as estimated when it could not report it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False  # True when the upstream gave no usage (cut-off stream, old api-version)
    # Images and audio (shared.protocol.media): token kinds Azure reports apart (parts of prompt/completion tokens,
    # priced at their own rates), and the non-token units: images of a size/quality, seconds of audio, characters.
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    image_input_tokens: int = 0
    image_output_tokens: int = 0
    images: int = 0
    image_variant: str = ""  # ``1024x1024/hd``: what a per-image price is looked up by
    audio_ms: int = 0
    characters: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_usage(usage: Any) -> Usage | None:
    """Read an OpenAI ``usage`` object of any operation (chat/completions/embeddings or responses)."""
    if not isinstance(usage, dict):
        return None
    if "input_tokens" in usage or "output_tokens" in usage:  # Responses API
        return Usage(
            prompt_tokens=_int(usage.get("input_tokens")),
            completion_tokens=_int(usage.get("output_tokens")),
            cached_tokens=_int((usage.get("input_tokens_details") or {}).get("cached_tokens")),
            reasoning_tokens=_int((usage.get("output_tokens_details") or {}).get("reasoning_tokens")),
        )
    return Usage(
        prompt_tokens=_int(usage.get("prompt_tokens")),
        completion_tokens=_int(usage.get("completion_tokens")),
        cached_tokens=_int((usage.get("prompt_tokens_details") or {}).get("cached_tokens")),
        reasoning_tokens=_int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens")),
    )


def usage_from_body(body: Any) -> Usage | None:
    return parse_usage(body.get("usage")) if isinstance(body, dict) else None


def parse_media_usage(usage: Any, *, output_kind: str) -> Usage | None:
    """The ``usage`` of an image or audio answer (gpt-image-1, gpt-4o-transcribe, gpt-4o-mini-tts): input and output
    tokens, with audio and image tokens kept apart. ``output_kind`` (``image``, ``audio`` or ``text``) is what output
    tokens are when the answer does not break them down (image answers: image tokens; speech: audio tokens)."""
    if not isinstance(usage, dict) or not ("input_tokens" in usage or "output_tokens" in usage):
        return None
    prompt, completion = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
    details = usage.get("input_tokens_details") or usage.get("input_token_details") or {}
    out = usage.get("output_tokens_details") or usage.get("output_token_details")
    details = details if isinstance(details, dict) else {}
    if isinstance(out, dict):
        audio_out, image_out = _int(out.get("audio_tokens")), _int(out.get("image_tokens"))
    else:
        audio_out = completion if output_kind == "audio" else 0
        image_out = completion if output_kind == "image" else 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=_int(details.get("cached_tokens")),
        audio_input_tokens=min(prompt, _int(details.get("audio_tokens"))),
        image_input_tokens=min(prompt, _int(details.get("image_tokens"))),
        audio_output_tokens=min(completion, audio_out),
        image_output_tokens=min(completion, image_out),
    )
