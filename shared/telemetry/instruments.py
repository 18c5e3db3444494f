"""The gateway's metric instruments and the tracer, created once from whichever providers telemetry was set up with.

Metric names and dimensions are the contract the Azure Monitor workbook and alert rules query
(bicep/modules/observability.bicep, docs/observability.md); change them together. Every dimension is bounded:
caller ids and deployment names pass through :class:`Bounded` (at most N distinct values per process, the rest
count as ``_other``), everything else is an enum of the gateway's own (outcomes, error codes, limits, token kinds).
Request ids, prompts, keys and principal names are never dimensions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.trace import Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

SCOPE = "gateway"

# Span and metric attribute names. GenAI ones follow the OpenTelemetry GenAI semantic conventions.
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
MAX_TOKENS = "gen_ai.request.max_tokens"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOKEN_TYPE = "gen_ai.token.type"  # noqa: S105 (an attribute name)
STATUS = "http.response.status_code"
ERROR_TYPE = "error.type"
CALLER = "gateway.caller_id"
DEPLOYMENT = "gateway.deployment"
GATEWAY_OPERATION = "gateway.operation"
BACKEND = "gateway.backend"
BACKEND_EVENT = "gateway.backend.event"
QUOTA_DECISION = "gateway.quota.decision"
QUOTA_LIMIT = "gateway.quota.limit"
BUDGET_THRESHOLD = "gateway.budget.threshold_percent"
REQUEST_ID = "gateway.request_id"
STREAM = "gateway.stream"
OUTCOME = "gateway.outcome"
ESTIMATED = "gateway.usage.estimated"
TIME_TO_FIRST_TOKEN = "gateway.time_to_first_token_ms"  # noqa: S105
UNIT = "gateway.unit"  # what a call is counted in: tokens, images, audio_seconds, characters (bounded)
UNITS = "gateway.units"  # how many of them (span only)

OTHER = "_other"
NO_CALLER = "_unauthenticated"

# Milliseconds: gateway overhead is a few ms, upstream calls and first tokens seconds to minutes.
_OVERHEAD_BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500)
_LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2000, 5000, 10_000, 20_000, 40_000, 80_000, 160_000)


class Bounded:
    """Keeps a dimension's distinct values bounded: the first ``limit`` values seen pass, later new ones are
    ``_other``. A set lookup per call; the set never grows past ``limit``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self._limit:
            self._seen.add(value)
            return value
        return OTHER


class Tally:
    """A counter summed in this process and handed to the SDK when metrics are collected (an observable counter,
    cumulative; exporters that want deltas get them from the SDK). A call pays one dictionary update instead of the
    SDK's per-measurement attribute checks and hashing (about 15 µs each, several per call). Only the event loop's
    thread adds; the exporter's thread reads a copy taken in one step."""

    def __init__(self, meter: Meter, name: str, *, unit: str, description: str) -> None:
        self._totals: dict[tuple[tuple[str, AttributeValue], ...], float] = {}
        meter.create_observable_counter(name, callbacks=[self._observe], unit=unit, description=description)

    def add(self, amount: float, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        key = tuple(attributes.items()) if attributes else ()
        self._totals[key] = self._totals.get(key, 0) + amount

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(total, dict(key)) for key, total in list(self._totals.items())]


class Instruments:
    def __init__(
        self, tracer_provider: TracerProvider, meter_provider: MeterProvider, *, max_callers: int, max_deployments: int
    ) -> None:
        self.tracer: Tracer = tracer_provider.get_tracer(SCOPE)
        meter = meter_provider.get_meter(SCOPE)
        self.caller = Bounded(max_callers)
        self.deployment = Bounded(max_deployments)
        self.tokens = Tally(meter, "gateway.tokens", unit="{token}", description="Tokens by caller, deployment, kind")
        self.media_units = Tally(
            meter, "gateway.media.units", unit="{unit}", description="Images, audio seconds, characters by unit"
        )
        self.cost = Tally(meter, "gateway.cost", unit="USD", description="Cost at today's price by caller, deployment")
        self.requests = Tally(meter, "gateway.requests", unit="{request}", description="Calls by status and outcome")
        self.quota_refusals = Tally(
            meter, "gateway.quota.refusals", unit="{request}", description="Calls refused by a quota, by limit"
        )
        self.backend_events = Tally(
            meter, "gateway.backend.events", unit="{event}", description="Backend cooling and circuit-breaker events"
        )
        self.budget_thresholds = Tally(
            meter,
            "gateway.budget.thresholds_crossed",
            unit="{event}",
            description="Callers crossing a share of a monthly limit, by limit and threshold",
        )
        self.ledger_write_failures = Tally(
            meter, "gateway.ledger.write_failures", unit="{row}", description="Usage rows the ledger could not write"
        )
        # Model calls held open by this process (admission control's count, D80), read when metrics are collected.
        self.calls_in_flight: Callable[[], int] | None = None
        meter.create_observable_gauge(
            "gateway.calls.in_flight",
            callbacks=[self._observe_calls_in_flight],
            unit="{call}",
            description="Model calls this process holds open (streams until their end)",
        )
        self.overhead = meter.create_histogram(
            "gateway.overhead",
            unit="ms",
            description="Time the gateway spent on a call outside the upstream",
            explicit_bucket_boundaries_advisory=_OVERHEAD_BUCKETS_MS,
        )
        self.upstream_latency = meter.create_histogram(
            "gateway.upstream.duration",
            unit="ms",
            description="Upstream time to response headers (non-streaming: to the whole body)",
            explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS_MS,
        )
        self.time_to_first_token = meter.create_histogram(
            "gateway.time_to_first_token",
            unit="ms",
            description="Streams: from the request's arrival to the first generated token relayed",
            explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS_MS,
        )

    def _observe_calls_in_flight(self, _options: CallbackOptions) -> Iterable[Observation]:
        count = self.calls_in_flight
        return [] if count is None else [Observation(count())]
