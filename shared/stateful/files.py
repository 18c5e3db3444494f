"""Files as the gateway checks them: purposes, content types, batch input files line by line, and owned lists.

A ``purpose=batch`` upload is read line by line from its spooled copy before anything is forwarded: each line must be
a JSON object (strict: no NaN, no lone surrogates) with a unique ``custom_id``, ``method`` ``POST``, a ``url`` the
batch API serves and a ``body`` that passes the same guardrails as the live call it stands for
(:func:`shared.policy.guard.guard_body`: deployment name and allowlist, types, output ceiling, prompt size), naming
a deployment the caller may use. Every line names the same deployment, as Azure requires of a batch file. The
prompt of each line is counted with the deployment model's tokenizer and its output bounded by the rule for calls
without ``max_tokens`` (shared/quotas/output.py); the totals go on the file's ownership record, so creating a batch
reserves from them without reading the file again. Any bad line is a 400 naming the line; nothing is forwarded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from shared.errors import GatewayError, bad_request
from shared.json_body import InvalidJson, loads_strict
from shared.policy.guard import guard_body
from shared.protocol import operations
from shared.protocol.calls import ModelCall
from shared.protocol.operations import Operation
from shared.settings import GuardrailSettings
from shared.stateful.ids import ObjectKind, check_object_id

# Azure OpenAI's upload purposes (Files - Upload, REST reference; docs/decisions.md).
PURPOSES = frozenset({"assistants", "batch", "fine-tune", "user_data", "evals", "vision"})
# Purposes whose files are JSON Lines, and the part content types such a file may come with (SDKs send what the
# file name suggests, often nothing more precise than octet-stream).
JSONL_PURPOSES = frozenset({"batch", "fine-tune", "evals"})
JSONL_CONTENT_TYPES = frozenset(
    {
        "",
        "application/jsonl",
        "application/json-lines",
        "application/x-jsonlines",
        "application/x-ndjson",
        "application/json",
        "application/octet-stream",
        "text/plain",
        "text/jsonl",
    }
)
# The batch API's endpoints (a line's ``url`` and the batch's ``endpoint``), with or without the v1 prefix.
BATCH_ENDPOINTS: Mapping[str, Operation] = {
    "/chat/completions": operations.V1_CHAT,
    "/embeddings": operations.V1_EMBEDDINGS,
    "/responses": operations.V1_RESPONSES,
}
MAX_BATCH_LINES = 100_000  # Azure OpenAI batch: requests per file
MAX_BATCH_FILE_BYTES = 200 * 1000 * 1000  # Azure OpenAI batch: input file size (upload)
MAX_CUSTOM_ID_CHARS = 512


def batch_endpoint(value: object) -> str | None:
    """The endpoint a batch line or a batch names, without a ``/v1`` prefix, if the batch API serves it."""
    if not isinstance(value, str):
        return None
    path = value.removeprefix("/v1") if value.startswith("/v1/") else value
    return path if path in BATCH_ENDPOINTS else None


def check_purpose(purpose: str | None) -> str:
    if purpose is None:
        raise bad_request("'purpose' is required (e.g. 'batch').", code="missing_required_parameter", param="purpose")
    if purpose not in PURPOSES:
        raise bad_request(
            f"'purpose' must be one of {', '.join(sorted(PURPOSES))}.", code="invalid_purpose", param="purpose"
        )
    return purpose


def check_content_type(purpose: str, content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if purpose in JSONL_PURPOSES and media not in JSONL_CONTENT_TYPES:
        raise bad_request(
            f"A '{purpose}' file is JSON Lines; a file part of type '{media[:60]}' cannot be one.",
            code="invalid_file_type",
            param="file",
        )


@dataclass(frozen=True)
class BatchFile:
    """What a batch input file asks for, counted when it was uploaded."""

    lines: int
    prompt_tokens: int  # every line's prompt, counted with its deployment's tokenizer
    output_tokens: int  # every line's output bound (shared/quotas/output.py)
    deployment: str
    endpoint: str  # "/chat/completions", "/embeddings" or "/responses"

    def attributes(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "deployments": [self.deployment],
            "endpoint": self.endpoint,
        }

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any]) -> BatchFile | None:
        """The counted facts of a file record (None: not a batch input file the gateway counted)."""
        try:
            return cls(
                int(attributes["lines"]),
                int(attributes["prompt_tokens"]),
                int(attributes["output_tokens"]),
                str(attributes["deployments"][0]),
                str(attributes["endpoint"]),
            )
        except (KeyError, IndexError, TypeError, ValueError):
            return None


def scan_batch_file(
    source: BinaryIO,
    settings: GuardrailSettings,
    output_tokens: Callable[[ModelCall], int],
    allowed: Callable[[str], bool],
) -> BatchFile:
    """Check a batch input file line by line and count it (synchronous: run it on a worker thread). Memory is one
    line at a time (at most the gateway's request size) plus the custom ids seen."""
    seen: set[str] = set()
    prompt = output = lines = 0
    deployment: str | None = None
    endpoint: str | None = None
    number = 0
    while True:
        raw = source.readline(settings.max_request_bytes + 2)
        if not raw:
            break
        number += 1
        if len(raw.rstrip(b"\r\n")) > settings.max_request_bytes:
            raise _line(number, f"is longer than {settings.max_request_bytes} bytes (the gateway's request limit)")
        if not raw.strip():
            continue
        lines += 1
        if lines > MAX_BATCH_LINES:
            raise _line(number, f"is past the {MAX_BATCH_LINES} requests a batch file may hold")
        call, custom_id, url = _check_line(raw, number, settings)
        if custom_id in seen:
            raise _line(number, "repeats the custom_id of an earlier line; each must be unique", "duplicate_custom_id")
        seen.add(custom_id)
        if endpoint is None:
            endpoint = url
        elif url != endpoint:
            raise _line(number, f"has url '{url}', the file's earlier lines '{endpoint}'; a batch has one endpoint")
        if deployment is None:
            deployment = call.deployment
        elif call.deployment != deployment:
            raise _line(
                number,
                f"names deployment '{call.deployment}', the earlier lines '{deployment}'; every line of a batch file "
                "must name the same deployment",
            )
        if not allowed(call.deployment):
            raise _line(
                number, f"names deployment '{call.deployment}', which this caller may not use", "model_not_allowed"
            )
        prompt += call.prompt_tokens_estimate
        output += output_tokens(call)
    if deployment is None or endpoint is None:
        raise bad_request("The batch input file has no requests.", code="invalid_batch_file", param="file")
    return BatchFile(lines, prompt, output, deployment, endpoint)


def _check_line(raw: bytes, number: int, settings: GuardrailSettings) -> tuple[ModelCall, str, str]:
    try:
        item = loads_strict(raw)
    except InvalidJson as exc:
        raise _line(number, f"is not valid JSON ({exc.message.removeprefix('The request body ')})") from None
    if not isinstance(item, dict):
        raise _line(number, "is not a JSON object")
    for name in ("custom_id", "method", "url", "body"):
        if name not in item:
            raise _line(number, f"has no '{name}'", "missing_required_parameter")
    custom_id = item["custom_id"]
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID_CHARS:
        raise _line(number, f"has a custom_id that is not a string of 1 to {MAX_CUSTOM_ID_CHARS} characters")
    if item["method"] != "POST":
        raise _line(number, "has a method other than 'POST'")
    url = batch_endpoint(item["url"])
    if url is None:
        raise _line(number, f"has a url the batch API does not serve (one of {', '.join(BATCH_ENDPOINTS)})")
    body = item["body"]
    if not isinstance(body, dict):
        raise _line(number, "has a body that is not a JSON object")
    if body.get("stream") is True:
        raise _line(number, "asks for a stream; batch requests are answered whole")
    try:
        call = guard_body(body, BATCH_ENDPOINTS[url], settings)
    except GatewayError as error:
        raise _line(number, f"is refused: {error.message}", error.code) from None
    return call, custom_id, url


def _line(number: int, what: str, code: str = "invalid_batch_file") -> GatewayError:
    return bad_request(f"Line {number} of the batch input file {what}.", code=code, param="file")


# --- lists of the caller's own objects ----------------------------------------------------------------------------

MAX_LIST_LIMIT = 10_000
DEFAULT_LIST_LIMIT = 20


@dataclass(frozen=True)
class Page:
    limit: int
    after: str | None
    descending: bool


def list_page(query: Mapping[str, str], kind: ObjectKind, *, max_limit: int = MAX_LIST_LIMIT) -> Page:
    """``limit``, ``after`` (an id of the same kind) and ``order`` of a list request, strictly."""
    text = query.get("limit")
    limit = DEFAULT_LIST_LIMIT
    if text is not None:
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= max_limit:
            raise bad_request(f"'limit' must be an integer from 1 to {max_limit}.", code="invalid_value", param="limit")
        limit = int(text)
    after = query.get("after")
    if after is not None:
        after = check_object_id(kind, after, "after")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request("'order' must be 'asc' or 'desc'.", code="invalid_value", param="order")
    return Page(limit, after, order == "desc")


def paged(objects: Sequence[Mapping[str, Any]], page: Page) -> dict[str, Any]:
    """An OpenAI list (``object``, ``data``, ``first_id``, ``last_id``, ``has_more``) of ``objects`` (each with an
    ``id``), given oldest first as the registry keeps them (to the microsecond, where the upstream's ``created_at``
    has whole seconds): newest first unless ``order=asc``, starting after ``page.after``."""
    ordered = list(reversed(objects)) if page.descending else list(objects)
    if page.after is not None:
        ids = [o["id"] for o in ordered]
        ordered = ordered[ids.index(page.after) + 1 :] if page.after in ids else []
    shown = [dict(o) for o in ordered[: page.limit]]
    return {
        "object": "list",
        "data": shown,
        "first_id": shown[0]["id"] if shown else None,
        "last_id": shown[-1]["id"] if shown else None,
        "has_more": len(ordered) > page.limit,
    }
