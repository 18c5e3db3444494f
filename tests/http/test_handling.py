"""The edge every function goes through (shared/http/handling.py)."""

from __future__ import annotations

import importlib
import sys

import pytest

from shared.http.handling import is_json_media_type


@pytest.fixture(scope="module")
def functions():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
        sys.modules.pop("function_app", None)
        yield importlib.import_module("function_app").app.get_functions()


def test_every_registered_function_runs_at_the_edge(functions):
    # A function registered on a plain func.Blueprint would answer without x-gateway-request-id, without the
    # cross-site refusal and with unhandled exceptions escaping to the host.
    http_functions = [f for f in functions if f.get_trigger().get_binding_name() == "httpTrigger"]
    assert http_functions
    for function in http_functions:  # timer functions answer nobody
        user_function = function.get_user_function()
        assert getattr(user_function, "__wrapped__", None) is not None, function.get_function_name()
        assert user_function.__code__.co_name == "edge", function.get_function_name()


@pytest.mark.parametrize(
    "value, json",
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/merge-patch+json", True),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("text/plain; application/json", False),
        ("application/jsonx", False),
        ("", False),
        (None, False),
    ],
)
def test_json_media_types(value, json):
    assert is_json_media_type(value) is json
