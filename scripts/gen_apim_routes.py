#!/usr/bin/env python3
"""Generate bicep/apim-routes.json: the API Management operations for every HTTP function of the app.

The route table is read the way the Functions worker reads it: ``function_app.app.get_functions()`` from the
``azure-functions`` library (trigger route + methods), with the route prefix from ``host.json``. Nothing parses
function_app.py's text, so Blueprints and new routes are picked up as they are registered.

    python scripts/gen_apim_routes.py            # rewrite bicep/apim-routes.json
    python scripts/gen_apim_routes.py --check    # exit 1 if the committed file is stale

Run it with the app's virtual environment (``.venv/bin/python``; it needs ``azure-functions`` and the app's
requirements). bicep/modules/apim.bicep loads the file with ``loadJsonContent`` and creates one operation per
entry; tests/test_apim_routes.py fails when the file and the app disagree.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "bicep" / "apim-routes.json"
REGENERATE = "python scripts/gen_apim_routes.py"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_PARAMETER = re.compile(r"\{([^}]+)\}")


def route_prefix(host_json: Path = ROOT / "host.json") -> str:
    try:
        config = json.loads(host_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "api"
    return str(config.get("extensions", {}).get("http", {}).get("routePrefix", "api")).strip("/")


def url_template(route: str) -> tuple[str, list[str]]:
    """ASP.NET Core route template -> (APIM URL template, parameter names). ``{id:int?}`` -> ``{id}``."""
    names: list[str] = []

    def parameter(match: re.Match[str]) -> str:
        raw = match.group(1)
        if raw.startswith("*"):
            raise ValueError(f"catch-all route parameter {{{raw}}} has no APIM equivalent here; extend {__file__}")
        name = raw.split(":")[0].rstrip("?").split("=")[0]
        names.append(name)
        return "{" + name + "}"

    return "/" + _PARAMETER.sub(parameter, route.strip("/")), names


def operation_name(function_name: str, method: str, several_methods: bool) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", function_name.lower()).strip("-")
    return f"{base}-{method.lower()}" if several_methods else base


def app_operations(module_name: str = "function_app") -> list[dict[str, Any]]:
    """One entry per (HTTP function, method), sorted by URL template and method."""
    os.environ.setdefault("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    module = importlib.import_module(module_name)
    operations = []
    for function in module.app.get_functions():
        trigger = function.get_trigger()
        if trigger is None or trigger.get_binding_name() != "httpTrigger":
            continue
        methods = [str(getattr(m, "value", m)).upper() for m in (trigger.methods or [])] or ALL_METHODS
        template, names = url_template(trigger.route or function.get_function_name())
        for method in methods:
            operations.append(
                {
                    "name": operation_name(function.get_function_name(), method, len(methods) > 1),
                    "displayName": f"{method} {template}",
                    "method": method,
                    "urlTemplate": template,
                    "templateParameters": [{"name": n, "type": "string", "required": True} for n in names],
                }
            )
    operations.sort(key=lambda op: (op["urlTemplate"], op["method"]))
    names_seen = [op["name"] for op in operations]
    duplicates = sorted({n for n in names_seen if names_seen.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate APIM operation names: {duplicates}")
    return operations


def document(operations: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    return {
        "generatedBy": REGENERATE,
        "routePrefix": prefix,
        "operations": operations,
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if bicep/apim-routes.json is out of date")
    args = parser.parse_args(argv)
    text = render(document(app_operations(), route_prefix()))
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date; regenerate it with: {REGENERATE}", file=sys.stderr)
            return 1
        print(f"{OUTPUT.relative_to(ROOT)} is up to date")
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
