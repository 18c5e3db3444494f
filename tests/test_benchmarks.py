"""The benchmarks stay runnable: one entry point, every command importable with its options (nothing timed here)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import bench  # noqa: E402  (scripts/bench.py, the entry point)


def test_every_benchmark_module_is_a_command_and_none_is_a_script_of_its_own():
    modules = {path.stem for path in (ROOT / "scripts" / "benchmarks").glob("*.py")} - {"__init__", "common"}
    assert modules == {module for module, _ in bench.COMMANDS.values()}
    assert not list((ROOT / "scripts").glob("bench_*.py"))


@pytest.mark.parametrize("command", sorted(bench.COMMANDS))
def test_every_command_imports_and_has_its_entry_function(command):
    module_name, function = bench.COMMANDS[command]
    module = importlib.import_module(f"scripts.benchmarks.{module_name}")
    assert callable(getattr(module, function))


def test_the_entry_point_lists_the_commands():
    listed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "list"], capture_output=True, text=True, check=True
    ).stdout
    for command in bench.COMMANDS:
        if command != "upstream":
            assert f"  {command} " in listed
