"""Is this process running in Azure App Service / Azure Functions?

One answer for everything that must never happen in Azure: the local dev auth mode and the simulator.
``WEBSITE_INSTANCE_ID`` is set on every App Service / Functions instance in Azure and not by Core Tools;
``WEBSITE_OWNER_NAME`` (subscription+resource group) and ``WEBSITE_RESOURCE_GROUP`` likewise. Generic
container variables such as ``CONTAINER_NAME`` are deliberately not used: ordinary containers and CI
sandboxes set them too.
"""

from __future__ import annotations

from collections.abc import Mapping

_AZURE_ONLY = ("WEBSITE_INSTANCE_ID", "WEBSITE_OWNER_NAME", "WEBSITE_RESOURCE_GROUP")


def running_in_azure(env: Mapping[str, str]) -> bool:
    return any(env.get(name, "").strip() for name in _AZURE_ONLY)
