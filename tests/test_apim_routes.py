"""The committed APIM route list (bicep/apim-routes.json) equals the app's HTTP route table.

bicep/modules/apim.bicep builds one API Management operation per entry of that file, so a route added to the
app (or a method, e.g. PUT) without regenerating it would answer 404 through APIM.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import gen_apim_routes  # noqa: E402


@pytest.fixture(scope="module")
def generated(monkeypatch_module):
    monkeypatch_module.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    sys.modules.pop("function_app", None)
    return gen_apim_routes.document(gen_apim_routes.app_operations(), gen_apim_routes.route_prefix())


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_committed_route_list_matches_the_app(generated):
    committed = json.loads((ROOT / "bicep" / "apim-routes.json").read_text(encoding="utf-8"))
    stale = f"bicep/apim-routes.json is out of date; regenerate it with: {gen_apim_routes.REGENERATE}"
    assert committed["routePrefix"] == generated["routePrefix"], stale
    routes = lambda doc: sorted((op["method"], op["urlTemplate"]) for op in doc["operations"])  # noqa: E731
    assert routes(committed) == routes(generated), stale
    assert committed == generated, stale


def test_every_route_parameter_is_declared(generated):
    for op in generated["operations"]:
        declared = [p["name"] for p in op["templateParameters"]]
        in_template = [part[1:-1] for part in op["urlTemplate"].split("/") if part.startswith("{")]
        assert declared == in_template, op


def test_route_templates_drop_asp_net_constraints():
    assert gen_apim_routes.url_template("items/{id:int?}/{name}") == ("/items/{id}/{name}", ["id", "name"])
    with pytest.raises(ValueError):
        gen_apim_routes.url_template("files/{*rest}")
