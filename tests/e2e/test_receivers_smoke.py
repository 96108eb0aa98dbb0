"""Smoke tests of the real receivers with plain OpenTelemetry SDK code.

They prove the receiver fixtures (``tests/e2e/conftest.py``) work and pin down what the
receivers do with our kind of telemetry: Phoenix keeps span events (one per token in
our product) and Prometheus names for OTel instruments.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry, start_http_server

from tests.e2e.processes import free_port
from tests.e2e.receivers import PhoenixHandle, StartPrometheus

pytestmark = pytest.mark.e2e

EVENT_COUNT = 2000
SDK_DEFAULT_MAX_EVENTS = 128
PROBABILITY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24)


def _tracer_provider(
    endpoint: str, resource: dict[str, str], limits: SpanLimits | None = None
) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create(resource), span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def _by_name(spans: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(span["name"]): span for span in spans}


def _events(span: dict[str, object]) -> list[dict[str, object]]:
    events = span["events"]
    assert isinstance(events, list)
    return events


def test_phoenix_keeps_span_with_2000_events(phoenix: PhoenixHandle) -> None:
    project = f"logprobscope-smoke-{uuid.uuid4().hex[:8]}"
    provider = _tracer_provider(
        phoenix.otlp_traces_endpoint,
        {"service.name": "logprobscope-e2e", "openinference.project.name": project},
        SpanLimits(max_events=5000),  # the SDK default keeps only 128 events per span
    )
    try:
        tracer = provider.get_tracer("logprobscope.e2e")
        with tracer.start_as_current_span(
            "chat smoke-model",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "smoke-model",
                "gen_ai.usage.output_tokens": EVENT_COUNT,
                "logprobs.mean_probability": 0.75,
                "logprobs.low_confidence": False,
                "logprobs.token.probabilities": [0.5, 0.25, 0.125],
                "logprobs.token.ids": [1, 2, 3],
                "logprobs.tokens": ["a", "b", "c"],
            },
        ) as parent:
            for index in range(EVENT_COUNT):
                parent.add_event(
                    "gen_ai.token",
                    {
                        "token.index": index,
                        "token.text": f"t{index}",
                        "token.logprob": -index / 1000,
                        "token.top_logprobs": [-0.1, -2.5],
                    },
                )
            parent.set_status(Status(StatusCode.OK))
            with tracer.start_as_current_span("child step") as child:
                child.set_status(Status(StatusCode.ERROR, "boom"))
        trace_id = format(parent.get_span_context().trace_id, "032x")
        assert provider.force_flush(30_000)
    finally:
        provider.shutdown()

    spans = _by_name(phoenix.spans(project, min_count=2, trace_id=trace_id))
    assert set(spans) == {"chat smoke-model", "child step"}
    root, child_span = spans["chat smoke-model"], spans["child step"]

    assert set(root) == {
        "id",
        "name",
        "context",
        "span_kind",
        "parent_id",
        "start_time",
        "end_time",
        "status_code",
        "status_message",
        "attributes",
        "events",
    }
    assert root["context"] == {
        "trace_id": trace_id,
        "span_id": format(parent.get_span_context().span_id, "016x"),
    }
    assert root["parent_id"] is None
    assert child_span["parent_id"] == format(parent.get_span_context().span_id, "016x")
    assert (root["status_code"], root["status_message"]) == ("OK", "")
    assert (child_span["status_code"], child_span["status_message"]) == ("ERROR", "boom")
    # Phoenix maps gen_ai.* (OTel GenAI semconv) to OpenInference: kind LLM, llm.* keys.
    assert root["span_kind"] == "LLM"
    assert child_span["span_kind"] == "UNKNOWN"
    assert isinstance(root["start_time"], str) and isinstance(root["end_time"], str)

    # Attributes come back flat with their dotted keys; arrays of primitives stay arrays.
    attributes = root["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "smoke-model"
    assert attributes["gen_ai.usage.output_tokens"] == EVENT_COUNT
    assert attributes["logprobs.mean_probability"] == 0.75
    assert attributes["logprobs.low_confidence"] is False
    assert attributes["logprobs.token.probabilities"] == [0.5, 0.25, 0.125]
    assert attributes["logprobs.token.ids"] == [1, 2, 3]
    assert attributes["logprobs.tokens"] == ["a", "b", "c"]
    assert attributes["llm.model_name"] == "smoke-model"
    assert attributes["llm.token_count.completion"] == EVENT_COUNT
    assert "service.name" not in attributes  # resource attributes are not returned
    assert project in phoenix.projects()

    # Every one of the 2,000 events is kept, in order, with its attributes.
    events = _events(root)
    assert len(events) == EVENT_COUNT
    assert set(events[0]) == {"name", "timestamp", "attributes"}
    assert events[0]["name"] == "gen_ai.token"
    assert events[0]["attributes"] == {
        "token.index": 0,
        "token.text": "t0",
        "token.logprob": 0.0,
        "token.top_logprobs": [-0.1, -2.5],
    }
    indexes = [e["attributes"]["token.index"] for e in events]  # type: ignore[index]
    assert indexes == list(range(EVENT_COUNT))
    assert _events(child_span) == []


def test_phoenix_default_project_and_sdk_event_limit(phoenix: PhoenixHandle) -> None:
    assert SpanLimits().max_events == SDK_DEFAULT_MAX_EVENTS, "OTEL_SPAN_EVENT_COUNT_LIMIT set?"
    # No openinference.project.name resource attribute: Phoenix files it under "default".
    provider = _tracer_provider(phoenix.otlp_traces_endpoint, {"service.name": "logprobscope-e2e"})
    try:
        with provider.get_tracer("logprobscope.e2e").start_as_current_span("default limits") as s:
            for index in range(SDK_DEFAULT_MAX_EVENTS + 72):
                s.add_event("gen_ai.token", {"token.index": index})
        trace_id = format(s.get_span_context().trace_id, "032x")
        assert provider.force_flush(30_000)
    finally:
        provider.shutdown()

    [span] = phoenix.spans("default", trace_id=trace_id)
    events = _events(span)
    # The SDK drops the oldest events beyond its limit: the newest 128 arrive.
    assert len(events) == SDK_DEFAULT_MAX_EVENTS
    assert events[0]["attributes"] == {"token.index": 72}


@pytest.fixture
def metrics_endpoint() -> Iterator[tuple[str, MeterProvider]]:
    """A MeterProvider exposed by prometheus_client on 127.0.0.1:<free port>/metrics."""
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(
        resource=Resource.create({"service.name": "logprobscope-e2e"}),
        metric_readers=[reader],
        views=[
            View(
                instrument_name="gen_ai.client.operation.duration",
                aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS),
            )
        ],
    )
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}", provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        provider.shutdown()  # also unregisters the reader's collector


def test_prometheus_scrapes_otel_metrics(
    start_prometheus: StartPrometheus,
    metrics_endpoint: tuple[str, MeterProvider],
) -> None:
    target, provider = metrics_endpoint
    meter = provider.get_meter("logprobscope.e2e")
    probability = meter.create_histogram(
        "logprobs.token.probability",
        unit="1",
        description="Probability of each generated token",
        explicit_bucket_boundaries_advisory=list(PROBABILITY_BUCKETS),
    )
    tokens = meter.create_counter("logprobs.tokens", unit="{token}", description="Tokens seen")
    duration = meter.create_histogram(
        "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration"
    )
    usage = meter.create_histogram(
        "gen_ai.client.token.usage", unit="{token}", description="Tokens used"
    )
    labels = {"gen_ai.request.model": "smoke-model", "gen_ai.operation.name": "chat"}
    for p in (0.05, 0.3, 0.6, 0.95, 0.999):
        probability.record(p, labels)
    tokens.add(5, labels)
    duration.record(0.42, labels)
    usage.record(5, {**labels, "gen_ai.token.type": "output"})

    prometheus = start_prometheus([target])
    buckets = prometheus.wait_for("logprobs_token_probability_bucket", timeout=30)
    assert {r["metric"]["le"] for r in buckets} == {  # type: ignore[index]
        *(str(b) for b in PROBABILITY_BUCKETS),
        "+Inf",
    }
    [inf_bucket] = [r for r in buckets if r["metric"]["le"] == "+Inf"]  # type: ignore[index]
    # Attribute dots become underscores; the exporter adds the instrumentation scope
    # as otel_scope_* labels (the empty otel_scope_schema_url is dropped by Prometheus).
    assert inf_bucket["metric"] == {
        "__name__": "logprobs_token_probability_bucket",
        "job": "logprobscope",
        "instance": target,
        "le": "+Inf",
        "gen_ai_request_model": "smoke-model",
        "gen_ai_operation_name": "chat",
        "otel_scope_name": "logprobscope.e2e",
    }
    assert inf_bucket["value"][1] == "5"  # type: ignore[index]

    names = {
        str(s["__name__"])
        for s in prometheus.series('{job="logprobscope"}')
        if not str(s["__name__"]).startswith("scrape_")
    }
    assert names == {
        "up",
        "target_info",
        "logprobs_token_probability_bucket",
        "logprobs_token_probability_count",
        "logprobs_token_probability_sum",
        "logprobs_tokens_total",
        "gen_ai_client_operation_duration_seconds_bucket",
        "gen_ai_client_operation_duration_seconds_count",
        "gen_ai_client_operation_duration_seconds_sum",
        "gen_ai_client_token_usage_bucket",
        "gen_ai_client_token_usage_count",
        "gen_ai_client_token_usage_sum",
    }
    [total] = prometheus.query("logprobs_tokens_total")
    assert total["value"][1] == "5"  # type: ignore[index]
    duration_les = {
        r["metric"]["le"]  # type: ignore[index]
        for r in prometheus.query("gen_ai_client_operation_duration_seconds_bucket")
    }
    assert duration_les == {*(str(b) for b in DURATION_BUCKETS), "+Inf"}
