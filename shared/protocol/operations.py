"""The OpenAI-compatible operations the gateway serves, and where each goes upstream."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote


class OperationKind(StrEnum):
    """What an operation does, whichever API style carries it; the value is what logs and usage rows record."""

    CHAT = "chat.completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    RESPONSES = "responses"
    FILES = "files"  # file management: upload, list, retrieve, content, delete (no tokens)
    BATCHES = "batches"  # batch management: create, retrieve, list, cancel (no tokens of their own)
    BATCH = "batch"  # a batch's usage, settled when it ends, at the batch rate
    # Requests about stored responses and the models list: no tokens, a ledger row each (shared/stateful).
    RESPONSES_RETRIEVE = "responses.retrieve"
    RESPONSES_DELETE = "responses.delete"
    RESPONSES_CANCEL = "responses.cancel"
    RESPONSES_INPUT_ITEMS = "responses.input_items"
    MODELS_LIST = "models.list"
    IMAGES = "images.generations"
    IMAGE_EDITS = "images.edits"
    TRANSCRIPTIONS = "audio.transcriptions"
    TRANSLATIONS = "audio.translations"
    SPEECH = "audio.speech"

    @property
    def media(self) -> bool:
        """Images and audio: counted in their own units (shared.protocol.media)."""
        return self in _MEDIA


_MEDIA = frozenset(
    {
        OperationKind.IMAGES,
        OperationKind.IMAGE_EDITS,
        OperationKind.TRANSCRIPTIONS,
        OperationKind.TRANSLATIONS,
        OperationKind.SPEECH,
    }
)


class ApiStyle(StrEnum):
    """Where the deployment and the api-version go."""

    DEPLOYMENTS = "deployments"  # dated API, deployment in the path: /openai/deployments/{d}/...?api-version=
    DATED = "dated"  # dated API, deployment as the body's "model": /openai/responses?api-version=
    V1 = "v1"  # v1 API, deployment as the body's "model", no api-version: /openai/v1/...

    @property
    def deployment_in_path(self) -> bool:
        return self is ApiStyle.DEPLOYMENTS

    @property
    def dated(self) -> bool:
        return self is not ApiStyle.V1


@dataclass(frozen=True)
class Operation:
    kind: OperationKind
    # Below the deployment (dated API) or below /openai/v1; ``{id}`` stands for a stored object's id
    # (``responses/{id}``), which the call carries (``ModelCall.object_id``).
    path: str
    style: ApiStyle
    # Body fields that cap the output, in the order the upstream honours them.
    output_limit_fields: tuple[str, ...] = ()
    can_stream: bool = True
    multipart: bool = False  # the body is multipart/form-data (uploads), not JSON
    method: str = "POST"

    @property
    def name(self) -> str:
        """For logs, messages and usage records: ``chat.completions``, ``embeddings``, ..."""
        return self.kind.value

    def upstream_path(self, deployment: str, object_id: str | None = None) -> str:
        """Path below the Azure OpenAI endpoint's ``/openai`` root (``/v1`` is part of the v1 client's base URL),
        every caller-given segment percent-encoded."""
        path = self.path
        if "{id}" in path:
            if object_id is None:
                raise ValueError(f"{self.name} needs an object id")
            path = path.replace("{id}", quote(object_id, safe=""))
        if self.style.deployment_in_path:
            return f"/deployments/{quote(deployment, safe='')}/{path}"
        return f"/{path}"


_CHAT_LIMITS = ("max_completion_tokens", "max_tokens")
_RESPONSES_LIMITS = ("max_output_tokens",)

CHAT = Operation(OperationKind.CHAT, "chat/completions", ApiStyle.DEPLOYMENTS, _CHAT_LIMITS)
COMPLETIONS = Operation(OperationKind.COMPLETIONS, "completions", ApiStyle.DEPLOYMENTS, ("max_tokens",))
EMBEDDINGS = Operation(OperationKind.EMBEDDINGS, "embeddings", ApiStyle.DEPLOYMENTS, can_stream=False)
RESPONSES = Operation(OperationKind.RESPONSES, "responses", ApiStyle.DATED, _RESPONSES_LIMITS)

V1_CHAT = Operation(OperationKind.CHAT, "chat/completions", ApiStyle.V1, _CHAT_LIMITS)
V1_EMBEDDINGS = Operation(OperationKind.EMBEDDINGS, "embeddings", ApiStyle.V1, can_stream=False)
V1_RESPONSES = Operation(OperationKind.RESPONSES, "responses", ApiStyle.V1, _RESPONSES_LIMITS)

# Files and batches (shared/stateful/batches.py): dated (``/openai/files?api-version=``) and v1 (``/openai/v1/files``),
# as the Azure OpenAI REST reference names them (docs/decisions.md). No tokens of their own: a batch's usage is
# settled when it ends (BATCH_USAGE, the ledger's ``batch`` rows).
FILE_UPLOAD = Operation(OperationKind.FILES, "files", ApiStyle.DATED, can_stream=False)
FILE_LIST = Operation(OperationKind.FILES, "files", ApiStyle.DATED, can_stream=False, method="GET")  # the registry's
FILE_RETRIEVE = Operation(OperationKind.FILES, "files/{id}", ApiStyle.DATED, can_stream=False, method="GET")
FILE_CONTENT = Operation(OperationKind.FILES, "files/{id}/content", ApiStyle.DATED, can_stream=False, method="GET")
FILE_DELETE = Operation(OperationKind.FILES, "files/{id}", ApiStyle.DATED, can_stream=False, method="DELETE")
BATCH_CREATE = Operation(OperationKind.BATCHES, "batches", ApiStyle.DATED, can_stream=False)
BATCH_LIST = Operation(OperationKind.BATCHES, "batches", ApiStyle.DATED, can_stream=False, method="GET")  # registry
BATCH_RETRIEVE = Operation(OperationKind.BATCHES, "batches/{id}", ApiStyle.DATED, can_stream=False, method="GET")
BATCH_CANCEL = Operation(OperationKind.BATCHES, "batches/{id}/cancel", ApiStyle.DATED, can_stream=False)

V1_FILE_UPLOAD = Operation(OperationKind.FILES, "files", ApiStyle.V1, can_stream=False)
V1_FILE_LIST = Operation(OperationKind.FILES, "files", ApiStyle.V1, can_stream=False, method="GET")
V1_FILE_RETRIEVE = Operation(OperationKind.FILES, "files/{id}", ApiStyle.V1, can_stream=False, method="GET")
V1_FILE_CONTENT = Operation(OperationKind.FILES, "files/{id}/content", ApiStyle.V1, can_stream=False, method="GET")
V1_FILE_DELETE = Operation(OperationKind.FILES, "files/{id}", ApiStyle.V1, can_stream=False, method="DELETE")
V1_BATCH_CREATE = Operation(OperationKind.BATCHES, "batches", ApiStyle.V1, can_stream=False)
V1_BATCH_LIST = Operation(OperationKind.BATCHES, "batches", ApiStyle.V1, can_stream=False, method="GET")
V1_BATCH_RETRIEVE = Operation(OperationKind.BATCHES, "batches/{id}", ApiStyle.V1, can_stream=False, method="GET")
V1_BATCH_CANCEL = Operation(OperationKind.BATCHES, "batches/{id}/cancel", ApiStyle.V1, can_stream=False)

BATCH_USAGE = Operation(OperationKind.BATCH, "batches", ApiStyle.V1, can_stream=False)  # never sent: a ledger row
# Stored responses (GET/DELETE /responses/{id}, POST /responses/{id}/cancel, GET /responses/{id}/input_items) and the
# models list, dated (?api-version=) and v1. Only a retrieve can stream (``stream=true`` resumes a background one).
RESPONSES_RETRIEVE = Operation(OperationKind.RESPONSES_RETRIEVE, "responses/{id}", ApiStyle.DATED, method="GET")
RESPONSES_DELETE = Operation(
    OperationKind.RESPONSES_DELETE, "responses/{id}", ApiStyle.DATED, can_stream=False, method="DELETE"
)
RESPONSES_CANCEL = Operation(OperationKind.RESPONSES_CANCEL, "responses/{id}/cancel", ApiStyle.DATED, can_stream=False)
RESPONSES_INPUT_ITEMS = Operation(
    OperationKind.RESPONSES_INPUT_ITEMS, "responses/{id}/input_items", ApiStyle.DATED, can_stream=False, method="GET"
)
MODELS = Operation(OperationKind.MODELS_LIST, "models", ApiStyle.DATED, can_stream=False, method="GET")

V1_RESPONSES_RETRIEVE = Operation(OperationKind.RESPONSES_RETRIEVE, "responses/{id}", ApiStyle.V1, method="GET")
V1_RESPONSES_DELETE = Operation(
    OperationKind.RESPONSES_DELETE, "responses/{id}", ApiStyle.V1, can_stream=False, method="DELETE"
)
V1_RESPONSES_CANCEL = Operation(OperationKind.RESPONSES_CANCEL, "responses/{id}/cancel", ApiStyle.V1, can_stream=False)
V1_RESPONSES_INPUT_ITEMS = Operation(
    OperationKind.RESPONSES_INPUT_ITEMS, "responses/{id}/input_items", ApiStyle.V1, can_stream=False, method="GET"
)
V1_MODELS = Operation(OperationKind.MODELS_LIST, "models", ApiStyle.V1, can_stream=False, method="GET")
# Images and audio (docs/decisions.md D88): the dated API puts the deployment in the path, the v1 API in ``model``.
IMAGES = Operation(OperationKind.IMAGES, "images/generations", ApiStyle.DEPLOYMENTS)
IMAGE_EDITS = Operation(OperationKind.IMAGE_EDITS, "images/edits", ApiStyle.DEPLOYMENTS, multipart=True)
TRANSCRIPTIONS = Operation(OperationKind.TRANSCRIPTIONS, "audio/transcriptions", ApiStyle.DEPLOYMENTS, multipart=True)
TRANSLATIONS = Operation(
    OperationKind.TRANSLATIONS, "audio/translations", ApiStyle.DEPLOYMENTS, can_stream=False, multipart=True
)
SPEECH = Operation(OperationKind.SPEECH, "audio/speech", ApiStyle.DEPLOYMENTS)

V1_IMAGES = Operation(OperationKind.IMAGES, "images/generations", ApiStyle.V1)
V1_IMAGE_EDITS = Operation(OperationKind.IMAGE_EDITS, "images/edits", ApiStyle.V1, multipart=True)
V1_TRANSCRIPTIONS = Operation(OperationKind.TRANSCRIPTIONS, "audio/transcriptions", ApiStyle.V1, multipart=True)
V1_TRANSLATIONS = Operation(
    OperationKind.TRANSLATIONS, "audio/translations", ApiStyle.V1, can_stream=False, multipart=True
)
V1_SPEECH = Operation(OperationKind.SPEECH, "audio/speech", ApiStyle.V1)
