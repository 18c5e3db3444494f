"""Media facts: audio durations read from file headers, model facts, usage of image and audio answers."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest

from shared.local.simulator.media import jpeg, mp3, png, wav
from shared.protocol.media import MediaRequest, Unit, audio_duration_ms, audio_model, image_model
from shared.protocol.usage import parse_media_usage


def duration(data: bytes) -> int | None:
    return audio_duration_ms(io.BytesIO(data), len(data))


def flac(samples: int, rate: int) -> bytes:
    bits = (rate << 44) | (0 << 41) | (15 << 36) | samples  # mono, 16 bits per sample
    info = struct.pack(">HH", 4096, 4096) + b"\x00" * 6 + bits.to_bytes(8, "big") + b"\x00" * 16
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info + b"\xff\xf8" + b"\x00" * 100


def ogg_page(granule: int, packet: bytes, sequence: int) -> bytes:
    header = b"OggS\x00" + (2 if sequence == 0 else 0).to_bytes(1, "little") + struct.pack("<q", granule)
    header += struct.pack("<III", 1, sequence, 0) + bytes([1, len(packet)])
    return header + packet


def opus(seconds: float) -> bytes:
    head = b"OpusHead" + bytes([1, 1]) + struct.pack("<HIhB", 312, 48000, 0, 0)
    return (
        ogg_page(0, head, 0) + ogg_page(0, b"OpusTags" + b"\x00" * 8, 1) + ogg_page(312 + int(seconds * 48000), b"x", 2)
    )


def m4a(timescale: int, units: int, *, version: int = 0) -> bytes:
    def box(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", 8 + len(body)) + kind + body

    if version == 0:
        mvhd = bytes([0, 0, 0, 0]) + struct.pack(">IIII", 0, 0, timescale, units) + b"\x00" * 80
    else:
        mvhd = bytes([1, 0, 0, 0]) + struct.pack(">QQIQ", 0, 0, timescale, units) + b"\x00" * 80
    return box(b"ftyp", b"M4A \x00\x00\x00\x00") + box(b"mdat", b"\x00" * 500) + box(b"moov", box(b"mvhd", mvhd))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (wav(2.5), 2500),
        (wav(0.75, words="planted words"), 750),  # a LIST chunk before the data
        (wav(1, sample_rate=8000), 1000),
        (flac(44100 * 3, 44100), 3000),
        (mp3(2.0), 2006),  # no Xing header: size x 8 / bitrate (77 frames of 417 bytes at 128 kbit/s)
        (opus(1.5), 1500),
        (m4a(44100, 44100 * 4), 4000),
        (m4a(1000, 12_345, version=1), 12_345),
    ],
)
def test_durations_are_read_from_the_header_of_each_format(data, expected):
    assert duration(data) == expected


def test_an_mp3_with_a_xing_header_counts_its_frames():
    frame = bytearray(mp3(0.01)[:417])
    frame[21:33] = b"Xing" + struct.pack(">II", 1, 100)  # mono MPEG-1: after 17 bytes of side information
    tagged = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10 + bytes(frame) + mp3(0.1)
    assert duration(tagged) == 100 * 1152 * 1000 // 44100


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x1a\x45\xdf\xa3" + b"\x00" * 100,  # WebM: not parsed
        b"RIFF\x00\x00\x00\x00WAVEdata\x10\x00\x00\x00",  # data before fmt: no byte rate
        b"MZ\x90\x00" * 50,
        b"fLaC\x80\x00\x00\x22" + b"\x00" * 34,  # zero samples: unknown
        b"\xff\xfb\xf0\x00" + b"\x00" * 100,  # a bad bitrate index
        b"OggS" + b"\x00" * 60,
    ],
)
def test_unreadable_headers_give_no_duration_rather_than_a_wrong_one(data):
    assert duration(data) is None


def test_a_truncated_wav_counts_only_the_audio_it_holds():
    whole = wav(2)
    assert duration(whole[: 44 + 24_000]) == 500  # half a second of 24 kHz 16-bit mono arrived


def test_simulated_images_are_valid_png_and_jpeg():
    data = png(4, 3)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    rows = zlib.decompress(data[41 : 41 + length])
    assert len(rows) == 3 * (1 + 4 * 3)
    picture = jpeg()
    assert picture[:2] == b"\xff\xd8" and picture[-2:] == b"\xff\xd9"
    at, markers = 2, []
    while picture[at] == 0xFF and picture[at + 1] != 0xDA:
        markers.append(picture[at + 1])
        at += 2 + struct.unpack(">H", picture[at + 2 : at + 4])[0]
    assert markers == [0xDB, 0xC0, 0xC4, 0xC4]  # quantization, baseline frame, two Huffman tables, then the scan


def test_model_facts_are_found_by_name_or_prefix():
    assert image_model("dall-e-3").max_n == 1  # type: ignore[union-attr]
    assert image_model("gpt-image-1-mini").reports_usage  # type: ignore[union-attr]
    assert audio_model("whisper-001").unit is Unit.AUDIO_SECONDS  # type: ignore[union-attr]
    assert audio_model("gpt-4o-mini-tts").unit is Unit.TOKENS  # type: ignore[union-attr]
    assert image_model("gpt-4o-mini") is None and audio_model("gpt-4o") is None


def test_usage_of_answers_keeps_audio_and_image_tokens_apart():
    transcribe = {
        "type": "tokens",
        "input_tokens": 40,
        "input_token_details": {"text_tokens": 10, "audio_tokens": 30},
        "output_tokens": 7,
        "total_tokens": 47,
    }
    usage = parse_media_usage(transcribe, output_kind="text")
    assert usage is not None
    assert (usage.prompt_tokens, usage.audio_input_tokens, usage.completion_tokens) == (40, 30, 7)
    image = {"input_tokens": 50, "input_tokens_details": {"image_tokens": 20}, "output_tokens": 272}
    usage = parse_media_usage(image, output_kind="image")
    assert usage is not None and (usage.image_input_tokens, usage.image_output_tokens) == (20, 272)
    request = MediaRequest(Unit.IMAGES, images=1, image_variant="1024x1024/hd", output_kind="image")
    answered = request.answered(json.dumps({"data": [{"url": "u"}, {"url": "v"}]}).encode())
    assert answered is not None and (answered.images, answered.image_variant) == (2, "1024x1024/hd")
    whisper = MediaRequest(Unit.AUDIO_SECONDS, audio_ms=1000, audio_bound_ms=1000)
    assert whisper.answered(b'{"text": "x", "duration": 1.234}').audio_ms == 1234  # type: ignore[union-attr]
    assert whisper.answered(b"plain text").audio_ms == 1000  # type: ignore[union-attr]
    assert MediaRequest(Unit.AUDIO_SECONDS, audio_bound_ms=9000).answered(b"text") is None


def test_a_crafted_header_cannot_make_the_parse_long():
    """Thousands of empty chunks before the data (or empty boxes): the parse gives up, quickly, without a duration."""
    wav_chunks = b"RIFF\x00\x00\x00\x00WAVE" + b"junk\x00\x00\x00\x00" * 100_000
    mp4_boxes = b"\x00\x00\x00\x10ftypM4A \x00\x00\x00\x00" + b"\x00\x00\x00\x08free" * 100_000
    assert duration(wav_chunks) is None and duration(mp4_boxes) is None
