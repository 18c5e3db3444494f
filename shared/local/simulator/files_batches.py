"""Files and batches, as Azure OpenAI serves them, for one simulator instance (one Azure OpenAI account).

Routes, dated (``/openai/files?api-version=``) and v1 (``/openai/v1/files``): upload (multipart), list, retrieve,
content, delete; batches create, list, retrieve, cancel. Ids are Azure-shaped (``file-<32 hex>``,
``batch_<uuid>``) and exist in this instance only, so a pool of two simulators behaves like two accounts: the
other one answers 404 for an id it never issued.

A batch moves ``validating`` -> ``in_progress`` -> ``finalizing`` -> ``completed`` one step each time it is read
(retrieve or list), so tests see every status without waiting 24 hours. The behaviour knob ``batch_progress``
(shared/local/simulator/behaviours.py, per deployment) changes that: ``complete`` (done at the next read),
``hold`` (stays where it is: for cancel tests), ``fail`` (validation fails), ``expire`` (half the lines ran, then
it expired). Each line is answered by the simulator's own chat/embeddings logic (``answer``), so its ``usage`` is
what the same live call would report; answers go to the output file, refusals to the error file. A cancelled
batch that had started keeps the first half of its lines, as Azure returns the work already done.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from shared.local.simulator.azure_errors import AzureError, invalid_request, plain
from shared.local.simulator.behaviours import BehaviourBook
from shared.protocol.api_versions import is_api_version

# (operation, body, deployment name) -> (HTTP status, JSON answer with its ``usage``)
LineAnswer = Callable[[str, dict[str, Any], str], tuple[int, dict[str, Any]]]

PURPOSES = frozenset({"assistants", "batch", "fine-tune", "user_data", "vision", "evals"})
BATCH_ENDPOINTS = {
    "/chat/completions": "chat.completions",
    "/v1/chat/completions": "chat.completions",
    "/embeddings": "embeddings",
    "/v1/embeddings": "embeddings",
    "/responses": "responses",
    "/v1/responses": "responses",
}
FILE_RETENTION_SECONDS = 30 * 24 * 3600
BATCH_EXPIRY_SECONDS = 24 * 3600
_STEPS = {"validating": "in_progress", "in_progress": "finalizing", "finalizing": "completed"}


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


@dataclass
class StoredBatch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    created_at: int
    metadata: dict[str, Any] | None
    deployment: str
    status: str = "validating"
    times: dict[str, int | None] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    errors: dict[str, Any] | None = None

    def json(self) -> dict[str, Any]:
        stamps = {
            name: self.times.get(name)
            for name in (
                "in_progress_at",
                "finalizing_at",
                "completed_at",
                "failed_at",
                "expired_at",
                "cancelling_at",
                "cancelled_at",
            )
        }
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": self.errors,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "expires_at": self.created_at + BATCH_EXPIRY_SECONDS,
            **stamps,
            "request_counts": dict(self.counts),
            "metadata": self.metadata,
        }


def register(app: FastAPI, book: BehaviourBook, recorded: Any, answer: LineAnswer) -> None:
    """Add the files and batches routes to the simulator ``app`` (``recorded``: its request log)."""
    files: dict[str, StoredFile] = {}
    batches: dict[str, StoredBatch] = {}

    def check(request: Request, dated: bool) -> None:
        if not request.headers.get("authorization", "").lower().startswith("bearer "):
            raise plain(401, "PermissionDenied", "Access denied: this resource accepts Microsoft Entra tokens only.")
        if dated:
            version = request.query_params.get("api-version")
            if not version or not is_api_version(version):
                raise plain(400, "BadRequest", "Missing or invalid api-version query parameter.")

    def log(request: Request, body: Any = None) -> None:
        recorded.append(
            {
                "path": request.url.path,
                "method": request.method,
                "query": dict(request.query_params),
                "deployment": None,
                "body": body,
                "authorization": "bearer" if request.headers.get("authorization") else None,
                "api_key_header": "api-key" in request.headers,
                "client_request_id": request.headers.get("x-ms-client-request-id"),
                "usage": None,
            }
        )

    def stored_file(file_id: str) -> StoredFile:
        found = files.get(file_id)
        if found is None:
            raise plain(404, "NotFound", f"File with id '{file_id}' not found.")
        return found

    def stored_batch(batch_id: str) -> StoredBatch:
        found = batches.get(batch_id)
        if found is None:
            raise plain(404, "NotFound", f"Batch with id '{batch_id}' not found.")
        return found

    def new_file(filename: str, purpose: str, content: bytes) -> StoredFile:
        stored = StoredFile(f"file-{secrets.token_hex(16)}", filename, purpose, content, int(time.time()))
        files[stored.id] = stored
        return stored

    def run_lines(batch: StoredBatch, share: float) -> None:
        """Answer the first ``share`` of the input file's lines; write the output and error files."""
        lines = [line for line in stored_file(batch.input_file_id).content.splitlines() if line.strip()]
        outputs: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for line in lines[: int(len(lines) * share)]:
            item = json.loads(line)
            operation = BATCH_ENDPOINTS.get(item.get("url", ""), "chat.completions")
            body = item.get("body") or {}
            status, answered = answer(operation, body, str(body.get("model", "")))
            record = {
                "id": f"batch_req_{secrets.token_hex(12)}",
                "custom_id": item.get("custom_id"),
                "response": {"status_code": status, "request_id": str(uuid.uuid4()), "body": answered},
                "error": None,
            }
            (outputs if status == 200 else failures).append(record)
        batch.counts = {"total": len(lines), "completed": len(outputs), "failed": len(failures)}
        if outputs:
            batch.output_file_id = new_file(f"{batch.id}_output.jsonl", "batch_output", _jsonl(outputs)).id
        if failures:
            batch.error_file_id = new_file(f"{batch.id}_error.jsonl", "batch_output", _jsonl(failures)).id

    def move(batch: StoredBatch, status: str) -> None:
        batch.status = status
        batch.times[f"{status}_at"] = int(time.time())

    def advance(batch: StoredBatch) -> None:
        """One read of the batch: one step of its progression, as the behaviour knob says."""
        if batch.status == "cancelling":
            run_lines(batch, 0.5 if "in_progress_at" in batch.times else 0.0)
            move(batch, "cancelled")
            return
        if batch.status not in _STEPS:
            return
        progress = book.take(batch.deployment).batch_progress
        if progress == "hold":
            return
        if progress == "fail":
            batch.errors = {
                "object": "list",
                "data": [{"code": "invalid_request", "message": "The simulator was told to fail it.", "line": 1}],
            }
            move(batch, "failed")
            return
        if progress == "expire":
            run_lines(batch, 0.5)
            move(batch, "expired")
            return
        target = "completed" if progress == "complete" else _STEPS[batch.status]
        if target == "completed":
            run_lines(batch, 1.0)
        elif target == "in_progress":
            batch.counts["total"] = len(
                [line for line in stored_file(batch.input_file_id).content.splitlines() if line.strip()]
            )
        move(batch, target)

    def page(items: list[dict[str, Any]], request: Request) -> dict[str, Any]:
        """OpenAI's cursor list: newest first (``order=asc`` oldest first), ``limit`` (1-100), ``after`` an id."""
        order = request.query_params.get("order", "desc")
        items = sorted(items, key=lambda item: (item["created_at"], item["id"]), reverse=order != "asc")
        after = request.query_params.get("after")
        if after:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        try:
            limit = int(request.query_params.get("limit", "20"))
        except ValueError:
            raise invalid_request("'limit' must be an integer.", "limit", "invalid_value") from None
        limit = max(1, min(limit, 10_000))
        shown = items[:limit]
        return {
            "object": "list",
            "data": shown,
            "first_id": shown[0]["id"] if shown else None,
            "last_id": shown[-1]["id"] if shown else None,
            "has_more": len(items) > limit,
        }

    # --- files -----------------------------------------------------------------------------------------------

    async def upload(request: Request, dated: bool) -> Response:
        check(request, dated)
        form = await request.form()
        purpose, upload = form.get("purpose"), form.get("file")
        log(request, {"purpose": purpose})
        if not isinstance(purpose, str) or purpose not in PURPOSES:
            raise invalid_request(f"Invalid value for purpose: {purpose!r}.", "purpose", "invalid_value")
        if upload is None or isinstance(upload, str):
            raise invalid_request("Missing required parameter: 'file'.", "file", "missing_required_parameter")
        content = await upload.read()
        stored = new_file(upload.filename or "upload", purpose, content)
        return JSONResponse(stored.json(), status_code=201 if dated else 200)

    async def list_files(request: Request, dated: bool) -> Response:
        check(request, dated)
        log(request)
        purpose = request.query_params.get("purpose")
        items = [f.json() for f in files.values() if purpose in (None, f.purpose)]
        return JSONResponse(page(items, request))

    async def retrieve_file(request: Request, file_id: str, dated: bool) -> Response:
        check(request, dated)
        log(request)
        return JSONResponse(stored_file(file_id).json())

    async def file_content(request: Request, file_id: str, dated: bool) -> Response:
        check(request, dated)
        log(request)
        return Response(stored_file(file_id).content, media_type="application/octet-stream")

    async def delete_file(request: Request, file_id: str, dated: bool) -> Response:
        check(request, dated)
        log(request)
        stored_file(file_id)
        del files[file_id]
        return JSONResponse({"id": file_id, "object": "file", "deleted": True})

    # --- batches ---------------------------------------------------------------------------------------------

    async def create_batch(request: Request, dated: bool) -> Response:
        check(request, dated)
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise plain(400, "BadRequest", "The request body is not valid JSON.") from None
        log(request, body)
        if not isinstance(body, dict):
            raise invalid_request("The request body must be a JSON object.", None, "invalid_type")
        endpoint = body.get("endpoint")
        if endpoint not in BATCH_ENDPOINTS:
            raise invalid_request(f"Invalid value for endpoint: {endpoint!r}.", "endpoint", "invalid_value")
        if body.get("completion_window") != "24h":
            raise invalid_request("completion_window must be '24h'.", "completion_window", "invalid_value")
        source = stored_file(str(body.get("input_file_id")))
        if source.purpose != "batch":
            raise invalid_request("The input file's purpose must be 'batch'.", "input_file_id", "invalid_value")
        deployment = ""
        for line in source.content.splitlines():
            if line.strip():
                try:
                    deployment = str(json.loads(line).get("body", {}).get("model", ""))
                except (ValueError, AttributeError):
                    deployment = ""
                break
        batch = StoredBatch(
            f"batch_{uuid.uuid4()}",
            source.id,
            endpoint,
            "24h",
            int(time.time()),
            body.get("metadata") if isinstance(body.get("metadata"), dict) else None,
            deployment,
        )
        batches[batch.id] = batch
        return JSONResponse(batch.json(), status_code=201 if dated else 200)

    async def list_batches(request: Request, dated: bool) -> Response:
        check(request, dated)
        log(request)
        for batch in batches.values():
            advance(batch)
        return JSONResponse(page([b.json() for b in batches.values()], request))

    async def retrieve_batch(request: Request, batch_id: str, dated: bool) -> Response:
        check(request, dated)
        log(request)
        batch = stored_batch(batch_id)
        advance(batch)
        return JSONResponse(batch.json())

    async def cancel_batch(request: Request, batch_id: str, dated: bool) -> Response:
        check(request, dated)
        log(request)
        batch = stored_batch(batch_id)
        if batch.status in ("validating", "in_progress", "finalizing"):
            move(batch, "cancelling")
        elif batch.status != "cancelling":
            raise plain(409, "Conflict", f"Cannot cancel a batch with status '{batch.status}'.")
        return JSONResponse(batch.json())

    # --- routes: dated and v1, each the same handler ---------------------------------------------------------

    def answered(handler: Callable[..., Any], dated: bool) -> Callable[..., Any]:
        async def route(request: Request) -> Response:
            try:
                return await handler(request, **request.path_params, dated=dated)  # type: ignore[no-any-return]
            except AzureError as error:
                return JSONResponse(error.body, status_code=error.status, headers=error.headers)

        return route

    for prefix, dated in (("/openai", True), ("/openai/v1", False)):
        app.add_api_route(f"{prefix}/files", answered(upload, dated), methods=["POST"])
        app.add_api_route(f"{prefix}/files", answered(list_files, dated), methods=["GET"])
        app.add_api_route(f"{prefix}/files/{{file_id}}", answered(retrieve_file, dated), methods=["GET"])
        app.add_api_route(f"{prefix}/files/{{file_id}}", answered(delete_file, dated), methods=["DELETE"])
        app.add_api_route(f"{prefix}/files/{{file_id}}/content", answered(file_content, dated), methods=["GET"])
        app.add_api_route(f"{prefix}/batches", answered(create_batch, dated), methods=["POST"])
        app.add_api_route(f"{prefix}/batches", answered(list_batches, dated), methods=["GET"])
        app.add_api_route(f"{prefix}/batches/{{batch_id}}", answered(retrieve_batch, dated), methods=["GET"])
        app.add_api_route(f"{prefix}/batches/{{batch_id}}/cancel", answered(cancel_batch, dated), methods=["POST"])


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(record, separators=(",", ":")).encode() + b"\n" for record in records)
