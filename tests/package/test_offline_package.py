"""The deployment package runs on its own: built the way azd (prepackage hook) and scripts/deploy.sh build it, unpacked
into an empty folder and started by an interpreter that sees only the zip's .python_packages and the app folder
(no project venv, no site-packages, no package index): the functions index, /api/health answers and a model call
reaches the upstream. The upstream simulator and Azurite run from the test environment; only the gateway runs from
the package.

The first build downloads the manylinux wheels (cached in .package-cache/ by requirements hash, so later runs
need no network)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import httpx
import openai
import pytest

from tests.azurite import ROOT, free_port, terminate

BUILD = ROOT / "scripts" / "build_package.py"
SITE_PACKAGES = Path(".python_packages") / "lib" / "site-packages"

# Loaded in the isolated interpreter: every module must come from the app folder or the standard library.
PROBE = """
import sys, sysconfig
import function_app
app_dir, stdlib = sys.argv[1], sysconfig.get_paths()["stdlib"]
outside = sorted(
    name for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None)
    and not module.__file__.startswith((app_dir, stdlib))
)
assert not outside, f"loaded from outside the package: {outside[:5]}"
assert not any("site-packages" in p and not p.startswith(app_dir) for p in sys.path), sys.path
functions = function_app.app.get_functions()
print(len(functions), " ".join(sorted(f.get_function_name() for f in functions)))
"""


def tracked_checkout(target: Path) -> Path:
    """The project as a fresh clone has it (what git tracks or would track, as in the working tree)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for relative in out.splitlines():
        source = ROOT / relative
        if source.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)
    return target


def build(root: Path, zip_path: Path, cache: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "build_package.py"), "--zip", str(zip_path), "--cache-dir", str(cache)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def isolated_env(app: Path) -> dict[str, str]:
    """Only the package on the path: PYTHONPATH = the zip's site-packages and the app folder, nothing inherited."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return keep | {"PYTHONPATH": f"{app / SITE_PACKAGES}{os.pathsep}{app}", "PYTHONNOUSERSITE": "1"}


def isolated(app: Path, *args: str) -> list[str]:
    # -S: no site module, so neither the project venv's nor the system's site-packages is on the path.
    return [sys.executable, "-S", "-s", *args]


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    checkout = tracked_checkout(tmp_path_factory.mktemp("checkout"))
    zip_path = tmp_path_factory.mktemp("dist") / "function-app.zip"
    result = build(checkout, zip_path, ROOT / ".package-cache")
    assert result.returncode == 0, result.stdout + result.stderr
    unpacked = tmp_path_factory.mktemp("wwwroot")
    assert not any(unpacked.iterdir())
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(unpacked)  # noqa: S202 - the zip this test just built
    return unpacked


def probe(app: Path) -> subprocess.CompletedProcess:
    env = isolated_env(app) | {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    return subprocess.run(
        isolated(app, "-c", PROBE, str(app)), cwd=app, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_zip_holds_the_app_and_its_linux_wheels_and_nothing_of_the_project_tooling(app):
    assert (app / "function_app.py").is_file() and (app / "host.json").is_file()
    assert (app / SITE_PACKAGES / "azure" / "functions").is_dir()
    assert (app / SITE_PACKAGES / "aiohttp").is_dir()
    compiled = [p.name for p in (app / SITE_PACKAGES).rglob("*.so")]
    assert compiled and all("x86_64-linux-gnu" in name or "abi3" in name for name in compiled), compiled[:5]
    for absent in ("tests", "scripts", "tools", "bicep", "docs", ".venv", "node_modules", "local.settings.json"):
        assert not (app / absent).exists(), absent


def test_the_package_indexes_with_only_its_own_packages_on_the_path(app):
    result = probe(app)
    assert result.returncode == 0, result.stderr[-3000:]
    count, names = result.stdout.split(" ", 1)
    assert int(count) >= 17, names  # every HTTP route (tests/test_function_app.py) and the timers
    assert "health" in names.split(), names


def test_a_requirement_missing_from_the_package_fails_the_indexing(app, tmp_path):
    broken = tmp_path / "wwwroot"
    shutil.copytree(app, broken, symlinks=True)
    shutil.rmtree(broken / SITE_PACKAGES / "aiohttp")
    result = probe(broken)
    assert result.returncode != 0
    assert "No module named 'aiohttp'" in result.stderr


def test_a_requirement_without_a_manylinux_wheel_fails_the_build(tmp_path):
    """Offline: the only distribution pip may use is a local source archive, which --only-binary refuses."""
    root = tmp_path / "project"
    for relative in ("scripts/build_package.py", "scripts/package_files.py", "bicep/modules/functionapp.bicep"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, root / relative)
    (root / ".funcignore").write_text("/scripts/\n/bicep/\n", encoding="utf-8")
    (root / "function_app.py").write_text("", encoding="utf-8")
    links = tmp_path / "links"
    (links / "sdistonly-1.0").mkdir(parents=True)
    (links / "sdistonly-1.0" / "setup.py").write_text("from setuptools import setup\nsetup(name='sdistonly')\n")
    with tarfile.open(links / "sdistonly-1.0.tar.gz", "w:gz") as archive:
        archive.add(links / "sdistonly-1.0", arcname="sdistonly-1.0")
    shutil.rmtree(links / "sdistonly-1.0")
    (root / "requirements.txt").write_text("sdistonly==1.0\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env |= {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links), "PIP_CONFIG_FILE": os.devnull}
    result = build(root, tmp_path / "out.zip", tmp_path / "cache", env)
    assert result.returncode != 0
    assert "manylinux wheels" in result.stdout + result.stderr
    assert not (tmp_path / "out.zip").exists()


def test_the_unpacked_package_serves_health_and_a_model_call(app, simulator, storage_connection_string, tmp_path):
    port = free_port()
    env = isolated_env(app) | {
        "AZURE_OPENAI_ENDPOINT": simulator.url,
        "GATEWAY_STORAGE_CONNECTION_STRING": storage_connection_string,
        "GATEWAY_LOCAL_DEV_AUTH": "true",
        "GATEWAY_ALLOWED_DEPLOYMENTS": "gpt-4o-mini",
        "GATEWAY_LEDGER_JOURNAL_DIR": str(tmp_path / "journal"),
        "GATEWAY_DEVHOST_LOG_LEVEL": "warning",
    }
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            isolated(app, "-m", "shared.local.devhost", "--port", str(port), "--settings", "/nonexistent"),
            cwd=app,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}/api"
            deadline = time.monotonic() + 60
            health = None
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    health = httpx.get(f"{base}/health", timeout=2)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            assert health is not None and health.status_code == 200, log.read_text(errors="replace")[-3000:]

            client = openai.AzureOpenAI(azure_endpoint=base, api_key="local", api_version="2024-10-21", max_retries=0)
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], max_tokens=5
            )
            assert reply.choices[0].message.content
            assert reply.usage is not None and reply.usage.total_tokens > 0
        finally:
            terminate(proc)
