"""The recorded-wire tier through the telemetry: every recorded answer, every entry point.

Each case's bytes go through our model with the OpenTelemetry handler, through a raw
`openai` client instrumented with `instrument_openai` (`create`, `parse`, the `stream()`
helper; sync and async; streams cut into random HTTP chunks), and through LangChain's
`ChatOpenAI` with our LangChain handler. The reference is the bare SDK's parse of the same
bytes: the span's events must give back every token of every stream (choice 0's content and
refusal, and the other choices' tokens through the raw client) bit for bit (logprob, top
logprobs, text, top tokens, bytes where an event carries them), the span's counts and
summary must agree with them, nothing may be dropped, and with content capture
`gen_ai.output.messages` must hold the answer's text, refusal and tool calls.

Our model refuses n > 1 before any request; a server that sends several choices anyway gets
choice 0 decoded, so its span holds choice 0's tokens. LangChain's spans are checked for the
tokens and counts (its streamed messages do not keep the refusal text).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import openai
import pytest
from langchain_openai import ChatOpenAI as LangChainChatOpenAI
from opentelemetry.sdk.trace import ReadableSpan

from logprobscope import ChatOpenAI
from logprobscope._figures import summarize
from logprobscope._text import valid_text
from logprobscope.instrument import instrument_openai
from logprobscope.langchain import LogprobsCallbackHandler
from tests.support.otel import InMemoryOtel, reassemble, streams

from . import reference
from .cases import CASES, Case, Location, bits, loopback, our_call
from .loopback import Loopback
from .reference import TokenStreams

pytestmark = pytest.mark.timeout(120)

_SDK: dict[str, tuple[TokenStreams, dict[str, Any]]] = {}


def _ids(case: Case) -> str:
    return case.name


def sdk(case: Case) -> tuple[TokenStreams, dict[str, Any]]:
    """(every stream's tokens, choice 0's answer) as the bare SDK reads the bytes; cached."""
    if case.name not in _SDK:
        with (
            loopback(case) as server,
            openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client,
        ):
            if case.stream:
                chunks = list(client.chat.completions.create(**case.request))
                _SDK[case.name] = (
                    reference.streams_of_chunks(chunks),
                    reference.from_chunks(chunks),
                )
            else:
                completion = client.chat.completions.create(**case.request)
                _SDK[case.name] = (
                    reference.streams_of_completion(completion),
                    reference.from_completion(completion),
                )
    return _SDK[case.name]


def expected_output(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """Choice 0's answer in the `gen_ai.output.messages` shape."""
    parts: list[dict[str, Any]] = []
    if answer["content"]:
        parts.append({"type": "text", "content": answer["content"]})
    if answer["refusal"] is not None:
        parts.append({"type": "refusal", "content": answer["refusal"]})
    parts.extend(
        {"type": "tool_call", "id": id, "name": name, "arguments": arguments}
        for id, name, arguments in answer["tool_calls"]
    )
    return [{"role": "assistant", "parts": parts, "finish_reason": answer["finish_reason"] or ""}]


def check_span(
    span: ReadableSpan,
    case: Case,
    *,
    choice_0_only: bool = False,
    output: bool = True,
    response_id: bool = True,
) -> None:
    tokens, answer = sdk(case)
    expected = {k: v for k, v in tokens.items() if not choice_0_only or k[1] == 0}
    attrs = dict(span.attributes or {})
    assert streams(span.events) == set(expected)
    for (channel, choice), want in expected.items():
        got = reassemble(span.events, channel=channel, choice=choice)
        assert [bits(t.logprob) for t in got] == [bits(t.logprob) for t in want]
        assert [tuple(map(bits, t.top_logprobs)) for t in got] == [
            tuple(bits(a.logprob) for a in t.top_logprobs) for t in want
        ]
        assert [t.text for t in got] == [valid_text(t.token) for t in want]
        assert [t.top_tokens or () for t in got] == [
            tuple(valid_text(a.token) for a in t.top_logprobs) for t in want
        ]
        assert [t.bytes for t in got if t.bytes is not None] == [
            tuple(w.bytes or ()) for t, w in zip(got, want, strict=True) if t.bytes is not None
        ]
    content = expected.get(("content", 0), [])
    assert attrs["logprobs.token_count"] == len(content)
    figures = summarize(
        [t.logprob for t in content],
        top_logprobs=[[a.logprob for a in t.top_logprobs] for t in content],
    )
    if figures.sum is not None:
        assert bits(float(attrs["logprobs.sum"])) == bits(figures.sum)  # type: ignore[arg-type]
        assert attrs["logprobs.min_index"] == figures.min_index
    refusal = expected.get(("refusal", 0))
    assert attrs.get("logprobs.refusal.token_count") == (len(refusal) if refusal else None)
    others = sum(len(v) for k, v in expected.items() if k[1] != 0)
    assert attrs.get("logprobs.other_choices.token_count") == (others or None)
    assert "logprobs.events.dropped" not in attrs
    assert attrs.get("gen_ai.response.id") == (answer["id"] if response_id else None)
    assert attrs["gen_ai.response.model"] == answer["model"]
    if answer["finish_reason"] is not None and case.n == 1:
        assert attrs["gen_ai.response.finish_reasons"] == (answer["finish_reason"],)
    if output:
        assert json.loads(str(attrs["gen_ai.output.messages"])) == expected_output(answer)
    assert span.start_time is not None and span.end_time is not None
    assert all(span.start_time <= e.timestamp <= span.end_time for e in span.events)


# -- our model, with the OpenTelemetry handler -----------------------------------------------


@pytest.fixture
async def models() -> AsyncIterator[Callable[[Loopback, str], ChatOpenAI]]:
    made: list[tuple[openai.OpenAI, openai.AsyncOpenAI]] = []

    def factory(server: Loopback, model: str) -> ChatOpenAI:
        args: dict[str, Any] = {"base_url": server.base_url, "api_key": "k", "max_retries": 0}
        client, async_client = openai.OpenAI(**args), openai.AsyncOpenAI(**args)
        made.append((client, async_client))
        return ChatOpenAI(model, client=client, async_client=async_client)

    yield factory
    for client, async_client in made:
        client.close()
        await async_client.close()


def _our_call(case: Case) -> tuple[Any, str, dict[str, Any]]:
    call = our_call(case)
    options = dict(call.options)
    model = options.pop("model")
    options.pop("n", None)  # refused before the request: the server sends several anyway
    return call.messages, model, options


@pytest.mark.parametrize("entry", ["sync", "async"])
@pytest.mark.parametrize("case", CASES, ids=_ids)
async def test_our_model_through_the_handler(
    case: Case, entry: str, otel: InMemoryOtel, models: Callable[[Loopback, str], ChatOpenAI]
) -> None:
    messages, name, options = _our_call(case)
    handler = otel.handler(capture_content=True)
    with loopback(case, "seed1" if entry == "sync" else "seed2") as server:
        model = models(server, name)
        if case.stream and entry == "sync":
            list(model.stream(messages, callbacks=[handler], **options))
        elif case.stream:
            [c async for c in model.astream(messages, callbacks=[handler], **options)]
        elif entry == "sync":
            model.invoke(messages, callbacks=[handler], **options)
        else:
            await model.ainvoke(messages, callbacks=[handler], **options)
    check_span(otel.span(), case, choice_0_only=True)


# -- a raw client, instrumented ----------------------------------------------------------------


@pytest.fixture
def raw(otel: InMemoryOtel) -> Iterator[Callable[[Loopback], openai.OpenAI]]:
    made: list[openai.OpenAI] = []

    def factory(server: Loopback) -> openai.OpenAI:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        instrument_openai(client, telemetry=otel.telemetry_with(capture_content=True))
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_raw_client_create(
    case: Case, otel: InMemoryOtel, raw: Callable[[Loopback], openai.OpenAI]
) -> None:
    with loopback(case, "seed3") as server:
        result = raw(server).chat.completions.create(**case.request)
        if case.stream:
            for _ in result:
                pass
    check_span(otel.span(), case)


@pytest.mark.parametrize("case", CASES, ids=_ids)
async def test_async_raw_client_create(case: Case, otel: InMemoryOtel) -> None:
    with loopback(case, "utf8") as server:
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key="k", max_retries=0
        ) as client:
            instrument_openai(client, telemetry=otel.telemetry_with(capture_content=True))
            result = await client.chat.completions.create(**case.request)
            if case.stream:
                async for _ in result:
                    pass
    check_span(otel.span(), case)


def _parse_args(case: Case) -> dict[str, Any]:
    # The SDK test's own call: the pydantic model for the structured cases.
    args = {k: v for k, v in case.request.items() if k not in ("stream", "response_format")}
    if case.structured:
        args["response_format"] = Location
    return args


@pytest.mark.parametrize(
    "case", [c for c in CASES if not c.stream and not c.request.get("tools")], ids=_ids
)
def test_raw_client_parse(
    case: Case, otel: InMemoryOtel, raw: Callable[[Loopback], openai.OpenAI]
) -> None:
    _, answer = sdk(case)
    with loopback(case) as server:
        client = raw(server)
        if answer["finish_reason"] == "length":
            with pytest.raises(openai.LengthFinishReasonError):
                client.chat.completions.parse(**_parse_args(case))
            span = otel.span()
            assert span.attributes["error.type"] == "openai.LengthFinishReasonError"  # type: ignore[index]
            check_span(span, case, output=True)
            return
        completion = client.chat.completions.parse(**_parse_args(case))
    assert completion.choices[0].message.refusal == answer["refusal"]
    check_span(otel.span(), case)


@pytest.mark.parametrize("case", [c for c in CASES if c.stream], ids=_ids)
def test_raw_client_stream_helper(
    case: Case, otel: InMemoryOtel, raw: Callable[[Loopback], openai.OpenAI]
) -> None:
    with loopback(case, "seed1") as server:
        client = raw(server)
        with client.chat.completions.stream(**_parse_args(case)) as stream:
            for _ in stream:
                pass
    span = otel.span()
    assert (span.attributes or {})["logprobs.stream.completed"] is True
    check_span(span, case)


# -- LangChain's ChatOpenAI with our LangChain handler --------------------------------------


@pytest.mark.parametrize("case", [c for c in CASES if c.n == 1], ids=_ids)
def test_langchain_handler(case: Case, otel: InMemoryOtel) -> None:
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry_with(capture_content=True))
    request = case.request
    with loopback(case, "seed2") as server, openai.DefaultHttpxClient() as http:
        model = LangChainChatOpenAI(
            model=request["model"],
            base_url=server.base_url,
            api_key="k",  # type: ignore[arg-type]
            max_retries=0,
            http_client=http,
            logprobs=request.get("logprobs"),
            callbacks=[handler],
        )
        # The server answers the recording whatever it is sent: the prompt does not matter.
        if case.stream:
            for _ in model.stream("hi"):
                pass
        else:
            model.invoke("hi")
    assert handler.active_calls == 0
    # langchain-openai keeps no response id for a stream (the handler's docstring says so).
    check_span(otel.span(), case, output=False, response_id=not case.stream)
