"""Refusals, tool calls and structured answers in the span: the refusal's tokens counted and
exported like the content's, tool calls and refusals in the output messages, and each field of
a structured answer as a `logprobs.field` event, never at a token event's expense."""

from __future__ import annotations

import json
import math
from functools import reduce
from typing import Any, Literal

import pytest
from opentelemetry.sdk.trace import SpanLimits
from pydantic import BaseModel

from logprobscope import AIMessageChunk, field_confidence
from logprobscope._figures import summarize, summary_attributes
from logprobscope.otel import ResponseFacts
from logprobscope.testing import SEED_STRUCTURED, ReplayServer, make_completion
from tests.support.factories import ModelFactory, ServerFactory
from tests.support.otel import InMemoryOtel, field_events, reassemble, streams

REFUSAL_WORDS = ["I'm", " sorry", ",", " I", " can't", " help", " with", " that", "."]


class Location(BaseModel):
    city: str
    temperature: float
    units: Literal["c", "f"]


def _refusal_tokens(completion: dict[str, Any]) -> list[dict[str, Any]]:
    return completion["choices"][0]["logprobs"]["refusal"]  # type: ignore[no-any-return]


def _content_tokens(completion: dict[str, Any]) -> list[dict[str, Any]]:
    return completion["choices"][0]["logprobs"]["content"]  # type: ignore[no-any-return]


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_refusals_tokens_are_counted_and_exported_like_content(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory, stream: bool
) -> None:
    refusal = make_completion(REFUSAL_WORDS, refusal=True, k=3)
    server = make_server([refusal])
    model = make_model(server, logprobs=True, top_logprobs=3)
    handler = otel.handler(capture_content=True)
    if stream:
        message = reduce(lambda a, b: a + b, model.stream("x", callbacks=[handler])).to_message()
    else:
        message = model.invoke("x", callbacks=[handler])
    span = otel.span()
    attrs = dict(span.attributes or {})
    entries = _refusal_tokens(refusal)
    assert message.refusal == "".join(REFUSAL_WORDS)
    # Every refusal token in the events, marked, with its own indexes from 0.
    assert streams(span.events) == {("refusal", 0)}
    got = reassemble(span.events, channel="refusal")
    assert [t.logprob for t in got] == [e["logprob"] for e in entries]
    assert [t.text for t in got] == REFUSAL_WORDS
    assert [t.top_logprobs for t in got] == [
        tuple(a["logprob"] for a in e["top_logprobs"]) for e in entries
    ]
    # The content summary as it always was (no tokens); the refusal's under logprobs.refusal.
    assert attrs["logprobs.token_count"] == 0
    assert "logprobs.sum" not in attrs
    figures = summary_attributes(
        summarize(
            [e["logprob"] for e in entries],
            top_logprobs=[[a["logprob"] for a in e["top_logprobs"]] for e in entries],
        )
    )
    assert {k: attrs[k.replace("logprobs.", "logprobs.refusal.", 1)] for k in figures} == figures
    assert json.loads(str(attrs["gen_ai.output.messages"])) == [
        {
            "role": "assistant",
            "parts": [{"type": "refusal", "content": "".join(REFUSAL_WORDS)}],
            "finish_reason": "stop",
        }
    ]
    # The token metrics describe the content: refusal tokens are not observations.
    assert "logprobs.token.probability" not in otel.metrics()


def test_a_refusal_after_content_keeps_both_streams(otel: InMemoryOtel) -> None:
    # Fed by hand, as any entry point may: one chunk with both, then refusal only.
    call = otel.telemetry.start_call(model="m", stream=True, params={})
    content = [{"token": "Hi", "logprob": -0.1, "top_logprobs": []}]
    refusal = [{"token": "No", "logprob": -0.2, "top_logprobs": []}]
    call.add_tokens(content, time_ns=1)
    call.add_tokens(refusal, time_ns=1, channel="refusal", new_chunk=False)
    call.add_tokens(refusal, time_ns=2, channel="refusal")
    call.add_tokens(content, time_ns=3, channel="oops")  # type: ignore[arg-type]
    call.add_tokens(content, time_ns=3, choice=-1)
    call.end(completed=True)
    span = otel.span()
    attrs = span.attributes or {}
    assert [t.logprob for t in reassemble(span.events)] == [-0.1]
    assert [t.logprob for t in reassemble(span.events, channel="refusal")] == [-0.2, -0.2]
    assert attrs["logprobs.token_count"] == 1
    assert attrs["logprobs.refusal.token_count"] == 2
    assert attrs["logprobs.refusal.min_index"] == 0
    # Two chunks arrived (the refusal of the first chunk is not a chunk of its own).
    [chunk_times] = otel.metric_points()["gen_ai.client.operation.time_per_output_chunk"]
    assert chunk_times.count == 1  # type: ignore[union-attr]


# -- tool calls ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_are_in_the_output_messages_and_finish_reasons(
    otel: InMemoryOtel, server: ReplayServer, make_model: ModelFactory, stream: bool
) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    model = make_model(server, logprobs=True, tools=tools)
    handler = otel.handler(capture_content=True)
    if stream:
        message = reduce(lambda a, b: a + b, model.stream("x", callbacks=[handler])).to_message()
    else:
        message = model.invoke("x", callbacks=[handler])
    [call] = message.tool_calls
    attrs = otel.span().attributes or {}
    assert attrs["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert json.loads(str(attrs["gen_ai.output.messages"])) == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": call.id,
                    "name": "get_weather",
                    "arguments": '{"city":"New York City"}',
                }
            ],
            "finish_reason": "tool_calls",
        }
    ]


def test_without_content_capture_no_message_is_recorded(
    otel: InMemoryOtel, server: ReplayServer, make_model: ModelFactory
) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    make_model(server, tools=tools).invoke("x", callbacks=[otel.handler()])
    attrs = otel.span().attributes or {}
    assert "gen_ai.output.messages" not in attrs
    assert attrs["gen_ai.response.finish_reasons"] == ("tool_calls",)


def test_output_messages_of_facts_given_by_hand(otel: InMemoryOtel) -> None:
    telemetry = otel.telemetry_with(capture_content=True)
    with telemetry.start_call(model="m", stream=False, params={}) as call:
        call.set_response(
            ResponseFacts(
                finish_reasons=["stop"],
                output_text="Hello",
                output_refusal="but no",
                output_tool_calls=[
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            )
        )
    parts = json.loads(str((otel.span().attributes or {})["gen_ai.output.messages"]))[0]["parts"]
    assert parts == [
        {"type": "text", "content": "Hello"},
        {"type": "refusal", "content": "but no"},
        {"type": "tool_call", "id": "c1", "name": "f", "arguments": "{}"},
    ]


# -- structured answers: logprobs.field events ------------------------------------------------

FIELD_NUMBERS = {
    "logprobs.field.path",
    "logprobs.field.logprob",
    "logprobs.field.min_probability",
    "logprobs.field.token_start",
    "logprobs.field.token_stop",
}
ALTERNATIVES = {
    "logprobs.field.alternatives.token_index",
    "logprobs.field.alternatives.logprobs",
}


@pytest.mark.parametrize("capture", [False, True])
def test_each_field_of_a_structured_answer_is_an_event(
    otel: InMemoryOtel, server: ReplayServer, make_model: ModelFactory, capture: bool
) -> None:
    structured = make_model(server, logprobs=True, top_logprobs=3).with_structured_output(Location)
    result = structured.invoke("x", callbacks=[otel.handler(capture_content=capture)])
    span = otel.span()
    attrs = span.attributes or {}
    report = result.field_confidence()
    fields = field_events(span)
    assert list(fields) == ["$.city", "$.temperature", "$.units"]
    # After every token event, in document order.
    names = [e.name for e in span.events]
    assert (
        names == ["logprobs.token"] * len(_content_tokens(SEED_STRUCTURED)) + ["logprobs.field"] * 3
    )
    for field in report.fields:
        event = fields[field.path]
        assert event["logprobs.field.logprob"] == field.logprob
        assert event["logprobs.field.min_probability"] == field.min_probability
        assert event["logprobs.field.token_start"] == field.token_start
        assert event["logprobs.field.token_stop"] == field.token_stop
        keys = set(event)
        if field.alternatives is None:
            assert keys == FIELD_NUMBERS | ({"logprobs.field.value"} if capture else set())
            continue
        assert event["logprobs.field.alternatives.token_index"] == field.alternatives_token
        assert event["logprobs.field.alternatives.logprobs"] == tuple(
            a.logprob for a in field.alternatives
        )
        texts = {"logprobs.field.value", "logprobs.field.alternatives.tokens"}
        assert keys == FIELD_NUMBERS | ALTERNATIVES | (texts if capture else set())
        if capture:
            assert event["logprobs.field.alternatives.tokens"] == tuple(
                a.token for a in field.alternatives
            )
    assert report["$.units"].alternatives is not None  # the schema's enum, from the request
    if capture:
        assert [json.loads(e["logprobs.field.value"]) for e in fields.values()] == [
            "San Francisco",
            65,
            "f",
        ]
    assert attrs["logprobs.fields.count"] == 3
    assert attrs["logprobs.fields.complete"] is True
    assert "logprobs.fields.dropped" not in attrs


def test_fields_of_a_stream_and_of_json_mode(
    otel: InMemoryOtel, server: ReplayServer, make_model: ModelFactory
) -> None:
    model = make_model(server, logprobs=True, top_logprobs=3)
    structured = model.with_structured_output(Location)
    chunks: list[AIMessageChunk] = list(structured.stream("x", callbacks=[otel.handler()]))
    json_mode = model.invoke(
        "x", response_format={"type": "json_object"}, callbacks=[otel.handler()]
    )
    streamed, json_span = otel.spans()
    tokens = reduce(lambda a, b: a + b, chunks).response_metadata.logprobs.content  # type: ignore[union-attr]
    expected = field_confidence(tokens or [], schema=Location)
    assert [e["logprobs.field.logprob"] for e in field_events(streamed).values()] == [
        f.logprob for f in expected.fields
    ]
    # json_object: no schema, so no enum; the fields all the same.
    json_fields = field_events(json_span)
    assert list(json_fields) == ["$.city", "$.temperature", "$.units"]
    assert not any(ALTERNATIVES & set(e) for e in json_fields.values())
    assert json_mode.field_confidence()["$.units"].alternatives is None


def test_plain_answers_and_the_none_mode_have_no_field_events(
    otel: InMemoryOtel, server: ReplayServer, make_model: ModelFactory
) -> None:
    model = make_model(server, logprobs=True)
    model.invoke("x", callbacks=[otel.handler()])  # not structured: the seed's text
    model.with_structured_output(Location).invoke("x", callbacks=[otel.handler(events="none")])
    plain, none = otel.spans()
    for span in (plain, none):
        assert field_events(span) == {}
        assert not any(k.startswith("logprobs.fields.") for k in span.attributes or {})


def test_a_stream_left_early_gives_the_fields_read_whole(
    otel: InMemoryOtel, server: ReplayServer, make_model: ModelFactory
) -> None:
    structured = make_model(server, logprobs=True).with_structured_output(Location)
    with structured.stream("x", callbacks=[otel.handler()]) as stream:
        for i, _ in enumerate(stream):
            if i == 9:  # through '","' after the city: the city is whole, the rest is not
                break
    attrs = otel.span().attributes or {}
    assert list(field_events(otel.span())) == ["$.city"]
    assert attrs["logprobs.fields.complete"] is False
    assert attrs["logprobs.stream.completed"] is False


@pytest.mark.parametrize("limit", [2, 4, 12, 14, 128])
def test_field_events_only_take_the_room_the_tokens_left(
    otel: InMemoryOtel, server: ReplayServer, make_model: ModelFactory, limit: int
) -> None:
    # 14 content tokens: they take what they need first (switching to batches before the
    # limit), and the fields get what is left; none is lost without being counted.
    telemetry = otel.new(span_limits=SpanLimits(max_events=limit))
    handler = telemetry.handler()
    make_model(server, logprobs=True).with_structured_output(Location).invoke(
        "x", callbacks=[handler]
    )
    span = telemetry.span()
    attrs = span.attributes or {}
    assert len(span.events) <= limit
    assert "logprobs.events.dropped" not in attrs
    assert len(reassemble(span.events)) == len(_content_tokens(SEED_STRUCTURED))
    token_events = sum(e.name != "logprobs.field" for e in span.events)
    written = min(3, limit - token_events)
    assert list(field_events(span)) == ["$.city", "$.temperature", "$.units"][:written]
    assert attrs.get("logprobs.fields.dropped") == ((3 - written) or None)
    assert attrs["logprobs.fields.count"] == 3
    if limit < 14:
        assert attrs["logprobs.fields.dropped"]


def test_nan_field_figures_are_exported_as_they_are(otel: InMemoryOtel) -> None:
    params = {"response_format": {"type": "json_object"}}
    with otel.telemetry.start_call(model="m", stream=False, params=params) as call:
        call.add_tokens([{"token": '{"a":', "logprob": -0.1}, {"token": "1}", "logprob": math.nan}])
    [event] = field_events(otel.span()).values()  # the value 1 is the NaN token's alone
    assert math.isnan(event["logprobs.field.logprob"])
    assert math.isnan(event["logprobs.field.min_probability"])
