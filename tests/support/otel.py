"""One in-memory OpenTelemetry pipeline for every test that reads telemetry back.

Nothing here touches the global OpenTelemetry providers: every handler, `LogprobTelemetry` or
instrumentation gets a test's own providers, so tests cannot leak telemetry into each other.
The `otel` fixture (tests/conftest.py) gives one; `otel.new(...)` makes more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    NumberDataPoint,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from logprobscope.otel import LogprobTelemetry, OpenTelemetryCallbackHandler

TOKEN_EVENT = "logprobs.token"
BATCH_EVENT = "logprobs.tokens"
FIELD_EVENT = "logprobs.field"


class InMemoryOtel:
    """A tracer provider exporting every ended span to memory, a meter provider read in memory.

    `span_limits`, `sampler` and `resource` go to the providers (None: the SDK's defaults).
    More span processors can be added with `tracer_provider.add_span_processor`.
    """

    def __init__(
        self,
        *,
        span_limits: SpanLimits | None = None,
        sampler: Sampler | None = None,
        resource: Resource | None = None,
    ) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(
            span_limits=span_limits, sampler=sampler, resource=resource
        )
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], resource=resource)
        self.handlers: list[OpenTelemetryCallbackHandler] = []
        self._others: list[InMemoryOtel] = []

    def new(
        self,
        *,
        span_limits: SpanLimits | None = None,
        sampler: Sampler | None = None,
        resource: Resource | None = None,
    ) -> InMemoryOtel:
        """Another pipeline, separate from this one; checked and shut down with it."""
        other = InMemoryOtel(span_limits=span_limits, sampler=sampler, resource=resource)
        self._others.append(other)
        return other

    # -- what records into it -------------------------------------------------------------

    def handler(self, **options: Any) -> OpenTelemetryCallbackHandler:
        """A handler on these providers; its calls must all have ended by `close`."""
        handler = OpenTelemetryCallbackHandler(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options
        )
        self.handlers.append(handler)
        return handler

    @cached_property
    def telemetry(self) -> LogprobTelemetry:
        """One telemetry core on these providers with default options (made on first use)."""
        return self.telemetry_with()

    def telemetry_with(self, **options: Any) -> LogprobTelemetry:
        """A new telemetry core on these providers with `options`."""
        return LogprobTelemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options
        )

    # -- what it exported -----------------------------------------------------------------

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """The finished spans (named `name` when given), in the order they ended."""
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

    def metric_points(self) -> dict[str, list[HistogramDataPoint | NumberDataPoint]]:
        """Every metric's data points, by name, over all scopes (cumulative)."""
        data = self.reader.get_metrics_data()
        out: dict[str, list[HistogramDataPoint | NumberDataPoint]] = {}
        if data is None:
            return out
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points = out.setdefault(metric.name, [])
                    points.extend(metric.data.data_points)  # type: ignore[arg-type]
        return out

    # -- after the test -------------------------------------------------------------------

    def close(self) -> None:
        """Check that every handler's calls ended, here and in `new` pipelines; shut all down."""
        pipelines = [self, *self._others]
        try:
            for pipeline in pipelines:
                for handler in pipeline.handlers:
                    assert handler.active_calls == 0, "a call's telemetry never ended"
        finally:
            for pipeline in pipelines:
                pipeline.tracer_provider.shutdown()
                pipeline.meter_provider.shutdown()


def histogram_points(metric: Metric) -> list[HistogramDataPoint]:
    points = list(metric.data.data_points)
    assert all(isinstance(p, HistogramDataPoint) for p in points)
    return points  # type: ignore[return-value]


def number_points(metric: Metric) -> list[NumberDataPoint]:
    points = list(metric.data.data_points)
    assert all(isinstance(p, NumberDataPoint) for p in points)
    return points  # type: ignore[return-value]


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
    bytes: tuple[int, ...] | None = None  # token events with content capture only


def reassemble(events: Sequence[Any], *, channel: str = "content", choice: int = 0) -> list[Token]:
    """Every token of one stream in `logprobs.token` and `logprobs.tokens` events, in order.

    The stream: choice 0's content by default (events without a channel or choice index),
    else the events marked with `channel` and `choice`. `events` are SDK events or dicts with
    "name", "attributes" and "timestamp" (as Phoenix's REST API returns them). Checks that
    the indexes are exactly 0..n-1, each once, apart from the least likely tokens of a
    batched call: a `logprobs.token` event repeats them, with the same logprob and text (the
    batch's record is kept).
    """
    tokens: list[Token] = []
    copies: list[Token] = []
    for event in events:
        if isinstance(event, Mapping):
            name = event["name"]
            attrs = event["attributes"]
            timestamp = event.get("timestamp", 0)
        else:
            name, attrs, timestamp = event.name, event.attributes, event.timestamp
        prefix = "logprobs.token." if name == TOKEN_EVENT else "logprobs.tokens."
        if (attrs.get(prefix + "channel", "content"), attrs.get(prefix + "choice_index", 0)) != (
            channel,
            choice,
        ):
            continue
        if name == TOKEN_EVENT:
            tops = tuple(attrs.get("logprobs.token.top_logprobs", ()))
            top_tokens = attrs.get("logprobs.token.top_tokens")
            copies.append(
                Token(
                    attrs["logprobs.token.index"],
                    attrs["logprobs.token.logprob"],
                    tops,
                    attrs.get("logprobs.token.text"),
                    tuple(top_tokens) if top_tokens is not None else None,
                    timestamp,
                    tuple(attrs["logprobs.token.bytes"])
                    if "logprobs.token.bytes" in attrs
                    else None,
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
    batched = {t.index: t for t in tokens}
    for copy in copies:
        original = batched.get(copy.index)
        if original is None:
            tokens.append(copy)
        else:
            assert _same(copy.logprob, original.logprob), f"copy of {copy.index} differs"
            assert copy.text == original.text, f"copy of {copy.index} differs"
    assert len(copies) - (len(tokens) - len(batched)) <= 8, "more than 8 copies"
    tokens.sort(key=lambda t: t.index)
    assert [t.index for t in tokens] == list(range(len(tokens))), "indexes not 0..n-1"
    return tokens


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def streams(events: Sequence[Any]) -> set[tuple[str, int]]:
    """The (channel, choice) of every token stream the events carry."""
    out: set[tuple[str, int]] = set()
    for event in events:
        name, attrs = event.name, event.attributes
        if name in (TOKEN_EVENT, BATCH_EVENT):
            prefix = "logprobs.token." if name == TOKEN_EVENT else "logprobs.tokens."
            out.add(
                (attrs.get(prefix + "channel", "content"), attrs.get(prefix + "choice_index", 0))
            )
    return out


def field_events(span: ReadableSpan) -> dict[str, dict[str, Any]]:
    """The `logprobs.field` events' attributes by path, in document order."""
    out: dict[str, dict[str, Any]] = {}
    for event in span.events:
        if event.name == FIELD_EVENT:
            attrs = dict(event.attributes or {})
            out[str(attrs["logprobs.field.path"])] = attrs
    return out


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
