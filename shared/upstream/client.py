"""The client of one Azure OpenAI endpoint: managed identity, raw pass-through, no hidden retries.

A lean HTTP pass-through over aiohttp (D55): the gateway sends the caller's (guarded) body to a URL it builds once per
call from precomputed bases, with an Entra token from the managed identity, and hands the raw response on, so
unknown request and response fields, SSE bytes and rate-limit headers survive unchanged. It replaced the ``openai``
SDK over httpx2, which cost about a third of the gateway's CPU per call (request options deep-copied and
validated, a generic URL and header merge, httpcore's per-request pool bookkeeping) for nothing the gateway used:
it already asked the SDK for the raw response and turned retries off. Nothing here retries: whether a call is
tried on another backend is decided in one place, :mod:`shared.upstream.pool`, and otherwise the caller's SDK
decides, with the upstream's ``retry-after`` headers in hand. Transport failures become :class:`UpstreamUnavailable`
(no answer) or :class:`UpstreamBroken` (an answer broke off) here, so no other module knows the HTTP library.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError
from yarl import URL

from shared.errors import GatewayError
from shared.protocol.calls import ModelCall
from shared.protocol.payloads import StreamedBody
from shared.settings import UpstreamSettings

log = logging.getLogger(__name__)

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"

# Response headers the caller gets back from the upstream: rate limits, retry hints and request ids.
_PASSTHROUGH_PREFIXES = ("x-ratelimit-", "x-ms-", "openai-")
_PASSTHROUGH_HEADERS = frozenset({"retry-after", "retry-after-ms", "apim-request-id", "x-request-id"})

# Names the backend that served a call: a short label from the settings, never a URL.
BACKEND_HEADER = "x-gateway-backend"

TokenProvider = Callable[[], Awaitable[str]]

# What a call sends upstream: a JSON object, an upload streamed from its spool, or nothing (GET, DELETE).
Body = dict[str, Any] | StreamedBody | None

_DROPPED = frozenset({errno.ECONNRESET, errno.EPIPE})


def passthrough_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in headers.items()
        if name.lower() in _PASSTHROUGH_HEADERS or name.lower().startswith(_PASSTHROUGH_PREFIXES)
    }


def environment_proxy(endpoint: str) -> str | None:
    """The proxy the environment names for ``endpoint`` (``HTTPS_PROXY``/``HTTP_PROXY``, minus ``NO_PROXY``)."""
    url = URL(endpoint)
    if url.host is None or urllib.request.proxy_bypass(url.host):
        return None
    return urllib.request.getproxies().get(url.scheme)


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

    def __init__(
        self, status: int, message: str, *, code: str, may_have_run: bool, connection_dropped: bool = False
    ) -> None:
        super().__init__(status, message, code=code)
        # False when the request never left this process (connect failures): repeating it elsewhere is always safe.
        self.may_have_run = may_have_run
        # The server closed or reset the connection before any answer: most often a keep-alive connection it had
        # just closed as idle, while this process had not yet seen the close (a busy event loop).
        self.connection_dropped = connection_dropped


class UpstreamBroken(Exception):
    """An answer that had begun broke off (connection lost, read timeout) before its end."""


class UpstreamResponse:
    """An upstream answer whose body has not been read yet (unless it is an error)."""

    def __init__(self, raw: aiohttp.ClientResponse) -> None:
        self.raw = raw
        self.status = raw.status
        self.upstream_headers: Mapping[str, str] = raw.headers  # all of them, case-insensitive (retry hints)
        self.headers = passthrough_headers(raw.headers)  # what the caller gets back
        self.backend: str | None = None  # the label of the backend that answered

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
            return await self.raw.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GatewayError(
                502, "The upstream model service broke off its response.", code="upstream_incomplete"
            ) from exc
        finally:
            self.raw.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (for streams); :class:`UpstreamBroken` if it breaks off."""
        try:
            async for chunk in self.raw.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamBroken(type(exc).__name__) from exc

    async def aclose(self) -> None:
        """Done with the answer: a fully read connection goes back to the pool, any other is closed."""
        if self.raw.content.at_eof():
            self.raw.release()
        else:
            self.raw.close()


class EndpointClient:
    """One Azure OpenAI endpoint (account); every backend on that endpoint shares its connection pool."""

    def __init__(self, endpoint: str, token_provider: TokenProvider, settings: UpstreamSettings) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._dated_base = f"{self.endpoint}/openai"
        self._v1_base = f"{self.endpoint}/openai/v1"
        self._token = token_provider
        # HTTPS_PROXY / NO_PROXY as the httpx client honoured them, read once here: aiohttp's trust_env re-reads the
        # environment on every request (measured: ~30 % more CPU per call). CA settings (SSL_CERT_FILE) are OpenSSL's.
        self._proxy = environment_proxy(self.endpoint)
        self._max_connections = settings.max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.connect_timeout_seconds, sock_read=settings.timeout_seconds
        )
        # Made in the event loop that uses them: pooled connections, and one never-reused connection per request for
        # sending a call again after a pooled connection turned out to be closed (the pool may hold more of those).
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    def _client(self, fresh_connection: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(fresh_connection)
        if session is None or session.closed:
            # No hidden ceiling: GATEWAY_UPSTREAM_MAX_CONNECTIONS (0: none); calls in flight are bounded by admission
            # control, which refuses at once, where a full pool would queue a call until its connect timeout (D79).
            connector = (
                aiohttp.TCPConnector(limit=self._max_connections, force_close=True)
                if fresh_connection
                # Idle connections close before a server would close them (uvicorn: 5 s): few requests race a close.
                else aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=4.0)
            )
            session = self._sessions[fresh_connection] = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"accept": "application/json", "user-agent": "ai-gateway"},
                json_serialize=json.dumps,
            )
        return session

    def url(self, call: ModelCall, deployment: str) -> URL:
        path = call.operation.upstream_path(deployment, call.object_id)  # every segment percent-encoded
        query = urlencode(call.query, quote_via=quote) if call.query else ""
        if call.operation.style.dated:
            version = f"api-version={call.api_version}"
            return URL(f"{self._dated_base}{path}?{version}{'&' + query if query else ''}", encoded=True)
        return URL(f"{self._v1_base}{path}{'?' + query if query else ''}", encoded=True)

    async def send(
        self,
        call: ModelCall,
        body: Body,
        request_id: str,
        deployment: str | None = None,
        *,
        fresh_connection: bool = False,
    ) -> UpstreamResponse:
        """Send the call to ``deployment`` (default: the caller's), on a new connection when ``fresh_connection``;
        return the response with headers read and body unread (errors are read).

        ``body``: a JSON object, a :class:`StreamedBody` (an upload, sent as it is read from its spool), or None
        (GET, DELETE)."""
        deployment = deployment or call.deployment
        if deployment != call.deployment and not call.operation.style.deployment_in_path:
            # This backend's deployment has another name.
            if isinstance(body, StreamedBody):
                body = body.for_deployment(deployment)
            elif body is not None:
                body = {**body, "model": deployment}
        try:
            token = await self._token()
        except ClientAuthenticationError as exc:
            log.error("could not get an Entra token for Azure OpenAI from the managed identity")
            raise GatewayError(
                502, "The gateway could not authenticate to the upstream model service.", code="upstream_auth_failed"
            ) from exc
        headers = {"authorization": f"Bearer {token}", "x-ms-client-request-id": request_id}
        data: bytes | AsyncIterator[bytes] | None = None
        if isinstance(body, StreamedBody):
            headers["content-type"] = body.content_type
            headers["content-length"] = str(body.length)  # sent as it is, not chunked
            data = body.open()
        elif body is not None:
            headers["content-type"] = "application/json"
            data = json.dumps(body).encode()
        try:
            raw = await self._client(fresh_connection).request(
                call.operation.method,
                self.url(call, deployment),
                data=data,
                headers=headers,
                allow_redirects=False,  # an upstream redirect is the caller's to see, never followed with the token
                proxy=self._proxy,
            )
        except aiohttp.ConnectionTimeoutError as exc:  # no connection within the connect timeout: never sent
            raise _unavailable_timeout(may_have_run=False) from exc
        except aiohttp.ClientConnectorError as exc:  # refused, unresolvable, TLS failed: never sent
            log.warning("upstream connection failed: %s", type(exc).__name__)
            raise _unreachable(may_have_run=False) from exc
        except TimeoutError as exc:  # sent, no answer within the read timeout
            raise _unavailable_timeout(may_have_run=True) from exc
        except aiohttp.ClientError as exc:  # the connection broke before an answer
            log.warning("upstream connection failed: %s", type(exc).__name__)
            raise connection_lost(exc) from exc
        response = UpstreamResponse(raw)
        if not response.ok:
            # Error answers are read at once (small), so passing them on or discarding them frees the connection.
            try:
                await raw.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raw.close()
                raise _unreachable(may_have_run=True) from exc
            except BaseException:  # cancelled: never leave the connection checked out
                raw.close()
                raise
        return response

    async def aclose(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
        await asyncio.sleep(0)  # let the connectors close their transports before the loop goes


def connection_lost(exc: aiohttp.ClientError) -> UpstreamUnavailable:
    """What a connection that broke before any answer means for the call."""
    # Writing the request failed (the connection was already closing): it never reached the upstream.
    unwritten = isinstance(exc, aiohttp.ClientConnectionResetError) or isinstance(
        exc.__cause__, aiohttp.ClientConnectionResetError
    )
    dropped = unwritten or isinstance(exc, aiohttp.ServerDisconnectedError) or getattr(exc, "errno", None) in _DROPPED
    return _unreachable(may_have_run=not unwritten, connection_dropped=dropped)


def _unavailable_timeout(*, may_have_run: bool) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        504, "The upstream model service did not answer in time.", code="upstream_timeout", may_have_run=may_have_run
    )


def _unreachable(*, may_have_run: bool, connection_dropped: bool = False) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        502,
        "The upstream model service could not be reached.",
        code="upstream_unreachable",
        may_have_run=may_have_run,
        connection_dropped=connection_dropped,
    )
