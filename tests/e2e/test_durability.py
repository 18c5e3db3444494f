"""No served call goes missing from the ledger, whatever storage or the instance does (docs/durability.md).

Real parts: an Azurite with its data on disk that is stopped and started again on the same port and folder,
gateway processes that get SIGTERM or SIGKILL under load from eight `openai` SDK callers, and the replay
command. Each test counts what callers received (200s, tokens from the usage they were sent) and compares
it with the ledger rows of those request ids. Figures are printed for docs/durability.md (`pytest -s`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.accounting.ledger import day_range_filter
from tests.azurite import ROOT, Azurite
from tests.gateway_process import GatewayProcess

pytestmark = pytest.mark.e2e
HELLO = [{"role": "user", "content": "Hello there, gateway!"}]
CALLERS = 8


@pytest.fixture(scope="module")
def storage():
    """Azurite with its data on disk. Stopped with SIGINT: Azurite saves its database every 5 s (LokiJS
    autosave) and on SIGINT, so a SIGKILL would make Azurite itself lose writes it had acknowledged, which
    Azure Table Storage never does; for the gateway either is the same outage (connections refused)."""
    server = Azurite(on_disk=True).start()
    yield server
    server.stop()


@pytest.fixture
def start(storage, simulator, tmp_path):
    started: list[GatewayProcess] = []

    def start_gateway(journal: Path | None = None, **settings: str) -> GatewayProcess:
        env = {
            "AZURE_OPENAI_ENDPOINT": simulator.url,
            "GATEWAY_STORAGE_CONNECTION_STRING": storage.connection_string,
            "GATEWAY_LOCAL_DEV_AUTH": "true",
            "GATEWAY_LEDGER_JOURNAL_DIR": str(journal or tmp_path / "journal"),
            **settings,
        }
        process = GatewayProcess(env).start()
        httpx.get(f"{process.api}/ready", timeout=30)  # builds the services (tables, journal) before the load
        started.append(process)
        return process

    yield start_gateway
    for process in started:
        process.stop()


@dataclass
class Load:
    """Eight callers calling in a loop (every third call streamed) until stopped; what they were served."""

    api: str
    served: dict[str, int] = field(default_factory=dict)  # request id -> total tokens the caller was told
    refused: list[str] = field(default_factory=list)  # error codes of gateway refusals (503 ...)
    failed: int = 0  # connection errors (the gateway gone)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.threads = [threading.Thread(target=self._caller, args=(i,), daemon=True) for i in range(CALLERS)]
        for thread in self.threads:
            thread.start()

    def _caller(self, index: int) -> None:
        client = openai.OpenAI(base_url=f"{self.api}/openai/v1", api_key="unused", max_retries=0, timeout=20)
        calls = 0
        while not self.stop.is_set():
            calls += 1
            try:
                if (calls + index) % 3 == 0:
                    stream = client.chat.completions.with_raw_response.create(
                        model="gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True}
                    )
                    usage = [c.usage for c in stream.parse() if c.usage][-1]
                else:
                    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
                    usage = raw.parse().usage
                    stream = raw
                with self.lock:
                    self.served[stream.headers["x-gateway-request-id"]] = usage.total_tokens
            except openai.APIStatusError as error:
                with self.lock:
                    self.refused.append(str((error.body or {}).get("code", error.status_code)))
                time.sleep(0.05)
            except (openai.APIConnectionError, IndexError, httpx.HTTPError):
                with self.lock:
                    self.failed += 1
                time.sleep(0.05)

    def warmed_up(self, calls: int = 16, seconds: float = 30) -> Load:
        """Wait until callers are being served (the first calls of a fresh process are slow)."""
        deadline = time.monotonic() + seconds
        while len(self.served) < calls and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.served) >= calls, (self.refused, self.failed)
        return self

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    @property
    def tokens(self) -> int:
        return sum(self.served.values())


def ledger(storage: Azurite, request_ids: set[str]) -> dict[str, int]:
    """Tokens of the ledger rows of these request ids (today's partitions, every shard)."""
    table = TableClient.from_connection_string(storage.connection_string, "gatewayUsage")
    today = datetime.now(UTC).date()
    query, parameters = day_range_filter(today, today)
    rows = table.query_entities(query, parameters=parameters, select=["RowKey", "PromptTokens", "CompletionTokens"])
    try:
        return {r["RowKey"]: r["PromptTokens"] + r["CompletionTokens"] for r in rows if r["RowKey"] in request_ids}
    except ResourceNotFoundError:  # no gateway has created the table yet
        return {}


def wait_for_ledger(storage: Azurite, load: Load, seconds: float = 20) -> dict[str, int]:
    deadline = time.monotonic() + seconds
    while True:
        rows = ledger(storage, set(load.served))
        if len(rows) == len(load.served) or time.monotonic() > deadline:
            return rows
        time.sleep(0.25)


def peak_rss_mb(process: GatewayProcess) -> float:
    assert process.proc is not None
    status = Path(f"/proc/{process.proc.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


def report(fault: str, load: Load, rows: dict[str, int], **more: object) -> None:
    figures = {"served_calls": len(load.served), "served_tokens": load.tokens, "ledger_calls": len(rows)}
    figures |= {"ledger_tokens": sum(rows.values()), "refused": len(load.refused), "conn_errors": load.failed}
    print(f"\n[durability] {fault}: {json.dumps(figures | more)}")


def test_storage_stopped_under_load_loses_nothing_and_memory_stays_bounded(start, storage):
    gateway = start()
    load = Load(gateway.api).warmed_up()
    storage.kill(signal.SIGINT)
    time.sleep(2.0)  # storage away; calls keep being served and journaled
    storage.start()
    time.sleep(0.5)
    load.finish()

    rows = wait_for_ledger(storage, load)
    rss = peak_rss_mb(gateway)
    report("storage stopped 2 s + restart", load, rows, peak_rss_mb=round(rss, 1))
    assert len(load.served) > 50 and load.refused == [] and load.failed == 0  # served all along
    assert rows == load.served  # every call answered 200 is in the ledger with the tokens the caller got
    assert rss < 250


def test_a_longer_outage_refuses_calls_at_the_backlog_and_serves_again_when_storage_returns(start, storage):
    gateway = start(GATEWAY_LEDGER_MAX_BACKLOG_ROWS="40")
    load = Load(gateway.api).warmed_up(calls=1)  # the caller's policy is cached before storage goes
    storage.kill(signal.SIGINT)
    time.sleep(0.3)
    served_before_outage = len(load.served)
    deadline = time.monotonic() + 20
    while "ledger_backlog" not in load.refused and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "ledger_backlog" in load.refused
    served_at_limit = len(load.served)
    assert served_at_limit >= 40 - CALLERS  # nothing refused well before the limit
    assert served_at_limit <= served_before_outage + 40 + CALLERS  # the limit, plus calls already admitted
    ready = httpx.get(f"{gateway.api}/ready", timeout=30)
    assert ready.status_code == 503 and ready.json()["checks"]["ledger"]["ok"] is False
    assert ready.json()["checks"]["ledger"]["backlog_rows"] >= 40

    storage.start()
    deadline = time.monotonic() + 20
    while len(load.served) <= served_at_limit + CALLERS and time.monotonic() < deadline:
        time.sleep(0.1)
    load.finish()
    assert len(load.served) > served_at_limit + CALLERS  # serving again
    rows = wait_for_ledger(storage, load)
    report("outage past a 40-row backlog", load, rows, served_at_limit=served_at_limit)
    assert rows == load.served
    assert httpx.get(f"{gateway.api}/ready", timeout=30).json()["checks"]["ledger"]["ok"] is True


def test_sigterm_under_load_flushes_every_row_before_exit(start, storage, tmp_path):
    gateway = start(journal=tmp_path / "sigterm")
    load = Load(gateway.api).warmed_up()
    time.sleep(0.5)
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGTERM)
    gateway.proc.wait(timeout=30)
    load.finish()

    rows = ledger(storage, set(load.served))  # no replay, no waiting: written before the process exited
    report("SIGTERM", load, rows, exit_code=gateway.proc.returncode)
    assert len(load.served) > 20 and rows == load.served
    assert list((tmp_path / "sigterm").iterdir()) == []  # every journal segment confirmed and removed


def replay_command(*args: str, env: dict[str, str]) -> dict:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    result = subprocess.run(
        [sys.executable, "-m", "tools.replay_usage", "--settings", "/nonexistent", *args],
        cwd=ROOT,
        env={**keep, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_sigkill_under_load_loses_nothing_once_the_journal_is_replayed(start, storage, simulator, tmp_path):
    journal = tmp_path / "sigkill"
    gateway = start(journal=journal)
    load = Load(gateway.api).warmed_up()
    time.sleep(0.5)
    assert gateway.proc is not None
    gateway.proc.kill()
    gateway.proc.wait(timeout=10)
    load.finish()
    before = ledger(storage, set(load.served))
    copy = tmp_path / "copy"
    shutil.copytree(journal, copy)

    # The next process replays the orphaned journal from its timer function (the dev host runs timers, as
    # `make run` does), without any request reaching it.
    successor = GatewayProcess(
        {
            "AZURE_OPENAI_ENDPOINT": simulator.url,
            "GATEWAY_STORAGE_CONNECTION_STRING": storage.connection_string,
            "GATEWAY_LOCAL_DEV_AUTH": "true",
            "GATEWAY_LEDGER_JOURNAL_DIR": str(journal),
            "GATEWAY_DEVHOST_TIMER_SECONDS": "0.5",
        }
    ).start()
    try:
        deadline = time.monotonic() + 20
        while any(journal.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        successor.stop()
    after = ledger(storage, set(load.served))
    missing = set(load.served) - set(after)
    output = gateway.output()
    settled_but_missing = [rid for rid in missing if f"model call {rid} settled" in output]

    # The replay command, on a copy of the same files: replaying the same rows again changes nothing.
    env = {"GATEWAY_STORAGE_CONNECTION_STRING": storage.connection_string}
    again = replay_command("--journal", str(copy), "--all", env=env)
    report(
        "SIGKILL",
        load,
        after,
        ledger_calls_before_replay=len(before),
        ledger_tokens_before_replay=sum(before.values()),
        journaled_rows=again["rows"],
        corrupt_lines=again["corrupt_lines"],
        missing_after_replay=len(missing),
    )
    assert len(load.served) > 20
    assert list(journal.iterdir()) == []  # replayed by the successor's timer
    assert settled_but_missing == []  # every call that settled before the kill is in the ledger after replay
    assert len(missing) <= CALLERS  # the residual window: answered, not yet settled (at most one per caller)
    assert all(after[rid] == load.served[rid] for rid in after)  # with the tokens the callers received
    assert again["rows"] >= len(after) - len(before) and again["files"] >= 1
    assert ledger(storage, set(load.served)) == after


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
