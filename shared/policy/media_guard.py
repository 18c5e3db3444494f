"""Guardrails of image and audio calls: what the gateway accepts before anything is reserved or forwarded.

The same rules as for text (api-version, deployment name and allowlist, body size before buffering, strict parsing),
plus what each media model accepts (shared.protocol.media): ``n``, ``size``, ``quality``, ``response_format``,
``stream``, the image prompt's length, speech input's length, and for uploads the file's type (by its first bytes,
not its name), its size (Azure's own limits: 25 MB of audio, 50 MB of images) and, for audio, its duration from the
header (a zero-length file is refused). Each refusal is a 4xx naming the parameter; nothing refused here is forwarded
or recorded.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request

from shared.errors import GatewayError, bad_request
from shared.json_body import parse_json_object, read_body
from shared.policy.guard import _excerpt, check_api_version, check_deployment
from shared.protocol.calls import ModelCall
from shared.protocol.media import (
    AUDIO_MAX_BYTES,
    IMAGE_MAX_BYTES,
    MAX_EDIT_IMAGES,
    MAX_SPEECH_CHARACTERS,
    MIN_AUDIO_BYTES_PER_SECOND,
    SPEECH_AUDIO_TOKENS_PER_CHARACTER,
    TRANSCRIBE_AUDIO_TOKENS_PER_SECOND,
    TRANSCRIBE_OUTPUT_TOKENS,
    AudioModel,
    ImageModel,
    MediaRequest,
    Unit,
    audio_duration_ms,
    audio_model,
    image_model,
)
from shared.protocol.multipart import Form, UploadedFile, read_form
from shared.protocol.operations import Operation, OperationKind
from shared.protocol.tokens import count_text, encoding_for_model
from shared.settings import GuardrailSettings

FORM_TEXT_BYTES = 256 * 1024  # the text fields of an upload (prompt, language, ...) beside its files
PARTIAL_IMAGE_TOKENS = 100  # OpenAI: each partial image of a streamed image costs 100 extra output tokens
MAX_PARTIAL_IMAGES = 3
TTS_SPEEDS = (0.25, 4.0)
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


async def guard_media(
    request: Request, operation: Operation, settings: GuardrailSettings, deployment: str | None
) -> ModelCall:
    api_version = check_api_version(request, operation)
    if operation.multipart:
        form = await read_form(
            request, max_bytes=_upload_limit(operation) + FORM_TEXT_BYTES, max_text_bytes=FORM_TEXT_BYTES
        )
        try:
            return _guard_upload(form, operation, settings, deployment, api_version)
        except BaseException:
            form.close()
            raise
    raw = await read_body(request, settings.max_request_bytes)
    body = parse_json_object(raw)
    deployment = _deployment(body.get("model"), operation, settings, deployment)
    model = settings.deployment_models.get(deployment, deployment)
    stream = _flag(body, "stream")
    if operation.kind is OperationKind.IMAGES:
        media = _image_request(body, _image_facts(model, operation), model, stream, edit_images=0)
    else:
        media = _speech_request(body, _audio_facts(model, operation), model)
        stream = body.get("stream_format") == "sse"
    return _call(operation, deployment, api_version, body, stream, media, model)


def _upload_limit(operation: Operation) -> int:
    return IMAGE_MAX_BYTES if operation.kind is OperationKind.IMAGE_EDITS else AUDIO_MAX_BYTES


def _guard_upload(
    form: Form, operation: Operation, settings: GuardrailSettings, deployment: str | None, api_version: str | None
) -> ModelCall:
    body: dict[str, Any] = {}
    for name in dict.fromkeys(form.names):  # text fields; repeated ones only as ``name[]``
        if not form.files(name):
            body[name] = form.texts(name) if name.endswith("[]") else form.text(name)
    deployment = _deployment(body.get("model"), operation, settings, deployment)
    model = settings.deployment_models.get(deployment, deployment)
    stream = _text_flag(body, "stream")
    if operation.kind is OperationKind.IMAGE_EDITS:
        facts = _image_facts(model, operation)
        images = form.files("image") + form.files("image[]")
        if not images:
            raise bad_request(
                "An image to edit is required ('image').", code="missing_required_parameter", param="image"
            )
        if len(images) > MAX_EDIT_IMAGES:
            raise bad_request(
                f"At most {MAX_EDIT_IMAGES} images can be edited at once.", code="invalid_value", param="image"
            )
        for image in images:
            _check_image(image, "image")
        mask_file = form.file("mask")
        if mask_file is not None:
            _check_image(mask_file, "mask")
        numbers: dict[str, Any] = {name: _number(body, name) for name in ("n", "partial_images") if name in body}
        media = _image_request({**body, **numbers}, facts, model, stream, edit_images=len(images))
    else:
        facts_audio = _audio_facts(model, operation)
        audio = form.file("file")
        if audio is None:
            raise bad_request("An audio file is required ('file').", code="missing_required_parameter", param="file")
        media = _audio_request(body, audio, facts_audio, model, operation, stream)
    call = _call(operation, deployment, api_version, body, stream, media, model)
    return dataclasses.replace(call, form=form)


def _call(
    operation: Operation,
    deployment: str,
    api_version: str | None,
    body: dict[str, Any],
    stream: bool,
    media: MediaRequest,
    model: str,
) -> ModelCall:
    return ModelCall(
        operation=operation,
        deployment=deployment,
        api_version=api_version,
        body=body,
        stream=stream,
        client_wants_stream_usage=False,
        prompt_tokens_estimate=media.bound_input_tokens,
        max_output_tokens=None,
        model=model,
        media=media,
    )


def _deployment(field: Any, operation: Operation, settings: GuardrailSettings, deployment: str | None) -> str:
    if operation.style.deployment_in_path:
        return check_deployment(deployment, settings)
    return check_deployment(field, settings, param="model")


def _not_supported(model: str, operation: Operation) -> GatewayError:
    return bad_request(
        f"The model {_excerpt(model)} of this deployment does not support {operation.name} through this gateway.",
        code="operation_not_supported",
        param="model",
    )


def _image_facts(model: str, operation: Operation) -> ImageModel:
    facts = image_model(model)
    if facts is None or (operation.kind is OperationKind.IMAGE_EDITS and not facts.can_edit):
        raise _not_supported(model, operation)
    return facts


def _audio_facts(model: str, operation: Operation) -> AudioModel:
    facts = audio_model(model)
    kind = operation.kind
    if (
        facts is None
        or (kind is OperationKind.TRANSCRIPTIONS and not facts.transcribes)
        or (kind is OperationKind.TRANSLATIONS and not facts.translates)
        or (kind is OperationKind.SPEECH and not facts.speaks)
    ):
        raise _not_supported(model, operation)
    return facts


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be true or false.", code="invalid_type", param=name)
    return value


def _text_flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if value not in ("true", "false"):
        raise bad_request(f"'{name}' must be true or false.", code="invalid_type", param=name)
    return bool(value == "true")


def _number(body: dict[str, Any], name: str) -> int:
    value = body[name]
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        return int(value)
    raise bad_request(f"'{name}' must be a whole number; got {_excerpt(value)}.", code="invalid_value", param=name)


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise bad_request(
            f"'{name}' {_excerpt(value)} is not supported by this model; it takes {', '.join(allowed)}.",
            code="invalid_value",
            param=name,
        )
    return str(value)


def _prompt(body: dict[str, Any], name: str, limit: int) -> str:
    text = body.get(name)
    if not isinstance(text, str) or not text.strip():
        raise bad_request(f"'{name}' must be a non-empty string.", code="invalid_type", param=name)
    if len(text) > limit:
        raise bad_request(
            f"'{name}' is {len(text)} characters, above this model's limit of {limit}.",
            code="prompt_too_large",
            param=name,
        )
    return text


def _image_request(
    body: dict[str, Any], facts: ImageModel, model: str, stream: bool, *, edit_images: int
) -> MediaRequest:
    prompt = _prompt(body, "prompt", facts.max_prompt_chars)
    n = body.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= facts.max_n:
        raise bad_request(
            f"'n' must be a whole number from 1 to {facts.max_n} for this model; got {_excerpt(n)}.",
            code="invalid_value",
            param="n",
        )
    size = _choice(body, "size", facts.sizes, facts.default_size)
    quality = _choice(body, "quality", facts.qualities, facts.default_quality)
    response_format = _choice(body, "response_format", facts.response_formats, facts.response_formats[0])
    if "style" in body and not facts.reports_usage:
        _choice(body, "style", ("vivid", "natural"), "vivid")
    partial = body.get("partial_images", 0) or 0
    if stream and not facts.can_stream:
        raise bad_request("This model does not stream images.", code="invalid_value", param="stream")
    if isinstance(partial, bool) or not isinstance(partial, int) or not 0 <= partial <= MAX_PARTIAL_IMAGES:
        raise bad_request(
            f"'partial_images' must be a whole number from 0 to {MAX_PARTIAL_IMAGES}.",
            code="invalid_value",
            param="partial_images",
        )
    if not facts.reports_usage:
        return MediaRequest(
            Unit.IMAGES,
            images=n,
            image_variant=f"{size}/{quality}",
            output_kind="image",
            response_format=response_format,
        )
    text_tokens = count_text(prompt, encoding_for_model(model))
    # Each input image is bounded by the largest image's tokens at the highest fidelity (a conservative bound).
    image_tokens = edit_images * facts.max_output_tokens
    output = n * (facts.max_output_tokens + (partial * PARTIAL_IMAGE_TOKENS if stream else 0))
    return MediaRequest(
        Unit.TOKENS,
        images=n,
        reports_usage=True,
        bound_input_tokens=text_tokens + image_tokens,
        bound_media_input_tokens=image_tokens,
        bound_output_tokens=output,
        input_kind="image",
        output_kind="image",
        response_format=response_format,
    )


def _speech_request(body: dict[str, Any], facts: AudioModel, model: str) -> MediaRequest:
    text = _prompt(body, "input", MAX_SPEECH_CHARACTERS)
    voice = body.get("voice")
    if not isinstance(voice, str) or not voice:
        raise bad_request("'voice' must be a voice name.", code="invalid_type", param="voice")
    response_format = _choice(body, "response_format", facts.response_formats, "mp3")
    stream_format = _choice(body, "stream_format", ("sse", "audio") if facts.can_stream else ("audio",), "audio")
    speed = body.get("speed")
    if speed is not None and (
        isinstance(speed, bool) or not isinstance(speed, (int, float)) or not TTS_SPEEDS[0] <= speed <= TTS_SPEEDS[1]
    ):
        raise bad_request("'speed' must be a number from 0.25 to 4.0.", code="invalid_value", param="speed")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise bad_request("'instructions' must be a string.", code="invalid_type", param="instructions")
    if facts.unit is Unit.CHARACTERS:
        return MediaRequest(Unit.CHARACTERS, characters=len(text), response_format=response_format)
    encoding = encoding_for_model(model)
    tokens = count_text(text, encoding) + (count_text(instructions, encoding) if instructions else 0)
    return MediaRequest(
        Unit.TOKENS,
        characters=len(text),
        reports_usage=stream_format == "sse",
        bound_input_tokens=tokens,
        bound_output_tokens=len(text) * SPEECH_AUDIO_TOKENS_PER_CHARACTER,
        output_kind="audio",
        response_format=response_format,
    )


def _check_image(upload: UploadedFile, param: str) -> None:
    if upload.size == 0:
        raise bad_request(f"The '{param}' file is empty.", code="empty_file", param=param)
    if upload.size > IMAGE_MAX_BYTES:
        raise _file_too_large(param, IMAGE_MAX_BYTES)
    head = upload.open().read(12)  # the spool itself: read, never closed here (the form closes it)
    if not (head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")):
        raise bad_request(
            f"The '{param}' file is not a PNG, JPEG or WebP image.", code="invalid_image_format", param=param
        )


def _file_too_large(param: str, limit: int) -> GatewayError:
    return GatewayError(
        413, f"The '{param}' file is larger than {limit // (1024 * 1024)} MB.", code="file_too_large", param=param
    )


def audio_format(head: bytes) -> str | None:
    """The container of an audio file by its first bytes (what Azure's audio models accept), None if none of them."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def _audio_request(
    body: dict[str, Any],
    upload: UploadedFile,
    facts: AudioModel,
    model: str,
    operation: Operation,
    stream: bool,
) -> MediaRequest:
    if upload.size == 0:
        raise bad_request("The audio file is empty.", code="empty_file", param="file")
    if upload.size > AUDIO_MAX_BYTES:
        raise _file_too_large("file", AUDIO_MAX_BYTES)
    file = upload.open()  # the spool itself: read, never closed here (the form closes it)
    if audio_format(file.read(16)) is None:
        raise bad_request(
            "The file is not audio this service accepts (flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, wav, webm).",
            code="invalid_file_format",
            param="file",
        )
    duration = audio_duration_ms(file, upload.size)
    if duration == 0:
        raise bad_request("The audio file holds no audio.", code="empty_audio", param="file")
    response_format = _choice(body, "response_format", facts.response_formats, "json")
    if stream and (not facts.can_stream or not operation.can_stream):
        raise bad_request("This model does not stream transcriptions.", code="invalid_value", param="stream")
    prompt = body.get("prompt") or ""
    bound_ms = duration if duration is not None else upload.size * 1000 // MIN_AUDIO_BYTES_PER_SECOND
    if facts.unit is Unit.AUDIO_SECONDS:
        return MediaRequest(
            Unit.AUDIO_SECONDS, audio_ms=duration, audio_bound_ms=bound_ms, response_format=response_format
        )
    audio_tokens = -(-bound_ms * TRANSCRIBE_AUDIO_TOKENS_PER_SECOND // 1000)
    text_tokens = count_text(prompt, encoding_for_model(model)) if prompt else 0
    return MediaRequest(
        Unit.TOKENS,
        audio_ms=duration,
        audio_bound_ms=bound_ms,
        reports_usage=response_format == "json" or stream,
        bound_input_tokens=audio_tokens + text_tokens,
        bound_media_input_tokens=audio_tokens,
        bound_output_tokens=TRANSCRIBE_OUTPUT_TOKENS,
        input_kind="audio",
        output_kind="text",
        response_format=response_format,
    )
