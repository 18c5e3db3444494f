"""``GATEWAY_BACKENDS``: backend pools per deployment, parsed strictly.

The value is a JSON object from the deployment name callers use (or ``"*"`` for every other one) to a list of
backends::

    {"gpt-4o-mini": [{"label": "swc-ptu", "endpoint": "https://swc.openai.azure.com", "priority": 1, "weight": 3},
                     {"label": "frc-paygo", "endpoint": "https://frc.openai.azure.com",
                      "deployment": "gpt-4o-mini-paygo", "priority": 2}]}

A typo must not become a silently different pool, so the parser refuses what ``json.loads`` would let through:
duplicate keys (the last one would win), ``NaN``/``Infinity``, booleans where numbers belong, unknown fields.
Every error names the setting and the place (``GATEWAY_BACKENDS["gpt-4o-mini"][1].weight``).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlparse

from shared.hosting import is_loopback_http
from shared.protocol.deployments import is_deployment_name
from shared.settings.sections import ANY_DEPLOYMENT, BackendSettings
from shared.settings.strict_json import strict_loads

# Labels go into a response header, the ledger and logs: short, plain, never a URL.
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_FIELDS = frozenset({"label", "endpoint", "deployment", "priority", "weight"})
MAX_BACKENDS_PER_POOL = 16
MAX_PRIORITY = 100
MAX_WEIGHT = 1000


class BackendsError(ValueError):
    """``GATEWAY_BACKENDS`` is malformed; the message names the setting and the offending place."""


def parse_backends(name: str, text: str | None, *, in_azure: bool) -> dict[str, tuple[BackendSettings, ...]]:
    if text is None:
        return {}
    try:
        value = strict_loads(text)
    except ValueError as exc:
        raise BackendsError(f"{name} is not valid JSON: {exc}.") from None
    if not isinstance(value, dict) or not value:
        raise BackendsError(
            f'{name} must be a JSON object of pools by deployment, e.g. {{"gpt-4o-mini": [{{"label": "swc", '
            f'"endpoint": "https://swc.openai.azure.com"}}]}}.'
        )
    pools: dict[str, tuple[BackendSettings, ...]] = {}
    for deployment, members in value.items():
        where = f"{name}[{json.dumps(deployment)}]"
        if deployment != ANY_DEPLOYMENT and not is_deployment_name(deployment):
            raise BackendsError(f'{where}: the key must be a deployment name or "*".')
        if not isinstance(members, list) or not members:
            raise BackendsError(f"{where} must be a non-empty list of backends.")
        if len(members) > MAX_BACKENDS_PER_POOL:
            raise BackendsError(f"{where} has {len(members)} backends; at most {MAX_BACKENDS_PER_POOL} are allowed.")
        backends = tuple(_backend(f"{where}[{index}]", member, in_azure) for index, member in enumerate(members))
        labels = [backend.label for backend in backends]
        duplicated = sorted({label for label in labels if labels.count(label) > 1})
        if duplicated:
            raise BackendsError(f"{where} uses the label {duplicated[0]!r} twice; labels name one backend each.")
        pools[deployment] = backends
    _one_account_per_label(name, pools)
    return pools


def _one_account_per_label(name: str, pools: dict[str, tuple[BackendSettings, ...]]) -> None:
    """A label names one Azure OpenAI account wherever it appears: stored objects (responses, files, batches) are
    pinned to the label of the account that holds them, so one label on two endpoints would send a follow-up to an
    account that never saw the object."""
    endpoints: dict[str, str] = {}
    for members in pools.values():
        for backend in members:
            known = endpoints.setdefault(backend.label, backend.endpoint.rstrip("/").lower())
            if known != backend.endpoint.rstrip("/").lower():
                raise BackendsError(
                    f"{name} uses the label {backend.label!r} for two endpoints; a label names one account "
                    "(stored responses, files and batches are pinned to it)."
                )


def _backend(where: str, member: Any, in_azure: bool) -> BackendSettings:
    if not isinstance(member, dict):
        raise BackendsError(
            f"{where} must be an object with label, endpoint and optionally deployment, priority, weight."
        )
    unknown = sorted(set(member) - _FIELDS)
    if unknown:
        raise BackendsError(f"{where} has an unknown field {unknown[0]!r} (allowed: {', '.join(sorted(_FIELDS))}).")
    label = member.get("label")
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise BackendsError(
            f"{where}.label must be 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(it is shown to callers: never a URL or a secret)."
        )
    deployment = member.get("deployment")
    if deployment is not None and not is_deployment_name(deployment):
        raise BackendsError(f"{where}.deployment must be an Azure OpenAI deployment name.")
    return BackendSettings(
        label=label,
        endpoint=_endpoint(f"{where}.endpoint", member.get("endpoint"), in_azure),
        deployment=deployment,
        priority=_whole(f"{where}.priority", member.get("priority", 1), MAX_PRIORITY),
        weight=_whole(f"{where}.weight", member.get("weight", 1), MAX_WEIGHT),
    )


def _endpoint(where: str, value: Any, in_azure: bool) -> str:
    """The same rule as ``AZURE_OPENAI_ENDPOINT``: https, or plain http only to loopback outside Azure."""
    if not isinstance(value, str) or not value.isascii() or not value.isprintable():
        raise BackendsError(f"{where} must be a URL such as https://my-aoai.openai.azure.com.")
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BackendsError(f"{where} must be an http(s) URL such as https://my-aoai.openai.azure.com.")
    if parsed.username or parsed.password or parsed.query or parsed.fragment:
        raise BackendsError(f"{where} must be a plain endpoint URL, without credentials, query or fragment.")
    if parsed.scheme == "http" and (in_azure or not is_loopback_http(value)):
        # Entra tokens never travel over plain HTTP: http:// is only for a local simulator on loopback.
        raise BackendsError(
            f"{where} must use https; http:// is accepted only for a local simulator on 127.0.0.1/localhost "
            "outside Azure."
        )
    return value.rstrip("/")


def _whole(where: str, value: Any, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise BackendsError(f"{where} must be a whole number from 1 to {maximum} (got {json.dumps(value)}).")
    return value
