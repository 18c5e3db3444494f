"""Azure Table Storage: one service client per process, by connection string (local) or managed identity.

Every HTTP request the client sends is counted by table and kind (:class:`StorageOperations`), because storage
operations are what the gateway's scale limits (requests and entities per second per partition and per account)
and its storage bill are made of (docs/scale.md). Counting is a dict increment in the SDK's request hook; the
runtime logs the totals once, at shutdown.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.data.tables.aio import TableServiceClient

from shared.settings import StorageSettings

API_KEYS_TABLE = "gatewayApiKeys"
CALLER_POLICIES_TABLE = "gatewayCallerPolicies"
USAGE_TABLE = "gatewayUsage"
QUOTA_TABLE = "gatewayQuota"
PRICES_TABLE = "gatewayPrices"  # price versions (shared.accounting.prices)
DAILY_USAGE_TABLE = "gatewayUsageDaily"  # finance's table: one row per UTC day x caller x deployment
HOURLY_USAGE_TABLE = "gatewayUsageHourly"  # the rollup's internal partial sums per UTC hour
OBJECTS_TABLE = "gatewayObjects"  # owner and backend of every stored object (shared.stateful.objects)
GATEWAY_TABLES = (
    API_KEYS_TABLE,
    CALLER_POLICIES_TABLE,
    USAGE_TABLE,
    QUOTA_TABLE,
    PRICES_TABLE,
    DAILY_USAGE_TABLE,
    HOURLY_USAGE_TABLE,
    OBJECTS_TABLE,
)


# Storage calls sit on the request path (quota leases, key and policy reads): an outage must answer in about a
# second, not after azure-core's default retries (3, exponential from 0.8 s) and 20 s connect / 60 s read timeouts.
# Callers that must not lose a write (the ledger) retry on their own terms.
FAIL_FAST: dict[str, Any] = {
    "retry_total": 1,
    "retry_backoff_factor": 0.1,
    "retry_backoff_max": 0.5,
    "connection_timeout": 2,
    "read_timeout": 10,
}


class PooledTransport(AioHttpTransport):  # type: ignore[misc]
    """azure-core's aiohttp transport with a chosen connection limit (``GATEWAY_STORAGE_MAX_CONNECTIONS``).

    Without one the SDK opens an ``aiohttp.ClientSession`` with aiohttp's default connector: at most 100 connections,
    a limit nobody chose, past which a storage request waits for a connection (D79). Everything else is the SDK's
    session as it builds it (environment proxies, no cookies, no decompression); the transport owns and closes it.
    """

    def __init__(self, max_connections: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_connections = max_connections

    async def open(self) -> None:
        if getattr(self, "session", None) is None and not self._has_been_opened:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                trust_env=self._use_env_settings,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        await super().open()


ACCOUNT = "(account)"  # requests about tables rather than entities: create, list, probe


class StorageOperations:
    """HTTP requests sent to Table Storage, by table and kind, and the entities written in batch transactions.

    Kinds: ``read`` (one entity by its keys), ``query`` (one page of a filter or scan), ``write`` (insert, update,
    upsert, delete of one entity), ``batch`` (one entity group transaction; ``batch_entities`` counts the entities
    in it), ``tables`` (create/list tables). A retry is a request of its own, as the service sees and bills it.
    ``failed`` counts answers of 400 or more by table, kind and status (404 on a read, 409 creating what exists,
    412 on a stale ETag are normal answers that still cost a request).
    """

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.batch_entities: Counter[str] = Counter()
        self.failed: Counter[tuple[str, str, int]] = Counter()

    def on_request(self, request: Any) -> None:
        """azure-core's ``raw_request_hook``: called for every attempt, after the retry policy."""
        table, kind, entities = _classify(request.http_request)
        self.requests[table, kind] += 1
        if entities:
            self.batch_entities[table] += entities

    def on_response(self, response: Any) -> None:
        """azure-core's ``raw_response_hook``."""
        status = response.http_response.status_code
        if status >= 400:
            table, kind, _ = _classify(response.http_request)
            self.failed[table, kind, status] += 1

    def total(self) -> int:
        return sum(self.requests.values())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """``{table: {kind: requests, "batch_entities": n, "failed": {"kind status": n}}}``, sorted, JSON-ready."""
        tables: dict[str, dict[str, Any]] = {}
        for (table, kind), count in sorted(self.requests.items()):
            tables.setdefault(table, {})[kind] = count
        for table, entities in sorted(self.batch_entities.items()):
            tables.setdefault(table, {})["batch_entities"] = entities
        for (table, kind, status), count in sorted(self.failed.items()):
            tables.setdefault(table, {}).setdefault("failed", {})[f"{kind} {status}"] = count
        return tables

    def to_json(self) -> str:
        return json.dumps(self.snapshot(), sort_keys=True)


def _classify(http_request: Any) -> tuple[str, str, int]:
    """(table, kind, entities in a batch) from a request's method and URL (``/{table}(PartitionKey=..,RowKey=..)``,
    ``/{table}()?$filter=..``, ``/{table}``, ``/Tables``, ``/$batch``; Azurite puts the account name first)."""
    resource = urlsplit(http_request.url).path.rsplit("/", 1)[-1]
    name, _, keys = resource.partition("(")
    if name == "$batch":
        return _batch(http_request)
    if name == "Tables":
        return ACCOUNT, "tables", 0
    if http_request.method == "GET":
        return name, "read" if "PartitionKey=" in keys else "query", 0
    return name, "write", 0


def _batch(http_request: Any) -> tuple[str, str, int]:
    """A batch is a multipart request holding one changeset, whose parts are the entity operations of one table:
    the SDK's (parts as request objects) or :mod:`shared.storage.batch`'s (already encoded bytes)."""
    content = getattr(http_request, "content", None)
    if isinstance(content, bytes):
        operations = _BATCH_OPERATION.findall(content)
        if operations:
            return _table_of(operations[0].decode()), "batch", len(operations)
    try:
        changeset = http_request.multipart_mixed_info[0][0]
        parts = changeset.multipart_mixed_info[0]
        return _table_of(parts[0].url), "batch", len(parts)
    except (AttributeError, IndexError, TypeError):  # an SDK that builds batches differently: still one request
        return "$batch", "batch", 0


_BATCH_OPERATION = re.compile(rb"^(?:PUT|POST|PATCH|MERGE|DELETE) (\S+) HTTP/1\.1\r$", re.MULTILINE)


def _table_of(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1].partition("(")[0]


def table_service(
    settings: StorageSettings,
    managed_identity: Callable[[], AsyncTokenCredential],
    operations: StorageOperations | None = None,
) -> TableServiceClient:
    """By connection string when one is configured, else by the managed identity ``managed_identity()`` gives.

    Every table client the service hands out shares its pipeline, so ``operations`` counts all of them."""
    hooks: dict[str, Any] = (
        {"raw_request_hook": operations.on_request, "raw_response_hook": operations.on_response} if operations else {}
    )
    options = {**FAIL_FAST, **hooks, "transport": PooledTransport(settings.max_connections)}
    if settings.connection_string:
        return TableServiceClient.from_connection_string(settings.connection_string, **options)
    assert settings.table_endpoint  # settings_from_env guarantees one of the two
    return TableServiceClient(endpoint=settings.table_endpoint, credential=managed_identity(), **options)


async def ensure_tables(service: TableServiceClient) -> None:
    """Create the gateway's tables if missing (Bicep creates them in Azure; Azurite starts empty)."""
    for name in GATEWAY_TABLES:
        await service.create_table_if_not_exists(name)


async def check_storage(service: TableServiceClient) -> None:
    """Raise if Table Storage cannot be reached or refuses the gateway's credentials (at once: a probe that waits
    for the SDK's retries times out instead of answering)."""
    async for _ in service.query_tables(f"TableName eq '{API_KEYS_TABLE}'", results_per_page=1, retry_total=0):
        break


# Status codes from Table Storage that a retry can fix: throttling, timeouts, server errors, and credentials the
# service refused (a managed identity whose role assignment has not propagated yet, or was removed).
_OUTAGE_STATUSES = frozenset({401, 403, 408, 429})


def is_storage_outage(error: BaseException) -> bool:
    """Did Table Storage fail in a way that is not the request's fault and may pass on retry (answer 503)?

    Yes: the service cannot be reached or the connection broke (``ServiceRequestError``/``ServiceResponseError``),
    no token could be obtained (``ClientAuthenticationError``), or it answered 401/403/408/429/5xx. No: any other
    answer (400 bad key, 404, 409, 412), which the calling code either handles or which is a gateway bug (500).
    """
    if isinstance(error, (ServiceRequestError, ServiceResponseError, ClientAuthenticationError)):
        return True
    if isinstance(error, HttpResponseError):
        status = error.status_code or 0
        return status in _OUTAGE_STATUSES or status >= 500
    return False


# --- what Table Storage accepts, checked before a write (learn.microsoft.com/rest/api/storageservices/
# understanding-the-table-service-data-model): a string property holds at most 32K characters (UTF-16 code units,
# 64 KiB), an entity at most 1 MiB in at most 255 properties (PartitionKey, RowKey and Timestamp included).
# The gateway's bounds sit below those, so a value refused here is refused with a 400 naming its field, never
# sent to be refused by the service (which would answer PropertyValueTooLarge / EntityTooLarge).

MAX_STRING_UNITS = 32_000  # of the service's 32,768
MAX_ENTITY_BYTES = 1_000_000  # of the service's 1,048,576, by the service's own size formula
MAX_PROPERTIES = 250  # of the service's 255, three of which are the system properties


class StorageLimitError(ValueError):
    """A value the gateway will not send to Table Storage; ``prop`` is the property (None: the whole entity)."""

    def __init__(self, prop: str | None, message: str) -> None:
        super().__init__(message)
        self.prop = prop
        self.message = message


def utf16_units(text: str) -> int:
    """How Table Storage counts a string's characters: UTF-16 code units (an emoji is two)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def check_entity(entity: dict[str, Any]) -> None:
    """Raise :class:`StorageLimitError` if ``entity`` would exceed what the gateway lets a stored entity hold.

    The size follows the service's formula: 4 + 2 x (key lengths) + for each property 8 + 2 x name + its value
    (a string 4 + 2 x its UTF-16 length, binary 4 + its length, a GUID 16, a bool 1, anything else 8)."""
    if len(entity) > MAX_PROPERTIES:
        raise StorageLimitError(None, f"{len(entity)} properties; at most {MAX_PROPERTIES} can be stored.")
    size = 4
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey"):
            size += 2 * utf16_units(str(value))
            continue
        size += 8 + 2 * utf16_units(name)
        if isinstance(value, str):
            units = utf16_units(value)
            if units > MAX_STRING_UNITS:
                raise StorageLimitError(
                    name, f"{units} characters (UTF-16 code units) to store; at most {MAX_STRING_UNITS} fit."
                )
            size += 4 + 2 * units
        elif isinstance(value, bytes):
            size += 4 + len(value)
        else:
            size += 1 if isinstance(value, bool) else 8
    if size > MAX_ENTITY_BYTES:
        raise StorageLimitError(None, f"about {size} bytes to store; at most {MAX_ENTITY_BYTES} fit in one entity.")


def storage_refusal_status(error: BaseException) -> int | None:
    """The 4xx to answer when Table Storage refused a request in a way nothing above handled, else ``None``.

    Outages (:func:`is_storage_outage`) are 503s. What is left of 4xx is about the request: 400 for what cannot be
    stored (PropertyValueTooLarge, EntityTooLarge, InvalidInput, …), 409 for a conflict or a stale ETag (retry),
    404 for something that is not there."""
    if not isinstance(error, HttpResponseError) or is_storage_outage(error):
        return None
    status = error.status_code or 0
    if not 400 <= status < 500:
        return None
    if status in (409, 412):
        return 409
    return 404 if status == 404 else 400


_FORBIDDEN_KEY_CHARS = set("/\\#?%")
MAX_KEY_CHARS = 1024  # a PartitionKey or RowKey holds at most 1 KiB


def table_key(value: str) -> str:
    """Make an identifier (e.g. ``{tenant}/{object id}``) a valid PartitionKey/RowKey, reversibly.

    Table keys may not contain ``/ \\ # ?`` or control characters; those (and ``%`` itself) are percent-encoded.
    Identifiers are validated where they enter the gateway (e.g. :func:`shared.auth.identity.canonical_caller_id`);
    one that is still too long here is a programming error, raised before it reaches storage.
    """
    key = "".join(
        f"%{ord(ch):02X}" if ch in _FORBIDDEN_KEY_CHARS or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F else ch
        for ch in value
    )
    if not key or len(key) > MAX_KEY_CHARS:
        raise ValueError(f"a table key must be 1 to {MAX_KEY_CHARS} characters (got {len(key)})")
    return key
