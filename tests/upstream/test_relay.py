"""The SSE relay: event boundaries across reads, usage learned, the injected usage chunk dropped."""

from __future__ import annotations

import json

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from shared.protocol.calls import ModelCall
from shared.protocol.operations import CHAT, V1_RESPONSES
from shared.upstream.client import UpstreamResponse
from shared.upstream.relay import StreamRelay


def _call(operation=CHAT) -> ModelCall:
    return ModelCall(operation, "gpt-4o-mini", "2024-10-21", {}, True, False, 42, None)


def _sse(obj) -> bytes:
    return f"data: {json.dumps(obj) if not isinstance(obj, str) else obj}\n\n".encode()


class _Content:
    """What the relay reads of an aiohttp response: its body, chunk by chunk, breaking off at ``fail_at``."""

    def __init__(self, chunks, fail_at):
        self.chunks, self.fail_at, self.done = chunks, fail_at, False

    async def iter_any(self):
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise aiohttp.ServerDisconnectedError()
            yield chunk
        self.done = True

    def at_eof(self):
        return self.done


class _Raw:
    def __init__(self, chunks, fail_at):
        self.status = 200
        self.headers = CIMultiDictProxy(CIMultiDict({"content-type": "text/event-stream"}))
        self.content = _Content(chunks, fail_at)
        self.released = self.closed = False

    def release(self):
        self.released = True

    def close(self):
        self.closed = True


def _upstream(chunks, fail_at=None) -> UpstreamResponse:
    return UpstreamResponse(_Raw(chunks, fail_at))


async def _collect(relay) -> bytes:
    return b"".join([event async for event in relay.events()])


CONTENT = [_sse({"choices": [{"index": 0, "delta": {"content": word}}]}) for word in ("Hello", " world")]
USAGE = _sse({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}})


async def test_events_split_across_reads_are_forwarded_whole():
    stream = b"".join(CONTENT + [USAGE, _sse("[DONE]")])
    pieces = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    upstream = _upstream(pieces)
    relay = StreamRelay(upstream, _call(), drop_usage_chunk=False)

    assert await _collect(relay) == stream
    assert upstream.raw.released and not upstream.raw.closed  # read to its end: the connection is reused
    assert relay.finished and relay.usage.total_tokens == 9 and not relay.usage.estimated


async def test_injected_usage_chunk_is_dropped_but_counted():
    relay = StreamRelay(_upstream(CONTENT + [USAGE, _sse("[DONE]")]), _call(), drop_usage_chunk=True)

    out = await _collect(relay)
    assert b"usage" not in out and out.endswith(b"data: [DONE]\n\n")
    assert relay.usage.prompt_tokens == 7 and relay.usage.completion_tokens == 2


async def test_azure_prompt_filter_chunk_without_choices_is_kept():
    first = _sse({"id": "", "choices": [], "prompt_filter_results": [{"prompt_index": 0}]})
    relay = StreamRelay(_upstream([first] + CONTENT + [USAGE, _sse("[DONE]")]), _call(), drop_usage_chunk=True)
    assert (await _collect(relay)).startswith(first)


async def test_crlf_event_separators():
    stream = b'data: {"choices": [{"delta": {"content": "hi"}}]}\r\n\r\ndata: [DONE]\r\n\r\n'
    relay = StreamRelay(_upstream([stream]), _call(), drop_usage_chunk=False)
    assert await _collect(relay) == stream and relay.finished


async def test_a_broken_stream_ends_with_an_error_event_and_estimated_usage():
    upstream = _upstream(CONTENT + [USAGE], fail_at=1)
    relay = StreamRelay(upstream, _call(), drop_usage_chunk=True)

    out = await _collect(relay)
    assert upstream.raw.closed and not upstream.raw.released  # a broken connection never goes back to the pool
    last = json.loads(out.strip().split(b"\n\n")[-1][len(b"data: ") :])
    assert last["error"]["code"] == "upstream_incomplete"
    assert relay.broken and not relay.finished
    usage = relay.usage
    assert usage.estimated and usage.prompt_tokens == 42 and usage.completion_tokens == 1  # "Hello" is one token


async def test_responses_usage_comes_from_the_completed_event():
    events = [
        b"event: response.output_text.delta\n" + _sse({"type": "response.output_text.delta", "delta": "Hi"}),
        b"event: response.completed\n"
        + _sse(
            {
                "type": "response.completed",
                "response": {
                    "usage": {"input_tokens": 3, "output_tokens": 1, "output_tokens_details": {"reasoning_tokens": 0}}
                },
            }
        ),
    ]
    relay = StreamRelay(_upstream(events), _call(V1_RESPONSES), drop_usage_chunk=False)
    assert await _collect(relay) == b"".join(events)
    assert relay.finished and relay.usage.prompt_tokens == 3 and relay.usage.completion_tokens == 1


@pytest.mark.parametrize("text, tokens", [("", 0), ("abcd", 1), ("abcde", 2), ("é", 1)])
def test_estimates_round_up(text, tokens):
    from shared.protocol.tokens import estimate_text_tokens

    assert estimate_text_tokens(text) == tokens


async def test_without_reported_usage_every_generated_string_is_counted_and_roles_are_not():
    deltas = [
        {"role": "assistant", "content": ""},
        {"content": "Hello"},
        {"refusal": " no"},
        {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": '{"a": 1}'}}]},
    ]
    events = [_sse({"choices": [{"index": 0, "delta": delta}]}) for delta in deltas]
    events += [b'data:\t{"choices": [{"index": 0, "text": " legacy"}]}\n\n', _sse("[DONE]")]
    relay = StreamRelay(_upstream([b"".join(events[:2]), *events[2:]]), _call(), drop_usage_chunk=False)
    assert await _collect(relay) == b"".join(events)
    assert relay._generated == ["Hello", " no", "f", '{"a": 1}', " legacy"]
    assert relay.usage.estimated and relay.first_token_at is not None


async def test_usage_in_a_read_with_other_events_is_learned_and_only_the_injected_chunk_dropped():
    read = b"".join(CONTENT + [USAGE, _sse("[DONE]")])
    relay = StreamRelay(_upstream([read]), _call(), drop_usage_chunk=True)
    assert await _collect(relay) == b"".join(CONTENT + [_sse("[DONE]")])
    assert relay.usage.total_tokens == 9 and not relay.usage.estimated
