"""Backends for pool tests: simulators, a port nobody listens on, and one that accepts but never answers.

The simulators run as processes of their own (``python -m shared.local.simulator``), like real backends: in a
thread of the test process each call waits ~40 ms on the interpreter, too coarse to check cooling to ±20 ms.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def simulators(count: int, timeout: float = 30.0) -> Iterator[list[SimulatorControl]]:
    ports = [free_port() for _ in range(count)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "shared.local.simulator", "--port", str(port)],
            cwd=ROOT,
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
