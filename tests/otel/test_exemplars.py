"""The Prometheus endpoint's exemplars: the per-call histograms link each bucket to a trace.

Scraped as OpenMetrics (what Prometheus asks for with exemplar storage on), every bucket a
call's value fell in carries `trace_id`/`span_id` of that call's span; the plain text format
is what it was. Against a real Prometheus: tests/e2e/test_exemplars_prometheus.py.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from logprobscope.otel import OpenTelemetryCallbackHandler, TelemetryHandle, configure_telemetry
from logprobscope.testing import ReplayServer
from tests.support.factories import ModelFactory

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
# A bucket sample with its exemplar: name{labels} value # {labels} value timestamp
EXEMPLAR = re.compile(
    r"^(?P<name>\w+)_bucket\{(?P<labels>[^}]*)\} \S+ # "
    r'\{span_id="(?P<span>[0-9a-f]{16})",trace_id="(?P<trace>[0-9a-f]{32})"\} (?P<value>\S+)',
    re.MULTILINE,
)
PER_CALL = (
    "logprobs_response_perplexity",
    "logprobs_response_min_probability",
    "gen_ai_client_operation_duration_seconds",
)


@pytest.fixture
def handle(monkeypatch: pytest.MonkeyPatch) -> Iterator[TelemetryHandle]:
    for name in ("OTEL_METRICS_EXEMPLAR_FILTER", "OTEL_TRACES_SAMPLER", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    handle = configure_telemetry(
        prometheus_port=0, span_exporters=[InMemorySpanExporter()], set_global=False
    )
    yield handle
    handle.shutdown()


def _scrape(port: int, accept: str | None) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if accept:
        request.add_header("Accept", accept)
    with opener.open(request, timeout=10) as response:
        return str(response.read().decode())


def test_per_call_histograms_carry_the_calls_span(
    handle: TelemetryHandle, make_model: ModelFactory, server: ReplayServer
) -> None:
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider
    )
    model = make_model(server, logprobs=True, top_logprobs=3)
    model.invoke("hi", callbacks=[handler])
    list(model.stream("hi", callbacks=[handler]))
    assert handle.force_flush(10_000)
    [exporter] = handle.span_exporters
    assert isinstance(exporter, InMemorySpanExporter)
    ids = [
        (format(s.context.trace_id, "032x"), format(s.context.span_id, "016x"))
        for s in exporter.get_finished_spans()
    ]
    spans = set(ids)
    assert len(spans) == 2
    port = handle.prometheus_port
    assert port

    body = _scrape(port, OPENMETRICS)
    found: dict[str, set[tuple[str, str]]] = {}
    for match in EXEMPLAR.finditer(body):
        found.setdefault(match["name"], set()).add((match["trace"], match["span"]))
        assert 'otel_scope_name="logprobscope"' in match["labels"]
    for name in PER_CALL:
        assert found.get(name), f"{name}: no exemplar in\n{body[:3000]}"
        assert found[name] <= spans, name
    # One exemplar per bucket: the latest call's value is in its bucket.
    assert ids[-1] in found["logprobs_response_perplexity"]
    # per-token observations carry none (they would cost a reservoir offer each)
    assert "logprobs_token_probability" not in found

    plain = _scrape(port, None)
    assert "logprobs_response_perplexity_bucket" in plain
    assert "trace_id" not in plain
