"""End to end: the per-call metrics' exemplars reach a real Prometheus, trace ids and all.

configure_telemetry's Prometheus endpoint is scraped by a real Prometheus with exemplar
storage on (`--enable-feature=exemplar-storage`; it then asks for the OpenMetrics format,
which carries exemplars). `/api/v1/query_exemplars` must return, for the perplexity, minimum
probability and duration histograms, the trace and span ids of the calls' spans: what a
Grafana panel links to Jaeger with.

This is the route that works with the Prometheus here (2.42, Debian's): it has no OTLP
receiver (Prometheus added one in 2.47), and OpenTelemetry's own Prometheus reader drops
exemplars, which is why ours puts them back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from logprobscope import ChatOpenAI
from logprobscope.otel import OpenTelemetryCallbackHandler, TelemetryHandle, configure_telemetry
from logprobscope.testing import ReplayServer
from tests.e2e.receivers import StartPrometheus

pytestmark = pytest.mark.e2e

PER_CALL = (
    "logprobs_response_perplexity_bucket",
    "logprobs_response_min_probability_bucket",
    "gen_ai_client_operation_duration_seconds_bucket",
)


@pytest.fixture
def telemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[TelemetryHandle]:
    for name in ("OTEL_METRICS_EXEMPLAR_FILTER", "OTEL_TRACES_SAMPLER", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    handle = configure_telemetry(
        prometheus_port=0, span_exporters=[InMemorySpanExporter()], set_global=False
    )
    yield handle
    handle.shutdown()


def test_exemplars_with_trace_ids_in_prometheus(
    start_prometheus: StartPrometheus,
    telemetry: TelemetryHandle,
) -> None:
    started = time.time()
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    with ReplayServer() as server:
        model = ChatOpenAI(
            model="gpt-4o", logprobs=True, top_logprobs=3, base_url=server.base_url, api_key="k"
        )
        model.invoke("hi", callbacks=[handler])
        list(model.stream("hi", callbacks=[handler]))
    assert telemetry.force_flush(10_000)
    [exporter] = telemetry.span_exporters
    assert isinstance(exporter, InMemorySpanExporter)
    spans = {
        (format(s.context.trace_id, "032x"), format(s.context.span_id, "016x"))
        for s in exporter.get_finished_spans()
    }
    assert len(spans) == 2

    prometheus = start_prometheus(
        [f"127.0.0.1:{telemetry.prometheus_port}"], features=["exemplar-storage"]
    )
    for series in PER_CALL:
        deadline = time.monotonic() + 30
        while True:
            result = prometheus.query_exemplars(series, start=started - 60, end=time.time() + 60)
            exemplars = [e for r in result for e in r["exemplars"]]  # type: ignore[attr-defined]
            if exemplars or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert exemplars, f"{series}: no exemplar; targets {prometheus.target_health()}"
        for entry in result:
            labels = entry["seriesLabels"]
            assert isinstance(labels, dict)
            assert labels["__name__"] == series
            assert labels["gen_ai_request_model"] == "gpt-4o"
        linked = {(e["labels"]["trace_id"], e["labels"]["span_id"]) for e in exemplars}
        assert linked <= spans, series
