"""Token events: the timeline, the switch from `tokens` to `batched` before the span's event
limit would drop anything, and the other modes. No token's logprob is ever lost silently."""

from __future__ import annotations

import math
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.trace import StatusCode

from logprobscope.otel import LogprobTelemetry
from logprobscope.testing import Completion, Faults, make_completion
from tests.support.factories import ModelFactory, ServerFactory
from tests.support.otel import BATCH_EVENT, TOKEN_EVENT, InMemoryOtel, reassemble


def _completion(n: int, k: int = 3, seed: int = 11) -> Completion:
    return make_completion([f" w{i}" for i in range(n)], k=k, seed=seed)


def _expected(completion: Completion) -> tuple[list[float], list[tuple[float, ...]]]:
    entries: list[dict[str, Any]] = completion["choices"][0]["logprobs"]["content"]  # type: ignore[index]
    return (
        [e["logprob"] for e in entries],
        [tuple(a["logprob"] for a in e["top_logprobs"]) for e in entries],
    )


def _stream(
    otel: InMemoryOtel,
    make_server: ServerFactory,
    make_model: ModelFactory,
    completion: Completion,
    *,
    k: int = 3,
    **handler_options: Any,
) -> None:
    server = make_server([completion])
    model = make_model(server, logprobs=True, top_logprobs=k)
    handler = otel.handler(**handler_options)
    list(model.stream("hi", callbacks=[handler]))


def _check_all_there(otel: InMemoryOtel, completion: Completion, limit: int) -> list[Any]:
    span = otel.span()
    events = list(span.events)
    assert len(events) <= limit
    assert span.dropped_events == 0
    logprobs, tops = _expected(completion)
    tokens = reassemble(events)
    assert [t.logprob for t in tokens] == logprobs
    assert [t.top_logprobs for t in tokens] == tops
    stamps = [e.timestamp for e in events]
    assert stamps == sorted(stamps), "events are the stream's timeline"
    attrs = span.attributes or {}
    assert "logprobs.events.dropped" not in attrs
    assert attrs["logprobs.token_count"] == len(logprobs)
    return events


def _batched_indexes(events: list[Any]) -> set[int]:
    out: set[int] = set()
    for event in events:
        if event.name == BATCH_EVENT:
            start = event.attributes["logprobs.tokens.start_index"]
            out.update(range(start, start + len(event.attributes["logprobs.tokens.logprobs"])))
    return out


def test_switch_at_a_configured_limit_loses_nothing(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    telemetry = otel.new(span_limits=SpanLimits(max_events=20))
    completion = _completion(2000)
    _stream(telemetry, make_server, make_model, completion)
    events = _check_all_there(telemetry, completion, 20)
    names = [e.name for e in events]
    first_batch = names.index(BATCH_EVENT)
    assert first_batch > 0 and set(names[:first_batch]) == {TOKEN_EVENT}
    # Once switched, batches, and the least likely of their tokens once more.
    batched = _batched_indexes(events)
    assert all(
        e.name == BATCH_EVENT or e.attributes["logprobs.token.index"] in batched
        for e in events[first_batch:]
    )
    assert len(events) < 20  # a slot is kept for an exception
    assert telemetry.span().attributes["logprobs.events.mode"] == "batched"  # type: ignore[index]


def test_switch_at_the_sdk_default_limit_keeps_2000_tokens(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    assert SpanLimits().max_events == 128, "OTEL_SPAN_EVENT_COUNT_LIMIT is set"
    completion = _completion(2000)
    _stream(otel, make_server, make_model, completion)
    events = _check_all_there(otel, completion, 127)
    names = [e.name for e in events]
    assert names.count(TOKEN_EVENT) >= 100  # the start of the stream stays token by token
    assert names[-1] == BATCH_EVENT


def test_short_streams_stay_token_by_token(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    completion = _completion(100)
    _stream(otel, make_server, make_model, completion)
    events = _check_all_there(otel, completion, 128)
    assert [e.name for e in events] == [TOKEN_EVENT] * 100
    assert otel.span().attributes["logprobs.events.mode"] == "tokens"  # type: ignore[index]


def test_non_streamed_2000_tokens(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    completion = _completion(2000)
    server = make_server([completion])
    make_model(server, logprobs=True, top_logprobs=3).invoke("hi", callbacks=[otel.handler()])
    _check_all_there(otel, completion, 127)


def test_unlimited_events_stay_tokens(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    telemetry = otel.new(span_limits=SpanLimits(max_events=SpanLimits.UNSET))
    completion = _completion(600)
    _stream(telemetry, make_server, make_model, completion)
    events = _check_all_there(telemetry, completion, 600)
    assert len(events) == 600 and {e.name for e in events} == {TOKEN_EVENT}


@pytest.mark.parametrize("limit", [2, 3, 5, 8])
def test_tiny_limits_still_keep_everything(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory, limit: int
) -> None:
    telemetry = otel.new(span_limits=SpanLimits(max_events=limit))
    completion = _completion(300)
    _stream(telemetry, make_server, make_model, completion)
    _check_all_there(telemetry, completion, limit - 1)


@pytest.mark.parametrize("limit", [0, 1])
def test_no_room_at_all_says_what_was_dropped(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory, limit: int
) -> None:
    telemetry = otel.new(span_limits=SpanLimits(max_events=limit))
    _stream(telemetry, make_server, make_model, _completion(50))
    span = telemetry.span()
    assert span.events == ()
    assert (span.attributes or {})["logprobs.events.dropped"] == 50


def test_batched_mode_outright_with_content(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    completion = _completion(1000)
    _stream(otel, make_server, make_model, completion, events="batched", capture_content=True)
    events = _check_all_there(otel, completion, 127)
    batches = [e for e in events if e.name == BATCH_EVENT]
    assert len(batches) == 1000 // 64 + 1  # 64 tokens each: 119 slots are more than enough
    least = [e for e in events if e.name != BATCH_EVENT]
    assert len(least) == 8 and {e.name for e in least} == {TOKEN_EVENT}
    assert {e.attributes["logprobs.token.index"] for e in least} <= _batched_indexes(events)
    entries: list[dict[str, Any]] = completion["choices"][0]["logprobs"]["content"]  # type: ignore[index]
    tokens = reassemble(events)
    assert [t.text for t in tokens] == [e["token"] for e in entries]
    assert [t.top_tokens for t in tokens] == [
        tuple(a["token"] for a in e["top_logprobs"]) for e in entries
    ]
    assert otel.span().attributes["logprobs.events.mode"] == "batched"  # type: ignore[index]


def test_low_confidence_mode(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    completion = _completion(300)
    _stream(
        otel,
        make_server,
        make_model,
        completion,
        events="low_confidence",
        low_confidence_threshold=0.02,
    )
    span = otel.span()
    logprobs, _ = _expected(completion)
    low = [i for i, lp in enumerate(logprobs) if math.exp(lp) < 0.02]
    assert 0 < len(low) < 127
    assert [e.attributes["logprobs.token.index"] for e in span.events] == low  # type: ignore[index]
    attrs = span.attributes or {}
    assert attrs["logprobs.events.mode"] == "low_confidence"
    assert attrs["logprobs.low_confidence.count"] == len(low)
    assert attrs["logprobs.low_confidence.threshold"] == 0.02
    assert "logprobs.events.dropped" not in attrs


def test_low_confidence_mode_over_the_limit_counts_the_dropped(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    telemetry = otel.new(span_limits=SpanLimits(max_events=10))
    completion = _completion(200)
    _stream(
        telemetry,
        make_server,
        make_model,
        completion,
        events="low_confidence",
        low_confidence_threshold=0.9,
    )
    span = telemetry.span()
    low = sum(math.exp(lp) < 0.9 for lp in _expected(completion)[0])
    assert len(span.events) == 9
    assert (span.attributes or {})["logprobs.events.dropped"] == low - 9
    assert span.dropped_events == 0


def test_none_mode(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    _stream(otel, make_server, make_model, _completion(40), events="none")
    span = otel.span()
    assert span.events == ()
    attrs = span.attributes or {}
    assert attrs["logprobs.events.mode"] == "none"
    assert attrs["logprobs.token_count"] == 40
    assert "logprobs.events.dropped" not in attrs


def test_failure_after_the_switch_keeps_tokens_and_exception(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    telemetry = otel.new(span_limits=SpanLimits(max_events=16))
    completion = _completion(400)
    server = make_server([completion], faults=Faults(cut_after=301))
    model = make_model(server, logprobs=True, top_logprobs=3)
    with pytest.raises(openai.APIConnectionError):
        list(model.stream("hi", callbacks=[telemetry.handler()]))
    span = telemetry.span()
    assert len(span.events) <= 16
    assert span.events[-1].name == "exception"
    assert span.status.status_code is StatusCode.ERROR
    tokens = reassemble([e for e in span.events if e.name != "exception"])
    assert [t.logprob for t in tokens] == _expected(completion)[0][:300]
    assert (span.attributes or {})["logprobs.stream.completed"] is False


def test_timestamps_never_go_back(otel: InMemoryOtel) -> None:
    core = LogprobTelemetry(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    call = core.start_call(model="m", stream=True, params={})
    base = 1_800_000_000_000_000_000
    for i, stamp in enumerate([base, base + 50, base + 20, base + 80]):  # the clock stepped back
        call.add_tokens([{"token": f"t{i}", "logprob": -0.1}], time_ns=stamp)
    call.end(completed=True)
    stamps = [e.timestamp for e in otel.span().events]
    assert stamps == [base, base + 50, base + 50, base + 80]


def test_uneven_alternatives_stay_aligned_in_batches(otel: InMemoryOtel) -> None:
    core = LogprobTelemetry(
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
        events="batched",
        capture_content=True,
    )
    call = core.start_call(model="m", stream=False, params={"logprobs": True, "top_logprobs": 2})
    entries = [
        {"token": "a", "logprob": -0.1, "top_logprobs": [{"token": "a", "logprob": -0.1}]},
        {
            "token": "b",
            "logprob": -0.2,
            "top_logprobs": [{"token": "b", "logprob": -0.2}, {"token": "c", "logprob": -2.0}],
        },
        {"token": "d", "logprob": -0.3, "top_logprobs": []},
    ]
    call.add_tokens(entries, time_ns=1)
    call.end()
    [event, least] = otel.span().events
    assert (least.attributes or {})["logprobs.token.index"] == 2  # the lowest, none low
    attrs = event.attributes or {}
    flat = [float(v) for v in attrs["logprobs.tokens.top_logprobs"]]  # type: ignore[arg-type, union-attr]
    assert len(flat) == 6 and math.isnan(flat[1]) and math.isnan(flat[4])
    assert list(attrs["logprobs.tokens.top_tokens"]) == ["a", "", "b", "c", "", ""]  # type: ignore[arg-type]
    tokens = reassemble(otel.span().events)
    assert [t.top_logprobs for t in tokens] == [(-0.1,), (-0.2, -2.0), ()]
    assert [t.top_tokens for t in tokens] == [("a",), ("b", "c"), ()]
