"""Stored responses, as one Azure OpenAI account keeps them: retrieve, delete, cancel, input items, background runs.

Each simulator instance is one account: a response it created (``store`` not false) is known there and nowhere
else, under a random Azure-shaped id (``resp_`` and 48 hex digits), so a pool of two simulators shows what a pool
of two accounts does with an id the other one made. Unknown ids get Azure's answers: 404 on the routes that name a
response, 400 ``previous_response_not_found`` (param ``previous_response_id``) on a create that chains one.

A background response (``background: true``) is answered ``queued`` and moves on one step per retrieve:
``queued`` -> ``in_progress`` -> ... -> its final status, after ``background_steps`` retrieves (a behaviour knob,
default 2; 0 finishes at the first retrieve), so tests poll it to completion without waiting. Its usage is the
usage the finished answer reports (fixed at create, as the simulator's request log records it); a response
cancelled before it finished reports none.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.local.simulator import azure_errors
from shared.local.simulator.azure_errors import AzureError

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "incomplete"})
MAX_STORED = 10_000  # per instance; the oldest go first (a simulator, not a database)
MAX_LIST_LIMIT = 100


def new_response_id() -> str:
    return "resp_" + secrets.token_hex(24)


@dataclass
class Stored:
    response: dict[str, Any]  # what retrieve answers once finished
    input_items: list[dict[str, Any]]
    deployment: str
    background: bool = False
    steps_left: int = 0  # retrieves before a background response finishes
    status: str = "completed"
    events: list[str] = field(default_factory=list)  # the stream of a background response, for ``stream=true``

    def current(self) -> dict[str, Any]:
        if self.status == self.response["status"]:
            return self.response
        # Not finished (or cancelled before it finished): no output, no usage reported.
        return {**self.response, "status": self.status, "output": [], "usage": None, "incomplete_details": None}


class ResponseStore:
    """Thread-safe: the embedded simulator serves requests from several event loops in tests."""

    def __init__(self) -> None:
        self._items: dict[str, Stored] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __contains__(self, response_id: object) -> bool:
        with self._lock:
            return response_id in self._items

    def check_previous(self, body: dict[str, Any]) -> None:
        """A create chaining an id this account does not hold: Azure's 400 ``previous_response_not_found``."""
        previous = body.get("previous_response_id")
        if previous is None:
            return
        if not isinstance(previous, str) or previous not in self:
            raise azure_errors.invalid_request(
                f"Previous response with id '{previous}' not found.",
                "previous_response_id",
                "previous_response_not_found",
            )

    def keep(
        self,
        response: dict[str, Any],
        body: dict[str, Any],
        deployment: str,
        *,
        background_steps: int,
        events: list[str] | None = None,
    ) -> dict[str, Any]:
        """Store a created response (unless ``store`` is false); returns what the create call answers."""
        if body.get("store") is False:
            return response
        background = body.get("background") is True
        stored = Stored(response, _input_items(body), deployment, background)
        if background:
            stored.status = "queued"
            stored.steps_left = background_steps
            stored.events = list(events or [])
        with self._lock:
            while len(self._items) >= MAX_STORED:
                self._items.pop(next(iter(self._items)))
            self._items[response["id"]] = stored
        return stored.current()

    def retrieve(self, response_id: str) -> dict[str, Any]:
        with self._lock:
            stored = self._get(response_id)
            if stored.status not in FINAL_STATUSES:
                if stored.steps_left <= 0:
                    stored.status = stored.response["status"]
                else:
                    stored.steps_left -= 1
                    stored.status = "in_progress"
            return stored.current()

    def replay(self, response_id: str, starting_after: int | None) -> Iterator[str]:
        """``GET ...?stream=true``: the stored events of a background response after ``starting_after``."""
        with self._lock:
            stored = self._get(response_id)
            if not stored.background:
                raise azure_errors.invalid_request(
                    "Streaming a stored response is only supported for background responses.", "stream", None
                )
            stored.status = stored.response["status"] if stored.status != "cancelled" else "cancelled"
            events = list(stored.events)
        for index, event in enumerate(events):
            if starting_after is None or index > starting_after:
                yield event

    def delete(self, response_id: str) -> dict[str, Any]:
        with self._lock:
            self._get(response_id)
            del self._items[response_id]
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    def cancel(self, response_id: str) -> dict[str, Any]:
        with self._lock:
            stored = self._get(response_id)
            if not stored.background:
                raise azure_errors.invalid_request("Only background responses can be cancelled.", None, None)
            if stored.status not in FINAL_STATUSES:
                stored.status = "cancelled"
            return stored.current()

    def input_items(self, response_id: str, limit: int, order: str, after: str | None) -> dict[str, Any]:
        with self._lock:
            items = list(self._get(response_id).input_items)
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        page = items[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > len(page),
        }

    def deployment_of(self, response_id: str) -> str | None:
        with self._lock:
            stored = self._items.get(response_id)
            return stored.deployment if stored else None

    def _get(self, response_id: str) -> Stored:
        stored = self._items.get(response_id)
        if stored is None:
            raise not_found(response_id)
        return stored


def not_found(response_id: str) -> AzureError:
    return AzureError(
        404,
        {
            "error": {
                "message": f"Response with id '{response_id}' not found.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
    )


def list_params(query: dict[str, str]) -> tuple[int, str, str | None]:
    """``limit`` (1-100, default 20), ``order`` (``asc``/``desc``, default ``desc``), ``after``: Azure's 400 else."""
    text = query.get("limit", "20")
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIST_LIMIT:
        raise azure_errors.invalid_request(
            f"Invalid 'limit': expected an integer between 1 and {MAX_LIST_LIMIT}.", "limit", "invalid_value"
        )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise azure_errors.invalid_request("Invalid 'order': expected 'asc' or 'desc'.", "order", "invalid_value")
    return int(text), order, query.get("after")


def _input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's input as stored items, each with an id (a plain string is one user message)."""
    raw = body.get("input")
    items = [raw] if isinstance(raw, str) else [item for item in (raw or []) if isinstance(item, str | dict)]
    stored = []
    for item in items:
        if isinstance(item, str):
            item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": item}]}
        content = item.get("content")
        if isinstance(content, str):
            item = {**item, "content": [{"type": "input_text", "text": content}]}
        kind = item.get("type") or "message"
        prefix = {"message": "msg", "function_call_output": "fco", "function_call": "fc"}.get(str(kind), "item")
        stored.append({"id": f"{prefix}_{secrets.token_hex(16)}", "type": kind, "status": "completed", **item})
    return stored


def models_list(served: dict[str, Any]) -> dict[str, Any]:
    """``GET /openai/v1/models`` (and the dated ``/openai/models``): the models the account can use, as Azure lists
    them (base models by their model name; the deployments that serve them are not listed)."""
    now = int(time.time())
    names = sorted({deployment.model.reply_name for deployment in served.values()})
    return {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created_at": now,
                "status": "succeeded",
                "lifecycle_status": "generally-available",
                "capabilities": {"inference": True},
            }
            for name in names
        ],
    }
