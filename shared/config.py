"""Gateway settings: read from the environment once, validated, immutable.

Every setting is documented in README.md ("Configuration") and ``local.settings.json.example``.
A bad value stops the app at start-up with a :class:`SettingsError` that names the setting, instead
of failing on the first request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from shared.auth.environment import running_in_azure
from shared.pricing import Price, PriceError, parse_prices
from shared.urls import https_or_loopback, is_loopback_http

DEFAULT_API_VERSION = "2024-10-21"
# stream_options.include_usage arrived in 2024-09-01-preview (and is part of the v1 API).
DEFAULT_STREAM_USAGE_MIN_API_VERSION = "2024-09-01-preview"
API_VERSION_PATTERN = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(-preview)?$")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it and says what is expected."""


@dataclass(frozen=True)
class Settings:
    # Upstream Azure OpenAI. None means: use the embedded local simulator (never allowed in Azure).
    azure_openai_endpoint: str | None
    azure_openai_api_version: str = DEFAULT_API_VERSION
    upstream_timeout_seconds: float = 120.0
    upstream_connect_timeout_seconds: float = 10.0
    stream_usage_min_api_version: str = DEFAULT_STREAM_USAGE_MIN_API_VERSION

    # Guardrails.
    allowed_deployments: frozenset[str] | None = None  # None: any well-formed deployment name
    max_request_bytes: int = 4 * 1024 * 1024
    max_prompt_tokens: int = 128_000
    max_output_tokens: int = 16_384

    # Table Storage: a connection string (local, Azurite) or a table endpoint used with managed identity.
    storage_connection_string: str | None = None
    storage_table_endpoint: str | None = None

    # Caller authentication.
    auth_tenant_ids: tuple[str, ...] = ()
    auth_client_id: str | None = None
    auth_authority: str = "https://login.microsoftonline.com"
    api_keys_enabled: bool = True
    api_key_cache_seconds: float = 30.0
    local_dev_auth: bool = False

    # USD per million tokens by deployment, for the usage ledger's cost column.
    prices: Mapping[str, Price] = field(default_factory=dict)

    in_azure: bool = field(default=False)

    @property
    def uses_simulator(self) -> bool:
        """No endpoint: the gateway starts its embedded simulator."""
        return self.azure_openai_endpoint is None

    @property
    def upstream_is_local(self) -> bool:
        """A plain-HTTP loopback upstream (a separately run simulator): gets a placeholder token, never a real one."""
        return self.azure_openai_endpoint is not None and urlparse(self.azure_openai_endpoint).scheme == "http"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        in_azure = running_in_azure(env)
        endpoint = _url(env, "AZURE_OPENAI_ENDPOINT")
        if endpoint is None and in_azure:
            raise SettingsError(
                "AZURE_OPENAI_ENDPOINT is not set. In Azure the gateway needs the private Azure OpenAI endpoint "
                "(https://<custom-subdomain>.openai.azure.com); the local simulator only runs on a developer machine."
            )
        if endpoint is not None and urlparse(endpoint).scheme == "http":
            # Entra tokens must never travel over plain HTTP: http:// is only for a local simulator on loopback.
            if in_azure or not is_loopback_http(endpoint):
                raise SettingsError(
                    "AZURE_OPENAI_ENDPOINT must use https; http:// is accepted only for a local simulator on "
                    "127.0.0.1/localhost outside Azure."
                )
        connection_string = _str(env, "GATEWAY_STORAGE_CONNECTION_STRING")
        table_endpoint = _url(env, "GATEWAY_STORAGE_TABLE_ENDPOINT")
        if table_endpoint is not None and urlparse(table_endpoint).scheme != "https":
            raise SettingsError("GATEWAY_STORAGE_TABLE_ENDPOINT must use https (managed identity tokens are never "
                                "sent over plain HTTP); for Azurite use GATEWAY_STORAGE_CONNECTION_STRING.")
        if connection_string is None and table_endpoint is None and not in_azure:
            # Local default, the same account the Functions host uses (Azurite with UseDevelopmentStorage=true).
            # Never in Azure: there the gateway's tables are reached with its managed identity, not the host's key.
            webjobs = _str(env, "AzureWebJobsStorage")
            if webjobs and ("AccountName=" in webjobs or "UseDevelopmentStorage=true" in webjobs):
                connection_string = webjobs
        settings = cls(
            azure_openai_endpoint=endpoint,
            azure_openai_api_version=_api_version(env, "AZURE_OPENAI_API_VERSION", DEFAULT_API_VERSION),
            upstream_timeout_seconds=_positive_float(env, "GATEWAY_UPSTREAM_TIMEOUT_SECONDS", 120.0),
            upstream_connect_timeout_seconds=_positive_float(env, "GATEWAY_UPSTREAM_CONNECT_TIMEOUT_SECONDS", 10.0),
            stream_usage_min_api_version=_api_version(
                env, "GATEWAY_STREAM_USAGE_MIN_API_VERSION", DEFAULT_STREAM_USAGE_MIN_API_VERSION
            ),
            allowed_deployments=_deployments(env, "GATEWAY_ALLOWED_DEPLOYMENTS"),
            max_request_bytes=_positive_int(env, "GATEWAY_MAX_REQUEST_BYTES", 4 * 1024 * 1024),
            max_prompt_tokens=_positive_int(env, "GATEWAY_MAX_PROMPT_TOKENS", 128_000),
            max_output_tokens=_positive_int(env, "GATEWAY_MAX_OUTPUT_TOKENS", 16_384),
            storage_connection_string=connection_string,
            storage_table_endpoint=table_endpoint,
            auth_tenant_ids=_list(env, "GATEWAY_AUTH_TENANT_IDS"),
            auth_client_id=_str(env, "GATEWAY_AUTH_CLIENT_ID"),
            auth_authority=_authority(env, "GATEWAY_AUTH_AUTHORITY"),
            api_keys_enabled=_bool(env, "GATEWAY_API_KEYS_ENABLED", True),
            api_key_cache_seconds=_non_negative_float(env, "GATEWAY_API_KEY_CACHE_SECONDS", 30.0),
            local_dev_auth=_bool(env, "GATEWAY_LOCAL_DEV_AUTH", False),
            prices=_prices(env, "GATEWAY_PRICES"),
            in_azure=in_azure,
        )
        if settings.storage_connection_string is None and settings.storage_table_endpoint is None:
            raise SettingsError(
                "No Table Storage configured: set GATEWAY_STORAGE_TABLE_ENDPOINT (managed identity, in Azure) or "
                "GATEWAY_STORAGE_CONNECTION_STRING (or AzureWebJobsStorage=UseDevelopmentStorage=true locally)."
            )
        if settings.local_dev_auth and in_azure:
            raise SettingsError(
                "GATEWAY_LOCAL_DEV_AUTH=true is refused: this process runs in Azure App Service/Functions, "
                "where every caller must be authenticated."
            )
        if bool(settings.auth_tenant_ids) != bool(settings.auth_client_id):
            raise SettingsError(
                "GATEWAY_AUTH_TENANT_IDS and GATEWAY_AUTH_CLIENT_ID go together: set both to validate Entra tokens "
                "in-process, or neither."
            )
        return settings


# --- parsing helpers: each names the setting in its error ------------------------------------------------


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


def _number(env: Mapping[str, str], name: str, default: float, parse: Callable[[str], float],
            valid: Callable[[float], bool], expected: str) -> Any:
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


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    value = _str(env, name)
    if value is None:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _api_version(env: Mapping[str, str], name: str, default: str) -> str:
    value = _str(env, name) or default
    if not API_VERSION_PATTERN.match(value):
        raise SettingsError(f"{name} must look like 2024-10-21 or 2025-04-01-preview (got {value!r}).")
    return value


def _deployments(env: Mapping[str, str], name: str) -> frozenset[str] | None:
    from shared.guard import DEPLOYMENT_NAME  # one definition of a valid deployment name

    items = _list(env, name)
    if not items or items == ("*",):
        return None
    for item in items:
        if not DEPLOYMENT_NAME.fullmatch(item):
            raise SettingsError(f"{name} has an invalid deployment name {item!r}.")
    return frozenset(items)
