"""Instrumenting a raw openai client's Responses API: the SDK's own objects, our telemetry.

`instrument_openai(client)` also traces `client.responses.create` (streamed and not),
`client.responses.stream(...)` and `client.responses.parse(...)`, sync and async, with the
span, events and metrics of a chat completion plus `openai.api.type = "responses"`. Against
the default replay server: `top_logprobs` gets the seed with alternatives (25 tokens), a
`text.format` the structured seed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from openai.resources.responses import AsyncResponses, Responses
from openai.types.responses import ParsedResponse, Response, ResponseIncludable
from opentelemetry.trace import StatusCode
from pydantic import BaseModel

from logprobscope.instrument import instrument_openai, uninstrument_openai
from logprobscope.testing import SEED_TOOL_CALL, Faults, ReplayServer, make_completion
from tests.support.entry_points import TOP_K, assert_chat_span, token_logprobs
from tests.support.factories import ModelFactory
from tests.support.otel import InMemoryOtel

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_global_instrumentation")]

LOGPROBS: list[ResponseIncludable] = ["message.output_text.logprobs"]
ORIGINALS = {
    (cls, name): cls.__dict__[name]
    for cls in (Responses, AsyncResponses)
    for name in ("create", "parse")
}


@pytest.fixture
def client(server: ReplayServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def aclient(server: ReplayServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        yield sdk


def _create(client: openai.OpenAI) -> Response:
    return client.responses.create(model="gpt-4o", input="hi", include=LOGPROBS, top_logprobs=TOP_K)


def _stream(client: openai.OpenAI) -> openai.Stream[Any]:
    return client.responses.create(
        model="gpt-4o", input="hi", include=LOGPROBS, top_logprobs=TOP_K, stream=True
    )


def _part(response: Response) -> Any:
    item: Any = response.output[0]
    return item.content[0]


def _delta_logprobs(events: list[Any]) -> list[float]:
    return [
        entry.logprob
        for event in events
        if event.type == "response.output_text.delta"
        for entry in event.logprobs
    ]


def _responses_span(otel: InMemoryOtel, *, stream: bool) -> Any:
    span = otel.span()
    assert_chat_span(span, stream=stream)
    attrs = span.attributes or {}
    assert attrs["openai.api.type"] == "responses"
    assert attrs["logprobs.enabled"] is True
    assert attrs["logprobs.top_logprobs"] == TOP_K
    return span


# -- the SDK's objects, untouched; the span, from them ------------------------------------


def test_a_response_is_the_sdks_and_matches_the_span(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    plain = _create(client)
    instrument_openai(client, telemetry=otel.telemetry)
    traced = _create(client)
    assert type(traced) is Response
    assert traced.model_dump() == plain.model_dump()
    span = _responses_span(otel, stream=False)
    part = _part(traced)
    assert len(part.logprobs) == 25
    assert token_logprobs(span) == [e.logprob for e in part.logprobs]
    assert [e.attributes["logprobs.token.top_logprobs"] for e in span.events] == [
        tuple(t.logprob for t in e.top_logprobs) for e in part.logprobs
    ]
    attrs = span.attributes or {}
    assert attrs["gen_ai.response.id"] == traced.id == "resp_seed-top-logprobs"
    assert attrs["gen_ai.response.model"] == traced.model
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert traced.usage is not None
    assert attrs["gen_ai.usage.input_tokens"] == traced.usage.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == traced.usage.output_tokens
    assert attrs["logprobs.token_count"] == 25


def test_a_stream_yields_the_sdks_events_and_forwards_the_rest(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    with _stream(client) as plain_stream:
        plain = list(plain_stream)
    instrument_openai(client, telemetry=otel.telemetry)
    stream = _stream(client)
    assert isinstance(stream, openai.Stream)
    assert stream.response.status_code == 200  # forwarded to the real stream
    events = list(stream)
    assert [type(e) for e in events] == [type(e) for e in plain]
    assert [e.model_dump() for e in events] == [e.model_dump() for e in plain]
    span = _responses_span(otel, stream=True)
    assert token_logprobs(span) == _delta_logprobs(events)
    assert len(token_logprobs(span)) == 25  # the deltas' tokens, not again those of .done
    attrs = span.attributes or {}
    assert attrs["logprobs.stream.completed"] is True
    assert attrs["gen_ai.usage.output_tokens"] == events[-1].response.usage.output_tokens
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)


def test_the_stream_helper(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    instrument_openai(client, telemetry=otel.telemetry)
    with client.responses.stream(
        model="gpt-4o", input="hi", include=LOGPROBS, top_logprobs=TOP_K
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    span = _responses_span(otel, stream=True)
    assert token_logprobs(span) == _delta_logprobs(events)
    assert token_logprobs(span) == [e.logprob for e in _part(final).logprobs]
    assert (span.attributes or {})["logprobs.stream.completed"] is True


class Weather(BaseModel):
    city: str
    temperature: float
    units: str


def test_parse(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    instrument_openai(client, telemetry=otel.telemetry)
    parsed = client.responses.parse(
        model="gpt-4o", input="weather?", include=LOGPROBS, top_logprobs=TOP_K, text_format=Weather
    )
    assert isinstance(parsed, ParsedResponse)
    assert isinstance(parsed.output_parsed, Weather)
    span = _responses_span(otel, stream=False)
    part = _part(parsed)
    assert token_logprobs(span) == [e.logprob for e in part.logprobs]
    assert len(part.logprobs) > 5


async def test_async_create_stream_helper_and_parse(
    aclient: openai.AsyncOpenAI, otel: InMemoryOtel
) -> None:
    instrument_openai(aclient, telemetry=otel.telemetry)
    response = await aclient.responses.create(model="gpt-4o", input="hi", include=LOGPROBS)
    stream = await aclient.responses.create(
        model="gpt-4o", input="hi", include=LOGPROBS, stream=True
    )
    assert isinstance(stream, openai.AsyncStream)
    events = [e async for e in stream]
    async with aclient.responses.stream(model="gpt-4o", input="hi", include=LOGPROBS) as helper:
        helper_events = [e async for e in helper]
    parsed = await aclient.responses.parse(
        model="gpt-4o", input="weather?", include=LOGPROBS, text_format=Weather
    )
    assert isinstance(parsed.output_parsed, Weather)
    spans = otel.spans()
    assert len(spans) == 4
    assert [s.attributes["gen_ai.request.stream"] for s in spans] == [False, True, True, False]  # type: ignore[index]
    assert token_logprobs(spans[0]) == [e.logprob for e in _part(response).logprobs]
    assert token_logprobs(spans[1]) == _delta_logprobs(events)
    assert token_logprobs(spans[2]) == _delta_logprobs(helper_events)
    assert token_logprobs(spans[3]) == [e.logprob for e in _part(parsed).logprobs]
    assert all((s.attributes or {})["openai.api.type"] == "responses" for s in spans)


def test_raw_response_is_traced_and_streaming_response_passes_through(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    instrument_openai(client, telemetry=otel.telemetry)
    raw = client.responses.with_raw_response.create(model="gpt-4o", input="hi", include=LOGPROBS)
    parsed = raw.parse()
    assert raw.parse() is parsed  # the SDK's cached parse: the traced one
    assert token_logprobs(otel.span()) == [e.logprob for e in _part(parsed).logprobs]
    with client.responses.with_streaming_response.create(
        model="gpt-4o", input="hi", include=LOGPROBS, stream=True
    ) as response:
        assert b"response.completed" in response.read()
    assert len(otel.spans()) == 1


# -- content capture ---------------------------------------------------------------------------


def test_captured_content(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    instrument_openai(client, telemetry=otel.telemetry_with(capture_content=True))
    response = client.responses.create(
        model="gpt-4o",
        instructions="Be brief.",
        include=LOGPROBS,
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
        ],
    )
    attrs = otel.span().attributes or {}
    assert attrs["gen_ai.system_instructions"] == '[{"type": "text", "content": "Be brief."}]'
    assert attrs["gen_ai.input.messages"] == (
        '[{"role": "user", "parts": [{"type": "text", "content": "weather?"}]}, '
        '{"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", '
        '"name": "get_weather", "arguments": "{}"}]}, '
        '{"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", '
        '"response": "sunny"}]}]'
    )
    assert response.output_text in str(attrs["gen_ai.output.messages"])
    first = otel.span().events[0].attributes or {}
    assert first["logprobs.token.text"] == _part(response).logprobs[0].token
    # bytes are written only when they are not the text's UTF-8, as here
    assert "logprobs.token.bytes" not in first
    assert _part(response).logprobs[0].bytes == list(str(first["logprobs.token.text"]).encode())


def test_a_streams_tokens_have_no_bytes_in_the_span(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    instrument_openai(client, telemetry=otel.telemetry_with(capture_content=True))
    events = list(_stream(client))
    span = otel.span()
    tokens = [e.attributes or {} for e in span.events]
    assert [t["logprobs.token.text"] for t in tokens] == [
        entry.token
        for e in events
        if e.type == "response.output_text.delta"
        for entry in e.logprobs
    ]
    assert not any("logprobs.token.bytes" in t for t in tokens)  # the events carry none
    completed = events[-1].response
    assert (span.attributes or {})["gen_ai.output.messages"].count(completed.output_text) == 1  # type: ignore[union-attr]


# -- failures the SDK yields instead of raising ------------------------------------------------


def test_an_error_event_fails_the_span_and_reaches_the_caller(
    server: ReplayServer, client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    server.set_faults(Faults(error_event_at=6))
    instrument_openai(client, telemetry=otel.telemetry)
    events = list(_stream(client))
    assert events[-1].type == "error"  # the SDK's own event, untouched
    span = otel.span()
    attrs = span.attributes or {}
    assert span.status.status_code is StatusCode.ERROR
    assert attrs["error.type"] == "openai.APIError"
    assert span.status.description == events[-1].message
    assert attrs["logprobs.token_count"] == 2  # created, in_progress, added, part, 2 deltas
    assert attrs["logprobs.stream.completed"] is False


# -- instrumenting and undoing it ----------------------------------------------------------


def test_client_instrumentation_is_idempotent_and_reversible(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    instrument_openai(client, telemetry=otel.telemetry)
    wrapped = (client.responses.create, client.responses.parse)
    instrument_openai(client, telemetry=otel.telemetry)
    assert (client.responses.create, client.responses.parse) == wrapped
    _create(client)
    assert len(otel.spans()) == 1
    uninstrument_openai(client)
    assert "create" not in vars(client.responses) and "parse" not in vars(client.responses)
    _create(client)
    assert len(otel.spans()) == 1


def test_global_instrumentation_is_reversible(server: ReplayServer, otel: InMemoryOtel) -> None:
    instrument_openai(telemetry=otel.telemetry)
    assert all(cls.__dict__[name] is not f for (cls, name), f in ORIGINALS.items())
    with openai.OpenAI(base_url=server.base_url, api_key="k") as sdk:
        _create(sdk)
        sdk.responses.parse(model="gpt-4o", input="x", text_format=Weather)
        assert len(otel.spans()) == 2
        uninstrument_openai()
        assert all(cls.__dict__[name] is f for (cls, name), f in ORIGINALS.items())
        _create(sdk)
    assert len(otel.spans()) == 2


async def test_our_model_is_traced_once_under_global_instrumentation(
    server: ReplayServer, otel: InMemoryOtel, make_model: ModelFactory
) -> None:
    raw, ours = otel.new(), otel.new()
    instrument_openai(telemetry=raw.telemetry)
    model = make_model(server, logprobs=True, use_responses_api=True, callbacks=[ours.handler()])
    model.invoke("hi")
    list(model.stream("hi"))
    await model.ainvoke("hi")
    assert [c async for c in model.astream("hi")]
    assert raw.spans() == []  # our model's calls are its handler's, not traced again
    assert len(ours.spans()) == 4


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_captured_tool_calls_and_refusals_match_our_models(
    make_server: Any, make_model: ModelFactory, otel: InMemoryOtel, stream: bool
) -> None:
    refusal = make_completion([("I", -0.1), (" can't", -0.2)], refusal=True)
    server = make_server([SEED_TOOL_CALL, SEED_TOOL_CALL, refusal, refusal])  # raw, then ours
    raw, ours = otel.new(), otel.new()
    model = make_model(
        server, use_responses_api=True, callbacks=[ours.handler(capture_content=True)]
    )
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": {}}]
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        instrument_openai(client, telemetry=raw.telemetry_with(capture_content=True))
        for _ in range(2):  # the tool call, then the refusal
            if stream:
                list(client.responses.create(model="gpt-4o", input="x", tools=tools, stream=True))
                list(model.stream("x", tools=tools))
            else:
                client.responses.create(model="gpt-4o", input="x", tools=tools)
                model.invoke("x", tools=tools)
    got = [json.loads(str((s.attributes or {})["gen_ai.output.messages"])) for s in raw.spans()]
    want = [json.loads(str((s.attributes or {})["gen_ai.output.messages"])) for s in ours.spans()]
    assert got == want
    call_parts = got[0][0]["parts"]
    assert call_parts == [
        {
            "type": "tool_call",
            "id": "call_seed-tool-call_0",
            "name": "get_weather",
            "arguments": '{"city":"New York City"}',
        }
    ]
    assert got[0][0]["finish_reason"] == "tool_calls"
    assert got[1][0]["parts"] == [{"type": "refusal", "content": "I can't"}]
