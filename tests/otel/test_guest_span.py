"""Recording on another instrumentation's span: `start_call(span=...)` starts none of ours.

The owner names the span, sets its status and ends it; we add our request attributes, the
token events, the `logprobs.*` summary (before its end, whoever finishes first) and only the
`logprobs.*` metrics, with that span's exemplars.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Span, SpanKind, StatusCode

from logprobscope import _contract as n
from logprobscope._neighbours import adoptable, current_chat_span
from logprobscope.otel import CallTelemetry, ResponseFacts
from tests.support.otel import InMemoryOtel

ENTRIES = [
    {"token": "Hi", "logprob": -0.01, "bytes": [72, 105], "top_logprobs": []},
    {"token": "!", "logprob": -1.5, "bytes": [33], "top_logprobs": []},
]
PARAMS = {"logprobs": True, "top_logprobs": 0, "temperature": 0.5}


@pytest.fixture(autouse=True)
def never_ended_twice(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.WARNING, logger="opentelemetry.sdk.trace"):
        yield
    assert "ended span" not in caplog.text


def _theirs(otel: InMemoryOtel) -> Span:
    tracer = otel.tracer_provider.get_tracer("their.instrumentation")
    return tracer.start_span(
        "chat gpt-4o",
        kind=SpanKind.CLIENT,
        attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"},
    )


def _add(call: CallTelemetry) -> None:
    call.add_tokens(ENTRIES, time_ns=1)


def _exported(otel: InMemoryOtel) -> ReadableSpan:
    [span] = otel.spans()
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "their.instrumentation"
    return span


def test_our_part_on_their_span(otel: InMemoryOtel) -> None:
    theirs = _theirs(otel)
    call = otel.telemetry.start_call(model="gpt-4o", stream=False, params=PARAMS, span=theirs)
    assert call.span is theirs
    _add(call)
    call.set_response(ResponseFacts(id="r1", model="gpt-4o-2024", input_tokens=3))
    call.end()
    assert theirs.is_recording() and otel.spans() == []  # not ended by us
    theirs.end()
    span = _exported(otel)
    attributes = dict(span.attributes or {})
    assert attributes[n.LOGPROBS_ENABLED] is True and attributes[n.LOGPROBS_TOKEN_COUNT] == 2
    assert attributes[n.LOGPROBS_MIN] == -1.5
    assert attributes[n.GEN_AI_REQUEST_MODEL] == "gpt-4o"
    for theirs_only in (
        n.GEN_AI_REQUEST_TEMPERATURE,
        n.GEN_AI_PROVIDER_NAME,
        n.GEN_AI_RESPONSE_ID,
        n.GEN_AI_USAGE_INPUT_TOKENS,
    ):
        assert theirs_only not in attributes
    assert [e.name for e in span.events] == [n.EVENT_TOKEN] * 2
    metrics = otel.metric_points()
    assert n.METRIC_RESPONSE_PERPLEXITY in metrics and n.METRIC_TOKEN_PROBABILITY in metrics
    assert not [name for name in metrics if name.startswith("gen_ai.")]
    [point] = metrics[n.METRIC_RESPONSE_PERPLEXITY]
    [exemplar] = point.exemplars
    assert exemplar.span_id == span.context.span_id


def test_the_owner_ending_first_finishes_our_part_before(otel: InMemoryOtel) -> None:
    theirs = _theirs(otel)
    call = otel.telemetry.start_call(model="gpt-4o", stream=True, params=PARAMS, span=theirs)
    _add(call)
    theirs.end()  # e.g. their stream wrapper collected first
    assert call.ended
    call.end(completed=True)  # later: nothing more
    attributes = dict(_exported(otel).attributes or {})
    assert attributes[n.LOGPROBS_STREAM_COMPLETED] is False
    assert attributes[n.LOGPROBS_TOKEN_COUNT] == 2
    assert "end" not in vars(theirs)  # the hook is gone


def test_a_failure_is_the_owners_to_report(otel: InMemoryOtel) -> None:
    theirs = _theirs(otel)
    call = otel.telemetry.start_call(model="gpt-4o", stream=True, params=PARAMS, span=theirs)
    _add(call)
    call.fail(ConnectionError("cut"))
    assert theirs.is_recording()
    theirs.end()
    span = _exported(otel)
    assert span.status.status_code is StatusCode.UNSET
    assert n.ERROR_TYPE not in (span.attributes or {})
    assert dict(span.attributes or {})[n.LOGPROBS_STREAM_COMPLETED] is False


def test_a_non_recording_span_is_left_alone(otel: InMemoryOtel) -> None:
    call = otel.telemetry.start_call(
        model="gpt-4o", stream=False, params=PARAMS, span=trace.INVALID_SPAN
    )
    _add(call)
    call.end()
    assert otel.spans() == []


def test_what_counts_as_a_neighbours_chat_span(otel: InMemoryOtel) -> None:
    theirs = _theirs(otel)
    assert adoptable(theirs)
    with trace.use_span(theirs, end_on_exit=False):
        assert current_chat_span() is theirs
    assert current_chat_span() is None
    ours = otel.telemetry.start_call(model="gpt-4o", stream=False, params=PARAMS)
    assert not adoptable(ours.span)  # our own scope
    ours.end()
    tracer = otel.tracer_provider.get_tracer("their.instrumentation")
    embeddings = tracer.start_span(
        "embeddings", kind=SpanKind.CLIENT, attributes={"gen_ai.operation.name": "embeddings"}
    )
    server = tracer.start_span(
        "chat", kind=SpanKind.SERVER, attributes={"gen_ai.operation.name": "chat"}
    )
    assert not adoptable(embeddings) and not adoptable(server)
    assert not adoptable(trace.INVALID_SPAN) and not adoptable(object())
    theirs.end()
    assert not adoptable(theirs)  # ended
    embeddings.end()
    server.end()


def test_our_events_keep_step_with_the_owners(otel: InMemoryOtel) -> None:
    # On another's span our token events go in as they come (not a few chunks later), so
    # the span's events stay in the order of their timestamps.
    theirs = _theirs(otel)
    call = otel.telemetry.start_call(model="gpt-4o", stream=True, params=PARAMS, span=theirs)
    for i in range(5):
        theirs.add_event("their.chunk", timestamp=1_000 + 2 * i)
        call.add_tokens([{"token": f"t{i}", "logprob": -0.5}], time_ns=1_001 + 2 * i)
    theirs.end()
    events = _exported(otel).events
    assert [e.name for e in events] == ["their.chunk", "logprobs.token"] * 5
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
