"""GATEWAY_BACKENDS and the failover settings: parsed strictly, every error naming the setting and the place."""

from __future__ import annotations

import json

import pytest

from shared.settings import BackendSettings, SettingsError, settings_from_env
from shared.settings.backends import BackendsError, parse_backends

LOCAL = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
AZURE = {
    "WEBSITE_INSTANCE_ID": "0123abcd",
    "WEBSITE_SITE_NAME": "gw",
    "GATEWAY_STORAGE_TABLE_ENDPOINT": "https://acct.table.core.windows.net",
}
SWC = {"label": "swc-ptu", "endpoint": "https://swc.openai.azure.com/"}


def _pools(value, env=LOCAL):
    return settings_from_env({**env, "GATEWAY_BACKENDS": json.dumps(value)}).upstream


def test_pools_by_deployment_with_defaults_for_what_is_left_out():
    upstream = _pools(
        {
            "gpt-4o-mini": [
                {**SWC, "priority": 1, "weight": 3},
                {"label": "frc", "endpoint": "https://frc.openai.azure.com", "deployment": "mini-paygo", "priority": 2},
            ],
            "*": [SWC],
        }
    )
    assert upstream.pools["gpt-4o-mini"] == (
        BackendSettings("swc-ptu", "https://swc.openai.azure.com", None, 1, 3),
        BackendSettings("frc", "https://frc.openai.azure.com", "mini-paygo", 2, 1),
    )
    assert upstream.pools["*"] == (BackendSettings("swc-ptu", "https://swc.openai.azure.com"),)
    assert not upstream.uses_simulator  # "*" serves every deployment


def test_without_a_star_pool_other_deployments_keep_the_single_endpoint_or_the_simulator():
    assert _pools({"gpt-4o-mini": [SWC]}).uses_simulator
    assert settings_from_env(LOCAL).upstream.pools == {}


def test_in_azure_a_star_pool_replaces_azure_openai_endpoint_but_something_must_serve_every_deployment():
    assert "*" in _pools({"*": [SWC]}, AZURE).pools
    with pytest.raises(SettingsError, match="AZURE_OPENAI_ENDPOINT.*GATEWAY_BACKENDS"):
        _pools({"gpt-4o-mini": [SWC]}, AZURE)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", r"GATEWAY_BACKENDS is not valid JSON"),
        ('{"*": [], "*": []}', r'the key "\*" appears twice'),
        ('{"*": [{"label": "a", "endpoint": "https://a.openai.azure.com", "weight": NaN}]}', r"NaN"),
        ("[]", r"must be a JSON object of pools"),
        ("{}", r"must be a JSON object of pools"),
        ('{"../x": [{"label": "a", "endpoint": "https://a"}]}', r'GATEWAY_BACKENDS\["../x"\]: the key'),
        ('{"*": []}', r'GATEWAY_BACKENDS\["\*"\] must be a non-empty list'),
        ('{"*": ["https://a"]}', r'GATEWAY_BACKENDS\["\*"\]\[0\] must be an object'),
        ('{"*": [{"label": "a", "endpoint": "https://a", "wieght": 2}]}', r"unknown field 'wieght'"),
        ('{"*": [{"endpoint": "https://a"}]}', r"\[0\]\.label must be"),
        ('{"*": [{"label": "https://a.openai.azure.com", "endpoint": "https://a"}]}', r"\.label must be"),
        ('{"*": [{"label": "a", "endpoint": "https://a", "weight": true}]}', r"\.weight must be a whole number"),
        ('{"*": [{"label": "a", "endpoint": "https://a", "weight": 1.5}]}', r"\.weight must be a whole number"),
        ('{"*": [{"label": "a", "endpoint": "https://a", "priority": 0}]}', r"\.priority must be a whole number"),
        ('{"*": [{"label": "a", "endpoint": "https://a", "deployment": "a/b"}]}', r"\.deployment must be"),
        ('{"*": [{"label": "a", "endpoint": "a.openai.azure.com"}]}', r"\.endpoint must be an http\(s\) URL"),
        ('{"*": [{"label": "a", "endpoint": "http://a.openai.azure.com"}]}', r"\.endpoint must use https"),
        ('{"*": [{"label": "a", "endpoint": "https://k:s@a.openai.azure.com"}]}', r"without credentials"),
        ('{"*": [{"label": "a", "endpoint": "https://a?key=1"}]}', r"without credentials, query"),
        (
            '{"*": [{"label": "a", "endpoint": "https://a"}, {"label": "a", "endpoint": "https://b"}]}',
            r"uses the label 'a' twice",
        ),
    ],
)
def test_malformed_pools_stop_the_app_naming_the_place(raw, message):
    with pytest.raises(SettingsError, match=message):
        settings_from_env({**LOCAL, "GATEWAY_BACKENDS": raw})


def test_plain_http_backends_only_on_loopback_and_never_in_azure():
    local = {"label": "sim", "endpoint": "http://127.0.0.1:8000"}
    assert _pools({"*": [local]}).pools["*"][0].is_local
    with pytest.raises(SettingsError, match=r"GATEWAY_BACKENDS\[\"\*\"\]\[0\]\.endpoint must use https"):
        _pools({"*": [local]}, AZURE)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_BACKEND_MAX_ATTEMPTS", "0"),
        ("GATEWAY_BACKEND_MAX_ATTEMPTS", "11"),
        ("GATEWAY_BACKEND_FAILOVER_SECONDS", "-1"),
        ("GATEWAY_BACKEND_COOLDOWN_SECONDS", "0"),
        ("GATEWAY_BACKEND_BREAKER_FAILURES", "0"),
        ("GATEWAY_BACKEND_BREAKER_SECONDS", "nan"),
    ],
)
def test_failover_knobs_are_bounded(name, value):
    with pytest.raises(SettingsError, match=name):
        settings_from_env({**LOCAL, name: value})


def test_failover_knobs_are_read():
    upstream = settings_from_env(
        {
            **LOCAL,
            "GATEWAY_BACKEND_MAX_ATTEMPTS": "2",
            "GATEWAY_BACKEND_FAILOVER_SECONDS": "0",
            "GATEWAY_BACKEND_COOLDOWN_SECONDS": "1.5",
            "GATEWAY_BACKEND_BREAKER_FAILURES": "4",
            "GATEWAY_BACKEND_BREAKER_SECONDS": "12",
        }
    ).upstream
    assert (upstream.max_attempts, upstream.failover_seconds, upstream.cooldown_seconds) == (2, 0.0, 1.5)
    assert (upstream.breaker_failures, upstream.breaker_open_seconds) == (4, 12.0)


def test_a_label_names_one_account_across_pools():
    # Stored objects are pinned to a label: one label on two endpoints would send a follow-up to the wrong account.
    text = (
        '{"*": [{"label": "a", "endpoint": "https://a.openai.azure.com"}],'
        ' "gpt-4o": [{"label": "a", "endpoint": "https://b.openai.azure.com"}]}'
    )
    with pytest.raises(BackendsError, match="label 'a' for two endpoints"):
        parse_backends("GATEWAY_BACKENDS", text, in_azure=False)
    same = (
        '{"*": [{"label": "a", "endpoint": "https://a.openai.azure.com"}],'
        ' "gpt-4o": [{"label": "a", "endpoint": "https://A.openai.azure.com/", "deployment": "gpt-4o-2"}]}'
    )
    assert parse_backends("GATEWAY_BACKENDS", same, in_azure=False)["gpt-4o"][0].deployment == "gpt-4o-2"
