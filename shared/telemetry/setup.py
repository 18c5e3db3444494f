"""Choosing where telemetry goes, once per process, at start-up (docs/observability.md, decision D50).

In Azure the Functions Python worker configures Azure Monitor OpenTelemetry itself when
``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``: it calls ``configure_azure_monitor`` during its init
request, before it indexes ``function_app.py``, and sets the global tracer, meter and logger providers. The
app then only takes those global providers and adds its instruments; calling ``configure_azure_monitor`` a
second time would add a second set of exporters (every span and log twice). Without the worker's flag (and
with a connection string) the app configures it once itself. Sampling in Azure is the distro's:
``OTEL_TRACES_SAMPLER=microsoft.fixed_percentage`` and ``OTEL_TRACES_SAMPLER_ARG`` app settings.

Locally: ``console`` prints spans and metrics on stdout, ``otlp`` sends them to ``OTEL_EXPORTER_OTLP_ENDPOINT``
(a collector, Jaeger, the Aspire dashboard); these providers are the gateway's own, not global, so library
instrumentation stays out. ``off`` builds nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from opentelemetry import metrics, trace

from shared.settings import TelemetrySettings
from shared.telemetry import DISABLED, Telemetry

log = logging.getLogger(__name__)

METRIC_EXPORT_SECONDS = 60  # Azure Monitor's own interval; metric volume does not grow with requests


def configure(settings: TelemetrySettings, env: Mapping[str, str]) -> Telemetry:
    if settings.exporter == "off":
        return DISABLED
    if settings.exporter == "azure_monitor":
        return _azure_monitor(settings, env)
    return _local(settings)


# Loggers that write a line per call: useful on a developer's console, the costliest telemetry there is in
# Application Insights (about 1 KB each, every call, unsampled). Capped when exporting to Azure Monitor.
PER_CALL_LOGGERS = ("gateway.usage",)


def _azure_monitor(settings: TelemetrySettings, env: Mapping[str, str]) -> Telemetry:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    for name in PER_CALL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)

    already = isinstance(trace.get_tracer_provider(), SdkTracerProvider)
    if not already:
        # Nobody configured the SDK (the worker's flag is off, or this is the local dev host with a connection
        # string): configure Azure Monitor once, for this process. The distro reads APPLICATIONINSIGHTS_* itself.
        from azure.monitor.opentelemetry import configure_azure_monitor

        configure_azure_monitor(connection_string=env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"))
        log.info("telemetry: Azure Monitor configured by the gateway")
    else:
        log.info("telemetry: adding the gateway's instruments to the Azure Monitor configuration already in place")
    return Telemetry(
        trace.get_tracer_provider(),
        metrics.get_meter_provider(),
        max_callers=settings.max_callers,
        max_deployments=settings.max_deployments,
    )


def _local(settings: TelemetrySettings) -> Telemetry:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    span_exporter: SpanExporter
    metric_exporter: MetricExporter
    if settings.exporter == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        span_exporter, metric_exporter = ConsoleSpanExporter(), ConsoleMetricExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:  # a dev-only package (requirements-dev.txt)
            raise RuntimeError(
                "GATEWAY_TELEMETRY=otlp needs opentelemetry-exporter-otlp-proto-http (requirements-dev.txt)"
            ) from exc
        span_exporter, metric_exporter = OTLPSpanExporter(), OTLPMetricExporter()
    # Batched off the request path, as the Azure Monitor distro does: a call only queues its spans.
    processor = BatchSpanProcessor(span_exporter)
    resource = Resource.create({"service.name": "ai-gateway"})
    tracer_provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio))
    )
    tracer_provider.add_span_processor(processor)
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=METRIC_EXPORT_SECONDS * 1000)
    meter_provider = MeterProvider(metric_readers=[reader], resource=resource)

    def shutdown() -> None:
        tracer_provider.shutdown()
        meter_provider.shutdown()  # exports the last metrics

    log.info("telemetry: %s exporter, trace sample ratio %s", settings.exporter, settings.trace_sample_ratio)
    return Telemetry(
        tracer_provider,
        meter_provider,
        max_callers=settings.max_callers,
        max_deployments=settings.max_deployments,
        shutdown=shutdown,
    )
