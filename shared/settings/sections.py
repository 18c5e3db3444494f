"""The gateway's settings as small frozen sections, one per concern.

Each component receives only the section it needs (the upstream client gets :class:`UpstreamSettings`, the
guardrails :class:`GuardrailSettings`, ...), so what a component may depend on is visible in its signature.
:class:`Settings` only groups them; :func:`shared.settings.env.settings_from_env` builds it from the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

from shared.accounting.prices import Price
from shared.protocol.api_versions import DEFAULT_API_VERSION, DEFAULT_STREAM_USAGE_MIN_API_VERSION
from shared.quotas.limits import Limits


@dataclass(frozen=True)
class BackendSettings:
    """One Azure OpenAI deployment a call may be sent to: a member of a backend pool (``GATEWAY_BACKENDS``)."""

    label: str  # short, shown to callers in x-gateway-backend and stored in the ledger: never a URL or secret
    endpoint: str
    deployment: str | None = None  # the deployment's name on this endpoint; None: the name the caller used
    priority: int = 1  # lower numbers first; a higher number serves only when no lower one can
    weight: int = 1  # share of the traffic within its priority group

    @property
    def is_local(self) -> bool:
        """A plain-HTTP loopback endpoint (a local simulator): gets a placeholder token, never a real one."""
        return urlparse(self.endpoint).scheme == "http"


# The pool key that serves every deployment without a pool of its own.
ANY_DEPLOYMENT = "*"


@dataclass(frozen=True)
class UpstreamSettings:
    # Azure OpenAI. None means: use the embedded local simulator (never allowed in Azure).
    endpoint: str | None = None
    api_version: str = DEFAULT_API_VERSION
    timeout_seconds: float = 120.0
    connect_timeout_seconds: float = 10.0
    stream_usage_min_api_version: str = DEFAULT_STREAM_USAGE_MIN_API_VERSION
    # Backend pools by the deployment name callers use ("*": any other). Empty: one backend, ``endpoint``.
    pools: Mapping[str, tuple[BackendSettings, ...]] = field(default_factory=dict)
    max_attempts: int = 3  # attempts per call across a pool, the first one included
    failover_seconds: float = 30.0  # no new attempt starts later than this after the first one
    cooldown_seconds: float = 5.0  # how long a 429 without retry-after-ms/retry-after cools a backend
    breaker_failures: int = 5  # consecutive failures (5xx, timeouts, connection errors) that open the circuit
    breaker_open_seconds: float = 30.0  # how long an open circuit stays open before a probe may half-open it
    # Connections per endpoint (account); 0: no limit. Calls in flight are bounded by ``max_inflight_calls`` instead,
    # so that a call past the bound is refused at once rather than queued for a connection until it times out (D79).
    max_connections: int = 0
    # Model calls one process holds at once (streams until their end); past it a call is refused with 503 (D80).
    max_inflight_calls: int = 500

    @property
    def uses_simulator(self) -> bool:
        """No endpoint and no pool for every deployment: the gateway starts its embedded simulator."""
        return self.endpoint is None and ANY_DEPLOYMENT not in self.pools

    @property
    def is_local(self) -> bool:
        """A plain-HTTP loopback upstream (a separately run simulator): gets a placeholder token, never a real one."""
        return self.endpoint is not None and urlparse(self.endpoint).scheme == "http"


@dataclass(frozen=True)
class GuardrailSettings:
    allowed_deployments: frozenset[str] | None = None  # None: any well-formed deployment name
    max_request_bytes: int = 4 * 1024 * 1024
    # File uploads (multipart, streamed to local disk): Azure OpenAI's own limit for a file, 512 MB (docs/decisions.md).
    max_file_bytes: int = 512 * 1000 * 1000
    max_prompt_tokens: int = 128_000
    max_output_tokens: int = 16_384
    # Deployment -> model name (GATEWAY_DEPLOYMENT_MODELS), for the tokenizer; a deployment not listed is read as
    # a model name (``gpt-4o-mini``, ``prod-gpt-4.1``), and one naming no known family counts as o200k_base.
    deployment_models: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StorageSettings:
    """Table Storage: a connection string (local, Azurite) or a table endpoint used with the managed identity."""

    connection_string: str | None = None
    table_endpoint: str | None = None
    max_connections: int = 100  # concurrent Table Storage requests per process (aiohttp's default, chosen: D79)


@dataclass(frozen=True)
class AuthSettings:
    tenant_ids: tuple[str, ...] = ()
    client_id: str | None = None
    authority: str = "https://login.microsoftonline.com"
    easy_auth: bool = False  # App Service Authentication runs in front of the app (WEBSITE_AUTH_ENABLED)
    api_keys_enabled: bool = True
    api_key_cache_seconds: float = 30.0
    local_dev: bool = False


@dataclass(frozen=True)
class BudgetAlertSettings:
    """Budget alerts (shared.finance.alerts, docs/finance.md): thresholds in percent of a monthly limit, and an
    optional https webhook whose secret signs each body (never logged, never in a repr)."""

    thresholds: tuple[int, ...] = (80, 100)
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class AccountingSettings:
    # USD per million tokens by deployment, for the usage ledger's cost column.
    prices: Mapping[str, Price] = field(default_factory=dict)
    # The Azure OpenAI account's resource id and region, for the FOCUS export's ResourceId, BillingAccountId and
    # RegionId (docs/finance.md); None: ids derived from the upstream endpoint, no region.
    openai_resource_id: str | None = None
    openai_region: str | None = None
    budget_alerts: BudgetAlertSettings = field(default_factory=BudgetAlertSettings)


@dataclass(frozen=True)
class LedgerSettings:
    """Durability of the usage ledger (docs/durability.md)."""

    journal_dir: str | None = None  # None: no journal (rows wait in memory only)
    journal_fsync: bool = False
    max_backlog_rows: int = 10_000
    max_backlog_seconds: float = 60.0


@dataclass(frozen=True)
class QuotaSettings:
    defaults: Limits = field(default_factory=Limits)  # GATEWAY_DEFAULT_<LIMIT>; a policy overrides per caller
    # Output tokens reserved for a call that sets no max_tokens/max_completion_tokens/max_output_tokens; None: the
    # guardrail ceiling (GATEWAY_MAX_OUTPUT_TOKENS), the only figure no answer can exceed.
    output_allowance: int | None = None
    fail_open: bool = False  # storage unreachable: refuse (503), or admit against per-instance limits


@dataclass(frozen=True)
class TelemetrySettings:
    """Where spans and metrics go (docs/observability.md). ``azure_monitor``: the Application Insights the
    Functions worker configured (``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``), or one the app configures once
    from ``APPLICATIONINSIGHTS_CONNECTION_STRING``; ``console``/``otlp``: local diagnostics; ``off``: nothing."""

    exporter: str = "off"  # off | azure_monitor | console | otlp
    trace_sample_ratio: float = 1.0  # console/otlp only; in Azure OTEL_TRACES_SAMPLER(_ARG) configure the distro
    max_callers: int = 1000  # distinct caller ids per metric stream before the rest count as "_other"
    max_deployments: int = 100


@dataclass(frozen=True)
class Settings:
    upstream: UpstreamSettings
    guardrails: GuardrailSettings
    storage: StorageSettings
    auth: AuthSettings
    accounting: AccountingSettings
    quotas: QuotaSettings = field(default_factory=QuotaSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    in_azure: bool = False
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
