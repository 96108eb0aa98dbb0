"""A sampled-out call: no span work per token, every metric still recorded."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from logprobscope.otel._events import EventWriter
from logprobscope.testing import ReplayServer
from tests.support.factories import ModelFactory
from tests.support.otel import InMemoryOtel, histogram_points


def test_sampled_out_records_metrics_only(
    otel: InMemoryOtel,
    make_model: ModelFactory,
    server: ReplayServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    telemetry = otel.new(sampler=ALWAYS_OFF)
    events: list[object] = []
    original = EventWriter.add

    def spy(self: EventWriter, *args: object) -> None:
        events.append(args)
        original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(EventWriter, "add", spy)
    handler = telemetry.handler()
    model = make_model(server, logprobs=True, top_logprobs=3)
    list(model.stream("hi", callbacks=[handler]))
    model.invoke("hi", callbacks=[handler])
    assert telemetry.spans() == []
    assert events == []  # no per-token span work at all
    metrics = telemetry.metrics()
    [probability] = histogram_points(metrics["logprobs.token.probability"])
    assert probability.count == 50
    [duration] = histogram_points(metrics["gen_ai.client.operation.duration"])
    assert duration.count == 2
    assert "logprobs.response.perplexity" in metrics


def test_sampled_out_parent(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    telemetry = otel.new(sampler=ParentBased(ALWAYS_OFF))
    handler = telemetry.handler()
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request"):
        list(make_model(server, logprobs=True).stream("hi", callbacks=[handler]))
    assert telemetry.spans() == []
    assert "logprobs.token.probability" in telemetry.metrics()
