"""Where telemetry goes (settings, the Functions worker's configuration), and the events other parts report."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime

import pytest
from azure.data.tables.aio import TableClient

from shared import telemetry
from shared.accounting.ledger import UsageLedger, UsageRecord
from shared.settings import SettingsError, TelemetrySettings, settings_from_env
from shared.telemetry.setup import configure
from tests.azurite import ROOT, connection_string, free_port

LOCAL = {"GATEWAY_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true", "GATEWAY_LOCAL_DEV_AUTH": "true"}
AZURE = {
    "WEBSITE_RESOURCE_GROUP": "rg-gateway",
    "AZURE_OPENAI_ENDPOINT": "https://example.openai.azure.com",
    "GATEWAY_STORAGE_TABLE_ENDPOINT": "https://example.table.core.windows.net",
}
CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://127.0.0.1:9/"


def test_telemetry_is_off_locally_unless_asked():
    assert settings_from_env(LOCAL).telemetry.exporter == "off"
    assert settings_from_env({**LOCAL, "GATEWAY_TELEMETRY": "console"}).telemetry.exporter == "console"


def test_telemetry_goes_to_azure_monitor_in_azure_when_application_insights_is_connected():
    assert settings_from_env(AZURE).telemetry.exporter == "off"
    settings = settings_from_env({**AZURE, "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION})
    assert settings.telemetry.exporter == "azure_monitor"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GATEWAY_TELEMETRY": "jaeger"}, "GATEWAY_TELEMETRY"),
        ({"GATEWAY_TELEMETRY": "azure_monitor"}, "APPLICATIONINSIGHTS_CONNECTION_STRING"),
        ({"GATEWAY_TELEMETRY_TRACE_SAMPLE_RATIO": "1.5"}, "GATEWAY_TELEMETRY_TRACE_SAMPLE_RATIO"),
        ({"GATEWAY_TELEMETRY_MAX_CALLERS": "0"}, "GATEWAY_TELEMETRY_MAX_CALLERS"),
    ],
)
def test_a_bad_telemetry_setting_names_itself(env, named):
    with pytest.raises(SettingsError, match=named):
        settings_from_env({**LOCAL, **env})


def test_off_builds_nothing():
    assert configure(TelemetrySettings(exporter="off"), {}) is telemetry.DISABLED


def test_the_console_exporter_has_providers_of_its_own():
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    console = configure(TelemetrySettings(exporter="console", trace_sample_ratio=0.0), {})
    try:
        assert console.enabled
        assert console.instruments is not None
        assert not console.instruments.tracer.start_span("x").is_recording()  # sampled out at ratio 0
        assert not isinstance(trace.get_tracer_provider(), SdkTracerProvider)  # the globals are left alone
    finally:
        console.shutdown()


def test_under_the_functions_worker_the_app_adds_to_its_configuration_instead_of_configuring_again():
    """The worker configured Azure Monitor (global SDK providers) before indexing the app: the app's span must go
    to the worker's pipeline, and the distro's configure_azure_monitor must not run a second time."""
    script = textwrap.dedent(
        f"""
        import sys
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)          # what the worker's configure_azure_monitor leaves behind
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

        from shared import telemetry
        from shared.protocol.operations import V1_CHAT
        from shared.protocol.usage import Usage
        from shared.settings import settings_from_env
        from shared.telemetry.setup import configure

        env = {{
            "GATEWAY_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
            "APPLICATIONINSIGHTS_CONNECTION_STRING": "{CONNECTION}",
            "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
            "GATEWAY_TELEMETRY": "azure_monitor",
        }}
        telemetry.install(configure(settings_from_env(env).telemetry, env))
        observation = telemetry.observe_request(V1_CHAT, "r1")
        observation.settled(Usage(3, 4), 200, "completed", None)
        assert [s.name for s in exporter.get_finished_spans()] == ["chat"], exporter.get_finished_spans()
        assert "azure.monitor.opentelemetry._configure" not in sys.modules, "configured a second time"
        assert len(provider._active_span_processor._span_processors) == 1
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_metric_dimensions_stay_bounded():
    from shared.telemetry.instruments import OTHER, Bounded

    callers = Bounded(2)
    assert [callers(c) for c in ("a", "b", "c", "a", "d")] == ["a", "b", OTHER, "a", OTHER]


async def test_ledger_rows_that_cannot_be_written_are_counted(in_process):
    _gateway, observed = in_process
    table = TableClient.from_connection_string(connection_string(free_port()), "gatewayUsage", retry_total=0)
    ledger = UsageLedger(table)
    now = datetime.now(UTC)
    for _ in range(3):
        await ledger.record(
            UsageRecord(
                str(uuid.uuid4()),
                now,
                "t/a",
                "A",
                "t",
                "api-key",
                None,
                "chat.completions",
                "gpt-4o-mini",
                False,
                200,
                "completed",
                1,
                1,
                0,
                0,
                False,
                None,
                1,
            )
        )
    assert await ledger.flush(within=1.0) is False  # storage never answers: the rows stay queued (and retried)
    await ledger.close(within=0.1)
    await table.close()
    failed = observed.total("gateway.ledger.write_failures")
    assert failed >= 3  # every failed attempt counts the rows it could not write (each row at least once)


async def test_backend_events_are_counted_by_backend_and_kind(in_process):
    _gateway, observed = in_process
    telemetry.record_backend_event("eastus-1", "cooling")
    telemetry.record_backend_event("eastus-1", "breaker_open")
    telemetry.record_backend_event("eastus-1", "cooling")
    assert (
        observed.total("gateway.backend.events", **{"gateway.backend": "eastus-1", "gateway.backend.event": "cooling"})
        == 2
    )
