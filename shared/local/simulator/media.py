"""The simulator's images and audio, answered as Azure OpenAI answers them.

- Image generations and edits: valid PNG (or baseline JPEG for ``output_format: jpeg``) images, as ``url`` or
  ``b64_json``; gpt-image-1 reports ``usage`` (text and image input tokens, image output tokens by size and quality,
  OpenAI's table) and streams partial images (``image_generation.partial_image`` / ``.completed``); dall-e-3 reports
  none, as in Azure. A ``content_policy_violation`` behaviour answers Azure's image safety refusal.
- Transcriptions and translations: the audio's duration is read from its header; the words are the WAV's ``ICMT``
  (comment) chunk when it has one, so tests can plant what was "said". whisper answers json, text, srt, vtt and
  verbose_json (with ``duration``) and reports no usage; gpt-4o-transcribe reports tokens (audio input at
  :data:`AUDIO_TOKENS_PER_SECOND`) and streams ``transcript.text.delta`` / ``.done`` with usage at the end.
- Speech: a WAV (or PCM, or MP3 of silent MPEG-1 Layer III frames) lasting the input's characters at
  :data:`CHARACTERS_PER_SECOND`, sent in chunks; gpt-4o-mini-tts with ``stream_format: sse`` sends
  ``speech.audio.delta`` events and ``speech.audio.done`` with usage. opus, aac and flac are not simulated (400).

Each answer's usage goes into the request log (``usage``), which tests compare with the gateway's ledger.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from shared.errors import GatewayError
from shared.local.simulator import azure_errors
from shared.local.simulator.azure_errors import AzureError
from shared.local.simulator.behaviours import Behaviour, BehaviourBook
from shared.local.simulator.deployments import Deployment
from shared.local.simulator.text import count_tokens
from shared.protocol.api_versions import is_api_version
from shared.protocol.media import AUDIO_MAX_BYTES, IMAGE_MAX_BYTES, audio_duration_ms
from shared.protocol.multipart import Form, boundary_of, parse_form
from shared.protocol.tokens import Encoding

CHARACTERS_PER_SECOND = 15  # speech: how long the simulated voice takes to say a character
AUDIO_TOKENS_PER_SECOND = 10  # gpt-4o-transcribe input audio tokens per second of audio (simulated rate)
SPEECH_AUDIO_TOKENS_PER_SECOND = 50  # gpt-4o-mini-tts output audio tokens per second of speech (simulated rate)
IMAGE_INPUT_TOKENS = 323  # gpt-image-1 edits: image tokens per input image (simulated, fixed)
SAMPLE_RATE = 24_000  # speech WAV and PCM: 24 kHz, 16-bit mono, as the service's pcm format
CHUNK_BYTES = 16 * 1024
# gpt-image-1 output tokens by size and quality (OpenAI's image generation pricing table); ``auto`` is medium.
IMAGE_OUTPUT_TOKENS = {
    ("1024x1024", "low"): 272,
    ("1024x1024", "medium"): 1056,
    ("1024x1024", "high"): 4160,
    ("1024x1536", "low"): 408,
    ("1024x1536", "medium"): 1584,
    ("1024x1536", "high"): 6240,
    ("1536x1024", "low"): 400,
    ("1536x1024", "medium"): 1568,
    ("1536x1024", "high"): 6208,
}
_SPEECH_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "pcm": "audio/pcm"}

Recorder = Callable[[Request, str | None, dict[str, Any]], dict[str, Any]]


def register(
    app: FastAPI,
    served: Mapping[str, Deployment],
    book: BehaviourBook,
    recorded: deque[dict[str, Any]],
    error: Callable[[AzureError], Response],
) -> None:
    """Add the image and audio routes (dated and v1) to the simulator ``app``."""

    async def handle(request: Request, operation: str, deployment_name: str | None, dated: bool) -> Response:
        if not request.headers.get("authorization", "").lower().startswith("bearer "):
            return error(azure_errors.plain(401, "PermissionDenied", "Access denied: Entra tokens only."))
        api_version = request.query_params.get("api-version")
        if dated and (not api_version or not is_api_version(api_version)):
            return error(azure_errors.plain(400, "BadRequest", "Missing or invalid api-version query parameter."))
        form: Form | None = None
        try:
            if operation in ("images.edits", "audio.transcriptions", "audio.translations"):
                limit = IMAGE_MAX_BYTES if operation == "images.edits" else AUDIO_MAX_BYTES
                try:
                    form = await parse_form(
                        request.stream(), boundary_of(request.headers.get("content-type")), max_bytes=limit + 65536
                    )
                except GatewayError as refused:
                    return error(azure_errors.invalid_request(refused.message, refused.param, refused.code))
                fields: dict[str, Any] = {
                    name: value if isinstance(value, str) else {"file_bytes": value.size} for name, value in form.parts
                }
            else:
                try:
                    parsed: Any = json.loads(await request.body())
                except ValueError:
                    return error(azure_errors.plain(400, "BadRequest", "The request body is not valid JSON."))
                if not isinstance(parsed, dict):
                    return error(azure_errors.invalid_request("The request body must be a JSON object."))
                fields = parsed
            if deployment_name is None:
                deployment_name = fields.get("model")
                if not isinstance(deployment_name, str):
                    return error(
                        azure_errors.invalid_request(
                            "Missing required parameter: 'model'.", "model", "missing_required_parameter"
                        )
                    )
            entry: dict[str, Any] = {
                "path": request.url.path,
                "query": dict(request.query_params),
                "deployment": deployment_name,
                "body": {k: v for k, v in fields.items() if k not in ("prompt", "input")},  # no texts kept
                "authorization": "bearer",
                "client_request_id": request.headers.get("x-ms-client-request-id"),
                "usage": None,
            }
            recorded.append(entry)
            deployment = served.get(deployment_name)
            if deployment is None:
                return error(azure_errors.deployment_not_found())
            if deployment.model.kind != _KINDS[operation]:
                return error(azure_errors.operation_not_supported(_OPERATION_NAMES[operation], deployment.model.name))
            behaviour = book.take(deployment_name)
            if behaviour.first_byte_delay_ms:
                await asyncio.sleep(behaviour.first_byte_delay_ms / 1000)
            if behaviour.fault == "429":
                return error(
                    azure_errors.AzureError(
                        429,
                        {"error": {"code": "429", "message": "Rate limit of the simulated deployment exceeded."}},
                        {"retry-after": str(behaviour.retry_after_seconds)},
                    )
                )
            if behaviour.fault in ("500", "503"):
                return error(azure_errors.plain(int(behaviour.fault), "InternalServerError", "Told to fail."))
            if behaviour.fault == "content_policy_violation" and operation.startswith("images."):
                return error(content_policy_violation())
            if operation.startswith("images."):
                return _images(operation, fields, form, deployment, behaviour, entry)
            if operation == "audio.speech":
                return _speech(fields, deployment, behaviour, entry)
            assert form is not None
            return _transcript(operation, fields, form, deployment, behaviour, entry)
        except AzureError as refused:
            return error(refused)
        finally:
            if form is not None:
                form.close()

    for path, operation in _ROUTES.items():
        _add(app, handle, path, operation)


_ROUTES = {
    "images/generations": "images.generations",
    "images/edits": "images.edits",
    "audio/transcriptions": "audio.transcriptions",
    "audio/translations": "audio.translations",
    "audio/speech": "audio.speech",
}
_KINDS = {
    "images.generations": "images",
    "images.edits": "images",
    "audio.transcriptions": "transcription",
    "audio.translations": "transcription",
    "audio.speech": "speech",
}
_OPERATION_NAMES = {
    "images.generations": "imagesGenerations",
    "images.edits": "imagesEdits",
    "audio.transcriptions": "audioTranscriptions",
    "audio.translations": "audioTranslations",
    "audio.speech": "audioSpeech",
}


def _add(app: FastAPI, handle: Any, path: str, operation: str) -> None:
    async def dated(deployment: str, request: Request) -> Response:
        response: Response = await handle(request, operation, deployment, True)
        return response

    async def v1(request: Request) -> Response:
        response: Response = await handle(request, operation, None, False)
        return response

    app.add_api_route(f"/openai/deployments/{{deployment}}/{path}", dated, methods=["POST"])
    app.add_api_route(f"/openai/v1/{path}", v1, methods=["POST"])


def content_policy_violation() -> AzureError:
    """Azure's refusal of an image prompt by its safety system (the image generation how-to's error shape)."""
    return AzureError(
        400,
        {
            "error": {
                "code": "content_policy_violation",
                "message": "Your request was rejected as a result of our safety system. Your prompt may contain text "
                "that is not allowed by our safety system.",
                "param": None,
                "type": "invalid_request_error",
                "inner_error": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_results": {
                        "hate": {"filtered": False, "severity": "safe"},
                        "self_harm": {"filtered": False, "severity": "safe"},
                        "sexual": {"filtered": False, "severity": "safe"},
                        "violence": {"filtered": True, "severity": "high"},
                    },
                },
            }
        },
    )


# --- images ------------------------------------------------------------------------------------------------------


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (51, 102, 204)) -> bytes:
    """A valid PNG of one colour (what any decoder reads: signature, IHDR, zlib IDAT, IEND, CRCs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def jpeg() -> bytes:
    """A valid baseline JPEG: one 8x8 grey block (DC 0, end of block), quantization 1, one-code Huffman tables."""
    dqt = b"\xff\xdb\x00\x43\x00" + b"\x01" * 64
    sof = b"\xff\xc0\x00\x0b\x08\x00\x08\x00\x08\x01\x01\x11\x00"
    dht_dc = b"\xff\xc4\x00\x14\x00" + b"\x01" + b"\x00" * 15 + b"\x00"
    dht_ac = b"\xff\xc4\x00\x14\x10" + b"\x01" + b"\x00" * 15 + b"\x00"
    sos = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + dqt + sof + dht_dc + dht_ac + sos + b"\x3f" + b"\xff\xd9"


def _image_bytes(fields: Mapping[str, Any]) -> bytes:
    return jpeg() if fields.get("output_format") == "jpeg" else png()


def _images(
    operation: str,
    fields: dict[str, Any],
    form: Form | None,
    deployment: Deployment,
    behaviour: Behaviour,
    entry: dict[str, Any],
) -> Response:
    family = deployment.model
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise azure_errors.invalid_request("'prompt' is required.", "prompt", "missing_required_parameter")
    n = int(fields.get("n") or 1)
    created = int(time.time())
    picture = base64.b64encode(_image_bytes(fields)).decode()
    token_priced = family.name.startswith("gpt-image")
    if not token_priced:
        if n != 1:
            raise azure_errors.invalid_request("dall-e-3 generates one image per request ('n' must be 1).", "n")
        size = fields.get("size") or "1024x1024"
        quality = fields.get("quality") or "standard"
        entry["usage"] = {"images": n, "image_variant": f"{size}/{quality}"}
        item: dict[str, Any] = {"revised_prompt": prompt}
        if fields.get("response_format") == "b64_json":
            item["b64_json"] = picture
        else:
            item["url"] = f"https://simulator.invalid/images/{created}.png"
        body = {"created": created, "data": [dict(item) for _ in range(n)]}
        return JSONResponse(body, headers=_headers())
    size = fields.get("size") or "auto"
    quality = fields.get("quality") or "auto"
    size = "1024x1024" if size == "auto" else size
    quality = "medium" if quality == "auto" else quality
    per_image = IMAGE_OUTPUT_TOKENS.get((size, quality), 1056)
    text_tokens = count_tokens(prompt, Encoding(family.encoding))
    inputs = len(form.files("image") + form.files("image[]")) if form is not None else 0
    image_tokens = inputs * IMAGE_INPUT_TOKENS
    usage: dict[str, Any] = {
        "input_tokens": text_tokens + image_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
        "output_tokens": n * per_image,
        "total_tokens": text_tokens + image_tokens + n * per_image,
    }
    entry["usage"] = {
        "prompt_tokens": usage["input_tokens"],
        "completion_tokens": usage["output_tokens"],
        "image_input_tokens": image_tokens,
        "image_output_tokens": usage["output_tokens"],
    }
    stream = fields.get("stream") in (True, "true")
    if stream:
        prefix = "image_edit" if operation == "images.edits" else "image_generation"
        partial = int(fields.get("partial_images") or 0)
        one = {**usage, "output_tokens": per_image, "total_tokens": usage["input_tokens"] + per_image}

        def events() -> Iterator[str]:
            for _ in range(n):
                for part in range(partial):
                    yield _sse(
                        {
                            "type": f"{prefix}.partial_image",
                            "b64_json": picture,
                            "partial_image_index": part,
                            "created_at": created,
                        }
                    )
                yield _sse({"type": f"{prefix}.completed", "b64_json": picture, "created_at": created, "usage": one})

        return _sse_response(events(), behaviour)
    body = {"created": created, "data": [{"b64_json": picture} for _ in range(n)], "usage": usage}
    return JSONResponse(body, headers=_headers())


# --- audio -------------------------------------------------------------------------------------------------------


def wav(seconds: float, *, words: str | None = None, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 16-bit mono WAV of ``seconds`` (a quiet 440 Hz tone); ``words`` go into a LIST/INFO ``ICMT`` chunk, which the
    simulator's transcription reads back as what was said."""
    frames = round(seconds * sample_rate)
    samples = b"".join(
        struct.pack("<h", int(800 * math.sin(2 * math.pi * 440 * i / sample_rate))) for i in range(min(frames, 4800))
    )
    data = (samples * (frames // 4800 + 1))[: frames * 2] if frames else b""
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if words is not None:
        text = words.encode() + b"\x00"
        text += b"\x00" * (len(text) & 1)
        info = b"INFO" + b"ICMT" + struct.pack("<I", len(text)) + text
        chunks += b"LIST" + struct.pack("<I", len(info)) + info
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def mp3(seconds: float) -> bytes:
    """Silent MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz, mono) lasting at least ``seconds``: a valid MP3."""
    header = b"\xff\xfb\x90\xc0"  # sync, MPEG-1, layer III, no CRC; 128 kbit/s, 44.1 kHz, no padding; mono
    frame = header + b"\x00" * (144 * 128_000 // 44_100 - 4)  # zero side information: silence
    return frame * max(1, math.ceil(seconds * 44_100 / 1152))


def spoken_words(audio: bytes) -> str | None:
    """The words a test planted in a WAV's ``ICMT`` chunk."""
    at = audio.find(b"ICMT", 12)
    if at < 0 or at + 8 > len(audio):
        return None
    length = struct.unpack("<I", audio[at + 4 : at + 8])[0]
    return audio[at + 8 : at + 8 + length].rstrip(b"\x00").decode("utf-8", "replace")


def _transcript(
    operation: str,
    fields: dict[str, Any],
    form: Form,
    deployment: Deployment,
    behaviour: Behaviour,
    entry: dict[str, Any],
) -> Response:
    upload = form.file("file")
    if upload is None or upload.size == 0:
        raise azure_errors.invalid_request("'file' is required and must not be empty.", "file", "invalid_value")
    spool = upload.open()
    duration_ms = audio_duration_ms(spool, upload.size)
    if duration_ms is None:
        duration_ms = upload.size * 1000 // 16_000  # formats whose header the simulator does not read
    spool.seek(0)
    words = spoken_words(spool.read(min(upload.size, 1 << 20))) or (
        f"This is a simulated transcript of {duration_ms / 1000:.1f} seconds of audio."
    )
    seconds = duration_ms / 1000
    response_format = fields.get("response_format") or "json"
    family = deployment.model
    if family.name == "whisper":
        entry["usage"] = {"audio_ms": duration_ms}
        if response_format == "text":
            return PlainTextResponse(words + "\n", headers=_headers())
        if response_format in ("srt", "vtt"):
            stamp = _stamp(seconds, ",") if response_format == "srt" else _stamp(seconds, ".")
            start = "00:00:00,000" if response_format == "srt" else "00:00:00.000"
            head = "1\n" if response_format == "srt" else "WEBVTT\n\n"
            return PlainTextResponse(f"{head}{start} --> {stamp}\n{words}\n\n", headers=_headers())
        if response_format == "verbose_json":
            body = {
                "task": "translate" if operation == "audio.translations" else "transcribe",
                "language": "english",
                "duration": seconds,
                "text": words,
                "segments": [{"id": 0, "start": 0.0, "end": seconds, "text": words}],
            }
            return JSONResponse(body, headers=_headers())
        return JSONResponse({"text": words}, headers=_headers())
    encoding = Encoding(family.encoding)
    audio_tokens = math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)
    prompt = fields.get("prompt")
    text_tokens = count_tokens(prompt, encoding) if isinstance(prompt, str) and prompt else 0
    output = count_tokens(words, encoding)
    usage = {
        "type": "tokens",
        "input_tokens": audio_tokens + text_tokens,
        "input_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
        "output_tokens": output,
        "total_tokens": audio_tokens + text_tokens + output,
    }
    entry["usage"] = {
        "prompt_tokens": audio_tokens + text_tokens,
        "completion_tokens": output,
        "audio_input_tokens": audio_tokens,
    }
    if fields.get("stream") == "true":

        def events() -> Iterator[str]:
            for word in words.split(" "):
                yield _sse({"type": "transcript.text.delta", "delta": word + " "})
            yield _sse({"type": "transcript.text.done", "text": words, "usage": usage})

        return _sse_response(events(), behaviour)
    if response_format == "text":
        entry["usage"]["reported"] = False
        return PlainTextResponse(words + "\n", headers=_headers())
    return JSONResponse({"text": words, "usage": usage}, headers=_headers())


def _stamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    return (
        f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d}{separator}{millis % 1000:03d}"
    )


def _speech(fields: dict[str, Any], deployment: Deployment, behaviour: Behaviour, entry: dict[str, Any]) -> Response:
    text = fields.get("input")
    if not isinstance(text, str) or not text:
        raise azure_errors.invalid_request("'input' is required.", "input", "missing_required_parameter")
    response_format = fields.get("response_format") or "mp3"
    if response_format not in _SPEECH_TYPES:
        raise azure_errors.invalid_request(
            f"The simulator does not produce {response_format!r} audio (mp3, wav and pcm only).", "response_format"
        )
    speed = fields.get("speed") or 1.0
    seconds = len(text) / CHARACTERS_PER_SECOND / float(speed)
    if response_format == "mp3":
        audio = mp3(seconds)
    else:
        audio = wav(seconds)
        audio = audio[44:] if response_format == "pcm" else audio
    family = deployment.model
    encoding = Encoding(family.encoding)
    token_priced = family.name == "gpt-4o-mini-tts"
    instructions = fields.get("instructions")
    input_tokens = count_tokens(text, encoding) + (count_tokens(instructions, encoding) if instructions else 0)
    output_tokens = math.ceil(seconds * SPEECH_AUDIO_TOKENS_PER_SECOND)
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}
    if token_priced:
        entry["usage"] = {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "audio_output_tokens": output_tokens,
            "audio_bytes": len(audio),
        }
    else:
        entry["usage"] = {"characters": len(text), "audio_bytes": len(audio)}
    if fields.get("stream_format") == "sse" and token_priced:

        def events() -> Iterator[str]:
            for at in range(0, len(audio), CHUNK_BYTES):
                yield _sse(
                    {"type": "speech.audio.delta", "audio": base64.b64encode(audio[at : at + CHUNK_BYTES]).decode()}
                )
            yield _sse({"type": "speech.audio.done", "usage": usage})

        return _sse_response(events(), behaviour)

    async def chunks() -> AsyncIterator[bytes]:
        for sent, at in enumerate(range(0, len(audio), CHUNK_BYTES)):
            if behaviour.fault == "cutoff" and sent >= behaviour.cutoff_after_chunks:
                raise ConnectionAbortedError("simulated cut-off")
            if sent and behaviour.chunk_delay_ms:
                await asyncio.sleep(behaviour.chunk_delay_ms / 1000)
            yield audio[at : at + CHUNK_BYTES]

    return StreamingResponse(chunks(), media_type=_SPEECH_TYPES[response_format], headers=_headers())


# --- wire --------------------------------------------------------------------------------------------------------


def _sse(payload: dict[str, Any]) -> str:
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n"


def _sse_response(events: Iterator[str], behaviour: Behaviour) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for sent, event in enumerate(events):
            if behaviour.fault == "cutoff" and sent >= behaviour.cutoff_after_chunks:
                raise ConnectionAbortedError("simulated cut-off")
            if sent and behaviour.chunk_delay_ms:
                await asyncio.sleep(behaviour.chunk_delay_ms / 1000)
            yield event.encode()

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={**_headers(), "cache-control": "no-cache"}
    )


def _headers() -> dict[str, str]:
    return {"apim-request-id": f"sim-{time.monotonic_ns()}", "x-ms-region": "Local Simulator"}
