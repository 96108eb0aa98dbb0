"""Fixtures of the OpenTelemetry tests: in-memory span exporter and metric reader, per test.

Nothing here touches the global OpenTelemetry providers: every handler gets the test's own
providers, so tests cannot leak telemetry into each other.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from logprobscope.otel import OpenTelemetryCallbackHandler

TOKEN_EVENT = "logprobs.token"
BATCH_EVENT = "logprobs.tokens"


@dataclass
class Telemetry:
    """A test's providers and what they exported."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    handlers: list[OpenTelemetryCallbackHandler] = field(default_factory=list)

    def handler(self, **options: Any) -> OpenTelemetryCallbackHandler:
        """A handler on this test's providers."""
        handler = OpenTelemetryCallbackHandler(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options
        )
        self.handlers.append(handler)
        return handler

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def span(self) -> ReadableSpan:
        """The only finished span."""
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def metrics(self) -> dict[str, Metric]:
        """Every metric collected so far, by name (cumulative)."""
        data = self.reader.get_metrics_data()
        out: dict[str, Metric] = {}
        if data is None:
            return out
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    out[metric.name] = metric
        return out


def histogram_points(metric: Metric) -> list[HistogramDataPoint]:
    points = list(metric.data.data_points)
    assert all(isinstance(p, HistogramDataPoint) for p in points)
    return points  # type: ignore[return-value]


def number_points(metric: Metric) -> list[NumberDataPoint]:
    points = list(metric.data.data_points)
    assert all(isinstance(p, NumberDataPoint) for p in points)
    return points  # type: ignore[return-value]


def make_telemetry(
    *, span_limits: SpanLimits | None = None, sampler: Sampler | None = None
) -> Telemetry:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(span_limits=span_limits, sampler=sampler)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    return Telemetry(tracer_provider, meter_provider, exporter, reader)


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """In-memory traces (SDK default limits) and metrics; every call must have ended."""
    made = make_telemetry()
    yield made
    for handler in made.handlers:
        assert handler.active_calls == 0, "a call's telemetry never ended"
    made.tracer_provider.shutdown()
    made.meter_provider.shutdown()


@pytest.fixture
def make_otel() -> Iterator[Any]:
    """Factory of `Telemetry` with custom span limits or sampler; all shut down after."""
    made: list[Telemetry] = []

    def factory(
        *, span_limits: SpanLimits | None = None, sampler: Sampler | None = None
    ) -> Telemetry:
        item = make_telemetry(span_limits=span_limits, sampler=sampler)
        made.append(item)
        return item

    yield factory
    for item in made:
        for handler in item.handlers:
            assert handler.active_calls == 0, "a call's telemetry never ended"
        item.tracer_provider.shutdown()
        item.meter_provider.shutdown()


# -- reading the token logprobs back out of a span ---------------------------------------------


@dataclass(frozen=True)
class Token:
    """One token as recovered from span events."""

    index: int
    logprob: float
    top_logprobs: tuple[float, ...]
    text: str | None
    top_tokens: tuple[str, ...] | None
    timestamp: int


def reassemble(events: Sequence[Any]) -> list[Token]:
    """Every token in `logprobs.token` and `logprobs.tokens` events, in index order.

    `events` are SDK events or dicts with "name", "attributes" and "timestamp" (as Phoenix's
    REST API returns them). Checks that the indexes are exactly 0..n-1, each once.
    """
    tokens: list[Token] = []
    for event in events:
        if isinstance(event, Mapping):
            name = event["name"]
            attrs = event["attributes"]
            timestamp = event.get("timestamp", 0)
        else:
            name, attrs, timestamp = event.name, event.attributes, event.timestamp
        if name == TOKEN_EVENT:
            tops = tuple(attrs.get("logprobs.token.top_logprobs", ()))
            top_tokens = attrs.get("logprobs.token.top_tokens")
            tokens.append(
                Token(
                    attrs["logprobs.token.index"],
                    attrs["logprobs.token.logprob"],
                    tops,
                    attrs.get("logprobs.token.text"),
                    tuple(top_tokens) if top_tokens is not None else None,
                    timestamp,
                )
            )
        elif name == BATCH_EVENT:
            start = attrs["logprobs.tokens.start_index"]
            logprobs = list(attrs["logprobs.tokens.logprobs"])
            flat = list(attrs.get("logprobs.tokens.top_logprobs", ()))
            texts = attrs.get("logprobs.tokens.texts")
            flat_tokens = attrs.get("logprobs.tokens.top_tokens")
            k = len(flat) // len(logprobs) if logprobs else 0
            assert k * len(logprobs) == len(flat), "top_logprobs is not k per token"
            for j, logprob in enumerate(logprobs):
                row = tuple(v for v in flat[j * k : (j + 1) * k] if not math.isnan(v))
                names = None
                if flat_tokens is not None:
                    names = tuple(t for t in flat_tokens[j * k : (j + 1) * k] if t != "")
                tokens.append(
                    Token(
                        start + j,
                        logprob,
                        row,
                        texts[j] if texts is not None else None,
                        names,
                        timestamp,
                    )
                )
    tokens.sort(key=lambda t: t.index)
    assert [t.index for t in tokens] == list(range(len(tokens))), "indexes not 0..n-1"
    return tokens


def all_strings(span: ReadableSpan) -> list[str]:
    """Every string in a span's attributes and its events' attributes (arrays flattened)."""
    out: list[str] = [span.name]
    sources: list[Mapping[str, Any]] = [span.attributes or {}]
    sources.extend(event.attributes or {} for event in span.events)
    for attrs in sources:
        for key, value in attrs.items():
            out.append(key)
            values = value if isinstance(value, (tuple, list)) else [value]
            out.extend(v for v in values if isinstance(v, str))
    return out
