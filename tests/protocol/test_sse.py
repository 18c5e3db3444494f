"""Splitting a server-sent-event stream into events: the fast LF-only path agrees with the general one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.protocol.sse import next_boundary, split_events


def _general(buffer: bytes) -> tuple[list[bytes], bytes]:
    events = []
    while (found := next_boundary(buffer))[0] >= 0:
        index, length = found
        events.append(buffer[: index + length])
        buffer = buffer[index + length :]
    return events, buffer


pieces = st.sampled_from([b"data: ", b"{}", b"x", b":", b" ", b"\n", b"\r", b"\r\n", b"\n\n", b"[DONE]"])


@given(st.lists(pieces, max_size=40).map(b"".join))
def test_split_events_agrees_with_the_separator_search_and_loses_no_byte(buffer):
    events, rest = split_events(buffer)
    assert (events, rest) == _general(buffer)
    assert b"".join(events) + rest == buffer


def test_azure_style_events_split_in_one_pass():
    stream = b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\ndata: {"c"'
    assert split_events(stream) == (
        [b'data: {"a":1}\n\n', b'data: {"b":2}\n\n', b"data: [DONE]\n\n"],
        b'data: {"c"',
    )
