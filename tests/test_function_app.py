"""The function app as the Functions worker indexes it (through the azure-functions library)."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from azurefunctions.extensions.http.fastapi import Request

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = {
    ("POST", "openai/deployments/{deployment}/chat/completions"),
    ("POST", "openai/deployments/{deployment}/completions"),
    ("POST", "openai/deployments/{deployment}/embeddings"),
    ("POST", "openai/responses"),
    ("POST", "openai/v1/chat/completions"),
    ("POST", "openai/v1/embeddings"),
    ("POST", "openai/v1/responses"),
    ("GET", "health"),
    ("GET", "ready"),
    ("GET", "me"),
    ("GET", "usage"),
    ("POST", "manage/keys"),
    ("GET", "manage/keys"),
    ("POST", "manage/keys/{key_id}/rotate"),
    ("DELETE", "manage/keys/{key_id}"),
    ("GET", "manage/policies/{tenant}/{principal}"),
    ("PUT", "manage/policies/{tenant}/{principal}"),
}


@pytest.fixture(scope="module")
def functions(monkeypatch_module):
    monkeypatch_module.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    sys.modules.pop("function_app", None)
    module = importlib.import_module("function_app")
    return module.app.get_functions()  # builds and validates every function, as indexing does


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _http(functions):
    return [f for f in functions if f.get_trigger().get_binding_name() == "httpTrigger"]


def _routes(functions):
    return {
        (m, f.get_trigger().route) for f in _http(functions) for m in (str(x.value) for x in f.get_trigger().methods)
    }


def test_every_route_and_method_is_registered(functions):
    assert EXPECTED <= _routes(functions)


def test_every_http_function_takes_the_fastapi_request(functions):
    # With the streaming extension imported, the worker refuses any HTTP trigger typed otherwise.
    for function in _http(functions):
        trigger = function.get_trigger()
        annotation = inspect.signature(function.get_user_function()).parameters[trigger.name].annotation
        assert annotation is Request or annotation == "Request", function.get_function_name()
        assert inspect.iscoroutinefunction(function.get_user_function())


def test_function_json_is_what_the_host_expects(functions):
    for function in _http(functions):
        bindings = json.loads(function.get_function_json())["bindings"]
        trigger = next(b for b in bindings if b["type"] == "httpTrigger")
        assert trigger["authLevel"] == "ANONYMOUS"  # Easy Auth and the gateway authenticate, not function keys
        assert {"type": "http", "direction": "OUT", "name": "$return"}.items() <= bindings[1].items()


@pytest.mark.parametrize("name", ["replay_usage_journal", "quota_housekeeping"])
def test_housekeeping_runs_on_timers(functions, name):
    timers = {f.get_function_name(): f.get_trigger() for f in functions if f not in _http(functions)}
    assert timers[name].get_binding_name() == "timerTrigger"
    assert len(timers[name].schedule.split()) == 6  # NCRONTAB: seconds first
    assert inspect.iscoroutinefunction(next(f for f in functions if f.get_function_name() == name).get_user_function())


def test_no_route_is_reserved_or_a_catch_all(functions):
    for _, route in _routes(functions):
        assert route.split("/")[0].lower() not in ("admin", "runtime"), route
        assert "{*" not in route, route


def test_host_json_keeps_the_api_prefix_and_extension_bundle():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensions"]["http"]["routePrefix"] == "api"
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"


def test_local_settings_example_enables_init_indexing_and_documents_every_setting():
    values = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert values["PYTHON_ENABLE_INIT_INDEXING"] == "1"
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    source = "\n".join(p.read_text() for p in (ROOT / "shared" / "settings").glob("*.py"))
    import re

    read = set(re.findall(r'"((?:GATEWAY|AZURE_OPENAI)_[A-Z0-9_]+)"', source))
    assert read <= set(values), read - set(values)
    readme = (ROOT / "README.md").read_text()
    assert all(name in readme for name in read), [n for n in read if n not in readme]


def test_a_bad_setting_stops_the_app_at_startup_naming_it():
    result = subprocess.run(
        [sys.executable, "-c", "import function_app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "GATEWAY_MAX_OUTPUT_TOKENS": "many",
        },
    )
    assert result.returncode != 0
    assert "GATEWAY_MAX_OUTPUT_TOKENS must be a positive whole number" in result.stderr


def test_the_bicep_creates_every_table_the_gateway_uses():
    import re as _re

    from shared.storage.tables import GATEWAY_TABLES

    bicep = (ROOT / "bicep" / "main.bicep").read_text()
    declared = _re.search(r"var gatewayTables = \[(.*?)\]", bicep, _re.S)
    assert declared is not None
    assert set(_re.findall(r"'(\w+)'", declared.group(1))) == set(GATEWAY_TABLES)
