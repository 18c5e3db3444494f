from __future__ import annotations

import pytest

from shared.settings import SettingsError, settings_from_env

LOCAL = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
AZURE = {"WEBSITE_INSTANCE_ID": "0123abcd", "WEBSITE_SITE_NAME": "gw", "WEBSITE_OWNER_NAME": "sub+rg-region"}


def test_defaults_locally_use_the_simulator_and_the_functions_storage():
    settings = settings_from_env(LOCAL)
    assert settings.upstream.uses_simulator
    assert settings.storage.connection_string == "UseDevelopmentStorage=true"
    assert settings.guardrails.allowed_deployments is None


@pytest.mark.parametrize(
    "name, value",
    [
        ("GATEWAY_MAX_REQUEST_BYTES", "lots"),
        ("GATEWAY_MAX_OUTPUT_TOKENS", "-5"),
        ("GATEWAY_UPSTREAM_TIMEOUT_SECONDS", "0"),
        ("AZURE_OPENAI_ENDPOINT", "my-resource.openai.azure.com"),
        ("AZURE_OPENAI_API_VERSION", "latest"),
        ("GATEWAY_API_KEYS_ENABLED", "maybe"),
        ("GATEWAY_ALLOWED_DEPLOYMENTS", "gpt-4o,../x"),
        ("GATEWAY_AUTH_AUTHORITY", "http://login.example.com"),
        ("GATEWAY_API_KEY_CACHE_SECONDS", "inf"),
        ("GATEWAY_UPSTREAM_TIMEOUT_SECONDS", "nan"),
        ("GATEWAY_STORAGE_TABLE_ENDPOINT", "http://st.table.core.windows.net"),
        ("GATEWAY_PRICES", '{"gpt-4o": {"input": 1}}'),
    ],
)
def test_a_bad_setting_fails_with_its_name_in_the_message(name, value):
    with pytest.raises(SettingsError, match=name):
        settings_from_env({**LOCAL, name: value})


def test_in_azure_the_simulator_is_never_the_default():
    with pytest.raises(SettingsError, match="AZURE_OPENAI_ENDPOINT"):
        settings_from_env({**AZURE, "GATEWAY_STORAGE_TABLE_ENDPOINT": "https://st.table.core.windows.net"})


def test_local_dev_auth_is_refused_in_azure():
    env = {
        **AZURE,
        "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
        "GATEWAY_STORAGE_TABLE_ENDPOINT": "https://st.table.core.windows.net",
        "GATEWAY_LOCAL_DEV_AUTH": "true",
    }
    with pytest.raises(SettingsError, match="GATEWAY_LOCAL_DEV_AUTH"):
        settings_from_env(env)


def test_storage_must_be_configured():
    with pytest.raises(SettingsError, match="GATEWAY_STORAGE_TABLE_ENDPOINT"):
        settings_from_env({})


def test_tenant_and_client_id_go_together():
    with pytest.raises(SettingsError, match="GATEWAY_AUTH_CLIENT_ID"):
        settings_from_env({**LOCAL, "GATEWAY_AUTH_TENANT_IDS": "7a7d0f1e-0000-4000-8000-000000000001"})


def test_allowlist_parsing():
    settings = settings_from_env({**LOCAL, "GATEWAY_ALLOWED_DEPLOYMENTS": " gpt-4o , text-embedding-3-small "})
    assert settings.guardrails.allowed_deployments == {"gpt-4o", "text-embedding-3-small"}


def test_plain_http_upstreams_are_only_for_a_local_simulator():
    assert settings_from_env({**LOCAL, "AZURE_OPENAI_ENDPOINT": "http://127.0.0.1:8000"}).upstream.is_local
    with pytest.raises(SettingsError, match="must use https"):
        settings_from_env({**LOCAL, "AZURE_OPENAI_ENDPOINT": "http://my-aoai.openai.azure.com"})
    assert not settings_from_env({**LOCAL, "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com"}).upstream.is_local


def test_in_azure_the_host_storage_key_is_not_borrowed_for_the_gateway_tables():
    env = {
        **AZURE,
        "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
        "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=st;AccountKey=abc;",
    }
    with pytest.raises(SettingsError, match="GATEWAY_STORAGE_TABLE_ENDPOINT"):
        settings_from_env(env)


def test_the_ledger_journal_is_on_by_default_on_the_shared_home_share_in_azure():
    azure = {
        **AZURE,
        "HOME": "/home",
        "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
        "GATEWAY_STORAGE_TABLE_ENDPOINT": "https://st.table.core.windows.net",
    }
    assert settings_from_env(azure).ledger.journal_dir == "/home/data/gateway-ledger-journal"
    local = settings_from_env(LOCAL).ledger
    assert (local.journal_dir, local.journal_fsync, local.max_backlog_rows, local.max_backlog_seconds) == (
        ".ledger-journal",
        False,
        10_000,
        60.0,
    )
    assert settings_from_env({**LOCAL, "GATEWAY_LEDGER_JOURNAL_DIR": "off"}).ledger.journal_dir is None


@pytest.mark.parametrize(
    "name, value",
    [
        ("GATEWAY_LEDGER_MAX_BACKLOG_ROWS", "0"),
        ("GATEWAY_LEDGER_MAX_BACKLOG_SECONDS", "inf"),
        ("GATEWAY_LEDGER_JOURNAL_FSYNC", "always"),
    ],
)
def test_bad_ledger_settings_name_themselves(name, value):
    with pytest.raises(SettingsError, match=name):
        settings_from_env({**LOCAL, name: value})


def test_deployment_models_name_the_tokenizer_of_each_deployment():
    settings = settings_from_env(
        {**LOCAL, "GATEWAY_DEPLOYMENT_MODELS": '{"prod-chat": "gpt-4.1", "legacy": "gpt-35-turbo"}'}
    )
    assert settings.guardrails.deployment_models == {"prod-chat": "gpt-4.1", "legacy": "gpt-35-turbo"}
    for bad in ('{"prod-chat": "gpt-4.1", "prod-chat": "gpt-4o"}', '["gpt-4.1"]', '{"../x": "gpt-4.1"}', '{"a": ""}'):
        with pytest.raises(SettingsError, match="GATEWAY_DEPLOYMENT_MODELS"):
            settings_from_env({**LOCAL, "GATEWAY_DEPLOYMENT_MODELS": bad})


@pytest.mark.parametrize("flag", ["true", "True"])
def test_easy_auth_outside_azure_is_refused_at_start(flag):
    # Nothing outside App Service strips a caller's X-MS-CLIENT-PRINCIPAL: a spoofed admin could issue keys.
    with pytest.raises(SettingsError, match="WEBSITE_AUTH_ENABLED=true is refused"):
        settings_from_env({**LOCAL, "WEBSITE_AUTH_ENABLED": flag})


def test_easy_auth_in_azure_is_trusted():
    env = {
        **AZURE,
        "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
        "GATEWAY_STORAGE_TABLE_ENDPOINT": "https://st.table.core.windows.net",
        "WEBSITE_AUTH_ENABLED": "True",
    }
    assert settings_from_env(env).auth.easy_auth


def test_easy_auth_may_be_emulated_in_local_dev_mode_which_trusts_every_caller_anyway():
    settings = settings_from_env({**LOCAL, "WEBSITE_AUTH_ENABLED": "true", "GATEWAY_LOCAL_DEV_AUTH": "true"})
    assert settings.auth.easy_auth and settings.auth.local_dev
