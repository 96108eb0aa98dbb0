"""The OpenTelemetry SDK set-up every instrumented configuration gets, and the warm-up check.

Production's shape without export I/O: a `TracerProvider` with a `BatchSpanProcessor`, a
`MeterProvider` with a `PeriodicExportingMetricReader` and a `LoggerProvider` with a
`BatchLogRecordProcessor`, each exporting to an exporter that discards. During warm-up the
exporters also keep what they are given, so that `Providers.verify` can check that the
configuration really recorded what it should (a peer that silently instruments nothing would
otherwise look cheap); after it they only count.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from _configs import Expect

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricsData
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

__all__ = ["Providers", "providers"]  # and _DiscardSpans, for otel_costs.py


class _Seen:
    """What the discarding exporters were given: counts always, the items while kept."""

    def __init__(self) -> None:
        self.keep = True
        self.spans: list[ReadableSpan] = []
        self.logs: list[ReadableLogRecord] = []
        self.metric_names: set[str] = set()
        self.span_count = 0
        self.log_count = 0

    def stop_keeping(self) -> None:
        self.keep = False
        self.spans.clear()
        self.logs.clear()
        self.metric_names.clear()


class Providers:
    """The three SDK providers of one configuration, and what their exporters saw."""

    def __init__(
        self,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        logger_provider: LoggerProvider,
        seen: _Seen,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider
        self.seen = seen

    def flush(self) -> None:
        """Export what the batch processors hold (their threads' work is charged to the calls)."""
        self.tracer_provider.force_flush()
        self.logger_provider.force_flush()

    def verify(self, name: str, expect: Expect, calls: int, prompt: str) -> None:
        """Check that the warm-up's `calls` calls were recorded as `expect` says; then only count.

        Raises:
            AssertionError: what is missing, so that the worker fails loudly.
        """
        self.flush()
        self.meter_provider.force_flush()
        seen = self.seen
        problems = []
        if expect.spans and seen.span_count < calls:
            problems.append(f"{seen.span_count} span(s) exported for {calls} call(s)")
        if not expect.spans and seen.span_count:
            problems.append(f"{seen.span_count} span(s) exported, none expected")
        if expect.logs and not seen.log_count:
            problems.append("no log record (event) exported")
        if expect.metrics and not any(m.startswith(expect.metrics) for m in seen.metric_names):
            problems.append(f"no `{expect.metrics}*` metric exported ({sorted(seen.metric_names)})")
        texts = [*_span_texts(seen.spans), *_log_texts(seen.logs)]
        if expect.content and not any(prompt in t for t in texts):
            problems.append("the prompt is in no exported attribute: content capture is off")
        if expect.logprobs and not any(_has_logprobs(s) for s in seen.spans):
            problems.append("no span carries the logprobs")
        if problems:
            raise AssertionError(f"{name} does not record as expected: " + "; ".join(problems))
        seen.stop_keeping()


def _span_texts(spans: Iterable[ReadableSpan]) -> Iterable[str]:
    for span in spans:
        for value in (span.attributes or {}).values():
            yield value if isinstance(value, str) else str(value)
        for event in span.events:
            for value in (event.attributes or {}).values():
                yield value if isinstance(value, str) else str(value)


def _log_texts(logs: Iterable[ReadableLogRecord]) -> Iterable[str]:
    for log in logs:
        record = log.log_record
        yield json.dumps(record.body, default=str)
        for value in (record.attributes or {}).values():
            yield value if isinstance(value, str) else str(value)


def _has_logprobs(span: ReadableSpan) -> bool:
    attributes = span.attributes or {}
    count = attributes.get("logprobs.token_count")
    if isinstance(count, int) and count > 0:  # ours: the summary of the tokens seen
        return True
    # OpenInference: the response's JSON, logprobs included, as `output.value`.
    output = attributes.get("output.value")
    if not isinstance(output, str) or '"logprobs"' not in output:
        return False
    try:
        choices = json.loads(output).get("choices") or [{}]
        return bool((choices[0].get("logprobs") or {}).get("content"))
    except (ValueError, AttributeError, TypeError):
        return False


def providers(*, sampled: bool = True) -> Providers:
    """The SDK providers with discarding exporters (spans ALWAYS_ON, or ALWAYS_OFF)."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import (
        BatchLogRecordProcessor,
        LogRecordExporter,
        LogRecordExportResult,
    )
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    seen = _Seen()

    class DiscardLogs(LogRecordExporter):
        def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
            seen.log_count += len(batch)
            if seen.keep:
                seen.logs.extend(batch)
            return LogRecordExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    class DiscardMetrics(MetricExporter):
        def export(
            self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            if seen.keep:
                for resource in metrics_data.resource_metrics:
                    for scope in resource.scope_metrics:
                        seen.metric_names.update(m.name for m in scope.metrics)
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            pass

    tracer_provider = TracerProvider(sampler=ALWAYS_ON if sampled else ALWAYS_OFF)
    tracer_provider.add_span_processor(BatchSpanProcessor(_DiscardSpans(seen)))  # type: ignore[arg-type]
    reader = PeriodicExportingMetricReader(DiscardMetrics(), export_interval_millis=3_600_000)
    meter_provider = MeterProvider(metric_readers=[reader])
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(DiscardLogs()))
    return Providers(tracer_provider, meter_provider, logger_provider, seen)


class _DiscardSpans:
    """A span exporter that drops everything (production's BatchSpanProcessor, no I/O)."""

    def __init__(self, seen: _Seen | None = None) -> None:
        self._seen = seen

    def export(self, spans: Sequence[ReadableSpan]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        seen = self._seen
        if seen is not None:
            seen.span_count += len(spans)
            if seen.keep:
                seen.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
