"""One gateway process holds a thousand slow streams at once, and every one of them completes.

A correctness test, not a timing one: each stream takes a few events 50 ms apart (about half a second alone), and
the assertion is that all of them arrive whole, none refused, none cut, none timed out, each with the usage
the upstream reported. How fast they arrive is the concurrency benchmark's business (scripts/bench.py concurrency).
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

pytestmark = pytest.mark.e2e

STREAMS = 1000
TOKENS = 4  # content events per stream, 50 ms apart
BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Hello there, gateway!"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}


async def one_stream(session: aiohttp.ClientSession, url: str) -> tuple[int, int, bool, dict | None]:
    """(status, content events, saw [DONE], usage) of one stream read to its end."""
    async with session.post(url, json=BODY, headers={"api-key": "local"}) as response:
        if response.status != 200:
            return response.status, 0, False, None
        content, done, usage = 0, False, None
        async for line in response.content:
            if not line.startswith(b"data: "):
                continue
            data = line[6:].strip()
            if data == b"[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            usage = chunk.get("usage") or usage
            content += sum(1 for choice in chunk["choices"] if choice.get("delta", {}).get("content"))
        return response.status, content, done, usage


async def all_streams(url: str) -> list[tuple[int, int, bool, dict | None]]:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        return await asyncio.gather(*(one_stream(session, url) for _ in range(STREAMS)))


def test_a_thousand_concurrent_slow_streams_through_one_process_all_complete(gateway, sim):
    sim.behave(chunk_delay_ms=50, completion_tokens=TOKENS)
    results = asyncio.run(all_streams(f"{gateway.api}/openai/v1/chat/completions"))

    statuses = [status for status, *_ in results]
    assert statuses.count(200) == STREAMS, {status: statuses.count(status) for status in set(statuses)}
    assert all(done for _, _, done, _ in results), "every stream ended with [DONE]"
    assert all(content == TOKENS for _, content, _, _ in results), "every stream carried its whole answer"
    assert all(usage and usage["completion_tokens"] == TOKENS for *_, usage in results)
