"""Gateway settings: read from the environment once, validated, immutable, in one small section per concern.

Every setting is documented in README.md ("Configuration") and ``local.settings.json.example``.
"""

from shared.settings.env import SettingsError, settings_from_env
from shared.settings.sections import (
    AccountingSettings,
    AuthSettings,
    BackendSettings,
    GuardrailSettings,
    LedgerSettings,
    QuotaSettings,
    Settings,
    StorageSettings,
    TelemetrySettings,
    UpstreamSettings,
)

__all__ = [
    "AccountingSettings",
    "AuthSettings",
    "BackendSettings",
    "GuardrailSettings",
    "LedgerSettings",
    "QuotaSettings",
    "Settings",
    "SettingsError",
    "StorageSettings",
    "TelemetrySettings",
    "UpstreamSettings",
    "settings_from_env",
]
