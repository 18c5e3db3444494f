"""Logging rules that keep secrets and content out of telemetry.

The gateway's own log records carry identifiers and counts only. Some libraries log more at DEBUG/INFO:
the ``openai`` client logs request options (including the prompt) at DEBUG, and azure-core's HTTP logging
policy logs every storage request at INFO. Those loggers are capped at WARNING, whatever level the host
configures, so no prompt, completion, token or key can reach Application Insights through them.
"""

from __future__ import annotations

import logging

CAPPED_LOGGERS = (
    "openai",
    "httpx2",
    "httpcore2",
    "httpx",
    "httpcore",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.identity",
    "msal",
    "uvicorn.access",  # request lines include query strings
)


def cap_library_loggers() -> None:
    for name in CAPPED_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
