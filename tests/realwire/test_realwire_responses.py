"""The recorded-wire tier, Responses API: a real OpenAI `/v1/responses` answer, value for value.

The one recorded case (gpt-4o-mini, 9 tokens with logprobs; SOURCES.md) is replayed byte
for byte. The bare `openai` SDK's parse of the same bytes is the reference: text, every
token's logprob bit for bit, bytes, alternatives, usage, id and model must be equal through
every entry point of our model, and the request it sends must be the recorded one (the
recorded `"stream": false` aside: a non-streamed call sends no `stream`). Its span, through
our model's handler and through the instrumented raw client, has the same 9 tokens.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest

from logprobscope import AIMessage, ChatOpenAI
from logprobscope.instrument import instrument_openai, uninstrument_openai
from tests.support.otel import InMemoryOtel

from .cases import RESPONSES_CASES, Case, bits, canonical_ours
from .loopback import Loopback

[CASE] = RESPONSES_CASES


def test_the_tier_has_the_recorded_responses_case() -> None:
    assert CASE.name == "pydantic-ai/responses-logprobs-invoke"
    assert CASE.meta["endpoint"] == "/v1/responses"
    assert not CASE.request["stream"]


def _server(case: Case) -> Loopback:
    return Loopback(case.body, content_type=case.meta["content_type"], status=case.meta["status"])


def _recorded_tokens(case: Case) -> list[tuple[Any, ...]]:
    """The tokens as the recorded JSON has them (the stdlib's parse)."""
    body = json.loads(case.body)
    [part] = body["output"][0]["content"]
    return [
        (
            e["token"],
            bits(e["logprob"]),
            e["bytes"],
            [(t["token"], bits(t["logprob"]), t["bytes"]) for t in e["top_logprobs"]],
        )
        for e in part["logprobs"]
    ]


def _sdk_reference(case: Case) -> dict[str, Any]:
    """The answer as the bare SDK reads the bytes, in `canonical_ours`' shape."""
    with _server(case) as server:
        with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
            response = client.responses.create(**case.request)
        assert server.requests == [case.request]  # the SDK sends the recording itself
        assert server.paths == ["/v1/responses"]
    [message] = response.output
    assert message.type == "message"
    [part] = message.content
    assert part.type == "output_text" and part.logprobs is not None
    usage = response.usage
    assert usage is not None
    return {
        "content": response.output_text,
        "refusal": None,
        "tool_calls": [],
        "logprobs": {
            "content": [
                (
                    t.token,
                    bits(t.logprob),
                    list(t.bytes),
                    [(a.token, bits(a.logprob), list(a.bytes)) for a in t.top_logprobs],
                )
                for t in part.logprobs
            ],
            "refusal": None,
        },
        "finish_reason": "stop",  # status "completed", no tool call
        "usage": (usage.input_tokens, usage.output_tokens, usage.total_tokens),
        "id": response.id,
        "model": response.model,
        "system_fingerprint": None,  # the Responses API has none
    }


@pytest.fixture
async def model() -> AsyncIterator[Callable[[Loopback], ChatOpenAI]]:
    made: list[tuple[openai.OpenAI, openai.AsyncOpenAI]] = []

    def factory(server: Loopback) -> ChatOpenAI:
        args: dict[str, Any] = {"base_url": server.base_url, "api_key": "k", "max_retries": 0}
        client, async_client = openai.OpenAI(**args), openai.AsyncOpenAI(**args)
        made.append((client, async_client))
        return ChatOpenAI(
            CASE.request["model"],
            client=client,
            async_client=async_client,
            use_responses_api=True,
            logprobs=True,
        )

    yield factory
    for client, async_client in made:
        client.close()
        await async_client.close()


async def _invoke(model: ChatOpenAI, messages: Any, instructions: str) -> AIMessage:
    return model.invoke(messages, instructions=instructions)


async def _ainvoke(model: ChatOpenAI, messages: Any, instructions: str) -> AIMessage:
    return await model.ainvoke(messages, instructions=instructions)


async def _batch(model: ChatOpenAI, messages: Any, instructions: str) -> AIMessage:
    [message] = model.batch([messages], instructions=instructions)
    return message


async def _abatch(model: ChatOpenAI, messages: Any, instructions: str) -> AIMessage:
    [message] = await model.abatch([messages], instructions=instructions)
    return message


INVOKES = {"invoke": _invoke, "ainvoke": _ainvoke, "batch": _batch, "abatch": _abatch}


@pytest.mark.parametrize("entry", sorted(INVOKES))
async def test_the_recorded_response_through_our_model(
    model: Callable[[Loopback], ChatOpenAI], entry: str
) -> None:
    reference = _sdk_reference(CASE)
    with _server(CASE) as server:
        message = await INVOKES[entry](
            model(server), CASE.request["input"], CASE.request["instructions"]
        )
    assert canonical_ours(message) == reference
    tokens = reference["logprobs"]["content"]
    assert len(tokens) == 9
    assert tokens == _recorded_tokens(CASE)  # the SDK and the stdlib read the same values
    assert message.content == "The capital of Minas Gerais is Belo Horizonte."
    sent = dict(CASE.request)
    del sent["stream"]  # false is the default: a non-streamed call sends no `stream`
    assert server.requests == [sent]
    assert server.paths == ["/v1/responses"]


def _span_tokens(otel: InMemoryOtel) -> list[tuple[Any, ...]]:
    span = otel.span()
    out: list[tuple[Any, ...]] = []
    for event in span.events:
        attrs: Any = event.attributes or {}
        assert event.name == "logprobs.token"
        text = attrs["logprobs.token.text"]
        raw = attrs.get("logprobs.token.bytes")  # only when not the text's UTF-8
        out.append(
            (
                text,
                bits(float(attrs["logprobs.token.logprob"])),
                list(text.encode()) if raw is None else list(raw),
                [],
            )
        )
    assert (span.attributes or {})["logprobs.token_count"] == len(out)
    assert (span.attributes or {})["openai.api.type"] == "responses"
    return out


def test_the_recorded_response_in_our_models_span(
    model: Callable[[Loopback], ChatOpenAI], otel: InMemoryOtel
) -> None:
    handler = otel.handler(capture_content=True)
    with _server(CASE) as server:
        message = model(server).invoke(
            CASE.request["input"], instructions=CASE.request["instructions"], callbacks=[handler]
        )
    tokens = _span_tokens(otel)
    assert len(tokens) == 9
    assert tokens == _recorded_tokens(CASE)
    assert canonical_ours(message)["logprobs"]["content"] == tokens


def test_the_recorded_response_through_the_instrumented_raw_client(otel: InMemoryOtel) -> None:
    with _server(CASE) as server:
        with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
            instrument_openai(client, telemetry=otel.telemetry_with(capture_content=True))
            response = client.responses.create(**CASE.request)
            uninstrument_openai(client)
    assert response.output_text == "The capital of Minas Gerais is Belo Horizonte."
    tokens = _span_tokens(otel)
    assert len(tokens) == 9
    assert tokens == _recorded_tokens(CASE)
    attrs = otel.span().attributes or {}
    assert attrs["gen_ai.response.id"] == response.id
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (25, 10)
    assert attrs["gen_ai.system_instructions"] == (
        '[{"type": "text", "content": "You are a helpful assistant."}]'
    )
