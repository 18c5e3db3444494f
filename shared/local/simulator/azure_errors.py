"""Azure OpenAI's error bodies, field for field, so SDKs raise what they raise against Azure.

The shapes differ by origin (docs/decisions.md D28): Azure's own front door answers ``{"code", "message"}``
(``DeploymentNotFound``, ``OperationNotSupported``), the model service answers OpenAI's
``{"message", "type", "param", "code"}`` (``context_length_exceeded``), and the content filter adds
``status`` and an ``innererror`` carrying ``ResponsibleAIPolicyViolation`` and the per-category result.
The openai SDK turns 400 into ``BadRequestError``, 404 into ``NotFoundError``, with ``.code`` from the body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CONTENT_FILTER_DOCS = "https://go.microsoft.com/fwlink/?linkid=2198766"
MODELS_BY_OPERATION_DOCS = "https://go.microsoft.com/fwlink/?linkid=2197993"
FILTER_CATEGORIES = ("hate", "self_harm", "sexual", "violence")


@dataclass
class AzureError(Exception):
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def plain(status: int, code: str, message: str) -> AzureError:
    """The front door's shape: code and message only."""
    return AzureError(status, {"error": {"code": code, "message": message}})


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> AzureError:
    """The model service's shape for a request it cannot take (never a 500)."""
    return AzureError(
        400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    )


def deployment_not_found() -> AzureError:
    return plain(
        404,
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment within the last "
        "5 minutes, please wait a moment and try again.",
    )


def operation_not_supported(operation: str, model: str) -> AzureError:
    return plain(
        400,
        "OperationNotSupported",
        f"The {operation} operation does not work with the specified model, {model}. Please choose different "
        f"model and try again. You can learn more about which models can be used with each operation here: "
        f"{MODELS_BY_OPERATION_DOCS}.",
    )


def context_length_exceeded(window: int, prompt: int, completion: int | None, param: str = "messages") -> AzureError:
    if completion:
        detail = (
            f"However, you requested {prompt + completion} tokens ({prompt} in the messages, {completion} in the "
            "completion). Please reduce the length of the messages or completion."
        )
    else:
        detail = f"However, your messages resulted in {prompt} tokens. Please reduce the length of the messages."
    return invalid_request(
        f"This model's maximum context length is {window} tokens. {detail}", param, "context_length_exceeded"
    )


def content_filtered(category: str) -> AzureError:
    """A prompt refused by the content filter: 400 ``content_filter`` with the per-category verdicts."""
    result: dict[str, Any] = {
        name: {"filtered": name == category, "severity": "high" if name == category else "safe"}
        for name in FILTER_CATEGORIES
    }
    result["jailbreak"] = {"filtered": category == "jailbreak", "detected": category == "jailbreak"}
    return AzureError(
        400,
        {
            "error": {
                "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management "
                "policy. Please modify your prompt and retry. To learn more about our content filtering policies "
                f"please read our documentation: {CONTENT_FILTER_DOCS}",
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": result},
            }
        },
    )
