"""Peer gateways for the benchmark: LiteLLM's proxy and Portkey's open-source gateway, run beside ours.

WHY: issue 15 judges this gateway against the peers a user would pick instead, measured in the same run on the same
machine against the same simulator. Their code is never committed: each peer is installed from its own registry
(PyPI, npm) at a pinned version into ``.bench/<peer>/`` (gitignored) the first time a benchmark needs it, and a
stamp makes later runs skip the install. Installing can fail (no network, no node): ``install`` then returns the
reason and the benchmark reports the peer as skipped instead of failing.

Each peer is configured the way a user would put it in front of a private Azure OpenAI whose local auth is off:
the simulator is that Azure OpenAI, reached on its dated path (``/openai/deployments/gpt-4o-mini/chat/completions
?api-version=2024-10-21``) with a bearer token, as our gateway reaches it with its managed identity's token.

- LiteLLM proxy: model ``azure/gpt-4o-mini`` with ``api_base``/``api_version``/``azure_ad_token``, a master key
  (callers must present it), one uvicorn worker in the CLI's own process, no database (so no virtual keys, no spend
  logs, no budgets: see docs/decisions.md D65), logs at ERROR (which also silences uvicorn's access log), the model
  cost map read from the installed package (``LITELLM_LOCAL_MODEL_COST_MAP``), no logging callbacks configured (its
  built-in proxy hooks stay registered, as for any user).
- Portkey gateway: no server-side provider configuration exists in the open-source gateway; the caller names the
  provider and carries the upstream credential in ``x-portkey-*`` headers on every request (``azure-openai``,
  deployment, api-version, ``x-portkey-azure-ad-token``) and ``x-portkey-custom-host`` points it at the simulator
  (loopback hosts are allowed through ``TRUSTED_CUSTOM_HOSTS``). It has no caller authentication of its own: whoever
  reaches it uses the credential they send. Started ``--headless`` with ``NODE_ENV=production`` (no log UI).

Usage from the benchmark (nothing runs at import)::

    from scripts.benchmarks import peers as bench_peers
    reason = bench_peers.install("litellm")             # None when ready, else why not (report it as skipped)
    peer = bench_peers.start("litellm", simulator_url)  # = start_litellm(url); raises PeerUnavailable
    try:
        client.post(peer.base_url + peer.chat_path, headers=peer.headers,
                    json={"model": peer.body_model, "messages": [...], "stream": False})
        # /proc/<peer.pid>/stat (utime+stime) and /proc/<peer.pid>/status (VmHWM) are the serving process
    finally:
        peer.stop()

Check it by hand: ``.venv/bin/python scripts/bench.py peers --check [--peer litellm] [--peer portkey]``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]

BENCH_DIR = ROOT / ".bench"

# Pinned. LiteLLM 1.106.12 is the newest release whose `proxy` extra resolves from PyPI here: 1.108+ need
# litellm-proxy-extras/litellm-proxy releases the index does not serve. 1.106 is also what issue 15's table measured.
LITELLM_REQUIREMENT = "litellm[proxy]==1.106.12"
PORTKEY_PACKAGE = "@portkey-ai/gateway"
PORTKEY_VERSION = "1.15.2"
# The published package leaves @hono/node-server at ^1.3.3; from 1.14.3 on, its responses carry immutable headers and
# the gateway's streaming path fails with "TypeError: immutable" (Portkey-AI/gateway issues 1389 and 1550). Pin the
# version Portkey's own lockfile builds 1.15.2 with.
PORTKEY_OVERRIDES = {"@hono/node-server": "1.13.5"}
PEERS = ("litellm", "portkey")

DEPLOYMENT = "gpt-4o-mini"
API_VERSION = "2024-10-21"
# What the peers send upstream as the Entra token (the simulator accepts any bearer token, as Azure accepts a valid
# one; local auth, i.e. `api-key`, is refused there as on a hardened Azure OpenAI).
UPSTREAM_TOKEN = "bench-entra-token"  # noqa: S105 (a stand-in the simulator accepts, not a secret)

INSTALL_TIMEOUT_S = 900
START_TIMEOUT_S = 180
STAMP_NAME = "installed.json"


class PeerUnavailable(RuntimeError):
    """The peer is not installed or did not start; the message says why (report the peer as skipped)."""


@dataclass
class PeerProcess:
    """A running peer: where to send chat completions, with which headers, and which process serves them."""

    name: str
    base_url: str
    pid: int
    chat_path: str
    headers: dict[str, str]
    body_model: str
    auth: str  # what the peer checks about the caller, in words
    run_dir: Path
    _proc: subprocess.Popen[bytes] = field(repr=False)

    def stop(self) -> None:
        """Terminate the peer (politely, then firmly) and remove its run directory (config, log)."""
        _terminate(self._proc, group=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self.run_dir / "peer.log", lines)


# --- installing -----------------------------------------------------------------------------------------------------


def install(peer: str) -> str | None:
    """Make ``peer`` runnable from ``.bench/<peer>/``: None when ready (installed now or earlier), else the reason.

    Idempotent: a stamp records what was installed; a matching stamp means nothing to do. A changed pin reinstalls.
    Concurrent callers wait on a file lock rather than install twice."""
    if peer not in PEERS:
        return f"unknown peer {peer!r} (known: {', '.join(PEERS)})"
    home = BENCH_DIR / peer
    wanted = _wanted_stamp(peer)
    if isinstance(wanted, str):
        return wanted
    if _stamp_matches(peer, wanted):
        return None
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / ".install.lock"):
        if _stamp_matches(peer, wanted):
            return None
        (home / STAMP_NAME).unlink(missing_ok=True)
        started = time.monotonic()
        reason = _install_litellm(home) if peer == "litellm" else _install_portkey(home)
        if reason is not None:
            return reason
        stamp = {
            **wanted,
            "install_seconds": round(time.monotonic() - started, 1),
            "disk_bytes": _disk_bytes(home),
            "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (home / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n")
    return None


def installed(peer: str) -> dict[str, object] | None:
    """The stamp of an installed peer (pin, install_seconds, disk_bytes, installed_at), or None."""
    return _read_stamp(peer)


def _wanted_stamp(peer: str) -> dict[str, object] | str:
    if peer == "litellm":
        return {"requirement": LITELLM_REQUIREMENT, "python": f"{sys.version_info[0]}.{sys.version_info[1]}"}
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node and npm are needed for the Portkey gateway and are not on PATH"
    major = _node_major(node)
    if major is None or major < 18:
        return f"the Portkey gateway needs Node.js 18 or newer (found {major or 'unknown'})"
    return {"package": f"{PORTKEY_PACKAGE}@{PORTKEY_VERSION}", "overrides": PORTKEY_OVERRIDES, "node_major": major}


def _stamp_matches(peer: str, wanted: dict[str, object]) -> bool:
    stamp = _read_stamp(peer)
    if stamp is None or any(stamp.get(key) != value for key, value in wanted.items()):
        return False
    return _entry_point(peer).exists()


def _read_stamp(peer: str) -> dict[str, object] | None:
    try:
        stamp = json.loads((BENCH_DIR / peer / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _entry_point(peer: str) -> Path:
    if peer == "litellm":
        return BENCH_DIR / "litellm" / "venv" / "bin" / "litellm"
    return BENCH_DIR / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def _install_litellm(home: Path) -> str | None:
    venv = home / "venv"
    shutil.rmtree(venv, ignore_errors=True)  # a half-made or outdated venv is rebuilt whole
    steps = (
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--timeout", "60", "--retries", "2", LITELLM_REQUIREMENT],
    )  # fmt: skip
    for command in steps:
        reason = _run_install_step(command, home)
        if reason is not None:
            shutil.rmtree(venv, ignore_errors=True)
            return f"LiteLLM ({LITELLM_REQUIREMENT}) not installed: {reason}"
    return None


def _install_portkey(home: Path) -> str | None:
    manifest = {
        "private": True,
        "description": "benchmark peer, installed by scripts/bench.py peers",
        "dependencies": {PORTKEY_PACKAGE: PORTKEY_VERSION},
        "overrides": PORTKEY_OVERRIDES,
    }
    (home / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    # --ignore-scripts: the package's only install script applies patches it does not ship; no dependency needs one.
    command = ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--omit=dev", "--loglevel=error",
               "--fetch-retries=2", "--fetch-timeout=60000"]  # fmt: skip
    reason = _run_install_step(command, home)
    if reason is not None:
        return f"Portkey gateway ({PORTKEY_PACKAGE}@{PORTKEY_VERSION}) not installed: {reason}"
    return None


def _run_install_step(command: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return f"`{' '.join(command[:3])}` took more than {INSTALL_TIMEOUT_S} s"
    except OSError as error:
        return f"`{command[0]}` could not run ({error.strerror})"
    if done.returncode == 0:
        return None
    # pip and npm end with the line that says why (pip's "ERROR: ...", npm's "npm error ..."); warnings are noise.
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("error", "npm error", "npm err"))] or lines or ["?"]
    return f"`{' '.join(command[:3])}` exited {done.returncode}: {errors[-1][:300]}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _node_major(node: str) -> int | None:
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
        return int(version.strip().lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _disk_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512  # allocated, as du counts
    return total


# --- running --------------------------------------------------------------------------------------------------------


def start_litellm(upstream_url: str, port: int | None = None) -> PeerProcess:
    """Start LiteLLM's proxy (one worker, master key on, no database) in front of the simulator at ``upstream_url``."""
    reason = install("litellm")
    if reason is not None:
        raise PeerUnavailable(reason)
    port = port or _free_port()
    run_dir = Path(tempfile.mkdtemp(prefix=f"run-{port}-", dir=BENCH_DIR / "litellm"))
    master_key = "sk-bench-" + secrets.token_hex(16)
    config = {  # JSON is YAML: the proxy reads it as its config.yaml
        "model_list": [
            {
                "model_name": DEPLOYMENT,
                "litellm_params": {
                    "model": f"azure/{DEPLOYMENT}",
                    "api_base": upstream_url,
                    "api_version": API_VERSION,
                    "azure_ad_token": "os.environ/BENCH_UPSTREAM_TOKEN",
                },
            }
        ],
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
        "litellm_settings": {"set_verbose": False, "json_logs": False},
    }
    config_path = run_dir / "config.yaml"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    env = _peer_env(
        LITELLM_MASTER_KEY=master_key,
        BENCH_UPSTREAM_TOKEN=UPSTREAM_TOKEN,
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # the cost map bundled in the package, not fetched at start-up
        LITELLM_LOG="ERROR",  # litellm's loggers and uvicorn's (access log included)
        PYTHONUNBUFFERED="1",
    )
    for name in ("DATABASE_URL", "DIRECT_URL", "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"):
        env.pop(name, None)
    command = [
        str(_entry_point("litellm")),
        *("--config", str(config_path), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"),
    ]
    proc = _spawn(command, env, run_dir)
    peer = PeerProcess(
        name="litellm",
        base_url=f"http://127.0.0.1:{port}",
        pid=proc.pid,  # uvicorn with one worker serves in the CLI's own process
        chat_path="/v1/chat/completions",
        headers={"authorization": f"Bearer {master_key}", "content-type": "application/json"},
        body_model=DEPLOYMENT,
        auth="master key (Bearer), checked on every request; no virtual keys without a database",
        run_dir=run_dir,
        _proc=proc,
    )
    _wait_ready(peer, "/health/liveliness")
    return peer


def start_portkey(upstream_url: str, port: int | None = None) -> PeerProcess:
    """Start Portkey's open-source gateway (Node, headless); the Azure routing travels in the request headers."""
    reason = install("portkey")
    if reason is not None:
        raise PeerUnavailable(reason)
    node = shutil.which("node")
    if node is None:
        raise PeerUnavailable("node is not on PATH")
    port = port or _free_port()
    run_dir = Path(tempfile.mkdtemp(prefix=f"run-{port}-", dir=BENCH_DIR / "portkey"))
    upstream_host = httpx.URL(upstream_url).host
    env = _peer_env(
        NODE_ENV="production",
        # Portkey refuses private and loopback custom hosts unless listed here (its SSRF guard); this is the
        # documented way to let it reach a local upstream.
        TRUSTED_CUSTOM_HOSTS=upstream_host,
    )
    for name in ("REDIS_CONNECTION_STRING", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    command = [node, str(_entry_point("portkey")), f"--port={port}", "--headless"]
    proc = _spawn(command, env, run_dir)
    peer = PeerProcess(
        name="portkey",
        base_url=f"http://127.0.0.1:{port}",
        pid=proc.pid,
        chat_path="/v1/chat/completions",
        headers={
            "content-type": "application/json",
            "x-portkey-provider": "azure-openai",
            "x-portkey-custom-host": upstream_url.rstrip("/") + "/openai",
            "x-portkey-azure-resource-name": "simulator",  # unused once a custom host is set; kept as a user would
            "x-portkey-azure-deployment-id": DEPLOYMENT,
            "x-portkey-azure-api-version": API_VERSION,
            "x-portkey-azure-ad-token": UPSTREAM_TOKEN,
        },
        body_model=DEPLOYMENT,
        auth="none: the open-source gateway has no caller authentication; the caller sends the upstream credential",
        run_dir=run_dir,
        _proc=proc,
    )
    _wait_ready(peer, "/")
    return peer


def start(peer: str, upstream_url: str, port: int | None = None) -> PeerProcess:
    """``start_litellm`` or ``start_portkey`` by name (one of PEERS)."""
    if peer == "litellm":
        return start_litellm(upstream_url, port)
    if peer == "portkey":
        return start_portkey(upstream_url, port)
    raise PeerUnavailable(f"unknown peer {peer!r} (known: {', '.join(PEERS)})")


def _peer_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    loopback = "127.0.0.1,localhost,::1"
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = f"{env[name]},{loopback}" if env.get(name) else loopback
    env.update(extra)
    return env


def _spawn(command: list[str], env: dict[str, str], run_dir: Path) -> subprocess.Popen[bytes]:
    log = (run_dir / "peer.log").open("wb")
    try:
        return subprocess.Popen(  # its own session: stop() ends whatever it started too
            command,
            cwd=run_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()  # the child has its own descriptor


def _wait_ready(peer: PeerProcess, probe: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if peer._proc.poll() is not None:
            tail = peer.log_tail()
            peer.stop()
            raise PeerUnavailable(f"{peer.name} exited with {peer._proc.returncode} while starting: {tail}")
        try:
            if httpx.get(peer.base_url + probe, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    tail = peer.log_tail()
    peer.stop()
    raise PeerUnavailable(f"{peer.name} did not answer {probe} within {START_TIMEOUT_S} s: {tail}")


def _terminate(proc: subprocess.Popen[bytes], group: bool = False) -> None:
    """SIGTERM, then SIGKILL after 15 s; with ``group``, to the process group the peer leads (see _spawn)."""

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    if proc.poll() is None:
        send(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            proc.wait(timeout=15)
    if group:
        send(signal.SIGKILL)  # anything it left behind in its group


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())[-2000:]


# --- the check ------------------------------------------------------------------------------------------------------


CHECK_BODY = {
    "messages": [{"role": "user", "content": "Benchmark the gateway please."}],
    "max_tokens": 16,
}


def _sse_events(raw: bytes) -> list[str]:
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
    return [
        line[len("data:") :].strip()
        for event in text.split("\n\n")
        for line in event.split("\n")
        if line.startswith("data:")
    ]


def _stream_summary(raw: bytes) -> dict[str, object]:
    """What a client reads from a stream: the text, the usage chunk, the finish reason, the events, [DONE]."""
    events = _sse_events(raw)
    text, usage, finish, chunks = [], None, None, 0
    for data in events:
        if data == "[DONE]":
            continue
        chunk = json.loads(data)
        chunks += 1
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            text.append((choice.get("delta") or {}).get("content") or "")
            finish = choice.get("finish_reason") or finish
    return {
        "text": "".join(text),
        "usage": usage,
        "finish_reason": finish,
        "chunks": chunks,
        "done": "[DONE]" in events,
    }


def _json_differences(direct: object, peer: object, path: str = "") -> list[str]:
    """Where the peer's JSON differs from the simulator's own answer (ids and timestamps aside): added, dropped,
    changed fields, by path (``choices.0.message.refusal``)."""
    if isinstance(direct, dict) and isinstance(peer, dict):
        notes = []
        for key in sorted(set(direct) | set(peer)):
            where = f"{path}.{key}" if path else str(key)
            if path == "" and key in ("id", "created"):  # differ between any two calls to the simulator
                continue
            if key not in peer:
                notes.append(f"dropped {where}")
            elif key not in direct:
                notes.append(f"added {where}={json.dumps(peer[key])[:40]}")
            else:
                notes.extend(_json_differences(direct[key], peer[key], where))
        return notes
    if isinstance(direct, list) and isinstance(peer, list) and len(direct) == len(peer):
        return [
            note
            for i, (d, p) in enumerate(zip(direct, peer, strict=True))
            for note in _json_differences(d, p, f"{path}.{i}")
        ]
    return [] if direct == peer else [f"changed {path}"]


def _usage_carried(direct: object, peer: object) -> bool:
    """Every usage figure the simulator reported came back equal (a peer may add its own, e.g. LiteLLM's cost)."""
    if not isinstance(direct, dict) or not isinstance(peer, dict):
        return False
    return all(peer.get(key) == value for key, value in direct.items())


def _proc_figures(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu_s = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "(process gone)"
    hwm = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), "?")
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                    children.append(entry.name)
    return f"cpu {cpu_s:.2f} s, peak RSS {int(hwm) / 1024:.0f} MB, child processes: {len(children)}"


def check(peers: list[str]) -> int:
    """Install each peer, start it against a fresh simulator, send one JSON and one streaming call, compare."""
    from bench import start_simulator  # the benchmark's own (bench.py imports this module only inside a function)

    failures = 0
    sim_proc, sim_url = start_simulator()
    try:
        direct_headers = {"authorization": f"Bearer {UPSTREAM_TOKEN}"}
        direct_url = f"{sim_url}/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={API_VERSION}"
        direct_response = httpx.post(direct_url, json=CHECK_BODY, headers=direct_headers, timeout=30)
        direct_json, direct_header_names = direct_response.json(), set(direct_response.headers)
        stream_body = {**CHECK_BODY, "stream": True, "stream_options": {"include_usage": True}}
        direct_stream = _stream_summary(httpx.post(direct_url, json=stream_body, headers=direct_headers).content)
        for name in peers:
            print(f"== {name}")
            had = installed(name)
            started = time.monotonic()
            reason = install(name)
            if reason is not None:
                print(f"   SKIPPED: {reason}")
                failures += 1
                continue
            stamp = installed(name) or {}
            how = "already installed" if stamp == had else f"installed now in {time.monotonic() - started:.1f} s"
            print(
                f"   {how}; stamp: {stamp.get('requirement') or stamp.get('package')}, install took "
                f"{stamp.get('install_seconds')} s, {int(str(stamp.get('disk_bytes', 0))) / 1e6:.0f} MB on disk"
            )
            started = time.monotonic()
            try:
                peer = start(name, sim_url)
            except PeerUnavailable as error:
                print(f"   SKIPPED: {error}")
                failures += 1
                continue
            took = time.monotonic() - started
            print(f"   started in {took:.1f} s at {peer.base_url}, pid {peer.pid}; auth: {peer.auth}")
            try:
                failures += _check_peer(peer, direct_json, direct_header_names, direct_stream)
                print(f"   serving process: {_proc_figures(peer.pid)}")
            finally:
                peer.stop()
    finally:
        _terminate(sim_proc)
    print("all peers answered like the simulator" if failures == 0 else f"{failures} problem(s)")
    return 1 if failures else 0


def _check_peer(
    peer: PeerProcess, direct_json: dict[str, object], direct_header_names: set[str], direct_stream: dict[str, object]
) -> int:
    failures = 0
    url = peer.base_url + peer.chat_path
    with httpx.Client(timeout=60) as client:
        if "authorization" in peer.headers:
            anonymous = {k: v for k, v in peer.headers.items() if k != "authorization"}
            for label, headers in (("no key", anonymous), ("wrong key", {**anonymous, "authorization": "Bearer sk-x"})):
                refused = client.post(url, headers=headers, json={"model": peer.body_model, **CHECK_BODY})
                print(f"   {label}: refused with {refused.status_code} {refused.content[:90]!r}")
                failures += refused.status_code < 400

        response = client.post(url, headers=peer.headers, json={"model": peer.body_model, **CHECK_BODY})
        print(f"   JSON: {response.status_code} {response.content[:160]!r}")
        added = sorted(set(response.headers) - direct_header_names)
        dropped = sorted(direct_header_names - set(response.headers))
        print(f"   JSON: response headers added: {', '.join(added) or 'none'}; dropped: {', '.join(dropped) or 'none'}")
        if response.status_code != 200:
            return failures + 1
        answer = response.json()
        differences = _json_differences(direct_json, answer)
        same_usage = _usage_carried(direct_json.get("usage"), answer.get("usage"))
        same_text = answer["choices"][0]["message"]["content"] == direct_json["choices"][0]["message"]["content"]  # type: ignore[index]
        print(f"   JSON: usage carried: {same_usage}; text equal: {same_text}; unchanged: {not differences}")
        for note in differences:
            print(f"      {note}")
        failures += not (same_usage and same_text)

        body = {"model": peer.body_model, **CHECK_BODY, "stream": True, "stream_options": {"include_usage": True}}
        started = time.perf_counter()
        with client.stream("POST", url, headers=peer.headers, json=body) as streamed:
            raw, first = b"", None
            for chunk in streamed.iter_raw():
                first = first if first is not None else time.perf_counter() - started
                raw += chunk
        print(f"   stream: {streamed.status_code} {streamed.headers.get('content-type')} first bytes {raw[:120]!r}")
        if streamed.status_code != 200:
            return failures + 1
        summary = _stream_summary(raw)
        same = {key: summary[key] == direct_stream[key] for key in ("text", "finish_reason", "done")}
        same["usage carried"] = _usage_carried(direct_stream["usage"], summary["usage"])
        print(f"   stream: first byte after {first or 0:.3f} s, {summary['chunks']} chunks (direct "
              f"{direct_stream['chunks']}); as direct: {same}; usage {json.dumps(summary['usage'])}")  # fmt: skip
        failures += not all(same.values())
    return failures


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="install, start each peer, send one JSON + one stream")
    parser.add_argument("--install", action="store_true", help="only install (or confirm) the peers")
    parser.add_argument("--peer", action="append", choices=PEERS, help="the peer(s) to use (default: all)")
    args = parser.parse_args(argv)
    peers = args.peer or list(PEERS)
    if args.install:
        reasons = {peer: install(peer) for peer in peers}
        for peer, reason in reasons.items():
            print(f"{peer}: {reason or installed(peer)}")
        sys.exit(1 if any(reasons.values()) else 0)
    if args.check:
        sys.exit(check(peers))
    parser.print_help()
