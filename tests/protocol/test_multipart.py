"""Multipart uploads: read as they arrive (bounded memory, refused early), written on with a fresh boundary."""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import GatewayError
from shared.protocol.multipart import SPOOL_IN_MEMORY_BYTES, Form, UploadedFile, boundary_of, parse_form
from shared.protocol.payloads import StreamedBody

AUDIO = bytes(range(256)) * 40  # 10 KiB, every byte value, CR LF and dashes included


def sdk_body(data: dict[str, str], files: list[tuple[str, tuple[str, bytes, str]]]) -> tuple[str, bytes]:
    """A body as the openai SDK sends it (httpx's multipart encoder)."""
    request = httpx.Request("POST", "https://example.invalid/", data=data, files=files)
    return request.headers["content-type"], request.read()


async def chunked(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def parse(content_type: str, body: bytes, size: int = 1 << 20, **limits) -> Form:
    return await parse_form(
        chunked(body, size), boundary_of(content_type), max_bytes=limits.pop("max_bytes", 10**9), **limits
    )


async def written(body: StreamedBody) -> bytes:
    data = b"".join([chunk async for chunk in body.open()])
    assert len(data) == body.length
    return data


def mime_parts(content_type: str, data: bytes) -> list[tuple[str, str | None, bytes]]:
    """An independent reading (the standard library's MIME parser): (name, filename, content) per part."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + data
    )
    return [
        (part.get_param("name", header="content-disposition"), part.get_filename(), part.get_payload(decode=True))
        for part in message.iter_parts()
    ]


@pytest.mark.parametrize("chunk", [1, 7, 70, 4096, 1 << 20])
async def test_an_sdk_upload_reads_the_same_whatever_the_chunking(chunk):
    content_type, body = sdk_body(
        {"model": "whisper", "timestamp_granularities[]": "word"},
        [("file", ("talk.wav", AUDIO, "audio/wav"))],
    )
    async with await parse(content_type, body, chunk) as form:
        assert form.text("model") == "whisper"
        assert form.texts("timestamp_granularities[]") == ["word"]
        upload = form.file("file")
        assert upload is not None
        assert (upload.filename, upload.content_type, upload.size) == ("talk.wav", "audio/wav", len(AUDIO))
        assert upload.open().read() == AUDIO


async def test_the_form_is_written_anew_with_every_part_and_replaced_fields():
    content_type, body = sdk_body({"model": "whisper", "language": "fr"}, [("file", ("a.wav", AUDIO, "audio/wav"))])
    async with await parse(content_type, body) as form:
        streamed = form.body({"model": "whisper-eu"})
        data = await written(streamed)
        assert mime_parts(streamed.content_type, data) == [
            ("model", None, b"whisper-eu"),
            ("language", None, b"fr"),
            ("file", "a.wav", AUDIO),
        ]
        # Another backend's deployment name, as the upstream client asks for it; a body can be sent twice.
        renamed = streamed.for_deployment("whisper-frc")
        again = await written(renamed)
        assert mime_parts(renamed.content_type, again)[0] == ("model", None, b"whisper-frc")


async def test_caller_text_cannot_inject_headers_or_parts_into_the_upstream_body():
    boundary = "b0undary"
    hostile_name = 'x"; filename="evil.sh'
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a\\"b.wav"\r\n'
        f"Content-Type: audio/wav\r\n\r\nRIFF\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="{hostile_name.replace(chr(34), chr(92) + chr(34))}"'
        f"\r\n\r\nvalue\r\n--{boundary}--\r\n"
    ).encode()
    async with await parse(f"multipart/form-data; boundary={boundary}", body) as form:
        assert form.file("file").filename == 'a"b.wav'
        assert form.text(hostile_name) == "value"
        streamed = form.body()
        parts = mime_parts(streamed.content_type, await written(streamed))
        assert [(name, filename) for name, filename, _ in parts] == [
            ("file", "a%22b.wav"),
            ("x%22; filename=%22evil.sh", None),
        ]


async def test_large_files_spill_to_disk_and_memory_stays_bounded():
    big = b"\x00\x01" * SPOOL_IN_MEMORY_BYTES  # 2 MiB
    content_type, body = sdk_body({}, [("file", ("big.bin", big, "application/octet-stream"))])
    async with await parse(content_type, body, 64 * 1024) as form:
        upload = form.file("file")
        assert upload.size == len(big)
        assert upload.spool._rolled  # on disk, not in memory
        assert upload.open().read() == big


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "invalid_multipart"),  # no parts at all
        (b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\nxyz', "invalid_multipart"),  # truncated
        (b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\nxyz\r\n--B', "invalid_multipart"),  # no close
        (b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n", "invalid_multipart"),  # no disposition
        (b'--B\r\nContent-Disposition: attachment; name="a"\r\n\r\nx\r\n--B--\r\n', "invalid_multipart"),
        (b"--B\r\nContent-Disposition: form-data\r\n\r\nx\r\n--B--\r\n", "invalid_multipart"),  # no name
        (b"--B\r\nBad header\r\n\r\nx\r\n--B--\r\n", "invalid_multipart"),
        (b'--BX\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n--B--\r\n', "invalid_multipart"),
        (b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\n\xff\xfe\r\n--B--\r\n', "invalid_value"),
        (b"x" * 20_000, "invalid_multipart"),  # never a boundary
    ],
)
async def test_malformed_bodies_get_a_400_that_says_so(body, code):
    with pytest.raises(GatewayError) as caught:
        await parse("multipart/form-data; boundary=B", body, 5)
    assert caught.value.status == 400 and caught.value.code == code


async def test_a_body_past_the_limit_is_refused_at_the_first_byte_too_many():
    content_type, body = sdk_body({}, [("file", ("a.wav", AUDIO, "audio/wav"))])
    delivered = 0

    async def counting() -> AsyncIterator[bytes]:
        nonlocal delivered
        async for chunk in chunked(body, 1000):
            delivered += len(chunk)
            yield chunk

    with pytest.raises(GatewayError) as caught:
        await parse_form(counting(), boundary_of(content_type), max_bytes=4000)
    assert caught.value.status == 413 and caught.value.code == "request_too_large"
    assert delivered == 5000  # stopped at the chunk that crossed the limit, the rest never read


async def test_text_fields_are_bounded_and_parts_counted():
    tiny = [("file", ("a.png", b"PNG", "image/png"))]
    content_type, body = sdk_body({"prompt": "x" * 5000}, tiny)
    with pytest.raises(GatewayError) as caught:
        await parse(content_type, body, max_text_bytes=4096)
    assert caught.value.status == 413 and caught.value.param == "prompt"
    content_type, body = sdk_body({f"f{i}": "v" for i in range(10)}, tiny)
    with pytest.raises(GatewayError) as caught:
        await parse(content_type, body, max_parts=10)
    assert caught.value.status == 400


async def test_repeated_and_misplaced_fields_are_refused_when_one_value_is_expected():
    content_type, body = sdk_body(
        {"model": "a"}, [("file", ("a.wav", b"RIFF", "audio/wav")), ("model", ("m", b"x", "text/plain"))]
    )
    async with await parse(content_type, body) as form:
        with pytest.raises(GatewayError):
            form.text("model")  # a text and a file under one name
        with pytest.raises(GatewayError):
            form.file("model")
        assert form.file("missing") is None and form.text("missing") is None


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "text/plain; boundary=x",
        "multipart/form-data; boundary=" + "x" * 71,
    ],
)
def test_anything_but_multipart_with_a_boundary_is_415(content_type):
    with pytest.raises(GatewayError) as caught:
        boundary_of(content_type)
    assert caught.value.status == 415


@settings(max_examples=60, deadline=None)
@given(
    fields=st.dictionaries(
        # Names as the SDK can send them unchanged (httpx percent-encodes control characters, quotes and "%").
        st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\%'), min_size=1, max_size=12),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
        max_size=4,
    ),
    content=st.binary(max_size=3000),
    chunk=st.integers(1, 500),
)
async def test_any_form_survives_reading_and_writing(fields, content, chunk):
    content_type, body = sdk_body(fields, [("file", ("f.bin", content, "application/octet-stream"))])
    async with await parse(content_type, body, chunk) as form:
        assert {name: form.text(name) for name in fields} == fields
        assert form.file("file").open().read() == content
        rewritten = form.body()
        again = await parse(rewritten.content_type, await written(rewritten), chunk)
        async with again:
            assert {name: again.text(name) for name in fields} == fields
            assert again.file("file").open().read() == content


def test_an_uploaded_file_reads_from_its_start_each_time(tmp_path):
    spool = (tmp_path / "f").open("w+b")
    spool.write(b"abc")
    upload = UploadedFile("file", "f", "application/octet-stream", 3, spool)
    assert upload.open().read() == upload.open().read() == b"abc"
    upload.close()
