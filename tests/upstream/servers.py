"""Backends for pool tests: simulators, a port nobody listens on, and one that accepts but never answers.

The simulators run as processes of their own (``python -m shared.local.simulator``), like real backends: in a
thread of the test process each call waits ~40 ms on the interpreter, too coarse to check cooling to ±20 ms.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import httpx

from tests.azurite import ROOT, free_port, terminate
from tests.conftest import SimulatorControl


def dead_endpoint() -> str:
    """Connection refused: nothing listens there."""
    return f"http://127.0.0.1:{free_port()}"


@contextmanager
def half_dead_endpoint() -> Iterator[str]:
    """The TCP handshake succeeds (the kernel's backlog accepts) and the request is sent, but no answer ever comes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


SIMULATOR_DEPLOYMENTS = json.dumps(
    {
        "gpt-4o-mini": "gpt-4o-mini",
        "mini-ptu": "gpt-4o-mini",
        "gpt-4.1": "gpt-4.1",
        "text-embedding-3-small": "text-embedding-3-small",
    }
)


@contextmanager
def simulators(count: int, timeout: float = 30.0) -> Iterator[list[SimulatorControl]]:
    ports = [free_port() for _ in range(count)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "shared.local.simulator", "--port", str(port)],
            cwd=ROOT,
            # The default deployments, plus one a backend serves under another name than the gateway's.
            env={**os.environ, "SIMULATOR_DEPLOYMENTS": SIMULATOR_DEPLOYMENTS},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        controls = [SimulatorControl(f"http://127.0.0.1:{port}") for port in ports]
        deadline = time.monotonic() + timeout
        for control in controls:
            while True:
                try:
                    control.http.get("/_simulator/health", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("a simulator did not start") from None
                    time.sleep(0.05)
        yield controls
    finally:
        for process in processes:
            terminate(process)


def closes_reused_connections() -> AbstractContextManager[tuple[str, list[int]]]:
    """A backend that answers the first request on each connection and closes the connection when a second request
    arrives on it: what a client sees when it reuses a keep-alive connection the server has just closed as idle.
    Yields the URL and a list that gets the number of each connection that received a request."""
    return _one_answer_per_connection(read_the_next_request=True)


def closes_after_each_answer() -> AbstractContextManager[tuple[str, list[int]]]:
    """A backend that answers each connection's first request as keep-alive, then closes the connection at once:
    the client's next request on it finds the connection closing. Yields the URL and the connection numbers."""
    return _one_answer_per_connection(read_the_next_request=False)


_CHAT_ANSWER = json.dumps({"id": "x", "object": "chat.completion", "choices": [], "usage": None}).encode()


@contextmanager
def _one_answer_per_connection(*, read_the_next_request: bool) -> Iterator[tuple[str, list[int]]]:
    seen: list[int] = []
    counter = itertools.count(1)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            number = next(counter)
            if not _read_request(self.rfile):
                return
            seen.append(number)
            head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(_CHAT_ANSWER)}\r\n\r\n"
            self.wfile.write(head.encode() + _CHAT_ANSWER)
            if read_the_next_request and _read_request(self.rfile):
                seen.append(number)  # then closed under that request, without an answer

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _read_request(rfile: Any) -> bool:
    """Read one HTTP/1.1 request (head and Content-Length body); False when the client closed instead."""
    length = 0
    while (line := rfile.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if not line:
        return False
    rfile.read(length)
    return True
