"""Gateway settings: read from the environment once, validated, immutable, in one small section per concern.

Every setting is documented in README.md ("Configuration") and ``local.settings.json.example``.
"""

from shared.settings.env import SettingsError, settings_from_env
from shared.settings.sections import (
    AccountingSettings,
    AuthSettings,
    GuardrailSettings,
    LedgerSettings,
    QuotaSettings,
    Settings,
    StorageSettings,
    UpstreamSettings,
)

__all__ = [
    "AccountingSettings",
    "AuthSettings",
    "GuardrailSettings",
    "QuotaSettings",
    "LedgerSettings",
    "Settings",
    "SettingsError",
    "StorageSettings",
    "UpstreamSettings",
    "settings_from_env",
]
