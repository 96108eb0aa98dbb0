"""Token and batch events given to an SDK span directly export exactly what `add_event` would.

Each comparison runs the same call twice, fed identically (the same tokens, the same arrival
times): once as it runs, once with every event forced through the public `Span.add_event`,
and compares the events as the in-memory exporter holds them and as OTLP encodes them.
"""

from __future__ import annotations

import copy
import math
from typing import Any, cast

import pytest
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import INVALID_SPAN

from logprobscope.otel import LogprobTelemetry, ResponseFacts
from logprobscope.otel import _call as call_module
from logprobscope.otel import _span_events as span_events
from logprobscope.otel._span_events import SpanEvents, event_adder
from tests.support.otel import InMemoryOtel

T0 = 1_700_000_000_000_000_000


def _entry(i: int, k: int) -> dict[str, Any]:
    token = ["é", " x", "\n", "", "ab\ud800"][i % 5]  # a lone surrogate too
    logprob = [-0.01 * i, math.nan, -math.inf, -25.0, 0.0][i % 5] if i % 7 else -0.5
    raw: list[int] | None = [0xF0, 0x9F] if i % 11 == 3 else None  # half a character
    tops = [{"token": f"t{j}", "logprob": -0.1 * (j + 1), "bytes": None} for j in range(k)]
    return {"token": token, "logprob": logprob, "bytes": raw, "top_logprobs": tops}


def _run(telemetry: LogprobTelemetry, tokens: int, *, k: int = 3) -> None:
    call = telemetry.start_call(model="m", stream=True, params={"logprobs": True})
    call.set_response(ResponseFacts(model="m-1"))
    for i in range(tokens):
        call.add_tokens([_entry(i, k if i % 13 else 1)], time_ns=T0 + i * 1000)
        if i % 9 == 4:  # a refusal and a second choice: their own event streams
            call.add_tokens(
                [_entry(i, k)], time_ns=T0 + i * 1000, channel="refusal", new_chunk=False
            )
            call.add_tokens([_entry(i, 0)], time_ns=T0 + i * 1000, choice=1, new_chunk=False)
    call.end(completed=True)


def _events(span: ReadableSpan) -> list[tuple[Any, ...]]:
    return [
        (e.name, e.timestamp, dict(e.attributes or {}), e.dropped_attributes) for e in span.events
    ]


def _encoded_events(span: ReadableSpan) -> list[bytes]:
    [resource] = encode_spans([span]).resource_spans
    [scope] = resource.scope_spans
    [encoded] = scope.spans
    return [event.SerializeToString() for event in encoded.events]


def _both(
    otel: InMemoryOtel,
    monkeypatch: pytest.MonkeyPatch,
    tokens: int,
    *,
    limits: SpanLimits | None = None,
    **options: Any,
) -> tuple[ReadableSpan, ReadableSpan]:
    direct = otel.new(span_limits=limits)
    _run(direct.telemetry_with(**options), tokens)
    with monkeypatch.context() as patch:
        patch.setattr(
            call_module, "event_adder", lambda span: SpanEvents(span.add_event, lambda: None)
        )
        public = otel.new(span_limits=limits)
        _run(public.telemetry_with(**options), tokens)
    return direct.span(), public.span()


def _assert_same(a: ReadableSpan, b: ReadableSpan) -> None:
    assert a.events, "no events were written"
    # Copied as the SDK's own are (processors and exporters may deep-copy a span).
    assert repr(_events(copy.deepcopy(a))) == repr(_events(b))
    assert [type(e.attributes) for e in a.events] == [type(e.attributes) for e in b.events]
    assert repr(_events(a)) == repr(_events(b))  # repr: NaN == NaN, and tuple vs list shows
    assert _encoded_events(a) == _encoded_events(b)
    assert a.dropped_events == b.dropped_events


@pytest.mark.parametrize("mode", ["tokens", "batched", "low_confidence"])
@pytest.mark.parametrize("capture", [False, True])
@pytest.mark.parametrize("tokens", [3, 200])
def test_the_events_are_those_add_event_writes(
    otel: InMemoryOtel, monkeypatch: pytest.MonkeyPatch, mode: str, capture: bool, tokens: int
) -> None:
    a, b = _both(otel, monkeypatch, tokens, events=mode, capture_content=capture)
    _assert_same(a, b)


def test_an_unlimited_span_and_a_small_one(
    otel: InMemoryOtel, monkeypatch: pytest.MonkeyPatch
) -> None:
    for limits in (SpanLimits(max_events=SpanLimits.UNSET), SpanLimits(max_events=5)):
        a, b = _both(otel, monkeypatch, 150, limits=limits, capture_content=True)
        _assert_same(a, b)


def test_a_value_length_limit_leaves_the_events_to_the_sdk(
    otel: InMemoryOtel, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = SpanLimits(max_attribute_length=6)
    a, b = _both(otel, monkeypatch, 20, limits=limits, capture_content=True)
    _assert_same(a, b)
    texts = [e.attributes["logprobs.token.line"] for e in a.events if e.attributes]
    assert texts and all(len(str(t)) <= 6 for t in texts)  # truncated by the SDK


def test_a_small_event_attribute_limit_leaves_the_events_to_the_sdk(
    otel: InMemoryOtel, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = SpanLimits(max_event_attributes=3)
    a, b = _both(otel, monkeypatch, 20, limits=limits, capture_content=True)
    _assert_same(a, b)
    assert all(len(e.attributes or {}) <= 3 for e in a.events)
    assert any(e.dropped_attributes for e in a.events)


def test_the_direct_way_skips_the_sdk_cleaning(
    otel: InMemoryOtel, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[int] = []  # the SDK's cleaning of given attributes
    original = BoundedAttributes._set_items

    def counting(self: BoundedAttributes, *args: Any, **kwargs: Any) -> None:
        built.append(1)
        original(self, *args, **kwargs)

    span = cast(SdkSpan, otel.tracer_provider.get_tracer("t").start_span("s"))
    adder = event_adder(span)
    if span_events._SDK is None:
        pytest.skip("an OpenTelemetry SDK these internals were not checked against")
    assert adder.add != span.add_event
    monkeypatch.setattr(BoundedAttributes, "_set_items", counting)
    adder.add("e", {"a": 1, "b": (1.0, math.nan), "c": "x", "d": True, "f": ("x", "y")}, T0)
    assert built == [] and span.events == ()  # held until the step ends
    # A value of another type (a list) goes the public way, after what is held.
    adder.add("e", {"a": [1, 2]}, T0 + 1)
    assert built == [1] and len(span.events) == 2
    adder.flush()
    span.end()
    events = otel.span().events
    first, second = (dict(e.attributes or {}) for e in events)
    assert repr(first) == repr({"a": 1, "b": (1.0, math.nan), "c": "x", "d": True, "f": ("x", "y")})
    assert second == {"a": (1, 2)}
    assert events[0].attributes is not None
    with pytest.raises(TypeError):  # read-only, as the SDK's are
        events[0].attributes["a"] = 2


def test_after_the_end_and_on_other_spans(otel: InMemoryOtel) -> None:
    span = otel.tracer_provider.get_tracer("t").start_span("s")
    adder = event_adder(span)
    span.end()
    adder.add("late", {"a": 1}, T0)  # ignored, as add_event ignores it (with a warning)
    adder.flush()
    assert otel.span().events == ()
    assert event_adder(INVALID_SPAN).add == INVALID_SPAN.add_event


def test_a_subclass_of_the_sdk_span_gets_add_event(otel: InMemoryOtel) -> None:
    # A subclass may do more in `add_event` (mirror events to logs, say): it is not bypassed.
    span = cast(SdkSpan, otel.tracer_provider.get_tracer("t").start_span("s"))

    class Mirrored(type(span)):  # type: ignore[misc]
        pass

    span.__class__ = Mirrored
    assert event_adder(span).add == span.add_event
    span.end()
