"""The client of one Azure OpenAI endpoint: managed identity, raw pass-through, no hidden retries.

The ``openai`` package sends the requests (``AsyncAzureOpenAI`` for the dated API, ``AsyncOpenAI`` for the v1
API), but the gateway asks for the raw HTTP response so that unknown request and response fields, SSE bytes
and rate-limit headers survive unchanged. ``max_retries=0``: the SDK never retries on its own; whether a call
is tried on another backend is decided in one place, :mod:`shared.upstream.pool`, and otherwise the caller's
SDK decides, with the upstream's ``retry-after`` headers in hand.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError
from openai import RequestOptions

from shared.errors import GatewayError
from shared.protocol.calls import ModelCall
from shared.settings import UpstreamSettings

log = logging.getLogger(__name__)

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"

# Response headers the caller gets back from the upstream: rate limits, retry hints and request ids.
_PASSTHROUGH_PREFIXES = ("x-ratelimit-", "x-ms-", "openai-")
_PASSTHROUGH_HEADERS = frozenset({"retry-after", "retry-after-ms", "apim-request-id", "x-request-id"})

# Names the backend that served a call: a short label from the settings, never a URL.
BACKEND_HEADER = "x-gateway-backend"

TokenProvider = Callable[[], Awaitable[str]]

# Failures that happened before the request left this process: the upstream certainly did not run it.
_NOT_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)


def passthrough_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in headers.items()
        if name.lower() in _PASSTHROUGH_HEADERS or name.lower().startswith(_PASSTHROUGH_PREFIXES)
    }


def managed_identity_token_provider(credential: AsyncTokenCredential) -> TokenProvider:
    """Entra tokens for Azure OpenAI from the app's managed identity (``AZURE_CLIENT_ID`` picks a user-assigned one)."""
    from azure.identity.aio import get_bearer_token_provider

    return get_bearer_token_provider(credential, COGNITIVE_SERVICES_SCOPE)


def simulator_token_provider() -> TokenProvider:
    async def token() -> str:
        return "local-simulator-token"

    return token


class UpstreamUnavailable(GatewayError):
    """The endpoint gave no answer (timeout, connection refused or broken): another backend may be tried."""

    def __init__(self, status: int, message: str, *, code: str, may_have_run: bool) -> None:
        super().__init__(status, message, code=code)
        # False when the request never left this process (connect failures): repeating it elsewhere is always safe.
        self.may_have_run = may_have_run


@dataclass
class UpstreamResponse:
    """An upstream answer whose body has not been read yet (unless it is an error)."""

    status: int
    headers: dict[str, str]
    raw: httpx2.Response
    backend: str | None = None  # the label of the backend that answered

    def served_by(self, label: str) -> UpstreamResponse:
        self.backend = label
        self.headers[BACKEND_HEADER] = label
        return self

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        return self.raw.headers.get("content-type", "application/json")

    async def read(self) -> bytes:
        try:
            return await self.raw.aread()
        except httpx2.HTTPError as exc:
            raise GatewayError(
                502, "The upstream model service broke off its response.", code="upstream_incomplete"
            ) from exc
        finally:
            await self.raw.aclose()

    async def aclose(self) -> None:
        await self.raw.aclose()


class EndpointClient:
    """One Azure OpenAI endpoint (account); every backend on that endpoint shares its connection pool."""

    def __init__(self, endpoint: str, token_provider: TokenProvider, settings: UpstreamSettings) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._http = httpx2.AsyncClient(
            timeout=httpx2.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
            # Idle connections close before a server would close them (uvicorn: 5 s): no request races a close.
            limits=httpx2.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=4.0),
        )
        self._dated = openai.AsyncAzureOpenAI(
            azure_endpoint=self.endpoint,
            api_version=settings.api_version,
            azure_ad_token_provider=token_provider,
            max_retries=0,
            http_client=self._http,
        )
        self._v1 = openai.AsyncOpenAI(
            base_url=f"{self.endpoint}/openai/v1",
            api_key=token_provider,
            max_retries=0,
            http_client=self._http,
        )

    async def send(
        self, call: ModelCall, body: dict[str, Any], request_id: str, deployment: str | None = None
    ) -> UpstreamResponse:
        """Send the call to ``deployment`` (default: the caller's); return the response with headers read and body
        unread (errors are read)."""
        deployment = deployment or call.deployment
        path = call.operation.upstream_path(deployment)
        if deployment != call.deployment and not call.operation.style.deployment_in_path:
            body = {**body, "model": deployment}  # this backend's deployment has another name
        options: RequestOptions = {"headers": {"x-ms-client-request-id": request_id}}
        if call.operation.style.dated:
            client: openai.AsyncOpenAI = self._dated
            options["params"] = {"api-version": call.api_version}
        else:
            client = self._v1
        try:
            raw = await client.post(path, cast_to=httpx2.Response, body=body, options=options, stream=True)
        except openai.APIStatusError as exc:
            # Non-2xx answers arrive as exceptions; the response (already read) goes back to the caller as is.
            return UpstreamResponse(exc.response.status_code, passthrough_headers(exc.response.headers), exc.response)
        except openai.APITimeoutError as exc:
            raise UpstreamUnavailable(
                504,
                "The upstream model service did not answer in time.",
                code="upstream_timeout",
                may_have_run=not isinstance(exc.__cause__, _NOT_SENT),
            ) from exc
        except ClientAuthenticationError as exc:
            log.error("could not get an Entra token for Azure OpenAI from the managed identity")
            raise GatewayError(
                502, "The gateway could not authenticate to the upstream model service.", code="upstream_auth_failed"
            ) from exc
        except openai.APIConnectionError as exc:
            log.warning("upstream connection failed: %s", type(exc.__cause__ or exc).__name__)
            raise UpstreamUnavailable(
                502,
                "The upstream model service could not be reached.",
                code="upstream_unreachable",
                may_have_run=not isinstance(exc.__cause__, _NOT_SENT),
            ) from exc
        return UpstreamResponse(raw.status_code, passthrough_headers(raw.headers), raw)

    async def aclose(self) -> None:
        await self._http.aclose()
