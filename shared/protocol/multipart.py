"""Reading ``multipart/form-data`` uploads as they arrive, and writing them on upstream.

Audio transcriptions, image edits and file uploads carry files of up to hundreds of megabytes. The body is read as
a stream and refused as soon as it is too large (413 before anything is buffered when ``content-length`` says so,
else at the first byte past the limit), malformed (400) or not multipart at all (415). Text fields are kept in
memory, each bounded; file parts go to spooled temporary files (in memory up to :data:`SPOOL_IN_MEMORY_BYTES`,
then on local disk), so memory stays bounded whatever the upload's size. Nothing is sent upstream before the whole
form has been read and checked: a refused upload never reaches the model service.

The form is then written anew (:meth:`Form.body`) with a fresh boundary and its exact length, streaming the spooled
files; part names, filenames and content types are re-encoded, so no caller text can inject a header or a
boundary into the upstream request.
"""

from __future__ import annotations

import re
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO

from starlette.requests import Request

from shared.errors import GatewayError, bad_request
from shared.protocol.payloads import StreamedBody

SPOOL_IN_MEMORY_BYTES = 1024 * 1024
READ_CHUNK_BYTES = 64 * 1024
MAX_PART_HEADER_BYTES = 8 * 1024
DEFAULT_MAX_TEXT_BYTES = 1024 * 1024  # an image prompt or a transcription prompt is far smaller
DEFAULT_MAX_PARTS = 100

_CRLF = b"\r\n"
# RFC 2046: 1-70 characters from a restricted set (space allowed, not last).
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_MEDIA_TYPE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+/[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PARAM = re.compile(r';\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*("(?:[^"\\\r\n]|\\[^\r\n])*"|[^;\s"]*)\s*')


def unsupported_media_type(message: str) -> GatewayError:
    return GatewayError(415, message, code="unsupported_media_type")


def invalid_multipart(message: str) -> GatewayError:
    return bad_request(message, code="invalid_multipart")


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"The request body is larger than this endpoint accepts ({limit} bytes).", code="request_too_large"
    )


@dataclass(eq=False)
class UploadedFile:
    """A file part, spooled: in memory while small, on local disk beyond."""

    field: str
    filename: str
    content_type: str
    size: int
    spool: IO[bytes]

    def open(self) -> IO[bytes]:
        """The file from its start (one reader at a time)."""
        self.spool.seek(0)
        return self.spool

    async def chunks(self, size: int = READ_CHUNK_BYTES) -> AsyncIterator[bytes]:
        spool = self.open()
        while chunk := spool.read(size):
            yield chunk

    def close(self) -> None:
        self.spool.close()


@dataclass(eq=False)
class Form:
    """The parts of a form in their order: text fields (``str``) and files (:class:`UploadedFile`)."""

    parts: list[tuple[str, str | UploadedFile]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.parts]

    def text(self, name: str) -> str | None:
        """The text field ``name``, or None; a field given twice is refused (which one would the caller mean?)."""
        values = self.texts(name)
        if len(values) > 1:
            raise bad_request(
                f"The form field {name!r} is given {len(values)} times.", code="invalid_value", param=name
            )
        if self.files(name):
            raise bad_request(f"The form field {name!r} must be text, not a file.", code="invalid_value", param=name)
        return values[0] if values else None

    def texts(self, name: str) -> list[str]:
        return [value for part, value in self.parts if part == name and isinstance(value, str)]

    def file(self, name: str) -> UploadedFile | None:
        files = self.files(name)
        if len(files) > 1:
            raise _repeated(name, len(files))
        if self.texts(name):
            raise bad_request(f"The form field {name!r} must be a file.", code="invalid_value", param=name)
        return files[0] if files else None

    def files(self, name: str) -> list[UploadedFile]:
        return [value for part, value in self.parts if part == name and isinstance(value, UploadedFile)]

    def close(self) -> None:
        for _, value in self.parts:
            if isinstance(value, UploadedFile):
                value.close()

    async def __aenter__(self) -> Form:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def body(self, replace: Mapping[str, str] | None = None) -> StreamedBody:
        """The form written anew for the upstream; ``replace`` sets text fields (replacing every value the caller
        gave under that name, in the place of the first; appended when absent)."""
        parts = _replaced(self.parts, replace or {})
        boundary = f"gateway-{secrets.token_hex(16)}"
        pieces: list[bytes | UploadedFile] = []
        for name, value in parts:
            if isinstance(value, UploadedFile):
                pieces.append(_part_head(boundary, name, value.filename, value.content_type))
                pieces.append(value)
                pieces.append(_CRLF)
            else:
                pieces.append(_part_head(boundary, name, None, None) + value.encode() + _CRLF)
        pieces.append(f"--{boundary}--\r\n".encode())
        length = sum(piece.size if isinstance(piece, UploadedFile) else len(piece) for piece in pieces)

        async def source() -> AsyncIterator[bytes]:
            for piece in pieces:
                if isinstance(piece, UploadedFile):
                    async for chunk in piece.chunks():
                        yield chunk
                else:
                    yield piece

        def renamed(deployment: str) -> StreamedBody:
            return self.body({**(replace or {}), "model": deployment})

        return StreamedBody(f"multipart/form-data; boundary={boundary}", length, source, renamed)


def _repeated(name: str, times: int) -> GatewayError:
    return bad_request(f"The form field {name!r} is given {times} times.", code="invalid_value", param=name)


def _replaced(
    parts: Iterable[tuple[str, str | UploadedFile]], replace: Mapping[str, str]
) -> list[tuple[str, str | UploadedFile]]:
    result: list[tuple[str, str | UploadedFile]] = []
    placed: set[str] = set()
    for name, value in parts:
        if name in replace:
            if name not in placed:
                result.append((name, replace[name]))
                placed.add(name)
            continue
        result.append((name, value))
    result.extend((name, value) for name, value in replace.items() if name not in placed)
    return result


def _quoted(text: str) -> str:
    # As browsers encode form-data names (WHATWG): no quote, CR or LF survives into the header.
    return text.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


def _part_head(boundary: str, name: str, filename: str | None, content_type: str | None) -> bytes:
    disposition = f'form-data; name="{_quoted(name)}"'
    if filename is not None:
        disposition += f'; filename="{_quoted(filename)}"'
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    return (head + "\r\n").encode()


# --- reading ---------------------------------------------------------------------------------------------------


def boundary_of(content_type: str | None) -> str:
    """The boundary of a ``multipart/form-data`` content type, or 415 saying what is expected."""
    media_type, params = _media_type(content_type or "")
    if media_type != "multipart/form-data":
        raise unsupported_media_type(
            "This endpoint takes a multipart/form-data body (as the openai SDK sends file uploads)."
        )
    boundary = params.get("boundary")
    if boundary is None or not _BOUNDARY.fullmatch(boundary):
        raise unsupported_media_type("The multipart/form-data content type has no valid boundary parameter.")
    return boundary


def _media_type(value: str) -> tuple[str, dict[str, str]]:
    head, _, rest = value.partition(";")
    media_type = head.strip().lower()
    params: dict[str, str] = {}
    rest = ";" + rest if rest else ""
    position = 0
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None:
            return media_type, {}
        name, raw = match.group(1).lower(), match.group(2)
        params[name] = _unquote(raw)
        position = match.end()
    return media_type, params


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


async def read_form(
    request: Request,
    *,
    max_bytes: int,
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
    max_parts: int = DEFAULT_MAX_PARTS,
) -> Form:
    """Read a ``multipart/form-data`` body of at most ``max_bytes`` (see the module's description)."""
    boundary = boundary_of(request.headers.get("content-type"))
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise bad_request("The Content-Length header is not a number.", code="invalid_content_length")
        if int(declared) > max_bytes:
            raise too_large(max_bytes)
    return await parse_form(
        request.stream(), boundary, max_bytes=max_bytes, max_text_bytes=max_text_bytes, max_parts=max_parts
    )


async def parse_form(
    chunks: AsyncIterator[bytes],
    boundary: str,
    *,
    max_bytes: int,
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
    max_parts: int = DEFAULT_MAX_PARTS,
) -> Form:
    """Parse a multipart body arriving as ``chunks``; on any refusal the spooled files are closed."""
    parser = _Parser(boundary.encode(), max_text_bytes=max_text_bytes, max_parts=max_parts)
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes:
                raise too_large(max_bytes)
            parser.feed(chunk)
        return parser.finish()
    except BaseException:
        parser.close()
        raise


class _Parser:
    """RFC 7578 / RFC 2046 multipart, fed chunk by chunk."""

    def __init__(self, boundary: bytes, *, max_text_bytes: int, max_parts: int) -> None:
        self.form = Form()
        self._first = b"--" + boundary
        self._delimiter = _CRLF + b"--" + boundary
        self._max_text_bytes = max_text_bytes
        self._max_parts = max_parts
        self._buffer = bytearray()
        self._state = "preamble"  # preamble -> after_delimiter -> headers -> body -> after_delimiter ... -> done
        self._name = ""
        self._filename: str | None = None
        self._content_type = ""
        self._text = bytearray()
        self._spool: IO[bytes] | None = None
        self._size = 0

    def close(self) -> None:
        self.form.close()
        if self._spool is not None:
            self._spool.close()

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while self._step():
            pass

    def finish(self) -> Form:
        if self._state != "done":
            raise invalid_multipart("The multipart body ends before its closing boundary (truncated upload?).")
        if not self.form.parts:
            raise invalid_multipart("The multipart body has no parts.")
        return self.form

    def _step(self) -> bool:
        """One move of the state machine; False when it needs more bytes."""
        buffer = self._buffer
        if self._state == "preamble":
            # The first delimiter may open the body (no CRLF before it); a preamble before it is ignored.
            if buffer.startswith(self._first):
                del buffer[: len(self._first)]
                self._state = "after_delimiter"
                return True
            index = buffer.find(self._delimiter)
            if index < 0:
                if len(buffer) > MAX_PART_HEADER_BYTES:
                    raise invalid_multipart("The multipart body does not start with its boundary.")
                return False
            del buffer[: index + len(self._delimiter)]
            self._state = "after_delimiter"
            return True
        if self._state == "after_delimiter":
            if len(buffer) < 2:
                return False
            if buffer[:2] == b"--":
                self._state = "done"
                buffer.clear()
                return False
            line_end = buffer.find(_CRLF)
            if line_end < 0:
                if len(buffer) > 256:
                    raise invalid_multipart("A multipart boundary line has unexpected characters after it.")
                return False
            if buffer[:line_end].strip(b" \t"):
                raise invalid_multipart("A multipart boundary line has unexpected characters after it.")
            del buffer[: line_end + 2]
            self._state = "headers"
            return True
        if self._state == "headers":
            end = buffer.find(_CRLF + _CRLF)
            if buffer.startswith(_CRLF):
                end, skip = 0, 2  # a part without headers
            elif end < 0:
                if len(buffer) > MAX_PART_HEADER_BYTES:
                    raise invalid_multipart(f"A part's headers are longer than {MAX_PART_HEADER_BYTES} bytes.")
                return False
            else:
                skip = 4
            if end > MAX_PART_HEADER_BYTES:
                raise invalid_multipart(f"A part's headers are longer than {MAX_PART_HEADER_BYTES} bytes.")
            self._start_part(bytes(buffer[:end]))
            del buffer[: end + skip]
            self._state = "body"
            return True
        if self._state == "body":
            index = buffer.find(self._delimiter)
            if index < 0:
                # Everything but a possible start of the delimiter belongs to the part.
                safe = len(buffer) - (len(self._delimiter) - 1)
                if safe > 0:
                    self._append(bytes(buffer[:safe]))
                    del buffer[:safe]
                return False
            self._append(bytes(buffer[:index]))
            del buffer[: index + len(self._delimiter)]
            self._end_part()
            self._state = "after_delimiter"
            return True
        # done: the epilogue is ignored
        buffer.clear()
        return False

    def _start_part(self, raw_headers: bytes) -> None:
        if len(self.form.parts) >= self._max_parts:
            raise invalid_multipart(f"The form has more than {self._max_parts} parts.")
        try:
            text = raw_headers.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_multipart("A part's headers are not valid UTF-8.") from None
        disposition: str | None = None
        content_type = "application/octet-stream"
        for line in text.split("\r\n") if text else []:
            name, colon, value = line.partition(":")
            if not colon or not _TOKEN.fullmatch(name.strip()):
                raise invalid_multipart("A part has a malformed header line.")
            if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in value):
                raise invalid_multipart("A part's header has control characters.")
            key = name.strip().lower()
            if key == "content-disposition":
                disposition = value.strip()
            elif key == "content-type":
                media_type, _ = _media_type(value)
                if not _MEDIA_TYPE.fullmatch(media_type):
                    raise invalid_multipart("A part has a malformed Content-Type.")
                content_type = media_type
        if disposition is None:
            raise invalid_multipart("A part has no Content-Disposition header.")
        kind, params = _media_type(disposition)
        if kind != "form-data" or not params.get("name"):
            raise invalid_multipart('Every part must be "Content-Disposition: form-data" with a name.')
        self._name = params["name"]
        self._filename = params.get("filename")
        self._content_type = content_type
        self._text = bytearray()
        self._size = 0
        self._spool = (
            tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) if self._filename is not None else None
        )

    def _append(self, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        if self._spool is not None:
            self._spool.write(data)
            return
        if self._size > self._max_text_bytes:
            raise GatewayError(
                413,
                f"The form field {self._name!r} is longer than {self._max_text_bytes} bytes.",
                code="request_too_large",
                param=self._name,
            )
        self._text += data

    def _end_part(self) -> None:
        if self._spool is not None:
            upload = UploadedFile(self._name, self._filename or "", self._content_type, self._size, self._spool)
            self.form.parts.append((self._name, upload))
            self._spool = None
            return
        try:
            value = self._text.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request(
                f"The form field {self._name!r} is not valid UTF-8 text.", code="invalid_value", param=self._name
            ) from None
        self.form.parts.append((self._name, value))
