"""The shapes of Azure OpenAI's stored-object ids, checked before an id reaches a URL or a table key.

An id a caller sends is matched in full (``re.fullmatch``: ``$`` would accept a trailing newline) against the shape
Azure gives that kind of object; anything else (path characters, ``%2F``, ``..``, control characters, over-long) is
a 400 ``invalid_id`` that names the parameter, and nothing is read, forwarded or recorded. The gateway percent-encodes
ids in upstream paths as well, so a shape that is one day widened cannot become a path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from shared.errors import GatewayError, bad_request


class ObjectKind(StrEnum):
    """What a stored object is; the value is what records, logs and messages say."""

    RESPONSE = "response"
    CONVERSATION = "conversation"
    FILE = "file"
    BATCH = "batch"


MAX_ID_CHARS = 128

# Azure's ids: a prefix and letters, digits, '_' or '-' (batch ids embed a GUID: batch_6caaf24d-54a5-...).
_SHAPES: dict[ObjectKind, re.Pattern[str]] = {
    ObjectKind.RESPONSE: re.compile(r"resp_[A-Za-z0-9]{8,123}"),
    ObjectKind.CONVERSATION: re.compile(r"conv_[A-Za-z0-9]{8,123}"),
    ObjectKind.FILE: re.compile(r"(?:file|assistant)-[A-Za-z0-9_-]{8,118}"),
    ObjectKind.BATCH: re.compile(r"batch_[A-Za-z0-9_-]{8,122}"),
}
# An item of a response's input, used as a pagination cursor (msg_..., fc_..., rs_...).
_ITEM_ID = re.compile(r"[A-Za-z][A-Za-z0-9]{0,15}_[A-Za-z0-9_-]{1,110}")


def is_object_id(kind: ObjectKind, value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_ID_CHARS and _SHAPES[kind].fullmatch(value) is not None


def invalid_id(kind: ObjectKind, param: str) -> GatewayError:
    return bad_request(
        f"'{param}' is not a valid {kind.value} id: Azure OpenAI {kind.value} ids look like "
        f"'{_EXAMPLES[kind]}' (at most {MAX_ID_CHARS} characters).",
        code="invalid_id",
        param=param,
    )


def check_object_id(kind: ObjectKind, value: object, param: str) -> str:
    """``value`` if it has the shape of a ``kind`` id, else 400 ``invalid_id`` naming ``param`` (never echoing it)."""
    if not is_object_id(kind, value):
        raise invalid_id(kind, param)
    assert isinstance(value, str)
    return value


def referenced_objects(body: Mapping[str, Any]) -> list[tuple[ObjectKind, object, str]]:
    """The stored objects a Responses create names: ``previous_response_id`` and ``conversation`` (an id, or an
    object with an ``id``), as (kind, value as sent, parameter). Values are unchecked: see :func:`check_object_id`."""
    found: list[tuple[ObjectKind, object, str]] = []
    if body.get("previous_response_id") is not None:
        found.append((ObjectKind.RESPONSE, body["previous_response_id"], "previous_response_id"))
    conversation = body.get("conversation")
    if isinstance(conversation, dict):
        found.append((ObjectKind.CONVERSATION, conversation.get("id"), "conversation.id"))
    elif conversation is not None:
        found.append((ObjectKind.CONVERSATION, conversation, "conversation"))
    return found


def check_item_id(value: object, param: str) -> str:
    if not isinstance(value, str) or _ITEM_ID.fullmatch(value) is None:
        raise bad_request(
            f"'{param}' is not a valid item id (e.g. 'msg_67cb...', at most {MAX_ID_CHARS} characters).",
            code="invalid_id",
            param=param,
        )
    return value


_EXAMPLES = {
    ObjectKind.RESPONSE: "resp_67cb61fa3a448190bcf2c42d96f0d1a8",
    ObjectKind.CONVERSATION: "conv_68b0c2a4d5e881938ec0a5fbab4a3e9f",
    ObjectKind.FILE: "file-6b2d3b1e2f0a4c5d8e9f0a1b2c3d4e5f",
    ObjectKind.BATCH: "batch_6caaf24d-54a5-46be-b1b7-518884fcbdde",
}
