"""Reading the settings from the environment (app settings in Azure, ``local.settings.json`` locally).

A bad value stops the app at start-up with a :class:`SettingsError` that names the setting, instead of failing on
the first request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlparse

from shared.accounting.prices import Price, PriceError, parse_prices
from shared.hosting import easy_auth_enabled, https_or_loopback, is_loopback_http, running_in_azure
from shared.protocol.api_versions import DEFAULT_API_VERSION, DEFAULT_STREAM_USAGE_MIN_API_VERSION, is_api_version
from shared.protocol.deployments import is_deployment_name
from shared.quotas.limits import Limit, LimitError, Limits, parse_limit_value
from shared.settings.backends import BackendsError, parse_backends
from shared.settings.sections import (
    AccountingSettings,
    AuthSettings,
    BackendSettings,
    BudgetAlertSettings,
    GuardrailSettings,
    LedgerSettings,
    QuotaSettings,
    Settings,
    StorageSettings,
    TelemetrySettings,
    UpstreamSettings,
)
from shared.settings.strict_json import strict_loads

N = TypeVar("N", int, float)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it and says what is expected."""


def settings_from_env(env: Mapping[str, str]) -> Settings:
    in_azure = running_in_azure(env)
    settings = Settings(
        upstream=_upstream(env, in_azure),
        guardrails=GuardrailSettings(
            allowed_deployments=_deployments(env, "GATEWAY_ALLOWED_DEPLOYMENTS"),
            max_request_bytes=_positive_int(env, "GATEWAY_MAX_REQUEST_BYTES", 4 * 1024 * 1024),
            max_file_bytes=_positive_int(env, "GATEWAY_MAX_FILE_BYTES", 512 * 1000 * 1000),
            max_prompt_tokens=_positive_int(env, "GATEWAY_MAX_PROMPT_TOKENS", 128_000),
            max_output_tokens=_positive_int(env, "GATEWAY_MAX_OUTPUT_TOKENS", 16_384),
            deployment_models=_deployment_models(env, "GATEWAY_DEPLOYMENT_MODELS"),
        ),
        storage=_storage(env, in_azure),
        auth=AuthSettings(
            tenant_ids=_list(env, "GATEWAY_AUTH_TENANT_IDS"),
            client_id=_str(env, "GATEWAY_AUTH_CLIENT_ID"),
            authority=_authority(env, "GATEWAY_AUTH_AUTHORITY"),
            easy_auth=easy_auth_enabled(env),
            api_keys_enabled=_bool(env, "GATEWAY_API_KEYS_ENABLED", True),
            api_key_cache_seconds=_non_negative_float(env, "GATEWAY_API_KEY_CACHE_SECONDS", 30.0),
            local_dev=_bool(env, "GATEWAY_LOCAL_DEV_AUTH", False),
        ),
        accounting=AccountingSettings(
            prices=_prices(env, "GATEWAY_PRICES"),
            openai_resource_id=_matching(env, "GATEWAY_OPENAI_RESOURCE_ID", _RESOURCE_ID, _RESOURCE_ID_EXAMPLE),
            openai_region=_matching(env, "GATEWAY_OPENAI_REGION", _REGION, "a region name such as swedencentral"),
            budget_alerts=_budget_alerts(env),
        ),
        quotas=QuotaSettings(
            defaults=_default_limits(env),
            output_allowance=_optional_positive_int(env, "GATEWAY_QUOTA_OUTPUT_ALLOWANCE"),
            fail_open=_bool(env, "GATEWAY_QUOTA_FAIL_OPEN", False),
        ),
        telemetry=_telemetry(env, in_azure),
        in_azure=in_azure,
        ledger=_ledger(env, in_azure),
    )
    if settings.auth.local_dev and in_azure:
        raise SettingsError(
            "GATEWAY_LOCAL_DEV_AUTH=true is refused: this process runs in Azure App Service/Functions, "
            "where every caller must be authenticated."
        )
    if settings.auth.easy_auth and not in_azure and not settings.auth.local_dev:
        # Outside App Service nothing strips a client's X-MS-CLIENT-PRINCIPAL: trusting it would let anyone claim
        # to be an admin. Local dev mode trusts every caller anyway, so there it may emulate Easy Auth.
        raise SettingsError(
            "WEBSITE_AUTH_ENABLED=true is refused: this process does not run in Azure App Service/Functions (none "
            "of its platform variables is set), so X-MS-CLIENT-PRINCIPAL headers would come from callers, not from "
            "App Service Authentication. Unset WEBSITE_AUTH_ENABLED, or set GATEWAY_LOCAL_DEV_AUTH=true to "
            "emulate Easy Auth on a developer machine."
        )
    if bool(settings.auth.tenant_ids) != bool(settings.auth.client_id):
        raise SettingsError(
            "GATEWAY_AUTH_TENANT_IDS and GATEWAY_AUTH_CLIENT_ID go together: set both to validate Entra tokens "
            "in-process, or neither."
        )
    return settings


def _upstream(env: Mapping[str, str], in_azure: bool) -> UpstreamSettings:
    endpoint = _url(env, "AZURE_OPENAI_ENDPOINT")
    pools = _backends(env, "GATEWAY_BACKENDS", in_azure)
    if endpoint is None and in_azure and "*" not in pools:
        raise SettingsError(
            "AZURE_OPENAI_ENDPOINT is not set. In Azure the gateway needs the private Azure OpenAI endpoint "
            '(https://<custom-subdomain>.openai.azure.com), or a "*" pool in GATEWAY_BACKENDS; the local '
            "simulator only runs on a developer machine."
        )
    if endpoint is not None and urlparse(endpoint).scheme == "http":
        # Entra tokens must never travel over plain HTTP: http:// is only for a local simulator on loopback.
        if in_azure or not is_loopback_http(endpoint):
            raise SettingsError(
                "AZURE_OPENAI_ENDPOINT must use https; http:// is accepted only for a local simulator on "
                "127.0.0.1/localhost outside Azure."
            )
    return UpstreamSettings(
        endpoint=endpoint,
        api_version=_api_version(env, "AZURE_OPENAI_API_VERSION", DEFAULT_API_VERSION),
        timeout_seconds=_positive_float(env, "GATEWAY_UPSTREAM_TIMEOUT_SECONDS", 120.0),
        connect_timeout_seconds=_positive_float(env, "GATEWAY_UPSTREAM_CONNECT_TIMEOUT_SECONDS", 10.0),
        stream_usage_min_api_version=_api_version(
            env, "GATEWAY_STREAM_USAGE_MIN_API_VERSION", DEFAULT_STREAM_USAGE_MIN_API_VERSION
        ),
        pools=pools,
        max_attempts=_number(
            env, "GATEWAY_BACKEND_MAX_ATTEMPTS", 3, int, lambda n: 1 <= n <= 10, "a whole number from 1 to 10"
        ),
        failover_seconds=_non_negative_float(env, "GATEWAY_BACKEND_FAILOVER_SECONDS", 30.0),
        cooldown_seconds=_positive_float(env, "GATEWAY_BACKEND_COOLDOWN_SECONDS", 5.0),
        breaker_failures=_positive_int(env, "GATEWAY_BACKEND_BREAKER_FAILURES", 5),
        breaker_open_seconds=_positive_float(env, "GATEWAY_BACKEND_BREAKER_SECONDS", 30.0),
        max_connections=_number(
            env, "GATEWAY_UPSTREAM_MAX_CONNECTIONS", 0, int, lambda n: n >= 0, "a whole number, 0 (no limit) or more"
        ),
        max_inflight_calls=_positive_int(env, "GATEWAY_MAX_INFLIGHT_CALLS", 500),
    )


TELEMETRY_EXPORTERS = ("off", "azure_monitor", "console", "otlp")


def _telemetry(env: Mapping[str, str], in_azure: bool) -> TelemetrySettings:
    """Azure Monitor by default in Azure when Application Insights is connected; nothing by default elsewhere."""
    connected = _str(env, "APPLICATIONINSIGHTS_CONNECTION_STRING") is not None
    exporter = (_str(env, "GATEWAY_TELEMETRY") or ("azure_monitor" if in_azure and connected else "off")).lower()
    if exporter not in TELEMETRY_EXPORTERS:
        raise SettingsError(f"GATEWAY_TELEMETRY must be one of {', '.join(TELEMETRY_EXPORTERS)} (got {exporter!r}).")
    worker_configured = _bool(env, "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", False)
    if exporter == "azure_monitor" and not (connected or worker_configured):
        raise SettingsError(
            "GATEWAY_TELEMETRY=azure_monitor needs APPLICATIONINSIGHTS_CONNECTION_STRING (or the Functions worker's "
            "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true)."
        )
    return TelemetrySettings(
        exporter=exporter,
        trace_sample_ratio=_number(
            env, "GATEWAY_TELEMETRY_TRACE_SAMPLE_RATIO", 1.0, float, lambda n: 0 <= n <= 1, "a number from 0 to 1"
        ),
        max_callers=_positive_int(env, "GATEWAY_TELEMETRY_MAX_CALLERS", 1000),
        max_deployments=_positive_int(env, "GATEWAY_TELEMETRY_MAX_DEPLOYMENTS", 100),
    )


def _storage(env: Mapping[str, str], in_azure: bool) -> StorageSettings:
    connection_string = _str(env, "GATEWAY_STORAGE_CONNECTION_STRING")
    table_endpoint = _url(env, "GATEWAY_STORAGE_TABLE_ENDPOINT")
    if table_endpoint is not None and urlparse(table_endpoint).scheme != "https":
        raise SettingsError(
            "GATEWAY_STORAGE_TABLE_ENDPOINT must use https (managed identity tokens are never "
            "sent over plain HTTP); for Azurite use GATEWAY_STORAGE_CONNECTION_STRING."
        )
    if connection_string is None and table_endpoint is None and not in_azure:
        # Local default, the same account the Functions host uses (Azurite with UseDevelopmentStorage=true).
        # Never in Azure: there the gateway's tables are reached with its managed identity, not the host's key.
        webjobs = _str(env, "AzureWebJobsStorage")
        if webjobs and ("AccountName=" in webjobs or "UseDevelopmentStorage=true" in webjobs):
            connection_string = webjobs
    if connection_string is None and table_endpoint is None:
        raise SettingsError(
            "No Table Storage configured: set GATEWAY_STORAGE_TABLE_ENDPOINT (managed identity, in Azure) or "
            "GATEWAY_STORAGE_CONNECTION_STRING (or AzureWebJobsStorage=UseDevelopmentStorage=true locally)."
        )
    return StorageSettings(
        connection_string=connection_string,
        table_endpoint=table_endpoint,
        max_connections=_positive_int(env, "GATEWAY_STORAGE_MAX_CONNECTIONS", 100),
    )


def _ledger(env: Mapping[str, str], in_azure: bool) -> LedgerSettings:
    """The journal lives where every instance can read it: ``$HOME/data`` is the app's Azure Files share in Azure."""
    journal_dir = _str(env, "GATEWAY_LEDGER_JOURNAL_DIR")
    if journal_dir is None:
        home = _str(env, "HOME") or "/home"
        journal_dir = f"{home}/data/gateway-ledger-journal" if in_azure else ".ledger-journal"
    elif journal_dir.lower() == "off":
        journal_dir = None
    return LedgerSettings(
        journal_dir=journal_dir,
        journal_fsync=_bool(env, "GATEWAY_LEDGER_JOURNAL_FSYNC", False),
        max_backlog_rows=_positive_int(env, "GATEWAY_LEDGER_MAX_BACKLOG_ROWS", 10_000),
        max_backlog_seconds=_positive_float(env, "GATEWAY_LEDGER_MAX_BACKLOG_SECONDS", 60.0),
    )


# --- parsing helpers: each names the setting in its error ------------------------------------------------


_RESOURCE_ID = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-\w.()]{1,90}"
    r"/providers/Microsoft\.CognitiveServices/accounts/[A-Za-z0-9][A-Za-z0-9-]{1,63}",
    re.IGNORECASE,
)
_RESOURCE_ID_EXAMPLE = (
    "an Azure OpenAI account resource id, /subscriptions/<id>/resourceGroups/<group>"
    "/providers/Microsoft.CognitiveServices/accounts/<name>"
)
_REGION = re.compile(r"[a-z][a-z0-9]{1,39}")


def _budget_alerts(env: Mapping[str, str]) -> BudgetAlertSettings:
    thresholds = BudgetAlertSettings().thresholds
    text = _str(env, "GATEWAY_BUDGET_ALERT_THRESHOLDS")
    if text is not None:
        parts = [p.strip() for p in text.split(",")]
        if not all(p.isascii() and p.isdigit() and 0 < int(p) <= 1000 for p in parts):
            raise SettingsError(
                "GATEWAY_BUDGET_ALERT_THRESHOLDS must be comma-separated whole percentages (1-1000), e.g. 80,100."
            )
        thresholds = tuple(sorted({int(p) for p in parts}))
    url = _str(env, "GATEWAY_BUDGET_ALERT_WEBHOOK_URL")
    if url is not None:
        parts_ = urlparse(url)
        if parts_.scheme != "https" or not parts_.hostname or parts_.username or parts_.password or parts_.fragment:
            raise SettingsError(
                "GATEWAY_BUDGET_ALERT_WEBHOOK_URL must be an https URL without credentials or fragment "
                "(the URL itself is not shown here)."
            )
    return BudgetAlertSettings(thresholds, url, _str(env, "GATEWAY_BUDGET_ALERT_WEBHOOK_SECRET"))


def _matching(env: Mapping[str, str], name: str, pattern: re.Pattern[str], what: str) -> str | None:
    value = _str(env, name)
    if value is not None and not pattern.fullmatch(value):
        raise SettingsError(f"{name} must be {what}.")
    return value


def _str(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _authority(env: Mapping[str, str], name: str) -> str:
    value = _url(env, name) or "https://login.microsoftonline.com"
    if not https_or_loopback(value):
        raise SettingsError(f"{name} must be an https URL (http only for a loopback test identity provider).")
    return value


def _url(env: Mapping[str, str], name: str) -> str | None:
    value = _str(env, name)
    if value is None:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SettingsError(f"{name} must be an http(s) URL such as https://example.openai.azure.com (got {value!r}).")
    return value.rstrip("/")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = _str(env, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false (got {value!r}).")


def _number(
    env: Mapping[str, str],
    name: str,
    default: N,
    parse: Callable[[str], N],
    valid: Callable[[N], bool],
    expected: str,
) -> N:
    value = _str(env, name)
    if value is None:
        return default
    try:
        number = parse(value)
    except ValueError:
        number = None
    if number is None or not valid(number):
        raise SettingsError(f"{name} must be {expected} (got {value!r}).")
    return number


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    return _number(env, name, default, int, lambda n: n > 0, "a positive whole number")


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    return _number(env, name, default, float, lambda n: 0 < n < math.inf, "a positive number of seconds")


def _non_negative_float(env: Mapping[str, str], name: str, default: float) -> float:
    return _number(env, name, default, float, lambda n: 0 <= n < math.inf, "a number of seconds, 0 or more")


def _prices(env: Mapping[str, str], name: str) -> dict[str, Price]:
    try:
        return parse_prices(_str(env, name))
    except PriceError as exc:
        raise SettingsError(f"{name} {exc}.") from None


def _backends(env: Mapping[str, str], name: str, in_azure: bool) -> dict[str, tuple[BackendSettings, ...]]:
    try:
        return parse_backends(name, _str(env, name), in_azure=in_azure)
    except BackendsError as exc:
        raise SettingsError(str(exc)) from None


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    value = _str(env, name)
    if value is None:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _api_version(env: Mapping[str, str], name: str, default: str) -> str:
    value = _str(env, name) or default
    if not is_api_version(value):
        raise SettingsError(f"{name} must look like 2024-10-21 or 2025-04-01-preview (got {value!r}).")
    return value


def _deployments(env: Mapping[str, str], name: str) -> frozenset[str] | None:
    items = _list(env, name)
    if not items or items == ("*",):
        return None
    for item in items:
        if not is_deployment_name(item):
            raise SettingsError(f"{name} has an invalid deployment name {item!r}.")
    return frozenset(items)


DEFAULT_LIMIT_SETTINGS = {
    Limit.REQUESTS_PER_MINUTE: "GATEWAY_DEFAULT_REQUESTS_PER_MINUTE",
    Limit.TOKENS_PER_MINUTE: "GATEWAY_DEFAULT_TOKENS_PER_MINUTE",
    Limit.TOKENS_PER_DAY: "GATEWAY_DEFAULT_TOKENS_PER_DAY",
    Limit.TOKENS_PER_MONTH: "GATEWAY_DEFAULT_TOKENS_PER_MONTH",
    Limit.COST_USD_PER_MONTH: "GATEWAY_DEFAULT_COST_USD_PER_MONTH",
}


def _default_limits(env: Mapping[str, str]) -> Limits:
    """``GATEWAY_DEFAULT_REQUESTS_PER_MINUTE`` ... ``GATEWAY_DEFAULT_COST_USD_PER_MONTH``; empty means unlimited."""
    values = {}
    for limit, name in DEFAULT_LIMIT_SETTINGS.items():
        text = _str(env, name)
        if text is None:
            continue
        try:
            number: object = text if limit is Limit.COST_USD_PER_MONTH else int(text)
        except ValueError:
            number = text
        try:
            values[limit] = parse_limit_value(limit, number, name)
        except LimitError as exc:
            raise SettingsError(
                f"{name} must be a whole number, 0 or more (cost: US dollars), or empty for unlimited (got {text!r})."
            ) from exc
    return Limits(values)


def _optional_positive_int(env: Mapping[str, str], name: str) -> int | None:
    if _str(env, name) is None:
        return None
    return _positive_int(env, name, 1)


def _deployment_models(env: Mapping[str, str], name: str) -> dict[str, str]:
    """``{"<deployment>": "<model>"}``: which model (so which tokenizer) each deployment runs."""
    text = _str(env, name)
    if text is None:
        return {}
    try:
        raw = strict_loads(text)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a JSON object of deployment -> model names ({exc}).") from None
    if not isinstance(raw, dict) or not all(
        is_deployment_name(deployment) and isinstance(model, str) and 0 < len(model.strip()) <= 100
        for deployment, model in raw.items()
    ):
        raise SettingsError(f'{name} must look like {{"prod-chat": "gpt-4.1", "embed": "text-embedding-3-small"}}.')
    return {deployment: model.strip() for deployment, model in raw.items()}
