#!/usr/bin/env python3
"""Build the function app package here, so the app never builds anything in Azure (docs/deploy.md, "Build").

    python3 scripts/build_package.py                          # vendor the requirements into .python_packages
    python3 scripts/build_package.py --zip dist/function-app.zip   # ... and write the deployment zip

The requirements (requirements.txt) are installed as manylinux wheels for the function app's Python version
(``linuxFxVersion`` in bicep/modules/functionapp.bicep) into ``.python_packages/lib/site-packages``, the folder
the Functions Python worker puts on its path. ``--only-binary=:all:`` makes a requirement without a manylinux
wheel fail here, not at start-up in Azure. The result is cached under ``.package-cache/`` keyed on the
requirements file, the Python version and the platform, so a second build needs no network.

The azd ``prepackage`` hook of the api service (azure.yaml) runs this without ``--zip`` (azd then zips the project
minus .funcignore); scripts/deploy.sh runs it with ``--zip``, which writes the same files (scripts/package_files.py).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from package_files import ROOT, package_files  # noqa: E402

# The wheel platforms the Functions Linux host runs: manylinux2014 (glibc 2.17) and manylinux_2_28 (glibc 2.28; some
# requirements, e.g. tiktoken 0.14, publish only these). The Python 3.11 host is Debian 11 with glibc 2.31
# (Azure/azure-functions-python-worker#1651), so a wheel needing a newer glibc (manylinux_2_34 ...) is never taken.
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
SITE_PACKAGES = Path(".python_packages") / "lib" / "site-packages"
CACHE = ".package-cache"
FUNCTION_APP_BICEP = Path("bicep") / "modules" / "functionapp.bicep"


def plan_python_version(root: Path = ROOT) -> str:
    """The Python version the function app runs (``linuxFxVersion: 'Python|3.11'`` in the Bicep)."""
    text = (root / FUNCTION_APP_BICEP).read_text(encoding="utf-8")
    found = re.findall(r"linuxFxVersion:\s*'Python\|(3\.[0-9]+)'", text)
    if len(found) != 1:
        raise SystemExit(f"{FUNCTION_APP_BICEP}: expected one linuxFxVersion 'Python|3.x', found {found}")
    return found[0]


def cache_key(requirements: bytes, python_version: str, platforms: tuple[str, ...] = PLATFORMS) -> str:
    digest = hashlib.sha256(requirements + f"\0{python_version}\0{' '.join(platforms)}".encode()).hexdigest()
    return f"py{python_version}-{digest[:16]}"


def build_site_packages(root: Path, python_version: str, requirements: Path, cache_dir: Path) -> Path:
    """The installed requirements (a cached folder); pip runs only when the cache has no entry for them."""
    entry = cache_dir / cache_key(requirements.read_bytes(), python_version)
    if (entry / ".complete").is_file():
        print(f"build: requirements for Python {python_version} from the cache ({entry.name})")
        return entry / "site-packages"
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_dir))
    try:
        target = work / "site-packages"
        command = [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
            "--requirement", str(requirements), "--target", str(target),
            *(arg for platform in PLATFORMS for arg in ("--platform", platform)),
            "--implementation", "cp", "--python-version", python_version,
            "--only-binary=:all:",
        ]  # fmt: skip
        print(f"build: pip install -r {requirements.name} for Python {python_version} (manylinux wheels only)")
        result = subprocess.run(command, cwd=root, check=False)
        if result.returncode != 0:
            raise SystemExit(
                f"build: pip could not install {requirements.name} as manylinux wheels for Python {python_version} "
                "(a requirement without such a wheel, or no access to the package index); nothing was packaged"
            )
        (work / ".complete").write_text(" ".join(command[3:]) + "\n", encoding="utf-8")
        try:
            work.rename(entry)  # atomic: a parallel build of the same key keeps its own result
        except OSError:
            if not (entry / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return entry / "site-packages"


def vendor(root: Path, site_packages: Path) -> None:
    """Replace the project's .python_packages/lib/site-packages with the built one."""
    destination = root / SITE_PACKAGES
    shutil.rmtree(root / ".python_packages", ignore_errors=True)
    shutil.copytree(site_packages, destination, ignore=shutil.ignore_patterns("__pycache__"))


def write_zip(root: Path, zip_path: Path) -> int:
    files = package_files(root)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    partial = zip_path.with_name(zip_path.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative in files:
            archive.write(root / relative, relative)
    os.replace(partial, zip_path)
    return len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zip", type=Path, help="also write the deployment zip (the project minus .funcignore)")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--requirements", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    version = plan_python_version(root)
    requirements = (args.requirements or root / "requirements.txt").resolve()
    site_packages = build_site_packages(root, version, requirements, (args.cache_dir or root / CACHE).resolve())
    vendor(root, site_packages)
    print(f"build: {SITE_PACKAGES} holds the requirements for Python {version}")
    if args.zip:
        count = write_zip(root, args.zip if args.zip.is_absolute() else Path.cwd() / args.zip)
        print(f"build: {args.zip} ({count} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
