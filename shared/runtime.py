"""The composition root: the only module that builds and wires the gateway's parts.

``function_app.py`` creates one :class:`Runtime` at import, so a bad setting fails the app at start-up
(indexing) with a message that names it. The network clients (Table Storage, the upstream, the embedded
simulator) are built inside the worker's event loop on the first request, all at once, into one
:class:`Services`: handlers get that complete object or an error, never a half-built one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from azure.core.credentials_async import AsyncTokenCredential
from azure.data.tables.aio import TableClient, TableServiceClient
from starlette.requests import Request
from starlette.responses import Response

from shared import telemetry
from shared.accounting.journal import Journal, ReplayReport, journal_target
from shared.accounting.ledger import BacklogLimits, UsageLedger
from shared.accounting.prices import PriceBook
from shared.accounting.settlement import Accounting
from shared.auth.apikeys import ApiKeyStore
from shared.auth.authenticator import Authenticator
from shared.auth.entra import EntraTokenValidator
from shared.errors import error_response, gateway_unavailable
from shared.finance.alerts import BudgetAlerts
from shared.finance.budgets import caller_limits
from shared.finance.daily import DailyRollup, RollupPlan, RollupReport
from shared.finance.rebuild import RebuildJobs
from shared.pipeline import Gateway
from shared.policy.authorization import Authorizer
from shared.policy.callers import CallerPolicyStore
from shared.protocol.encodings import DEFAULT_ENCODING, encoder
from shared.protocol.operations import Operation
from shared.quotas.counters import CounterStore
from shared.quotas.enforcer import QuotaEnforcer
from shared.quotas.leases import QuotaLeases
from shared.settings import BackendSettings, Settings, settings_from_env
from shared.settings.sections import ANY_DEPLOYMENT
from shared.stateful.batches import FilesAndBatches
from shared.stateful.objects import ObjectKind, ObjectRegistry
from shared.stateful.responses import StoredResponses
from shared.storage.tables import (
    API_KEYS_TABLE,
    CALLER_POLICIES_TABLE,
    DAILY_USAGE_TABLE,
    HOURLY_USAGE_TABLE,
    OBJECTS_TABLE,
    PRICES_TABLE,
    QUOTA_TABLE,
    USAGE_TABLE,
    StorageOperations,
    ensure_tables,
    table_service,
)
from shared.telemetry.logs import cap_library_loggers
from shared.telemetry.setup import configure as configure_telemetry
from shared.upstream.admission import Admission
from shared.upstream.client import TokenProvider, managed_identity_token_provider, simulator_token_provider
from shared.upstream.pool import Upstream

if TYPE_CHECKING:
    from shared.local.simulator.embedded import EmbeddedSimulator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """Everything the handlers use, built together once per process."""

    settings: Settings
    tables: TableServiceClient
    gateway: Gateway
    authenticator: Authenticator
    policies: CallerPolicyStore
    api_keys: ApiKeyStore | None  # None: gateway API keys are switched off (GATEWAY_API_KEYS_ENABLED=false)
    ledger: UsageLedger
    usage_table: TableClient  # what finance reads
    quotas: QuotaEnforcer
    simulator: EmbeddedSimulator | None  # the embedded local upstream, when AZURE_OPENAI_ENDPOINT is empty
    prices: PriceBook  # GATEWAY_PRICES plus the price versions admins add; as a Mapping: the prices in force now
    daily_usage_table: TableClient  # finance's daily table, derived from the ledger by daily_rollup
    daily_rollup: DailyRollup
    objects: ObjectRegistry  # owner and backend of every stored object (responses, files, batches)
    files_batches: FilesAndBatches  # files and batches: owned, pinned to their backend, batches settled when they end
    stored_responses: StoredResponses  # retrieve, delete, cancel, input items; background settlement


REBUILD_RESUME_SECONDS = 120.0  # a timer run spends at most about this on resumed rebuild jobs (then the next run)

# gen-0 collections every 20,000 allocations instead of 700: a few per request instead of dozens.
GC_YOUNG_THRESHOLD = 20_000


def freeze_startup_heap() -> None:
    """Once the services exist, everything built so far (modules, settings, clients, tokenizer tables, caches) lives
    as long as the process: move it out of the garbage collector's scans, and let the young generation grow larger
    before a collection, since a request allocates thousands of short-lived objects (D58, docs/performance.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


class Runtime:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self.settings = settings_from_env(self._env)
        cap_library_loggers()
        self.telemetry = configure_telemetry(self.settings.telemetry, self._env)
        telemetry.install(self.telemetry)
        self._services: Services | None = None
        self._lock = asyncio.Lock()
        self._credential: AsyncTokenCredential | None = None
        self._tables: TableServiceClient | None = None
        self._simulator: EmbeddedSimulator | None = None
        self._azure_openai_tokens: TokenProvider | None = None
        self._recovery: asyncio.Task[ReplayReport] | None = None
        self.storage_operations = StorageOperations()  # every Table Storage request of the process, logged at exit

    async def services(self) -> Services:
        """The built services; the first call builds them (a failure leaves nothing behind and raises)."""
        if self._services is None:
            async with self._lock:
                if self._services is None:
                    try:
                        self._services = await self._build()
                    except BaseException:
                        await self._close_clients()  # the next request starts clean instead of piling up sessions
                        raise
                    freeze_startup_heap()
        return self._services

    async def model_call(self, request: Request, operation: Operation, deployment: str | None = None) -> Response:
        """The function handlers' entry point: a gateway that cannot start answers 503, OpenAI-shaped."""
        try:
            services = await self.services()
        except Exception:
            log.exception("the gateway could not start (Table Storage or upstream client set-up failed)")
            return error_response(gateway_unavailable())
        return await services.gateway.model_call(request, operation, deployment)

    async def aclose(self) -> None:
        """Flush what is queued and close network clients (the local dev host calls this on shutdown)."""
        if self._recovery is not None:
            self._recovery.cancel()
            self._recovery = None
        if self._services is not None:
            await self._services.gateway.drain()
            await self._services.quotas.aclose()  # hand leased budget back for the other instances
            await self._services.ledger.close()  # what storage did not take in time stays in the journal
            await self._services.gateway.upstream.aclose()
            self._services = None
        await self._close_clients()
        if self.storage_operations.total():
            log.info("table storage operations: %s", self.storage_operations.to_json())
        self.telemetry.shutdown()

    async def recover_usage(self) -> ReplayReport:
        """Replay orphaned ledger journal files (the timer function and start-up call this)."""
        return await (await self.services()).ledger.recover()

    async def roll_up_usage(self, plans: list[RollupPlan]) -> list[RollupReport]:
        """Derive rows of the daily usage table from the ledger (the finance timer and the rebuild call this)."""
        rollup = (await self.services()).daily_rollup
        return [await rollup.day(plan.day, plan.hours) for plan in plans]

    async def roll_up_usage_on_timer(self, now: datetime) -> list[RollupReport]:
        """The rollup timer's run: recent hours and every hour marked as having received late rows; then the budget
        alerts of the month so far (each emitted once across instances: shared.finance.alerts)."""
        services = await self.services()
        reports = await services.daily_rollup.on_timer(now)
        alerts = BudgetAlerts(
            services.tables.get_table_client(HOURLY_USAGE_TABLE),
            services.daily_usage_table,
            caller_limits(services.quotas, services.policies),
            services.settings.accounting.budget_alerts,
        )
        await alerts.check(now)
        # Rebuild jobs whose instance went away mid-job (recycled, scaled in) carry on from their last step.
        jobs = RebuildJobs(services.tables.get_table_client(HOURLY_USAGE_TABLE), services.daily_rollup)
        await jobs.resume_stale(now, budget_seconds=REBUILD_RESUME_SECONDS)
        return reports

    async def settle_background_responses(self) -> dict[str, int]:
        """The settlement timer's run: background responses seen finished are settled (shared.stateful.responses)."""
        services = await self.services()
        return await services.stored_responses.settle_finished(f"timer-{uuid.uuid4()}")

    def _managed_identity(self) -> AsyncTokenCredential:
        """One credential for the process: Table Storage and Azure OpenAI share its token cache and sessions."""
        if self._credential is None:
            from azure.identity.aio import DefaultAzureCredential

            self._credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        return self._credential

    async def _close_clients(self) -> None:
        if self._tables is not None:
            await self._tables.close()
            self._tables = None
        if self._simulator is not None:
            self._simulator.stop()
            self._simulator = None
        if self._credential is not None:
            await self._credential.close()
            self._credential = None
            self._azure_openai_tokens = None

    def _default_backend(self) -> BackendSettings | None:
        """What serves deployments without a pool of their own: the "*" pool (None here), AZURE_OPENAI_ENDPOINT, or
        the embedded simulator."""
        settings = self.settings.upstream
        if ANY_DEPLOYMENT in settings.pools:
            return None
        if settings.endpoint is None:
            from shared.local.simulator.embedded import EmbeddedSimulator

            self._simulator = EmbeddedSimulator().start()
            log.warning(
                "AZURE_OPENAI_ENDPOINT is not set: using the local Azure OpenAI simulator at %s", self._simulator.url
            )
            return BackendSettings(label="simulator", endpoint=self._simulator.url)
        return BackendSettings(label="default", endpoint=settings.endpoint)

    def _token_provider(self, backend: BackendSettings) -> TokenProvider:
        """A placeholder for a loopback simulator; otherwise the managed identity's, one provider for all endpoints."""
        if backend.is_local:
            return simulator_token_provider()
        if self._azure_openai_tokens is None:
            self._azure_openai_tokens = managed_identity_token_provider(self._managed_identity())
        return self._azure_openai_tokens

    async def _build(self) -> Services:
        settings = self.settings
        tables = self._tables = table_service(settings.storage, self._managed_identity, self.storage_operations)
        await ensure_tables(tables)
        upstream = Upstream.from_settings(settings.upstream, self._token_provider, self._default_backend())
        auth = settings.auth
        api_keys = (
            ApiKeyStore(tables.get_table_client(API_KEYS_TABLE), cache_seconds=auth.api_key_cache_seconds)
            if auth.api_keys_enabled
            else None
        )
        validator = (
            EntraTokenValidator(tenant_ids=auth.tenant_ids, client_id=auth.client_id, authority=auth.authority)
            if auth.client_id
            else None
        )
        authenticator = Authenticator(
            easy_auth=auth.easy_auth,
            validator=validator,
            key_store=api_keys,
            local_dev=auth.local_dev,
            env=self._env,
        )
        policies = CallerPolicyStore(tables.get_table_client(CALLER_POLICIES_TABLE))
        usage_table = tables.get_table_client(USAGE_TABLE)
        ledger = self._ledger(usage_table)
        prices = PriceBook(settings.accounting.prices, tables.get_table_client(PRICES_TABLE))
        await prices.refresh()
        quotas = QuotaEnforcer(
            settings.quotas,
            QuotaLeases(CounterStore(tables.get_table_client(QUOTA_TABLE), instance_id=uuid.uuid4().hex)),
            policies,
            prices,
            output_ceiling=settings.guardrails.max_output_tokens,
        )
        admission = Admission(settings.upstream.max_inflight_calls)
        accounting = Accounting(ledger, prices, quotas, policies)
        objects = ObjectRegistry(tables.get_table_client(OBJECTS_TABLE), cached=[ObjectKind.RESPONSE])
        stored_responses = StoredResponses(objects, upstream, accounting, prices)
        gateway = Gateway(
            settings.guardrails,
            authenticator,
            Authorizer(policies),
            upstream,
            accounting,
            stream_usage_min_api_version=settings.upstream.stream_usage_min_api_version,
            admission=admission,
            stored=stored_responses,
        )
        telemetry.watch_calls_in_flight(lambda: admission.in_flight)
        files_batches = FilesAndBatches(upstream, objects, accounting, policies, settings.guardrails)
        daily_table = tables.get_table_client(DAILY_USAGE_TABLE)
        # Rows an earlier process left unwritten (a crash, a kill) reach the table without waiting for the timer.
        self._recovery = asyncio.get_running_loop().create_task(_recover_quietly(ledger))
        return Services(
            settings,
            tables,
            gateway,
            authenticator,
            policies,
            api_keys,
            ledger,
            usage_table,
            quotas,
            self._simulator,
            prices,
            daily_table,
            DailyRollup(usage_table, tables.get_table_client(HOURLY_USAGE_TABLE), daily_table, policies),
            objects,
            files_batches,
            stored_responses,
        )

    def _ledger(self, usage_table: TableClient) -> UsageLedger:
        settings = self.settings.ledger
        journal = None
        if settings.journal_dir is not None:
            try:
                journal = Journal(Path(settings.journal_dir), journal_target(usage_table), fsync=settings.journal_fsync)
            except OSError as exc:  # serve, recorded through storage only; /api/ready shows "journal": false
                log.error("the ledger journal directory cannot be used (%s): rows wait in memory only", exc)
        else:
            log.warning("GATEWAY_LEDGER_JOURNAL_DIR=off: usage rows wait for Table Storage in memory only")
        limits = BacklogLimits(max_rows=settings.max_backlog_rows, max_seconds=settings.max_backlog_seconds)
        return UsageLedger(usage_table, journal=journal, limits=limits)


async def _recover_quietly(ledger: UsageLedger) -> ReplayReport:
    try:
        return await ledger.recover()
    except Exception:
        log.exception("replaying the ledger journal at start-up failed; the timer function retries")
        return ReplayReport()


def runtime_from_environment() -> Runtime:
    """The function app's runtime (built when ``function_app`` is imported: in Azure, while the worker indexes the
    app on an instance that is warming up). The default tokenizer is built here too, not in the first call: that
    call is faster, and the tokenizer's build-time peak of memory falls before the clients and caches exist."""
    runtime = Runtime(os.environ)
    try:
        encoder(DEFAULT_ENCODING)
    except Exception:  # a broken vocabulary package must not stop the app (and its health endpoints) from loading
        log.exception("the default tokenizer could not be built at start-up; model calls will report it")
    return runtime
