"""Helpers over pycep-parser's JSON for the Bicep files in bicep/ (no Bicep CLI needed).

pycep-parser 0.5.1 is the version checkov pins; it renders identifiers and string literals alike as plain
strings, so `resolve` looks a string up among a file's parameters and variables before taking it literally.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BICEP_DIR = REPO_ROOT / "bicep"


def bicep_files() -> list[Path]:
    return sorted(BICEP_DIR.rglob("*.bicep"))


@cache
def parse(path: Path) -> dict:
    from pycep import BicepParser

    return BicepParser().parse(text=Path(path).read_text(encoding="utf-8"))


def template(relative: str) -> dict:
    return parse(BICEP_DIR / relative)


def unwrap(config: Any) -> Any:
    """Strip `if (...)` conditions and `[for ...]` loops from a resource/module/value body."""
    while isinstance(config, dict) and "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def resources(tpl: dict) -> dict[str, dict]:
    """symbol -> {"type", "api_version", "body"} (body unwrapped from conditions and loops)."""
    out = {}
    for symbol, res in (tpl.get("resources") or {}).items():
        out[symbol] = {
            "type": res["type"].split("@")[0],
            "api_version": res.get("api_version"),
            "existing": res.get("existing"),
            "raw": res["config"],
            "body": unwrap(res["config"]),
        }
    return out


def resources_of_type(tpl: dict, rtype: str) -> dict[str, dict]:
    return {s: r for s, r in resources(tpl).items() if r["type"].lower() == rtype.lower() and not r["existing"]}


def one_resource(tpl: dict, rtype: str) -> dict:
    found = resources_of_type(tpl, rtype)
    assert len(found) == 1, f"expected one {rtype}, found {sorted(found)}"
    return next(iter(found.values()))["body"]


def modules(tpl: dict) -> dict[str, dict]:
    out = {}
    for symbol, mod in (tpl.get("modules") or {}).items():
        raw = mod["config"]
        out[symbol] = {"path": mod["detail"]["path"], "raw": raw, "body": unwrap(raw)}
    return out


def get(obj: Any, path: str) -> Any:
    """get(body, "properties.siteConfig.minTlsVersion"); KeyError names the missing segment."""
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            raise KeyError(f"{part!r} missing in path {path!r}")
        obj = obj[part]
    return obj


class Scope:
    """Evaluates the small expression subset the structural tests need (literals, parameter defaults,
    variables, !x, &&, ||, ==, !=, ternaries, object[key], union of objects, concat of arrays, empty(), contains(),
    max(), min(), string() of a number). Anything else is returned unevaluated."""

    def __init__(self, tpl: dict, overrides: dict[str, Any] | None = None) -> None:
        self.tpl = tpl
        self.overrides = overrides or {}

    def resolve(self, value: Any, depth: int = 0) -> Any:
        if depth > 20:
            return value
        if isinstance(value, str):
            if value in self.overrides:
                return self.overrides[value]
            params = self.tpl.get("parameters") or {}
            variables = self.tpl.get("variables") or {}
            if value in params and params[value].get("default") is not None:
                return self.resolve(params[value]["default"], depth + 1)
            if value in variables:
                return self.resolve(variables[value]["value"], depth + 1)
            return value
        if isinstance(value, list):
            return [self.resolve(v, depth + 1) for v in value]
        if isinstance(value, dict):
            if "operator" in value:
                op = value["operator"]
                operands = op.get("operands", {})
                if op["type"] == "not":
                    inner = self.resolve(operands["bool_value"], depth + 1)
                    return (not inner) if isinstance(inner, bool) else value
                if op["type"] in ("and", "or", "equals", "not_equals"):
                    left = self.resolve(operands["operand_1"], depth + 1)
                    right = self.resolve(operands["operand_2"], depth + 1)
                    if op["type"] in ("and", "or"):
                        if isinstance(left, bool) and isinstance(right, bool):
                            return (left and right) if op["type"] == "and" else (left or right)
                        return value
                    if isinstance(left, (str, int, bool)) and isinstance(right, (str, int, bool)):
                        return (left == right) if op["type"] == "equals" else (left != right)
                    return value
                if op["type"] == "index_accessor":
                    container = self.resolve(operands["operand_1"], depth + 1)
                    key = self.resolve(operands["operand_2"], depth + 1)
                    if isinstance(container, dict) and isinstance(key, str) and key in container:
                        return self.resolve(container[key], depth + 1)
                    return value
                if op["type"] == "conditional":
                    cond = self.resolve(operands["condition"], depth + 1)
                    if isinstance(cond, bool):
                        branch = operands["true_value"] if cond else operands["false_value"]
                        return self.resolve(branch, depth + 1)
                return value
            if "function" in value:
                fn = value["function"]
                args = fn.get("parameters", {})
                if fn["type"] == "empty":
                    item = self.resolve(args["item_to_test"], depth + 1)
                    return len(item) == 0 if isinstance(item, (list, dict, str)) else value
                if fn["type"] == "contains":
                    container = self.resolve(args["container"], depth + 1)
                    item = self.resolve(args["item_to_find"], depth + 1)
                    if isinstance(container, (list, dict, str)) and isinstance(item, (str, int)):
                        return item in container
                    return value
                if fn["type"] in ("max", "min"):
                    numbers = [self.resolve(a, depth + 1) for a in args.values()]
                    if all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
                        return max(numbers) if fn["type"] == "max" else min(numbers)
                    return value
                if fn["type"] == "string":
                    inner = self.resolve(args["value_to_convert"], depth + 1)
                    if isinstance(inner, int) and not isinstance(inner, bool):
                        return str(inner)
                    return value
                if fn["type"] == "concat":
                    parts = [self.resolve(a, depth + 1) for a in args.values()]
                    if all(isinstance(p, list) for p in parts):
                        return [item for p in parts for item in p]
                    return value
                if fn["type"] == "union":
                    parts = [self.resolve(a, depth + 1) for a in args.values()]
                    if all(isinstance(p, dict) for p in parts):
                        merged: dict = {}
                        for p in parts:
                            merged.update(p)
                        return merged
                return value
            return {k: self.resolve(v, depth + 1) for k, v in value.items()}
        return value


def app_settings(body: dict) -> list[dict]:
    return get(body, "properties.siteConfig.appSettings")


SKIP_RE = re.compile(r"//\s*checkov:skip=(CKV2?_[A-Z]+_\d+)\s*:?\s*(.*)")


def checkov_skips() -> list[tuple[Path, int, str, str]]:
    """(file, line, check id, reason) for every inline checkov skip."""
    found = []
    for path in bicep_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            m = SKIP_RE.search(line)
            if m:
                found.append((path, number, m.group(1), m.group(2).strip()))
    return found
