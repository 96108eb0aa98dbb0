"""`chat.completions.parse` traced (the caller's parsed object untouched), and what a raw
client's span says about tool calls, refusals and structured answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import openai
import pytest
from opentelemetry.trace import StatusCode
from pydantic import BaseModel

from logprobscope.instrument import instrument_openai, uninstrument_openai
from logprobscope.testing import SEED_STRUCTURED, SEED_TOOL_CALL, ReplayServer, make_completion
from tests.support.entry_points import MESSAGES
from tests.support.factories import ServerFactory
from tests.support.otel import InMemoryOtel, field_events, reassemble, streams

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_global_instrumentation")]


class Location(BaseModel):
    city: str
    temperature: float
    units: Literal["c", "f"]


def _content(completion: dict[str, Any]) -> list[dict[str, Any]]:
    return completion["choices"][0]["logprobs"]["content"]  # type: ignore[no-any-return]


@pytest.fixture
def client(server: ReplayServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        yield sdk


def _parse(client: openai.OpenAI) -> Any:
    return client.chat.completions.parse(
        model="gpt-4o", messages=MESSAGES, response_format=Location, logprobs=True, top_logprobs=3
    )


def test_parse_is_traced_and_its_parsed_object_untouched(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    plain = _parse(client)
    instrument_openai(client, telemetry=otel.telemetry)
    traced = _parse(client)
    assert type(traced) is type(plain)
    assert traced.model_dump(warnings=False) == plain.model_dump(warnings=False)
    assert traced.choices[0].message.parsed == Location(
        city="San Francisco", temperature=65, units="f"
    )
    span = otel.span()
    attrs = span.attributes or {}
    assert span.name == "chat gpt-4o"
    assert attrs["gen_ai.request.stream"] is False
    entries = _content(SEED_STRUCTURED)
    assert [t.logprob for t in reassemble(span.events)] == [e["logprob"] for e in entries]
    # The schema the SDK sent is the request's: the enum field gets its alternatives.
    fields = field_events(span)
    assert list(fields) == ["$.city", "$.temperature", "$.units"]
    assert "logprobs.field.alternatives.logprobs" in fields["$.units"]
    assert "logprobs.field.alternatives.logprobs" not in fields["$.city"]
    assert attrs["logprobs.fields.count"] == 3
    assert attrs["logprobs.fields.complete"] is True


async def test_async_parse_is_traced(server: ReplayServer, otel: InMemoryOtel) -> None:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        instrument_openai(sdk, telemetry=otel.telemetry)
        completion = await sdk.chat.completions.parse(
            model="gpt-4o", messages=MESSAGES, response_format=Location, logprobs=True
        )
    assert completion.choices[0].message.parsed is not None
    attrs = otel.span().attributes or {}
    assert attrs["logprobs.token_count"] == len(_content(SEED_STRUCTURED))
    assert attrs["logprobs.fields.count"] == 3


def test_global_instrumentation_traces_parse_and_undoes_it(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    instrument_openai(telemetry=otel.telemetry)
    _parse(client)
    assert len(otel.spans()) == 1
    uninstrument_openai()
    _parse(client)
    assert len(otel.spans()) == 1


def test_raw_response_parse_is_traced_and_gives_the_same_object(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    instrument_openai(client, telemetry=otel.telemetry)
    raw = client.chat.completions.with_raw_response.parse(
        model="gpt-4o", messages=MESSAGES, response_format=Location, logprobs=True
    )
    parsed = raw.parse()
    assert parsed is raw.parse()
    assert parsed.choices[0].message.parsed is not None
    assert otel.span().attributes["gen_ai.response.id"] == parsed.id  # type: ignore[index]


def test_streaming_response_parse_passes_through(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    instrument_openai(client, telemetry=otel.telemetry)
    with client.chat.completions.with_streaming_response.parse(
        model="gpt-4o", messages=MESSAGES, response_format=Location, logprobs=True
    ) as response:
        assert b"San Francisco" in response.read()
    assert otel.spans() == []


def test_parse_cut_by_max_tokens_keeps_the_tokens_and_fails(
    make_server: ServerFactory, otel: InMemoryOtel
) -> None:
    cut = make_completion(['{"', "city", '":"', "San"], finish_reason="length", k=2)
    server = make_server([cut])
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        instrument_openai(sdk, telemetry=otel.telemetry)
        with pytest.raises(openai.LengthFinishReasonError) as caught:
            _parse(sdk)
    span = otel.span()
    attrs = span.attributes or {}
    assert span.status.status_code is StatusCode.ERROR
    assert attrs["error.type"] == "openai.LengthFinishReasonError"
    assert attrs["gen_ai.response.finish_reasons"] == ("length",)
    content = caught.value.completion.choices[0].logprobs.content  # type: ignore[union-attr]
    assert [t.logprob for t in reassemble(span.events)] == [t.logprob for t in content or []]
    assert "logprobs.fields.count" not in attrs  # a failed call gets no field events


def test_tool_calls_and_refusals_in_the_output_messages(
    make_server: ServerFactory, otel: InMemoryOtel
) -> None:
    refusal = make_completion(["I'm", " sorry"], refusal=True, k=2)
    server = make_server([SEED_TOOL_CALL, refusal])
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        instrument_openai(sdk, telemetry=otel.telemetry_with(capture_content=True))
        calls = sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, logprobs=True)
        stream = sdk.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, logprobs=True, stream=True
        )
        chunks = list(stream)
    called, refused = otel.spans()
    wire = calls.choices[0].message.tool_calls or []
    messages = json.loads(str((called.attributes or {})["gen_ai.output.messages"]))
    assert messages == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": c.id,
                    "name": c.function.name,  # type: ignore[union-attr]
                    "arguments": c.function.arguments,  # type: ignore[union-attr]
                }
                for c in wire
            ],
            "finish_reason": "tool_calls",
        }
    ]
    assert (called.attributes or {})["gen_ai.response.finish_reasons"] == ("tool_calls",)
    attrs = refused.attributes or {}
    assert json.loads(str(attrs["gen_ai.output.messages"]))[0]["parts"] == [
        {"type": "refusal", "content": "I'm sorry"}
    ]
    assert attrs["logprobs.token_count"] == 0
    assert attrs["logprobs.refusal.token_count"] == 2
    refusal_tokens = [
        t.logprob
        for c in chunks
        for ch in c.choices
        if ch.logprobs is not None
        for t in ch.logprobs.refusal or []
    ]
    events = [e for e in refused.events if e.name == "logprobs.token"]
    assert [e.attributes["logprobs.token.logprob"] for e in events] == refusal_tokens  # type: ignore[index]
    assert {e.attributes["logprobs.token.channel"] for e in events} == {"refusal"}  # type: ignore[index]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("events", ["tokens", "batched"])
def test_every_choice_is_recorded_with_its_index(
    client: openai.OpenAI, otel: InMemoryOtel, stream: bool, events: str
) -> None:
    # n=3: choices 1 and 2 go to events marked with their index; choice 0 makes the summary.
    instrument_openai(client, telemetry=otel.telemetry_with(events=events))
    args: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "logprobs": True, "n": 3}
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **args))
        sent: dict[int, list[float]] = {}
        for chunk in chunks:
            for choice in chunk.choices:
                for t in (choice.logprobs.content if choice.logprobs else None) or []:
                    sent.setdefault(choice.index, []).append(t.logprob)
    else:
        completion = client.chat.completions.create(**args)
        sent = {
            c.index: [t.logprob for t in (c.logprobs.content if c.logprobs else None) or []]
            for c in completion.choices
        }
    span = otel.span()
    attrs = span.attributes or {}
    assert sorted(sent) == [0, 1, 2] and all(sent.values())
    assert streams(span.events) == {("content", 0), ("content", 1), ("content", 2)}
    for index, logprobs in sent.items():
        assert [t.logprob for t in reassemble(span.events, choice=index)] == logprobs
    assert attrs["logprobs.token_count"] == len(sent[0])
    assert attrs["logprobs.other_choices.token_count"] == len(sent[1]) + len(sent[2])
    assert attrs["gen_ai.request.choice.count"] == 3
    assert attrs["gen_ai.response.finish_reasons"] == ("stop", "stop", "stop")
    assert "logprobs.events.dropped" not in attrs
