"""Where this process runs, and where credentials may travel from it.

Is this process running in Azure App Service / Azure Functions?

One answer for everything that must never happen in Azure: the local dev auth mode and the simulator.
It errs towards "yes": a false "yes" costs a developer a clear error naming the variable; a false "no" would
let an unauthenticated mode run in production.

Markers, each set by the platform in Azure and not by Core Tools (``func start``) on a developer machine:

* ``WEBSITE_INSTANCE_ID``: App Service, Functions Windows/Elastic Premium/Dedicated; the Functions host's own
  ``IsAppService()`` test (Azure/azure-functions-host, ``EnvironmentExtensions.cs``).
* ``WEBSITE_OWNER_NAME``, ``WEBSITE_RESOURCE_GROUP``: read-only platform values (subscription / resource group;
  learn.microsoft.com/azure/app-service/reference-app-settings).
* ``LEGION_SERVICE_HOST``: Flex Consumption, which has no ``WEBSITE_INSTANCE_ID`` (host's
  ``IsFlexConsumptionSku()``/``IsLinuxConsumptionOnLegion()``).
* ``CONTAINER_NAME`` *together with* ``WEBSITE_SITE_NAME``: Linux Consumption, also without
  ``WEBSITE_INSTANCE_ID`` (host's ``IsLinuxConsumptionOnAtlas()``). ``CONTAINER_NAME`` alone is not used:
  ordinary containers and CI sandboxes set it too.
* ``IDENTITY_ENDPOINT`` / ``MSI_ENDPOINT``: the managed identity endpoint Azure injects. The gateway reaches
  Azure OpenAI and Table Storage with managed identity, so every real deployment has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlparse

_AZURE_ONLY = (
    "WEBSITE_INSTANCE_ID",
    "WEBSITE_OWNER_NAME",
    "WEBSITE_RESOURCE_GROUP",
    "LEGION_SERVICE_HOST",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
)
_AZURE_TOGETHER = ("CONTAINER_NAME", "WEBSITE_SITE_NAME")


class LocalDevRefused(RuntimeError):
    """Local dev auth was requested in a process that runs in Azure."""


def azure_markers(env: Mapping[str, str]) -> list[str]:
    """The Azure-only variables present in ``env`` (names only; values are never reported)."""
    found = [name for name in _AZURE_ONLY if env.get(name, "").strip()]
    if all(env.get(name, "").strip() for name in _AZURE_TOGETHER):
        found.append("+".join(_AZURE_TOGETHER))
    return found


def running_in_azure(env: Mapping[str, str]) -> bool:
    return bool(azure_markers(env))


def assert_local_dev_allowed(env: Mapping[str, str]) -> None:
    """Raise :class:`LocalDevRefused` if local dev auth would run in Azure; the message names the evidence."""
    markers = azure_markers(env)
    if markers:
        raise LocalDevRefused(
            "Local dev authentication (GATEWAY_LOCAL_DEV_AUTH=true) is refused: this process runs in Azure App "
            f"Service/Functions (found {', '.join(markers)}), where every caller must be authenticated."
        )


def easy_auth_enabled(env: Mapping[str, str]) -> bool:
    """App Service Authentication runs in front of the app: ``WEBSITE_AUTH_ENABLED`` is injected by App Service
    (value ``True``); compare case-insensitively."""
    return env.get("WEBSITE_AUTH_ENABLED", "").strip().lower() == "true"


# --- where credentials may travel: https, or plain http to this machine (local emulators only) ----------------

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback_http(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme == "http" and parsed.hostname in LOOPBACK_HOSTS


def https_or_loopback(url: str) -> bool:
    parsed = urlparse(url)
    return (parsed.scheme == "https" and bool(parsed.hostname)) or is_loopback_http(url)
