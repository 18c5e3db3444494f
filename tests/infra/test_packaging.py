"""azd and scripts/deploy.sh ship the same files: what .funcignore (gitignore syntax, read by azd for Functions
services) leaves in the package. scripts/package_files.py implements those rules for deploy.sh; git's own
reading of the same file is the reference here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.bicep_model import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))

import package_files  # noqa: E402

# Files a developer's checkout typically has besides the tracked ones; none of them may be deployed.
JUNK = [
    "node_modules/azurite/package.json",
    ".venv/bin/python",
    ".venv-infra/lib/python3.11/site-packages/checkov/__init__.py",
    ".azurite/__azurite_db_table__.json",
    "__azurite_db_table__.json",
    "local.settings.json",
    ".package-cache/py3.11-0123456789abcdef/site-packages/x.py",
    ".venv-bench/bin/python",
    "shared/__pycache__/config.cpython-311.pyc",
    ".pytest_cache/v/cache/nodeids",
    ".ruff_cache/0.1/x",
    ".azure/dev/.env",
    "dist/function-app.zip",
    ".env",
]
FORBIDDEN_PREFIXES = (
    "node_modules/",
    ".venv",
    ".azurite/",
    "tests/",
    "tools/",
    "scripts/",
    "bicep/",
    "docs/",
    ".git",
    ".azure/",
    "dist/",
    "__azurite",
    ".package-cache/",
)
# The vendored requirements (scripts/build_package.py) ship, and a folder of theirs named like a project folder
# (tests/, tools/, docs/ ...) stays in: the project's own folders are excluded at the root only.
VENDORED = [
    ".python_packages/lib/site-packages/somelib/__init__.py",
    ".python_packages/lib/site-packages/somelib/tools/__init__.py",
    ".python_packages/lib/site-packages/somelib/tests/__init__.py",
    ".python_packages/lib/site-packages/somelib/docs/README.md",
    ".python_packages/lib/site-packages/somelib-1.0.dist-info/METADATA",
]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (REPO_ROOT / f).is_file()]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of the tracked files plus typical local junk (and the working tree's .funcignore)."""
    root = tmp_path_factory.mktemp("checkout")
    for relative in tracked_files() + [".funcignore"]:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / relative, target)
    for relative in JUNK + VENDORED:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("junk\n", encoding="utf-8")
    return root


def git_package(root: Path) -> list[str]:
    """The files git does not ignore under .funcignore's rules: azd's gitignore-syntax reading of the file."""
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    out = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-from=.funcignore"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(out.splitlines())


def test_deploy_script_package_equals_the_funcignore_package(checkout):
    ours = package_files.package_files(checkout)
    assert sorted(ours) == git_package(checkout)


def test_package_holds_the_app_and_nothing_else(checkout):
    files = package_files.package_files(checkout)
    assert {"function_app.py", "host.json", "requirements.txt"} <= set(files)
    shared = sorted(p.relative_to(checkout).as_posix() for p in (checkout / "shared").rglob("*.py"))
    assert shared and set(shared) <= set(files)
    for name in files:
        assert not name.startswith(FORBIDDEN_PREFIXES), name
        assert "__pycache__" not in name and not name.endswith(".pyc"), name
        assert name not in ("local.settings.json", "local.settings.json.example", ".env", ".funcignore"), name
    assert set(VENDORED) <= set(files)
    top_level = {name.split("/")[0] for name in files}
    expected = {"function_app.py", "host.json", "requirements.txt", "shared", ".python_packages"}
    assert top_level == expected, (
        f"the package now ships {sorted(top_level - expected)} / misses {sorted(expected - top_level)}: if the app "
        "needs a new top-level path, add it to `expected` here; if not, list it in .funcignore"
    )


def test_deploy_script_zips_the_funcignore_package():
    script = (REPO_ROOT / "scripts" / "deploy.sh").read_text(encoding="utf-8")
    assert 'scripts/build_package.py --zip "$ZIP"' in script  # build_package.write_zip: package_files' list
    assert "cp -r function_app.py" not in script
    assert "package_files(root)" in (REPO_ROOT / "scripts" / "build_package.py").read_text(encoding="utf-8")


def test_funcignore_rule_syntax():
    rules = [package_files.Rule(r) for r in ("build/", "/top.txt", "*.log", "!keep.log", "a/**/z")]
    assert package_files.ignored(rules, "x/build", True) and not package_files.ignored(rules, "x/build", False)
    assert package_files.ignored(rules, "top.txt", False) and not package_files.ignored(rules, "d/top.txt", False)
    assert package_files.ignored(rules, "d/e.log", False) and not package_files.ignored(rules, "keep.log", False)
    assert package_files.ignored(rules, "a/b/c/z", False) and package_files.ignored(rules, "a/z", False)
