"""A TCP proxy that delays what a server answers: storage latency, injected for real between the gateway's
Table Storage client and Azurite (no mock: the SDK, its connection pool and Azurite all run as they do)."""

from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import Future

from tests.azurite import connection_string


class LatencyProxy:
    """Listens on a loopback port and forwards to ``target_port``; the answer to each read (an HTTP ``GET``) is
    held for a random time from 0 to ``max_delay`` seconds before it goes on, writes pass at once. A connection's
    bytes are never reordered; requests on one connection are sequential (HTTP/1.1 without pipelining), so the
    first chunk the target sends after a request starts that request's answer."""

    def __init__(self, target_port: int, max_delay: float, seed: int = 0) -> None:
        self.target_port = target_port
        self.max_delay = max_delay
        self._random = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="latency-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    def start(self) -> LatencyProxy:
        self._thread.start()
        started: Future[asyncio.Server] = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        )
        self._server = started.result(timeout=5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    @property
    def connection_string(self) -> str:
        """Azurite's connection string, through the proxy."""
        return connection_string(self.port)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        delays: list[float] = []  # one per request sent on, taken by the first chunk of its answer
        await asyncio.gather(
            self._pipe(client_reader, server_writer, requests=delays),
            self._pipe(server_reader, client_writer, answers=delays),
            return_exceptions=True,
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        requests: list[float] | None = None,
        answers: list[float] | None = None,
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if requests is not None and chunk[:1].isalpha():  # a request line starts a request
                    requests.append(self._random.uniform(0, self.max_delay) if chunk.startswith(b"GET ") else 0.0)
                if answers:
                    await asyncio.sleep(answers.pop(0))
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()
