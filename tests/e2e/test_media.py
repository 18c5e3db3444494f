"""Images and audio through the gateway with the official openai SDK (dated and v1): each operation answered as Azure
answers it, recorded in its own unit at its own price, and hostile uploads refused before anything is forwarded."""

from __future__ import annotations

import base64
import csv
import io
import json
import socket
import struct
import time
import uuid
import zlib
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import openai
import pytest
from azure.data.tables import TableClient

from shared.local.simulator.media import wav
from tests.finance.focus_conformance import violations

pytestmark = pytest.mark.e2e

API_VERSION = "2025-04-01-preview"
PRICES = {
    "dall-e-3": {"input": 0, "output": 0, "images": {"1024x1024/standard": 0.04, "1024x1792/hd": 0.12}},
    "gpt-image-1": {"input": 5, "output": 40, "image_input": 10, "image_output": 40},
    "whisper": {"input": 0, "output": 0, "audio_second": 0.0001},
    "gpt-4o-transcribe": {"input": 2.5, "output": 10, "audio_input": 6},
    "tts": {"input": 0, "output": 0, "characters": 15},
    "gpt-4o-mini-tts": {"input": 0.6, "output": 12, "audio_output": 12},
}


@pytest.fixture(scope="module")
def media_gateway(start_gateway, simulator, storage_connection_string):
    return start_gateway(
        {
            "AZURE_OPENAI_ENDPOINT": simulator.url,
            "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
            "GATEWAY_LOCAL_DEV_AUTH": "true",  # the local developer is the admin issuing keys and policies
            "GATEWAY_PRICES": json.dumps(PRICES),
        }
    )


def _caller(
    gateway, *, media: bool = True, limits: dict | None = None, allowed: list[str] | None = None
) -> tuple[str, str]:
    principal = str(uuid.uuid4())
    owner = f"media-tests/{principal}"
    response = httpx.post(
        f"{gateway.api}/manage/keys",
        json={"name": "media", "owner": {"id": owner, "name": "media app", "kind": "app"}, "roles": ["Gateway.Use"]},
    )
    assert response.status_code == 201, response.text
    policy = {"media": media, **({"limits": limits} if limits else {})}
    if allowed is not None:
        policy["allowed_deployments"] = allowed
    put = httpx.put(f"{gateway.api}/manage/policies/media-tests/{principal}", json=policy)
    assert put.status_code == 200, put.text
    return owner, response.json()["key"]


@pytest.fixture(scope="module")
def caller(media_gateway) -> tuple[str, str]:
    return _caller(media_gateway)


@pytest.fixture
def azure(media_gateway, caller) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=media_gateway.api, api_key=caller[1], api_version=API_VERSION, max_retries=0
    )


@pytest.fixture
def v1(media_gateway, caller) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{media_gateway.api}/openai/v1", api_key=caller[1], max_retries=0)


def _rows(connection_string: str, owner: str, count: int, timeout: float = 10.0) -> list[dict]:
    table = TableClient.from_connection_string(connection_string, "gatewayUsage")
    deadline = time.monotonic() + timeout
    while True:
        rows = list(table.query_entities("CallerId eq @c", parameters={"c": owner}))
        if len(rows) >= count or time.monotonic() > deadline:
            return sorted(rows, key=lambda row: row["At"])
        time.sleep(0.1)


def _row(connection_string: str, request_id: str) -> dict:
    table = TableClient.from_connection_string(connection_string, "gatewayUsage")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = list(table.query_entities("RowKey eq @id", parameters={"id": request_id}))
        if rows:
            return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"no ledger row for {request_id}")


def decoded_png(data: bytes) -> tuple[int, int]:
    """Decode a PNG as a reader does (signature, chunk CRCs, zlib, scanline filters): its width and height."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, size = 8, b"", (0, 0)
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        assert struct.unpack(">I", data[at + 8 + length : at + 12 + length])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    rows = zlib.decompress(idat)
    width, height = size
    assert len(rows) == height * (1 + 3 * width) and all(rows[r * (1 + 3 * width)] == 0 for r in range(height))
    return size


# --- each operation, dated and v1 ----------------------------------------------------------------------------------


def test_dall_e_3_images_are_counted_per_image_at_their_size_and_quality(azure, v1, sim, storage_connection_string):
    raw = azure.images.with_raw_response.generate(
        model="dall-e-3", prompt="a lighthouse at dusk", size="1024x1792", quality="hd", response_format="b64_json"
    )
    image = raw.parse().data[0]
    assert decoded_png(base64.b64decode(image.b64_json or "")) == (8, 8)
    row = _row(storage_connection_string, raw.headers["x-gateway-request-id"])
    assert (row["Operation"], row["Unit"], row["Units"], row["ImageVariant"]) == (
        "images.generations",
        "images",
        "1",
        "1024x1792/hd",
    )
    assert Decimal(row["Cost"]) == Decimal("0.12") and not row["Estimated"]

    url = v1.images.with_raw_response.generate(model="dall-e-3", prompt="a lighthouse")  # defaults: url, 1024 standard
    assert url.parse().data[0].url
    row = _row(storage_connection_string, url.headers["x-gateway-request-id"])
    assert (row["ImageVariant"], Decimal(row["Cost"])) == ("1024x1024/standard", Decimal("0.04"))
    assert sim.requests()[-1]["path"] == "/openai/v1/images/generations"


def test_gpt_image_1_tokens_keep_image_tokens_apart_and_edits_upload_the_image(v1, sim, storage_connection_string):
    raw = v1.images.with_raw_response.generate(model="gpt-image-1", prompt="two red apples", n=2, quality="low")
    answer = raw.parse()
    assert len(answer.data) == 2 and answer.usage is not None
    reported = sim.requests()[-1]["usage"]
    row = _row(storage_connection_string, raw.headers["x-gateway-request-id"])
    assert (row["Unit"], row["PromptTokens"], row["CompletionTokens"]) == (
        "tokens",
        reported["prompt_tokens"],
        reported["completion_tokens"],
    )
    assert row["ImageOutputTokens"] == reported["completion_tokens"] == 2 * 272
    assert Decimal(row["Cost"]) == (reported["prompt_tokens"] * Decimal(5) + 544 * Decimal(40)) / 1_000_000

    picture = base64.b64decode(answer.data[0].b64_json or "")
    edit = v1.images.with_raw_response.edit(
        model="gpt-image-1", image=("apple.png", picture, "image/png"), prompt="make them green"
    )
    assert edit.parse().data[0].b64_json
    reported = sim.requests()[-1]["usage"]
    row = _row(storage_connection_string, edit.headers["x-gateway-request-id"])
    assert (row["Operation"], row["ImageInputTokens"], row["ImageOutputTokens"]) == (
        "images.edits",
        reported["image_input_tokens"],
        reported["image_output_tokens"],
    )
    text_tokens = reported["prompt_tokens"] - reported["image_input_tokens"]
    expected = (
        text_tokens * Decimal(5)
        + reported["image_input_tokens"] * Decimal(10)
        + reported["image_output_tokens"] * Decimal(40)
    ) / 1_000_000
    assert Decimal(row["Cost"]) == expected


def test_partial_images_stream_through_and_are_charged_from_the_completed_event(v1, storage_connection_string):
    with v1.images.with_streaming_response.generate(
        model="gpt-image-1", prompt="a kite", stream=True, partial_images=2, quality="low"
    ) as response:
        events = [line for line in response.iter_lines() if line.startswith("data:")]
        request_id = response.headers["x-gateway-request-id"]
    kinds = [json.loads(line[5:])["type"] for line in events]
    assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    row = _row(storage_connection_string, request_id)
    assert (row["Stream"], row["ImageOutputTokens"], row["Estimated"]) == (True, 272, False)


def test_whisper_transcribes_a_generated_wav_counted_in_seconds(azure, v1, sim, storage_connection_string):
    audio = wav(2.5, words="the quick brown fox")
    raw = azure.audio.transcriptions.with_raw_response.create(model="whisper", file=("note.wav", audio, "audio/wav"))
    assert raw.parse().text == "the quick brown fox"
    row = _row(storage_connection_string, raw.headers["x-gateway-request-id"])
    assert (row["Operation"], row["Unit"], row["Units"]) == ("audio.transcriptions", "audio_seconds", "2.5")
    assert Decimal(row["Cost"]) == Decimal("2.5") * Decimal("0.0001")
    forwarded = sim.requests()[-1]
    assert forwarded["body"]["file"] == {"file_bytes": len(audio)} and forwarded["usage"] == {"audio_ms": 2500}

    verbose = v1.audio.translations.with_raw_response.create(
        model="whisper", file=("note.wav", wav(1.25), "audio/wav"), response_format="verbose_json"
    )
    assert verbose.parse().text
    row = _row(storage_connection_string, verbose.headers["x-gateway-request-id"])
    assert (row["Operation"], row["Units"]) == ("audio.translations", "1.25")


def test_gpt_4o_transcribe_reports_audio_tokens_apart_streamed_or_not(v1, sim, storage_connection_string):
    raw = v1.audio.transcriptions.with_raw_response.create(
        model="gpt-4o-transcribe", file=("a.wav", wav(3, words="hello there"), "audio/wav")
    )
    assert raw.parse().text == "hello there"
    reported = sim.requests()[-1]["usage"]
    row = _row(storage_connection_string, raw.headers["x-gateway-request-id"])
    assert (row["Unit"], row["AudioInputTokens"], row["PromptTokens"], row["CompletionTokens"]) == (
        "tokens",
        reported["audio_input_tokens"],
        reported["prompt_tokens"],
        reported["completion_tokens"],
    )
    assert Decimal(row["Cost"]) == (30 * Decimal(6) + reported["completion_tokens"] * Decimal(10)) / 1_000_000

    with v1.audio.transcriptions.with_streaming_response.create(
        model="gpt-4o-transcribe", file=("a.wav", wav(2, words="one two three"), "audio/wav"), stream=True
    ) as response:
        kinds = [json.loads(line[5:])["type"] for line in response.iter_lines() if line.startswith("data:")]
        request_id = response.headers["x-gateway-request-id"]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.delta") == 3
    row = _row(storage_connection_string, request_id)
    assert (row["Stream"], row["AudioInputTokens"], row["Estimated"]) == (True, 20, False)


def test_speech_streams_audio_bytes_counted_in_characters(azure, storage_connection_string):
    text = "Thirty characters of speech.."
    with azure.audio.speech.with_streaming_response.create(
        model="tts", voice="alloy", input=text, response_format="wav"
    ) as response:
        audio = b"".join(response.iter_bytes())
        request_id = response.headers["x-gateway-request-id"]
        assert response.headers["content-type"] == "audio/wav"
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE"
    assert len(audio) == 44 + round(len(text) / 15 * 24_000) * 2  # the simulator's voice: 15 characters a second
    row = _row(storage_connection_string, request_id)
    assert (row["Unit"], row["Units"], row["Estimated"]) == ("characters", str(len(text)), False)
    assert Decimal(row["Cost"]) == len(text) * Decimal(15) / 1_000_000


def test_speech_events_carry_usage_for_gpt_4o_mini_tts(v1, sim, storage_connection_string):
    with v1.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input="Hello from the gateway.", stream_format="sse"
    ) as response:
        kinds = [json.loads(line[5:])["type"] for line in response.iter_lines() if line.startswith("data:")]
        request_id = response.headers["x-gateway-request-id"]
    assert kinds[-1] == "speech.audio.done" and "speech.audio.delta" in kinds
    reported = sim.requests()[-1]["usage"]
    row = _row(storage_connection_string, request_id)
    assert (row["PromptTokens"], row["AudioOutputTokens"], row["Estimated"]) == (
        reported["prompt_tokens"],
        reported["audio_output_tokens"],
        False,
    )
    expected = (reported["prompt_tokens"] * Decimal("0.6") + reported["audio_output_tokens"] * Decimal(12)) / 10**6
    assert Decimal(row["Cost"]) == expected


def test_a_content_policy_refusal_reaches_the_caller_as_azure_sent_it(azure, sim, storage_connection_string):
    sim.behave(deployment="dall-e-3", fault="content_policy_violation", times=1)
    with pytest.raises(openai.BadRequestError) as refused:
        azure.images.generate(model="dall-e-3", prompt="something refused")
    assert refused.value.code == "content_policy_violation"
    row = _row(storage_connection_string, refused.value.response.headers["x-gateway-request-id"])
    assert (row["Status"], row["Outcome"], row["Units"], row["Cost"]) == (400, "upstream_error", "0", "0")


@pytest.mark.parametrize("api", ["dated", "v1"])
def test_every_operation_answers_on_both_apis(api, azure, v1, sim, storage_connection_string):
    client = azure if api == "dated" else v1
    picture = base64.b64decode(client.images.generate(model="gpt-image-1", prompt="a pear").data[0].b64_json or "")
    assert decoded_png(picture) == (8, 8)
    edited = client.images.edit(model="gpt-image-1", image=[("p.png", picture, "image/png")], prompt="a green pear")
    assert edited.data[0].b64_json
    audio = ("a.wav", wav(1, words="bonjour"), "audio/wav")
    assert client.audio.transcriptions.create(model="whisper", file=audio).text == "bonjour"
    assert client.audio.translations.create(model="whisper", file=audio).text == "bonjour"
    speech = client.audio.speech.create(model="tts", voice="alloy", input="Hi there", response_format="mp3")
    assert speech.content[:2] == b"\xff\xfb"  # MPEG-1 layer III frames
    paths = [entry["path"] for entry in sim.requests()]
    prefix = "/openai/deployments/" if api == "dated" else "/openai/v1/"
    assert all(path.startswith(prefix) for path in paths) and len(paths) == 5
    assert paths[1].endswith("images/edits") and paths[3].endswith("audio/translations")


# --- policy and quotas -------------------------------------------------------------------------------------------


def test_media_is_off_for_a_caller_whose_policy_does_not_enable_it(media_gateway, sim):
    _, key = _caller(media_gateway, media=False)
    client = openai.OpenAI(base_url=f"{media_gateway.api}/openai/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.images.generate(model="dall-e-3", prompt="a cat")
    assert refused.value.code == "media_not_allowed"
    with pytest.raises(openai.PermissionDeniedError) as refused:  # refused before the upload is read: not a 400
        client.audio.transcriptions.create(model="whisper", file=("a.wav", b"not audio at all", "audio/wav"))
    assert refused.value.code == "media_not_allowed"
    assert sim.requests() == []


def test_deployment_allowlists_apply_to_media_as_to_chat(media_gateway, sim):
    _, key = _caller(media_gateway, allowed=["whisper"])
    client = openai.OpenAI(base_url=f"{media_gateway.api}/openai/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.images.generate(model="dall-e-3", prompt="a cat")
    assert refused.value.code == "deployment_not_allowed"
    assert client.audio.transcriptions.create(model="whisper", file=("a.wav", wav(0.5), "audio/wav")).text
    assert [entry["deployment"] for entry in sim.requests()] == ["whisper"]


def test_a_cost_budget_reserves_n_images_at_their_price_before_forwarding(
    media_gateway, sim, storage_connection_string
):
    owner, key = _caller(media_gateway, limits={"cost_usd_per_month": 0.2})
    client = openai.AzureOpenAI(azure_endpoint=media_gateway.api, api_key=key, api_version=API_VERSION, max_retries=0)
    raw = client.images.with_raw_response.generate(model="dall-e-3", prompt="one", size="1024x1792", quality="hd")
    assert Decimal(raw.headers["x-gateway-quota-limit-cost-usd-month"]) == Decimal("0.2")
    with pytest.raises(openai.PermissionDeniedError) as refused:  # 0.12 reserved, 0.08 left: as for chat
        client.images.generate(model="dall-e-3", prompt="two", size="1024x1792", quality="hd")
    assert refused.value.code == "cost_usd_per_month_exceeded"
    assert refused.value.response.headers["retry-after"]
    assert len(sim.requests()) == 1
    [row] = _rows(storage_connection_string, owner, 1)
    assert Decimal(row["Cost"]) == Decimal("0.12")


# --- hostile input: a clean 4xx, nothing forwarded, nothing recorded --------------------------------------------


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = "gatewaytest" + uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    for name, (filename, data, content_type) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_hostile_uploads_and_parameters_are_refused_before_anything_is_forwarded(
    media_gateway, caller, sim, storage_connection_string
):
    owner, key = _caller(media_gateway)
    headers = {"api-key": key}
    url = f"{media_gateway.api}/openai/deployments/whisper/audio/transcriptions?api-version={API_VERSION}"
    body, content_type = _multipart({}, {"file": ("a.wav", wav(1), "audio/wav")})
    cases = {
        "truncated": (url, body[: len(body) // 2], {"content-type": content_type}, 400),
        "wrong content type": (url, b'{"file": "x"}', {"content-type": "application/json"}, 415),
        "zero-length audio": (url, *_upload({"file": ("a.wav", b"", "audio/wav")}), 400),
        "empty WAV": (url, *_upload({"file": ("a.wav", wav(0), "audio/wav")}), 400),
        "not audio": (url, *_upload({"file": ("a.wav", b"MZ\x90\x00" * 100, "audio/wav")}), 400),
        "oversized": (url, *_upload({"file": ("a.wav", b"RIFF" + b"\x00" * (25 * 1024 * 1024 + 1), "audio/wav")}), 413),
        "an edit of a file that is not an image": (
            f"{media_gateway.api}/openai/v1/images/edits",
            *_upload({"image": ("a.png", b"GIF89a" * 10, "image/png")}, {"model": "gpt-image-1", "prompt": "x"}),
            400,
        ),
        "whisper asked to stream": (
            url,
            *_upload({"file": ("a.wav", wav(1), "audio/wav")}, {"stream": "true"}),
            400,
        ),
    }
    images = f"{media_gateway.api}/openai/deployments/dall-e-3/images/generations?api-version={API_VERSION}"
    gpt_image = f"{media_gateway.api}/openai/v1/images/generations"
    json_cases = {
        "unknown size": (images, {"prompt": "x", "size": "640x480"}, "size"),
        "unknown quality": (images, {"prompt": "x", "quality": "ultra"}, "quality"),
        "n out of range for dall-e-3": (images, {"prompt": "x", "n": 2}, "n"),
        "n out of range": (gpt_image, {"model": "gpt-image-1", "prompt": "x", "n": 11}, "n"),
        "prompt too long": (images, {"prompt": "x" * 4001}, "prompt"),
        "url from gpt-image-1": (gpt_image, {"model": "gpt-image-1", "prompt": "x", "response_format": "url"}, None),
    }
    for name, (target, content, extra, status) in cases.items():
        response = httpx.post(target, content=content, headers={**headers, **extra}, timeout=60)
        assert response.status_code == status, (name, response.text)
        assert set(response.json()["error"]) == {"code", "message", "type", "param"}, name
    for name, (target, payload, param) in json_cases.items():
        response = httpx.post(target, json=payload, headers=headers)
        assert response.status_code == 400, (name, response.text)
        assert response.json()["error"]["param"] == (param or "response_format"), name
    assert sim.requests() == []
    assert _rows(storage_connection_string, owner, 1, timeout=1.0) == []


def _upload(
    files: dict[str, tuple[str, bytes, str]], fields: dict[str, str] | None = None
) -> tuple[bytes, dict[str, str]]:
    body, content_type = _multipart(fields or {}, files)
    return body, {"content-type": content_type}


def test_a_file_part_claiming_ten_gigabytes_is_refused_before_it_is_read(media_gateway, caller, sim):
    """A Content-Length of 10 GB: 413 at once, without the gateway reading (or waiting for) the body."""
    host, port = httpx.URL(media_gateway.api).host, httpx.URL(media_gateway.api).port
    head = (
        f"POST /api/openai/v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\napi-key: {caller[1]}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 10737418240\r\n\r\n"
        '--b\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\nRIFF'
    )
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(head.encode())
        received = b""
        while b'"request_too_large"' not in received and (chunk := connection.recv(65536)):  # until the error body
            received += chunk
        answer = received.decode("latin-1")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert '"request_too_large"' in answer
    assert sim.requests() == []


# --- finance: ledger, daily table, /api/usage and FOCUS agree, in each unit ---------------------------------------


def _rebuild_today(gateway) -> None:
    today = datetime.now(UTC).date().isoformat()
    response = httpx.post(f"{gateway.api}/manage/usage/rebuild", json={"from": today, "to": today}, timeout=60)
    assert response.status_code in (200, 202), response.text
    job, deadline = response.json(), time.monotonic() + 60
    while job["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        job = httpx.get(job["status_url"]).json()
    assert job["status"] == "done", job


def test_daily_table_usage_and_focus_equal_the_ledger_in_each_unit(media_gateway, sim, storage_connection_string):
    owner, key = _caller(media_gateway)
    v1 = openai.OpenAI(base_url=f"{media_gateway.api}/openai/v1", api_key=key, max_retries=0)
    v1.images.generate(model="dall-e-3", prompt="one", size="1024x1792", quality="hd")
    v1.images.generate(model="dall-e-3", prompt="two")
    v1.images.generate(model="gpt-image-1", prompt="three", quality="low")
    v1.audio.transcriptions.create(model="whisper", file=("a.wav", wav(2.125), "audio/wav"))
    v1.audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.wav", wav(1, words="hi"), "audio/wav"))
    with v1.audio.speech.with_streaming_response.create(model="tts", voice="alloy", input="Twelve chars") as speech:
        speech.read()
    simulated = [entry["usage"] for entry in sim.requests()]
    ledger = _rows(storage_connection_string, owner, 6)
    assert len(ledger) == 6 and not any(row["Estimated"] for row in ledger)

    _rebuild_today(media_gateway)
    usage = httpx.get(
        f"{media_gateway.api}/usage", params={"caller_id": owner, "group_by": "deployment"}, timeout=30
    ).json()["data"]
    by_deployment = {row["deployment"]: row for row in usage}
    for deployment in ("dall-e-3", "gpt-image-1", "whisper", "gpt-4o-transcribe", "tts"):
        rows = [row for row in ledger if row["Deployment"] == deployment]
        assert Decimal(by_deployment[deployment]["cost"]) == sum(Decimal(row["Cost"]) for row in rows), deployment
    dalle, image, whisper = by_deployment["dall-e-3"], by_deployment["gpt-image-1"], by_deployment["whisper"]
    assert (dalle["images"], dalle["image_variants"]) == (2, {"1024x1024/standard": 1, "1024x1792/hd": 1})
    assert Decimal(dalle["cost"]) == Decimal("0.16")
    assert image["image_output_tokens"] == simulated[2]["image_output_tokens"] == 272
    assert (whisper["audio_seconds"], Decimal(whisper["cost"])) == ("2.125", Decimal("2.125") * Decimal("0.0001"))
    transcribe = by_deployment["gpt-4o-transcribe"]
    assert transcribe["audio_input_tokens"] == simulated[4]["audio_input_tokens"] == 10
    assert (by_deployment["tts"]["characters"], Decimal(by_deployment["tts"]["cost"])) == (
        12,
        12 * Decimal(15) / 1_000_000,
    )

    focus = httpx.get(f"{media_gateway.api}/usage", params={"caller_id": owner, "format": "focus"}, timeout=30).text
    reader = csv.DictReader(io.StringIO(focus))
    records = list(reader)
    assert violations(list(reader.fieldnames or []), records) == []  # FOCUS 1.2 with images, seconds, characters
    for deployment, row in by_deployment.items():
        charges = [r for r in records if r["ResourceName"] == deployment]
        assert sum(Decimal(r["BilledCost"]) for r in charges) == Decimal(row["cost"]), deployment
        for charge in charges:  # ListUnitPrice x PricingQuantity = ListCost, exactly
            assert Decimal(charge["ListUnitPrice"]) * Decimal(charge["PricingQuantity"]) == Decimal(charge["ListCost"])
    units = {(r["ResourceName"], r["ConsumedUnit"], r["PricingUnit"], r["ConsumedQuantity"]) for r in records}
    assert ("dall-e-3", "Images", "Images", "1") in units
    assert ("whisper", "Seconds", "Seconds", "2.125") in units
    assert ("tts", "Characters", "1000000 Characters", "12") in units
    assert ("gpt-4o-transcribe", "Tokens", "1000000 Tokens", "10") in units  # audio input tokens, apart
    assert {r["ChargeDescription"] for r in records if r["ResourceName"] == "gpt-4o-transcribe"} >= {
        "Audio input tokens of gpt-4o-transcribe"
    }
