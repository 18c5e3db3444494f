"""Run the gateway as a real process (``python -m shared.local.devhost``), the way ``make run`` does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.azurite import ROOT, free_port, terminate


class GatewayProcess:
    def __init__(self, env: dict[str, str], root: Path = ROOT) -> None:
        self.root = root  # another checkout of the gateway (the benchmark compares versions)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"gateway-{self.port}.log"
        self.journal = tempfile.mkdtemp(prefix="ledger-journal-")

    @property
    def api(self) -> str:
        return f"{self.base_url}/api"

    def start(self, timeout: float = 30.0, poll_seconds: float = 0.1) -> GatewayProcess:
        # Only what the test names: no local.settings.json, no developer environment leaking in.
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shared.local.devhost", "--port", str(self.port), "--settings", "/nonexistent"],
            cwd=self.root,
            # A ledger journal of its own unless the test names one: never the repository's .ledger-journal.
            env={**keep, "GATEWAY_DEVHOST_LOG_LEVEL": "warning", "GATEWAY_LEDGER_JOURNAL_DIR": self.journal} | self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.api}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(poll_seconds)
        self.stop()
        raise RuntimeError(f"gateway did not become healthy within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        terminate(self.proc)
        if getattr(self, "_log", None):
            self._log.close()
        shutil.rmtree(self.journal, ignore_errors=True)
