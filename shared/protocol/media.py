"""Images and audio: what each media model accepts, the unit it is counted in, and audio durations (pure: no I/O).

Every model call is recorded in the unit its model is priced in (docs/finance.md, "Units"):

- ``images``: image models priced per image (dall-e-3): count x size x quality, the variant ``1024x1024/hd``;
- ``tokens``: models whose answer reports ``usage`` (gpt-image-1, gpt-4o-transcribe, gpt-4o-mini-tts), with their
  audio and image tokens kept apart from text tokens;
- ``audio_seconds``: whisper, from the answer's ``duration`` (``verbose_json``) or else the file's header;
- ``characters``: tts and tts-hd, the characters of ``input``.

Facts are from Microsoft's image generation how-to (https://learn.microsoft.com/azure/ai-foundry/openai/how-to/dall-e),
the Whisper quickstart (25 MB per file) and the v1 REST reference for images and audio
(https://learn.microsoft.com/azure/ai-foundry/openai/reference-preview-latest); see docs/decisions.md D88. A model is
matched by its name or its longest known prefix (``gpt-image-1-mini``, ``whisper-001``) as in
:mod:`shared.protocol.models`; an unknown model on a media route is refused (400): its unit could not be known.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Any

from shared.protocol.models import by_model_name
from shared.protocol.usage import Usage, parse_media_usage


class Unit(StrEnum):
    """What an operation is counted and priced in (the ledger's ``Unit`` column, FOCUS ``ConsumedUnit``)."""

    TOKENS = "tokens"
    IMAGES = "images"
    AUDIO_SECONDS = "audio_seconds"
    CHARACTERS = "characters"


AUDIO_MAX_BYTES = 25 * 1024 * 1024  # Azure OpenAI: "The file size limit for the Whisper model is 25 MB"
IMAGE_MAX_BYTES = 50 * 1024 * 1024  # gpt-image-1 edits: "The input image must be less than 50 MB"
MAX_EDIT_IMAGES = 16  # gpt-image-1 edits take up to 16 input images (``image[]``)
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
AUDIO_SUFFIXES = frozenset({"flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"})
SPEECH_FORMATS = frozenset({"mp3", "opus", "aac", "flac", "wav", "pcm"})
MAX_SPEECH_CHARACTERS = 4096
# An audio file whose duration cannot be read from its header is reserved as if it ran at this bitrate (8 kbit/s,
# the lowest speech codecs use): a 25 MB upload is bounded at about 7 hours, never under what it can hold.
MIN_AUDIO_BYTES_PER_SECOND = 1000
# gpt-4o-mini-tts without ``stream_format: sse`` reports no usage: its audio output is reserved and, when no usage
# comes, charged at this many audio tokens per input character (a generous bound, flagged estimated).
SPEECH_AUDIO_TOKENS_PER_CHARACTER = 20
# gpt-4o-transcribe reports its tokens; before the answer, a file is reserved at this many audio tokens per second
# of audio (a generous bound over the model's rate) plus the transcript's output allowance.
TRANSCRIBE_AUDIO_TOKENS_PER_SECOND = 50
TRANSCRIBE_OUTPUT_TOKENS = 16_384


@dataclass(frozen=True)
class ImageModel:
    sizes: tuple[str, ...]
    qualities: tuple[str, ...]
    default_size: str
    default_quality: str
    max_n: int
    response_formats: tuple[str, ...]
    max_prompt_chars: int
    reports_usage: bool  # token-priced: the answer's usage counts text and image tokens
    can_edit: bool
    can_stream: bool  # partial images (``stream`` with ``partial_images``)
    max_output_tokens: int = 0  # per image, the largest size at the highest quality (token-priced models)

    @property
    def unit(self) -> Unit:
        return Unit.TOKENS if self.reports_usage else Unit.IMAGES


@dataclass(frozen=True)
class AudioModel:
    unit: Unit
    transcribes: bool = False
    translates: bool = False
    speaks: bool = False
    response_formats: tuple[str, ...] = ()
    can_stream: bool = False  # transcription ``stream=true`` (SSE) / speech ``stream_format: sse``


_GPT_IMAGE = ImageModel(
    sizes=("1024x1024", "1024x1536", "1536x1024", "auto"),
    qualities=("low", "medium", "high", "auto"),
    default_size="auto",
    default_quality="auto",
    max_n=10,
    response_formats=("b64_json",),
    max_prompt_chars=32_000,
    reports_usage=True,
    can_edit=True,
    can_stream=True,
    max_output_tokens=6_240,  # 1536x1024 at high quality, OpenAI's image token table
)

IMAGE_MODELS: dict[str, ImageModel] = {
    "dall-e-3": ImageModel(
        sizes=("1024x1024", "1024x1792", "1792x1024"),
        qualities=("standard", "hd"),
        default_size="1024x1024",
        default_quality="standard",
        max_n=1,
        response_formats=("url", "b64_json"),
        max_prompt_chars=4_000,
        reports_usage=False,
        can_edit=False,
        can_stream=False,
    ),
    "gpt-image-1": _GPT_IMAGE,
    "gpt-image-1-mini": _GPT_IMAGE,
}

_TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
AUDIO_MODELS: dict[str, AudioModel] = {
    "whisper": AudioModel(Unit.AUDIO_SECONDS, transcribes=True, translates=True, response_formats=_TRANSCRIPT_FORMATS),
    "gpt-4o-transcribe": AudioModel(Unit.TOKENS, transcribes=True, response_formats=("json", "text"), can_stream=True),
    "gpt-4o-mini-transcribe": AudioModel(
        Unit.TOKENS, transcribes=True, response_formats=("json", "text"), can_stream=True
    ),
    "tts": AudioModel(Unit.CHARACTERS, speaks=True, response_formats=tuple(sorted(SPEECH_FORMATS))),
    "tts-hd": AudioModel(Unit.CHARACTERS, speaks=True, response_formats=tuple(sorted(SPEECH_FORMATS))),
    "gpt-4o-mini-tts": AudioModel(
        Unit.TOKENS, speaks=True, response_formats=tuple(sorted(SPEECH_FORMATS)), can_stream=True
    ),
}


def image_model(model: str) -> ImageModel | None:
    return by_model_name(IMAGE_MODELS, model)


def audio_model(model: str) -> AudioModel | None:
    return by_model_name(AUDIO_MODELS, model)


@dataclass(frozen=True)
class MediaRequest:
    """What a media call asked for, as far as quotas and the ledger need it (no prompt text, no audio bytes)."""

    unit: Unit
    images: int = 0  # images requested (``n``)
    image_variant: str = ""  # ``size/quality`` for image models priced per image
    audio_ms: int | None = None  # the uploaded audio's duration read from its header (None: not readable)
    audio_bound_ms: int = 0  # what the call is reserved for: the header's duration, else a bound from the size
    characters: int = 0  # speech: characters of ``input``
    reports_usage: bool = False
    # Token-priced models: conservative bounds reserved before the answer, and which kind the media tokens are.
    bound_input_tokens: int = 0  # all input tokens (text and media)
    bound_media_input_tokens: int = 0  # of which audio (transcription) or image (edits) tokens
    bound_output_tokens: int = 0
    output_kind: str = "text"  # what the output tokens are: image, audio or text
    input_kind: str = "text"  # what the media input tokens are: image, audio or text
    response_format: str = ""

    def bound(self) -> Usage:
        """What the call is charged if it may have run but reported nothing: every unit it reserved (estimated)."""
        return Usage(
            self.bound_input_tokens,
            self.bound_output_tokens,
            estimated=True,
            audio_input_tokens=self.bound_media_input_tokens if self.input_kind == "audio" else 0,
            image_input_tokens=self.bound_media_input_tokens if self.input_kind == "image" else 0,
            audio_output_tokens=self.bound_output_tokens if self.output_kind == "audio" else 0,
            image_output_tokens=self.bound_output_tokens if self.output_kind == "image" else 0,
            images=self.images if self.unit is Unit.IMAGES else 0,
            image_variant=self.image_variant if self.unit is Unit.IMAGES else "",
            audio_ms=self.audio_bound_ms if self.unit is Unit.AUDIO_SECONDS else 0,
            characters=self.characters if self.unit is Unit.CHARACTERS else 0,
        )

    def answered(self, content: bytes) -> Usage | None:
        """The usage of a whole (non-streamed) answer: images counted in ``data``, tokens from ``usage``, seconds
        from ``duration`` (``verbose_json``) or the file's header, characters of the input. None: the answer does not
        say and nothing else does (the call is then charged :meth:`bound`)."""
        body = _json_object(content)
        if self.unit is Unit.CHARACTERS:
            return Usage(characters=self.characters)
        if self.unit is Unit.IMAGES:
            data = body.get("data") if body is not None else None
            if not isinstance(data, list):
                return None
            return Usage(images=len(data), image_variant=self.image_variant)
        if self.unit is Unit.AUDIO_SECONDS:
            duration = body.get("duration") if body is not None else None
            if isinstance(duration, (int, float)) and not isinstance(duration, bool) and 0 <= duration < 10**7:
                return Usage(audio_ms=round(duration * 1000))
            return Usage(audio_ms=self.audio_ms) if self.audio_ms else None
        return parse_media_usage(body.get("usage"), output_kind=self.output_kind) if body is not None else None

    def streamed(self, event: dict[str, Any]) -> Usage | None:
        """The usage an SSE event reports (``image_generation.completed``, ``image_edit.completed``,
        ``transcript.text.done``, ``speech.audio.done``), None for every other event."""
        kind = event.get("type")
        if not isinstance(kind, str) or not kind.endswith((".completed", ".done")):
            return None
        if self.unit is Unit.IMAGES:
            return Usage(images=1, image_variant=self.image_variant)
        if self.unit is Unit.AUDIO_SECONDS:
            return Usage(audio_ms=self.audio_ms) if self.audio_ms else None
        if self.unit is Unit.CHARACTERS:
            return Usage(characters=self.characters)
        return parse_media_usage(event.get("usage"), output_kind=self.output_kind)

    def binary(self) -> Usage | None:
        """The usage of an answer of audio bytes (speech without SSE): characters for models priced by them; None for
        token-priced models, which report nothing there."""
        return Usage(characters=self.characters) if self.unit is Unit.CHARACTERS else None


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


# --- audio durations, from the file's header ---------------------------------------------------------------------


def audio_duration_ms(file: IO[bytes], size: int) -> int | None:
    """The duration of an audio file in milliseconds, read from its header: WAV (RIFF ``data`` / byte rate), FLAC
    (STREAMINFO samples), MP3 (Xing/Info/VBRI frame count, else constant bitrate from the first frame), Ogg Vorbis and
    Opus (the last page's granule position), MP4/M4A (``mvhd``). None when the format is not one of these (WebM is
    not parsed) or its header is not consistent. ``file`` is read from the start; its position is not restored."""
    try:
        file.seek(0)
        head = file.read(64)
        if len(head) < 12:
            return None
        parsers = (
            (head[:4] == b"RIFF" and head[8:12] == b"WAVE", _wav),
            (head[:4] == b"fLaC", _flac),
            (head[:4] == b"OggS", _ogg),
            (head[4:8] == b"ftyp", _mp4),
            (head[:3] == b"ID3" or (head[0] == 0xFF and head[1] & 0xE0 == 0xE0), _mp3),
        )
        for matches, parse in parsers:
            if matches:
                duration = parse(file, size)
                return duration if duration is not None and 0 <= duration < 10**10 else None
    except (OSError, ValueError, struct.error, ZeroDivisionError):
        return None
    return None


MAX_CHUNKS = 256  # chunks or boxes looked at before giving up: a crafted file cannot make the parse long


def _wav(file: IO[bytes], size: int) -> int | None:
    file.seek(12)
    byte_rate = 0
    for _ in range(MAX_CHUNKS):
        header = file.read(8)
        if len(header) < 8:
            return None
        chunk, length = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk == b"fmt ":
            fmt = file.read(min(length, 40))
            if len(fmt) < 16:
                return None
            byte_rate = struct.unpack("<I", fmt[8:12])[0]
            file.seek(length - len(fmt) + (length & 1), 1)
        elif chunk == b"data":
            if byte_rate <= 0:
                return None
            available = max(0, size - file.tell())
            data = min(length, available)  # streamed WAVs write 0xFFFFFFFF; a truncated file holds less
            return int(data * 1000 // byte_rate)
        else:
            file.seek(length + (length & 1), 1)
            if file.tell() > size:
                return None
    return None


def _flac(file: IO[bytes], size: int) -> int | None:
    file.seek(4)
    header = file.read(4)
    if len(header) < 4 or header[0] & 0x7F != 0:  # STREAMINFO comes first
        return None
    info = file.read(34)
    if len(info) < 34:
        return None
    bits = int.from_bytes(info[10:18], "big")
    sample_rate = bits >> 44
    total_samples = bits & ((1 << 36) - 1)
    if sample_rate == 0 or total_samples == 0:
        return None
    return total_samples * 1000 // sample_rate


_MP3_BITRATES = {  # kbit/s by (MPEG-1?, layer) and index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3(file: IO[bytes], size: int) -> int | None:
    file.seek(0)
    start = 0
    head = file.read(10)
    if head[:3] == b"ID3" and len(head) == 10:
        tag = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
        start = 10 + tag + (10 if head[5] & 0x10 else 0)
    file.seek(start)
    frame = file.read(4 + 32 + 120)
    if len(frame) < 4 or frame[0] != 0xFF or frame[1] & 0xE0 != 0xE0:
        return None
    version = (frame[1] >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    layer = 4 - ((frame[1] >> 1) & 3)  # 1, 2, 3 (4: reserved)
    bitrate_index, rate_index = frame[2] >> 4, (frame[2] >> 2) & 3
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version == 3
    sample_rate = _MP3_RATES[version][rate_index]
    bitrate = _MP3_BITRATES[(mpeg1, layer)][bitrate_index - 1] * 1000
    samples = 384 if layer == 1 else 1152 if layer == 2 or mpeg1 else 576
    mono = (frame[3] >> 6) == 3
    side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    xing = frame[4 + side : 4 + side + 12]
    if xing[:4] in (b"Xing", b"Info") and len(xing) == 12 and struct.unpack(">I", xing[4:8])[0] & 1:
        frames = struct.unpack(">I", xing[8:12])[0]
        return int(frames * samples * 1000 // sample_rate)
    vbri = frame[36 : 36 + 18]
    if vbri[:4] == b"VBRI" and len(vbri) == 18:
        frames = struct.unpack(">I", vbri[14:18])[0]
        return int(frames * samples * 1000 // sample_rate)
    return int((size - start) * 8 * 1000 // bitrate)


def _ogg(file: IO[bytes], size: int) -> int | None:
    file.seek(26)
    segments = file.read(1)[0]
    file.seek(27 + segments)
    packet = file.read(40)
    if packet[:8] == b"OpusHead" and len(packet) >= 12:
        rate, pre_skip = 48000, struct.unpack("<H", packet[10:12])[0]
    elif packet[:7] == b"\x01vorbis" and len(packet) >= 16:
        rate, pre_skip = struct.unpack("<I", packet[12:16])[0], 0
    else:
        return None
    tail = min(size, 65536 + 282)  # the last page starts within its largest possible size of the end
    file.seek(size - tail)
    end = file.read(tail)
    last = end.rfind(b"OggS")
    if last < 0 or last + 14 > len(end) or rate == 0:
        return None
    granule = struct.unpack("<q", end[last + 6 : last + 14])[0]
    if granule <= pre_skip:
        return None
    return int((granule - pre_skip) * 1000 // rate)


_MP4_CONTAINERS = {b"moov"}


def _mp4(file: IO[bytes], size: int) -> int | None:
    position, end = 0, size
    for _ in range(MAX_CHUNKS):
        if position + 8 > end:
            return None
        file.seek(position)
        header = file.read(16)
        length, kind = struct.unpack(">I", header[:4])[0], header[4:8]
        body = position + 8
        if length == 1:
            length = struct.unpack(">Q", header[8:16])[0]
            body = position + 16
        elif length == 0:
            length = end - position
        if length < 8:
            return None
        if kind in _MP4_CONTAINERS:
            position, end = body, min(end, position + length)  # descend
            continue
        if kind == b"mvhd":
            file.seek(body)
            box = file.read(32)
            if box[0] == 1:
                timescale, duration = struct.unpack(">IQ", box[20:32])
            else:
                timescale, duration = struct.unpack(">II", box[12:20])
            return duration * 1000 // timescale if timescale else None
        position += length
    return None
