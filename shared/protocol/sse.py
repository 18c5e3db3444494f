"""Server-sent events as the OpenAI APIs stream them: splitting a byte stream into events, reading their data."""

from __future__ import annotations


def next_boundary(buffer: bytes) -> tuple[int, int]:
    """Index and length of the first event separator (a blank line, in any of SSE's line endings); (-1, 0) if none."""
    best = (-1, 0)
    for separator in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        index = buffer.find(separator)
        if index >= 0 and (best[0] < 0 or index < best[0]):
            best = (index, len(separator))
    return best


def split_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete events at the start of ``buffer``, each with its separator, and the incomplete rest."""
    if b"\r" not in buffer:  # LF line endings, as Azure OpenAI and OpenAI send them: one pass over the buffer
        *complete, rest = buffer.split(b"\n\n")
        return [event + b"\n\n" for event in complete], rest
    events: list[bytes] = []
    while True:
        index, length = next_boundary(buffer)
        if index < 0:
            return events, buffer
        events.append(buffer[: index + length])
        buffer = buffer[index + length :]


def event_data(event: bytes) -> bytes:
    """The event's ``data:`` lines joined, without the field name."""
    lines = [line[5:].lstrip(b" ") for line in event.splitlines() if line.startswith(b"data:")]
    return b"\n".join(lines)
