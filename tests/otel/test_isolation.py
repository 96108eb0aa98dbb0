"""Telemetry never breaks the call: failing exporters, tracers, instruments or our own code
are logged, and the user's call returns (or raises) exactly as without telemetry."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from logprobscope.otel import (
    CallTelemetry,
    LogprobTelemetry,
    OpenTelemetryCallbackHandler,
    ResponseFacts,
)
from logprobscope.otel._events import EventWriter
from logprobscope.otel._metrics import FLUSH_AT, CallMetrics, Instruments
from logprobscope.testing import ReplayServer
from tests.support.factories import ModelFactory
from tests.support.otel import InMemoryOtel

SEED_TEXT = "Thank you for asking! I'm here and ready to help. How can I assist you today?"


class Boom(RuntimeError):
    pass


def _raise(*args: object, **kwargs: object) -> Any:
    raise Boom("telemetry bug")


def _use(model: Any, handler: OpenTelemetryCallbackHandler) -> None:
    text = "".join(c.content for c in model.stream("hi", callbacks=[handler]))
    assert text == SEED_TEXT
    assert model.invoke("hi", callbacks=[handler]).content.startswith("Thank you")


def test_failing_exporter(
    make_model: ModelFactory, server: ReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing(SpanExporter):
        def __init__(self) -> None:
            self.attempts = 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            self.attempts += 1
            raise Boom("exporter down")

        def shutdown(self) -> None:
            pass

    exporter = Failing()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handler = OpenTelemetryCallbackHandler(tracer_provider=provider)
    with caplog.at_level(logging.ERROR):
        _use(make_model(server, logprobs=True), handler)
    assert handler.active_calls == 0
    assert exporter.attempts == 2  # both spans reached the failing exporter
    assert any(r.exc_info and isinstance(r.exc_info[1], Boom) for r in caplog.records)
    provider.shutdown()


@pytest.mark.parametrize(
    ("owner", "method"),
    [
        (EventWriter, "add"),
        (CallMetrics, "chunk"),
        (CallTelemetry, "_end_span"),
        (CallMetrics, "record_end"),
    ],
)
def test_failing_core(
    otel: InMemoryOtel,
    make_model: ModelFactory,
    server: ReplayServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    owner: type,
    method: str,
) -> None:
    monkeypatch.setattr(owner, method, _raise)
    handler = otel.handler()
    with caplog.at_level(logging.DEBUG, logger="logprobscope"):
        _use(make_model(server, logprobs=True), handler)
    assert len(otel.spans()) == 2  # ended anyway
    warnings = [
        r for r in caplog.records if r.name == "logprobscope.otel" and r.levelno == logging.WARNING
    ]
    assert 1 <= len(warnings) <= 2  # once per call, not once per token


def test_failing_instruments(
    otel: InMemoryOtel,
    make_model: ModelFactory,
    server: ReplayServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = otel.handler()
    instruments = handler.telemetry._instruments
    for name in Instruments.__slots__:
        if not name.startswith("_"):  # every instrument (not the cache of attribute sets)
            monkeypatch.setattr(instruments, name, _FailingInstrument())
    _use(make_model(server, logprobs=True), handler)
    spans = otel.spans()
    # Both spans still end, whole (summary attributes set), and not as failures.
    counts = [(s.attributes or {}).get("logprobs.token_count") for s in spans]
    assert sorted(counts, key=str) == [19, 37], counts
    for span in spans:
        assert span.status.status_code is StatusCode.UNSET


class _FailingInstrument:
    def record(self, *args: object, **kwargs: object) -> None:
        raise Boom("meter down")

    def add(self, *args: object, **kwargs: object) -> None:
        raise Boom("meter down")


def test_failing_tracer(
    otel: InMemoryOtel,
    make_model: ModelFactory,
    server: ReplayServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = otel.handler()
    monkeypatch.setattr(handler.telemetry._tracer, "start_span", _raise)
    _use(make_model(server, logprobs=True), handler)
    assert otel.spans() == []
    assert handler.active_calls == 0


def test_failing_message_access_still_ends(
    otel: InMemoryOtel,
    make_model: ModelFactory,
    server: ReplayServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = otel.handler()
    monkeypatch.setattr(CallTelemetry, "set_response", _raise)
    _use(make_model(server, logprobs=True), handler)
    assert len(otel.spans()) == 2


def test_the_handler_does_not_raise_errors() -> None:
    assert OpenTelemetryCallbackHandler.raise_error is False


def test_core_calls_in_any_order(otel: InMemoryOtel, caplog: pytest.LogCaptureFixture) -> None:
    core = LogprobTelemetry(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    call = core.start_call(
        model="m",
        stream=True,
        params={"temperature": "hot", "max_tokens": True, "seed": 1.5, "top_logprobs": "3"},
    )
    call.end(completed=True)
    call.end(completed=False)
    call.fail(Boom())
    call.add_tokens([{"token": "x", "logprob": -1.0}], time_ns=1)
    call.add_chunk()
    call.set_response(ResponseFacts(id="late"))
    [span] = otel.spans()
    attrs = span.attributes or {}
    assert attrs["logprobs.stream.completed"] is True
    assert span.status.status_code is StatusCode.UNSET
    for key in ("gen_ai.request.temperature", "gen_ai.request.max_tokens", "gen_ai.request.seed"):
        assert key not in attrs
    assert attrs["logprobs.top_logprobs"] == 0
    assert "gen_ai.response.id" not in attrs
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_disabled_stand_in_accepts_everything() -> None:
    call = CallTelemetry._disabled()
    assert call.ended and not call.span.is_recording()
    call.add_tokens([{"token": "x", "logprob": -1.0}], time_ns=1)
    call.end(completed=True)
    call.fail(Boom())


def test_failing_instruments_with_observations_waiting_at_the_end(
    otel: InMemoryOtel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More than a batch of observations waits when the call ends: recording them fails
    # inside the end, which still ends the span and raises nothing.
    telemetry = otel.telemetry_with()
    for name in Instruments.__slots__:
        if not name.startswith("_"):
            monkeypatch.setattr(telemetry._instruments, name, _FailingInstrument())
    call = telemetry.start_call(model="m", stream=True, params={})
    call.set_response(ResponseFacts(model="m"))
    entries = [{"token": "t", "logprob": -0.5} for _ in range(FLUSH_AT + 5)]
    for entry in entries:
        call.add_tokens([entry])
    assert call.token_count == FLUSH_AT + 5  # processes what waits: raises nothing either
    call.end(completed=True)
    assert (otel.span().attributes or {})["logprobs.token_count"] == FLUSH_AT + 5
