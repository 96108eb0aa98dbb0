"""Comparing the telemetry of the three entry points (our model, LangChain, the raw SDK)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from openai.types.chat import ChatCompletionMessageParam
from opentelemetry.sdk.metrics.export import HistogramDataPoint
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from tests.support.otel import InMemoryOtel

PROMPT = "how are you today?"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]
TOP_K = 2

# Attributes whose values depend on timing.
TIMING = frozenset({"gen_ai.response.time_to_first_chunk"})
# Metrics whose values depend on timing: only their counts are compared.
TIMED_METRICS = frozenset(
    {
        "gen_ai.client.operation.duration",
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
    }
)


def attributes(span: ReadableSpan, *, drop: Sequence[str] = ()) -> dict[str, Any]:
    attrs = dict(span.attributes or {})
    for name in (*TIMING, *drop):
        attrs.pop(name, None)
    return attrs


def events(span: ReadableSpan) -> list[tuple[str, dict[str, Any]]]:
    return [(e.name, dict(e.attributes or {})) for e in span.events]


def token_logprobs(span: ReadableSpan) -> list[float]:
    return [
        float(e.attributes["logprobs.token.logprob"])  # type: ignore[arg-type,index]
        for e in span.events
        if e.name == "logprobs.token"
    ]


def assert_chat_span(span: ReadableSpan, *, stream: bool) -> None:
    assert span.name == "chat gpt-4o"
    assert span.kind is SpanKind.CLIENT
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.stream"] is stream
    if stream:
        assert "gen_ai.response.time_to_first_chunk" in attrs
    timestamps = [e.timestamp for e in span.events]
    assert timestamps == sorted(timestamps)


def metric_summary(otel: InMemoryOtel) -> dict[str, tuple[int, float | None]]:
    """Per metric: the number of observations, and their sum when it does not depend on time."""
    out: dict[str, tuple[int, float | None]] = {}
    for name, points in otel.metric_points().items():
        count = 0
        total = 0.0
        for point in points:
            if isinstance(point, HistogramDataPoint):
                count += point.count
                total += point.sum
            else:
                count += 1
                total += float(point.value)
        out[name] = (count, None if name in TIMED_METRICS else total)
    return out


def assert_same_metrics(
    got: Mapping[str, tuple[int, float | None]], want: Mapping[str, tuple[int, float | None]]
) -> None:
    assert sorted(got) == sorted(want)
    for name, (count, total) in want.items():
        assert got[name][0] == count, (name, got[name][0], count)
        other = got[name][1]
        if total is None or other is None:
            assert total is other, name
        else:
            assert math.isclose(other, total, rel_tol=1e-9, abs_tol=1e-12), name
