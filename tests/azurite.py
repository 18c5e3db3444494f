"""Start a private, in-memory Azurite Table service for the test session.

Each test session gets its own Azurite on a free port, so tests never touch a developer's local data
and can run beside ``make run``. Azurite comes from the project's npm dev dependency
(``npm ci`` puts it in ``node_modules/.bin``). ``Azurite(on_disk=True)`` keeps its data in its folder
instead, so the durability tests can kill it and start it again on the same port and folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The well-known Azurite development account (public, documented, not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terminate(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a child process politely, then firmly."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def azurite_table_binary() -> str:
    local = ROOT / "node_modules" / ".bin" / "azurite-table"
    if local.exists():
        return str(local)
    found = shutil.which("azurite-table")
    if found:
        return found
    raise RuntimeError("Azurite is not installed: run `npm ci` (or `make install`) in the repository root.")


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};"
    )


class Azurite:
    def __init__(self, *, on_disk: bool = False) -> None:
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="azurite-")
        self.on_disk = on_disk
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)

    def start(self, timeout: float = 30.0) -> Azurite:
        self.proc = subprocess.Popen(
            [
                azurite_table_binary(),
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(self.port),
                *(["--location", self.workdir] if self.on_disk else ["--inMemoryPersistence"]),
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--silent",
            ],
            cwd=self.workdir,  # Azurite writes its debug/extent files relative to the working directory
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "AZURITE_ACCEPT_EULA": "true"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"Azurite exited with {self.proc.returncode}: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Azurite did not listen on port {self.port} within {timeout}s")

    def kill(self, signal: int = 9) -> None:
        """Stop Azurite abruptly (data on disk stays for :meth:`start` on the same port and folder)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        terminate(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)
