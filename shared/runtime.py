"""The gateway's process-wide state: settings read once at start-up, everything else built on first use.

``function_app.py`` creates one :class:`Runtime` at import, so a bad setting fails the app at start-up
(indexing) with a message that names it. Clients (upstream, Table Storage, the embedded simulator) are built
lazily inside the worker's event loop on the first request.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

from azure.core.credentials_async import AsyncTokenCredential
from starlette.requests import Request
from starlette.responses import Response

from shared.accounting import Accounting
from shared.auth.apikeys import ApiKeyStore
from shared.auth.authenticator import Authenticator
from shared.auth.easyauth import easy_auth_enabled
from shared.auth.entra import EntraTokenValidator
from shared.authorization import Authorizer, CallerPolicyStore
from shared.config import Settings
from shared.errors import GatewayError
from shared.ledger import UsageLedger
from shared.operations import Operation
from shared.pipeline import Gateway
from shared.responses import error_response
from shared.storage import API_KEYS_TABLE, CALLER_POLICIES_TABLE, USAGE_TABLE, ensure_tables, table_service
from shared.telemetry import cap_library_loggers
from shared.upstream import Upstream, managed_identity_token_provider, simulator_token_provider

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.settings = Settings.from_env(self.env)
        cap_library_loggers()
        self._gateway: Gateway | None = None
        self._lock = asyncio.Lock()
        self.simulator = None
        self.tables = None
        self.api_keys: ApiKeyStore | None = None
        self.policies: CallerPolicyStore | None = None
        self.ledger: UsageLedger | None = None
        self._credential: AsyncTokenCredential | None = None

    async def gateway(self) -> Gateway:
        if self._gateway is None:
            async with self._lock:
                if self._gateway is None:
                    try:
                        self._gateway = await self._build()
                    except BaseException:
                        await self._close_clients()  # the next request starts clean instead of piling up sessions
                        raise
        return self._gateway

    async def model_call(self, request: Request, operation: Operation, deployment: str | None = None) -> Response:
        """The function handlers' entry point: a gateway that cannot start answers 503, OpenAI-shaped."""
        try:
            gateway = await self.gateway()
        except Exception:
            log.exception("the gateway could not start (Table Storage or upstream client set-up failed)")
            return error_response(GatewayError(
                503, "The gateway cannot reach its storage right now; retry shortly.", code="gateway_unavailable",
                headers={"Retry-After": "5"}))
        return await gateway.model_call(request, operation, deployment)

    async def aclose(self) -> None:
        """Close network clients (the local dev host calls this on shutdown; Functions workers just exit)."""
        if self._gateway is not None:
            await self._gateway.drain()
            await self._gateway.accounting.ledger.flush()
            await self._gateway.upstream.aclose()
        await self._close_clients()

    def _managed_identity(self) -> AsyncTokenCredential:
        """One credential for the process: Table Storage and Azure OpenAI share its token cache and sessions."""
        if self._credential is None:
            from azure.identity.aio import DefaultAzureCredential

            self._credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        return self._credential

    async def _close_clients(self) -> None:
        if self.tables is not None:
            await self.tables.close()
            self.tables = None
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None
        if self._credential is not None:
            await self._credential.close()
            self._credential = None

    async def _build(self) -> Gateway:
        settings = self.settings
        self.tables = table_service(settings, self._managed_identity)
        await ensure_tables(self.tables)
        if settings.uses_simulator:
            from shared.simulator.embedded import EmbeddedSimulator

            self.simulator = EmbeddedSimulator().start()
            log.warning("AZURE_OPENAI_ENDPOINT is not set: using the local Azure OpenAI simulator at %s",
                        self.simulator.url)
            endpoint, tokens = self.simulator.url, simulator_token_provider()
        elif settings.upstream_is_local:
            endpoint, tokens = settings.azure_openai_endpoint, simulator_token_provider()
        else:
            endpoint, tokens = settings.azure_openai_endpoint, managed_identity_token_provider(self._managed_identity())
        upstream = Upstream(
            endpoint,
            tokens,
            default_api_version=settings.azure_openai_api_version,
            timeout_seconds=settings.upstream_timeout_seconds,
            connect_timeout_seconds=settings.upstream_connect_timeout_seconds,
        )
        self.api_keys = (
            ApiKeyStore(self.tables.get_table_client(API_KEYS_TABLE), cache_seconds=settings.api_key_cache_seconds)
            if settings.api_keys_enabled
            else None
        )
        validator = (
            EntraTokenValidator(
                tenant_ids=settings.auth_tenant_ids,
                client_id=settings.auth_client_id,
                authority=settings.auth_authority,
            )
            if settings.auth_client_id
            else None
        )
        authenticator = Authenticator(
            easy_auth=easy_auth_enabled(self.env),
            validator=validator,
            key_store=self.api_keys,
            local_dev=settings.local_dev_auth,
            env=self.env,
        )
        self.policies = CallerPolicyStore(self.tables.get_table_client(CALLER_POLICIES_TABLE))
        self.ledger = UsageLedger(self.tables.get_table_client(USAGE_TABLE))
        accounting = Accounting(self.ledger, settings.prices)
        return Gateway(settings, authenticator, Authorizer(self.policies), upstream, accounting)


def runtime_from_environment() -> Runtime:
    return Runtime(os.environ)
