"""Per-caller policies set by an admin, kept in Table Storage and cached briefly per instance."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.errors import bad_request
from shared.protocol.deployments import is_deployment_name
from shared.quotas.limits import LimitError, LimitOverrides
from shared.storage.tables import StorageLimitError, check_entity, table_key

log = logging.getLogger(__name__)

POLICY_PARTITION = "policy"
POLICY_CACHE_SECONDS = 5.0  # how soon every instance applies a changed policy (a lowered limit included)
POLICY_STALE_IF_ERROR_SECONDS = 300.0  # how long a policy read before stays in force while storage is unreachable


CHARGEBACK_FIELDS = ("cost_center", "owner", "department", "tags")
POLICY_FIELDS = ("allowed_deployments", "note", "limits", "deployment_limits", "media", *CHARGEBACK_FIELDS)
MAX_ATTRIBUTE_CHARS = 200
MAX_TAGS = 20
MAX_TAG_VALUE_CHARS = 256
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class CallerPolicy:
    """Per-caller rules set by an admin (a PUT replaces the whole policy).

    ``allowed_deployments=None`` means every gateway deployment. ``limits`` override the gateway's default limits
    (a limit absent there takes the default, ``null`` makes it unlimited); ``deployment_limits`` add limits for
    one deployment, on top of the caller-wide ones.
    """

    caller_id: str
    allowed_deployments: frozenset[str] | None = None
    note: str = ""
    limits: LimitOverrides = field(default_factory=LimitOverrides)
    deployment_limits: Mapping[str, LimitOverrides] = field(default_factory=dict)
    # Chargeback: who pays for this caller's usage (copied into the daily usage table and every export).
    cost_center: str = ""
    owner: str = ""
    department: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    # Images and audio (generations, edits, transcriptions, translations, speech): off unless an admin turns them on
    # for the caller (D89); the deployment allowlists apply as well.
    media: bool = False

    def chargeback(self) -> dict[str, Any]:
        return {
            "cost_center": self.cost_center,
            "owner": self.owner,
            "department": self.department,
            "tags": dict(sorted(self.tags.items())),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "caller_id": self.caller_id,
            "allowed_deployments": sorted(self.allowed_deployments) if self.allowed_deployments is not None else None,
            "note": self.note,
            "limits": self.limits.to_json(),
            "deployment_limits": {name: limits.to_json() for name, limits in sorted(self.deployment_limits.items())},
            "media": self.media,
            **self.chargeback(),
        }

    @classmethod
    def from_request(cls, caller_id: str, body: object) -> CallerPolicy:
        if not isinstance(body, dict):
            raise bad_request("The policy must be a JSON object.")
        for name in body:
            if name not in POLICY_FIELDS:
                raise bad_request(
                    f"'{name}' is not a policy field; a policy has {', '.join(POLICY_FIELDS)}.", param=str(name)
                )
        try:
            limits = LimitOverrides.parse(body.get("limits") or {}, "limits")
            deployment_limits = _deployment_limits(body.get("deployment_limits") or {})
        except LimitError as exc:
            raise bad_request(str(exc), code="invalid_limit", param=exc.field) from None
        allowed = body.get("allowed_deployments")
        if allowed is not None:
            if not isinstance(allowed, list) or not all(is_deployment_name(d) for d in allowed):
                raise bad_request(
                    "'allowed_deployments' must be null or an array of deployment names.", param="allowed_deployments"
                )
            allowed = frozenset(allowed)
        note = body.get("note", "")
        if not isinstance(note, str) or len(note) > 500:
            raise bad_request("'note' must be a string of at most 500 characters.", param="note")
        attributes = {name: _attribute(body.get(name, ""), name) for name in ("cost_center", "owner", "department")}
        media = body.get("media", False)
        if not isinstance(media, bool):
            raise bad_request("'media' must be true or false.", param="media")
        policy = cls(
            caller_id, allowed, note, limits, deployment_limits, **attributes, tags=_tags(body.get("tags")), media=media
        )
        try:
            check_entity(_entity(policy))  # what Table Storage would refuse is refused here, naming the field
        except StorageLimitError as exc:
            field_name = _PROPERTY_FIELDS.get(exc.prop or "")
            raise bad_request(
                f"The policy is too large to store: {f'{field_name!r} has ' if field_name else ''}{exc.message}",
                code="policy_too_large",
                param=field_name,
            ) from None
        return policy


# Stored property -> the policy field it holds (a storage limit names the field the admin sent).
_PROPERTY_FIELDS = {
    "AllowedDeployments": "allowed_deployments",
    "Note": "note",
    "Limits": "limits",
    "DeploymentLimits": "deployment_limits",
    "CostCenter": "cost_center",
    "Owner": "owner",
    "Department": "department",
    "Tags": "tags",
}


def _entity(policy: CallerPolicy) -> dict[str, Any]:
    entity = {
        "PartitionKey": POLICY_PARTITION,
        "RowKey": table_key(policy.caller_id),
        "CallerId": policy.caller_id,
        "Note": policy.note,
        "CostCenter": policy.cost_center,
        "Owner": policy.owner,
        "Department": policy.department,
        "Tags": json.dumps(dict(policy.tags), sort_keys=True),
        "Media": policy.media,
    }
    if policy.allowed_deployments is not None:
        entity["AllowedDeployments"] = json.dumps(sorted(policy.allowed_deployments))
    if not policy.limits.empty:
        entity["Limits"] = json.dumps(policy.limits.to_json(decimal_as_text=True))
    if policy.deployment_limits:
        entity["DeploymentLimits"] = json.dumps(
            {name: limits.to_json(decimal_as_text=True) for name, limits in policy.deployment_limits.items()}
        )
    return entity


def _attribute(value: object, name: str) -> str:
    """A chargeback attribute: a single line of printable text (it ends up in spreadsheets)."""
    if not isinstance(value, str) or len(value) > MAX_ATTRIBUTE_CHARS or not _printable(value):
        raise bad_request(
            f"'{name}' must be a string of at most {MAX_ATTRIBUTE_CHARS} printable characters.", param=name
        )
    return value.strip()


def _tags(value: object) -> dict[str, str]:
    if value is None:
        return {}
    message = (
        f"'tags' must be an object of at most {MAX_TAGS} tags: names of letters, digits, '_', '.', '-' "
        f"(starting with a letter, at most 64), values of at most {MAX_TAG_VALUE_CHARS} printable characters."
    )
    if not isinstance(value, dict) or len(value) > MAX_TAGS:
        raise bad_request(message, param="tags")
    for name, tag in value.items():
        if not _TAG_NAME.fullmatch(name) or not isinstance(tag, str):
            raise bad_request(message, param="tags")
        if len(tag) > MAX_TAG_VALUE_CHARS or not _printable(tag):
            raise bad_request(message, param=f"tags.{name}")
    return {name: value[name] for name in sorted(value)}


def _printable(text: str) -> bool:
    return text.isprintable() and not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def _deployment_limits(raw: Any) -> dict[str, LimitOverrides]:
    if not isinstance(raw, dict):
        raise LimitError("deployment_limits", "'deployment_limits' must be an object: deployment name -> limits.")
    result = {}
    for name, limits in raw.items():
        if not is_deployment_name(name):
            raise LimitError(
                f"deployment_limits.{name}", f"'deployment_limits' has an invalid deployment name {name!r}."
            )
        result[name] = LimitOverrides.parse(limits, f"deployment_limits.{name}")
    return result


class CallerPolicyStore:
    """Policies by caller id, cached briefly per instance (changes reach every instance within the cache time)."""

    def __init__(self, table: TableClient, cache_seconds: float = POLICY_CACHE_SECONDS) -> None:
        self._table = table
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, CallerPolicy]] = {}

    async def get(self, caller_id: str) -> CallerPolicy:
        cached = self._cache.get(caller_id)
        if cached and time.monotonic() - cached[0] < self._cache_seconds:
            return cached[1]
        # The entry's age counts from when the read began: a read that raced a change may return the old policy,
        # and must not keep it past the cache time after the change (the bound on how soon a change applies).
        began = time.monotonic()
        try:
            entity = await self._table.get_entity(POLICY_PARTITION, table_key(caller_id))
        except ResourceNotFoundError:
            policy = CallerPolicy(caller_id)
        except AzureError as exc:
            # Storage unreachable: no newer policy can have been stored there either, so the one read last stays in
            # force for a while (calls go on through a storage outage); a policy never read is refused (503).
            if cached and time.monotonic() - cached[0] < POLICY_STALE_IF_ERROR_SECONDS:
                log.warning("caller policies unreadable (%s): the last one read stays in force", type(exc).__name__)
                return cached[1]
            raise
        else:
            allowed = entity.get("AllowedDeployments")
            policy = CallerPolicy(
                caller_id,
                frozenset(json.loads(allowed)) if allowed is not None else None,
                entity.get("Note", ""),
                LimitOverrides.parse(json.loads(entity.get("Limits") or "{}"), "limits"),
                _deployment_limits(json.loads(entity.get("DeploymentLimits") or "{}")),
                cost_center=entity.get("CostCenter", ""),
                owner=entity.get("Owner", ""),
                department=entity.get("Department", ""),
                tags=json.loads(entity.get("Tags") or "{}"),
                media=entity.get("Media") is True,
            )
        self._cache[caller_id] = (began, policy)
        return policy

    async def chargeback_all(self) -> dict[str, CallerPolicy]:
        """Every caller's chargeback attributes in one query (the daily usage rollup copies them per caller)."""
        result = {}
        columns = ["CallerId", "CostCenter", "Owner", "Department", "Tags"]
        query, parameters = "PartitionKey eq @p", {"p": POLICY_PARTITION}
        async for entity in self._table.query_entities(query, parameters=parameters, select=columns):
            caller_id = str(entity.get("CallerId") or "")
            result[caller_id] = CallerPolicy(
                caller_id,
                cost_center=entity.get("CostCenter") or "",
                owner=entity.get("Owner") or "",
                department=entity.get("Department") or "",
                tags=json.loads(entity.get("Tags") or "{}"),
            )
        return result

    async def put(self, policy: CallerPolicy) -> None:
        await self._table.upsert_entity(_entity(policy), mode=UpdateMode.REPLACE)
        self._cache.pop(policy.caller_id, None)
