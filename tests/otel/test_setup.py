"""configure_telemetry: exporters, the standard OTEL_* variables, Prometheus, globals, and an
unreachable collector that must not slow the call down.

Tests that install global providers run in a subprocess: OpenTelemetry lets a process set
them once, and this test process must stay clean for the others.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from logprobscope.otel import OpenTelemetryCallbackHandler, TelemetryHandle, configure_telemetry
from logprobscope.testing import ReplayServer
from tests.support.factories import ModelFactory

OTEL_ENV = (
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_PROMETHEUS_PORT",
    "OTEL_EXPORTER_PROMETHEUS_HOST",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def handles() -> Iterator[list[TelemetryHandle]]:
    made: list[TelemetryHandle] = []
    yield made
    for handle in made:
        handle.shutdown()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _configure(handles: list[TelemetryHandle], **options: object) -> TelemetryHandle:
    handle = configure_telemetry(set_global=False, **options)  # type: ignore[arg-type]
    handles.append(handle)
    return handle


def test_own_exporters_and_resource(
    handles: list[TelemetryHandle],
    make_model: ModelFactory,
    server: ReplayServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=ml")
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    handle = _configure(
        handles, service_name="my-app", span_exporters=[exporter], metric_readers=[reader]
    )
    assert handle.span_exporters == (exporter,) and handle.metric_readers == (reader,)
    assert not handle.is_global and handle.prometheus_port is None
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider
    )
    list(make_model(server, logprobs=True).stream("hi", callbacks=[handler]))
    assert handle.force_flush(10_000)
    [span] = exporter.get_finished_spans()
    resource = dict(span.resource.attributes)
    assert resource["service.name"] == "my-app"
    assert resource["deployment.environment"] == "test" and resource["team"] == "ml"
    assert reader.get_metrics_data() is not None


def test_service_name_from_the_environment(
    handles: list[TelemetryHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    handle = _configure(handles, span_exporters=[InMemorySpanExporter()])
    assert isinstance(handle.tracer_provider, TracerProvider)
    assert handle.tracer_provider.resource.attributes["service.name"] == "from-env"
    explicit = _configure(handles, service_name="explicit", span_exporters=[InMemorySpanExporter()])
    assert isinstance(explicit.tracer_provider, TracerProvider)
    assert explicit.tracer_provider.resource.attributes["service.name"] == "explicit"


@pytest.mark.parametrize(
    ("endpoint", "traces", "metrics_url"),
    [
        (
            "http://collector:4318",
            "http://collector:4318/v1/traces",
            "http://collector:4318/v1/metrics",
        ),
        (
            "http://collector:4318/",
            "http://collector:4318/v1/traces",
            "http://collector:4318/v1/metrics",
        ),
        (
            "http://phoenix:6006/v1/traces",
            "http://phoenix:6006/v1/traces",
            "http://phoenix:6006/v1/metrics",
        ),
    ],
)
def test_otlp_http_endpoints(
    handles: list[TelemetryHandle], endpoint: str, traces: str, metrics_url: str
) -> None:
    handle = _configure(handles, otlp_endpoint=endpoint)
    [span_exporter] = handle.span_exporters
    assert isinstance(span_exporter, HttpSpanExporter)
    assert span_exporter._endpoint == traces
    [reader] = handle.metric_readers
    assert isinstance(reader, PeriodicExportingMetricReader)
    assert isinstance(reader._exporter, HttpMetricExporter)
    assert reader._exporter._endpoint == metrics_url


def test_otlp_grpc_by_argument_and_by_environment(
    handles: list[TelemetryHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = _configure(handles, otlp_endpoint="http://127.0.0.1:4317", otlp_protocol="grpc")
    assert isinstance(handle.span_exporters[0], GrpcSpanExporter)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    from_env = _configure(handles)
    assert isinstance(from_env.span_exporters[0], GrpcSpanExporter)
    reader = from_env.metric_readers[0]
    assert isinstance(reader, PeriodicExportingMetricReader)
    assert isinstance(reader._exporter, GrpcMetricExporter)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    mixed = _configure(handles)
    assert isinstance(mixed.span_exporters[0], HttpSpanExporter)


def test_unknown_protocol(handles: list[TelemetryHandle]) -> None:
    with pytest.raises(ValueError, match="OTLP protocol"):
        _configure(handles, otlp_endpoint="http://x:4318", otlp_protocol="http/json")  # type: ignore[arg-type, unused-ignore]


def test_otlp_default_only_when_nothing_else_is_configured(
    handles: list[TelemetryHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    default = _configure(handles)  # the issue's `configure_telemetry(service_name=...)`
    assert [type(e) for e in default.span_exporters] == [HttpSpanExporter]
    console = _configure(handles, console=True)
    assert [type(e) for e in console.span_exporters] == [ConsoleSpanExporter]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    both = _configure(handles, console=True)
    assert [type(e) for e in both.span_exporters] == [HttpSpanExporter, ConsoleSpanExporter]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    off = _configure(handles, otlp_endpoint="http://collector:4318")
    assert off.span_exporters == () and off.metric_readers == ()


def test_missing_extra_names_it(
    handles: list[TelemetryHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ImportError, match=r"logprobscope\[otlp\]"):
        _configure(handles, otlp_endpoint="http://collector:4318")
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.prometheus", None)
    with pytest.raises(ImportError, match=r"logprobscope\[prometheus\]"):
        _configure(handles, prometheus_port=0)


def test_sdk_disabled(handles: list[TelemetryHandle], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    handle = _configure(handles, prometheus_port=0, otlp_endpoint="http://collector:4318")
    assert isinstance(handle.tracer_provider, trace.NoOpTracerProvider)
    assert isinstance(handle.meter_provider, metrics.NoOpMeterProvider)
    assert handle.prometheus_port is None and handle.span_exporters == ()


def test_prometheus_endpoint(
    handles: list[TelemetryHandle], make_model: ModelFactory, server: ReplayServer
) -> None:
    handle = _configure(handles, prometheus_port=0)
    port = handle.prometheus_port
    assert port
    assert isinstance(handle.meter_provider, MeterProvider)
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider
    )
    list(make_model(server, logprobs=True, top_logprobs=3).stream("hi", callbacks=[handler]))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    for series in (
        "logprobs_token_probability_bucket",
        "logprobs_response_perplexity_bucket",
        "logprobs_token_low_confidence_total",
        "gen_ai_client_operation_duration_seconds_bucket",
    ):
        assert series in body, series
    handle.shutdown()
    handle.shutdown()  # idempotent
    with pytest.raises(ConnectionRefusedError), socket.socket() as sock:  # nobody listens
        sock.connect(("127.0.0.1", port))


def test_prometheus_from_the_environment(
    handles: list[TelemetryHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _closed_port()
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    handle = _configure(handles, span_exporters=[InMemorySpanExporter()])
    assert handle.prometheus_port == port


def test_unreachable_collector_does_not_slow_the_call(
    handles: list[TelemetryHandle],
    make_model: ModelFactory,
    server: ReplayServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # bounded retries at shutdown
    model = make_model(server, logprobs=True)
    unreachable = _configure(handles, otlp_endpoint=f"http://127.0.0.1:{_closed_port()}")
    in_memory = _configure(handles, span_exporters=[InMemorySpanExporter()])
    handlers = {
        name: [
            OpenTelemetryCallbackHandler(
                tracer_provider=h.tracer_provider, meter_provider=h.meter_provider
            )
        ]
        for name, h in (("unreachable", unreachable), ("in_memory", in_memory))
    }
    handlers["none"] = []
    list(model.stream("warm up"))
    best = dict.fromkeys(handlers, float("inf"))
    for _ in range(5):  # interleaved; the minimum is robust to a busy machine
        for name, callbacks in handlers.items():
            start = time.perf_counter()
            list(model.stream("hi", callbacks=callbacks))  # type: ignore[arg-type, unused-ignore]
            best[name] = min(best[name], time.perf_counter() - start)
    # Export happens on a background thread: the call does not wait for the collector.
    assert best["unreachable"] < best["in_memory"] + 0.005, best
    assert best["unreachable"] < best["none"] + 0.02, best
    start = time.perf_counter()
    unreachable.shutdown()
    assert time.perf_counter() - start < 15


class _Holding(http.server.BaseHTTPRequestHandler):
    """A collector that reads each export and never answers it."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.release.wait(60)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def holding_collector() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Holding)
    server.daemon_threads = True
    server.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("collector", ["holding", "down"])
def test_shutdown_is_bounded_when_the_collector_does_not_answer(
    collector: str,
    holding_collector: str,
    make_model: ModelFactory,
    server: ReplayServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With the SDK's defaults (10 s export timeout) its own shutdown takes 14-20 s here; 2 s
    # still takes several, and lets the stopping finish (below) before the next test runs.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
    endpoint = holding_collector if collector == "holding" else f"http://127.0.0.1:{_closed_port()}"
    handle = configure_telemetry(service_name="bounded", otlp_endpoint=endpoint, set_global=False)
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider
    )
    model = make_model(server, logprobs=True)
    for _ in range(3):
        model.invoke("hi", callbacks=[handler])
    start = time.perf_counter()
    finished = handle.shutdown(timeout=0.5)
    took = time.perf_counter() - start
    assert finished is False
    assert 0.5 <= took < 1.5, took
    assert handle.is_shut_down and handle.shutdown(timeout=0.5) is True  # idempotent
    assert any("did not finish" in r.getMessage() for r in caplog.get_records("call"))
    # The stopping went on in the background; let it end so its export errors are not
    # logged into the next test.
    for thread in threading.enumerate():
        if thread.name == "logprobscope-telemetry-shutdown":
            thread.join(30)
            assert not thread.is_alive()


def test_shutdown_timeout_is_checked(handles: list[TelemetryHandle]) -> None:
    handle = _configure(handles, span_exporters=[InMemorySpanExporter()])
    with pytest.raises(ValueError, match="timeout"):
        handle.shutdown(timeout=-1)
    assert not handle.is_shut_down
    assert handle.shutdown(timeout=5) is True


GLOBAL_SCRIPT = textwrap.dedent(
    """
    import json, logging
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from logprobscope.otel import configure_telemetry

    logging.basicConfig(level=logging.WARNING)
    first = configure_telemetry(service_name="a", span_exporters=[InMemorySpanExporter()])
    second = configure_telemetry(service_name="b", span_exporters=[InMemorySpanExporter()])
    result = {
        "same": first is second,
        "global": first.is_global,
        "tracer": trace.get_tracer_provider() is first.tracer_provider,
        "meter": metrics.get_meter_provider() is first.meter_provider,
    }
    first.shutdown()
    third = configure_telemetry(service_name="c", span_exporters=[InMemorySpanExporter()])
    result["third_new"] = third is not first
    result["third_global"] = third.is_global
    local = configure_telemetry(set_global=False, span_exporters=[InMemorySpanExporter()])
    result["local_new"] = local is not third and not local.is_global
    third.shutdown()
    local.shutdown()
    print(json.dumps(result))
    """
)


def test_globals_are_set_once_and_a_second_call_is_harmless() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", GLOBAL_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "same": True,
        "global": True,
        "tracer": True,
        "meter": True,
        "third_new": True,
        "third_global": False,  # OpenTelemetry refuses a second global: warned, not raised
        "local_new": True,
    }
    assert "already set" in done.stderr
    assert "Overriding of current" not in done.stderr  # we never ask OTel to override
