"""The whole gateway in this process (runtime, handlers, pipeline) behind an ASGI client, reporting to an
in-memory span exporter and metric reader; upstream = the simulator, storage = Azurite."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry
from shared.http import blueprints
from shared.local.devhost import http_routes
from shared.runtime import Runtime


class Records(logging.Handler):
    """Every log record of the process, whatever its level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Observed:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    logs: Records
    _metrics: list[Any] = field(default_factory=list)

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> list[Any]:
        """Data points of one metric (cumulative since the test started)."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        found += list(m.data.data_points)
        return found

    def total(self, metric: str, **attributes: Any) -> float:
        return sum(p.value for p in self.points(metric) if all(p.attributes.get(k) == v for k, v in attributes.items()))

    def all_metric_attributes(self) -> list[dict[str, Any]]:
        data = self.reader.get_metrics_data()
        return [
            dict(p.attributes)
            for r in (data.resource_metrics if data else [])
            for s in r.scope_metrics
            for m in s.metrics
            for p in m.data.data_points
        ]


@pytest.fixture
def observed():
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    logs = Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(logs)
    root.setLevel(logging.DEBUG)
    yield Observed(spans, reader, logs), telemetry.Telemetry(tracer_provider, meter_provider)
    root.removeHandler(logs)
    root.setLevel(level)


@dataclass
class InProcessGateway:
    runtime: Runtime
    client: httpx.AsyncClient

    async def settled(self) -> None:
        """Wait for settlements still being written (streams settle in a task of their own)."""
        services = await self.runtime.services()
        await services.gateway.drain()


@pytest.fixture
def extra_env() -> dict[str, str]:
    """Settings added to the session's gateway settings (override, or parametrize, in a test module)."""
    return {}


@pytest.fixture
async def in_process(observed, gateway_env, extra_env) -> AsyncIterator[tuple[InProcessGateway, Observed]]:
    records, instruments = observed
    prices = {"GATEWAY_PRICES": '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}'}
    runtime = Runtime({**gateway_env, **prices, **extra_env})
    previous = telemetry.install(instruments)  # after the runtime installed its own (off)
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    for blueprint in blueprints(runtime):
        app.register_functions(blueprint)
    from starlette.applications import Starlette

    asgi = Starlette(routes=http_routes(app.get_functions(), "api"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://gateway") as client:
        yield InProcessGateway(runtime, client), records
    await runtime.aclose()
    telemetry.install(previous)
