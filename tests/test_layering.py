"""The package layout's import rules, so the layers stay one-way as the code grows.

function_app -> http -> runtime -> pipeline -> capabilities -> protocol, errors
capabilities: auth, policy, quotas, upstream, accounting, finance, stateful (finance reads accounting, never the reverse)
leaves read by everything: settings, storage, telemetry, hosting, json_body, text
local (dev host, simulator) is never imported by what Azure runs, except the runtime's lazy embedded simulator
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / "shared"

CAPABILITIES = ("auth", "policy", "quotas", "upstream", "accounting", "finance", "stateful")
EDGE = ("http", "runtime", "pipeline")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> list[tuple[str, str]]:
    """(importing module, imported shared module) for every import in shared/, lazy imports included."""
    edges = []
    for path in SHARED.rglob("*.py"):
        module = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shared"):
                edges.append((module, node.module))
            elif isinstance(node, ast.Import):
                edges += [(module, alias.name) for alias in node.names if alias.name.startswith("shared")]
    return edges


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


EDGES = _imports()


def test_the_scan_sees_the_code():
    assert len(EDGES) > 50


@pytest.mark.parametrize("leaf", ["protocol", "errors"])
def test_protocol_facts_and_errors_import_no_other_part_of_the_gateway(leaf):
    bad = [(a, b) for a, b in EDGES if _area(a) == leaf and _area(b) not in ("protocol", "errors")]
    assert not bad


def test_capabilities_never_reach_up_to_the_request_path_or_the_http_edge():
    bad = [(a, b) for a, b in EDGES if _area(a) in CAPABILITIES and _area(b) in EDGE]
    assert not bad


def test_only_the_http_edge_and_the_composition_root_see_the_runtime():
    bad = [(a, b) for a, b in EDGES if _area(b) == "runtime" and _area(a) not in ("http", "runtime", "timers")]
    assert not bad


def test_nothing_below_the_edge_imports_the_http_package():
    bad = [(a, b) for a, b in EDGES if _area(b) == "http" and _area(a) != "http"]
    assert not bad


def test_accounting_does_not_depend_on_finance():
    assert not [(a, b) for a, b in EDGES if _area(a) == "accounting" and _area(b) == "finance"]


def test_local_only_code_is_not_imported_by_what_azure_runs():
    allowed = {"shared.runtime", "shared.devhost"}  # the lazily started embedded simulator; the old command name
    bad = [(a, b) for a, b in EDGES if _area(b) == "local" and _area(a) != "local" and a not in allowed]
    assert not bad


def test_leaves_do_not_import_capabilities_except_the_pure_values_settings_parse():
    leaves = ("settings", "storage", "telemetry", "hosting", "json_body", "text")
    values = {"shared.accounting.prices", "shared.quotas.limits"}  # prices and limits are settings' value types
    bad = [(a, b) for a, b in EDGES if _area(a) in leaves and _area(b) in (*CAPABILITIES, *EDGE) and b not in values]
    assert not bad
