"""One call to a llama.cpp server through each of logprobscope's three entry points, with telemetry.

The entry points: our `ChatOpenAI` with `OpenTelemetryCallbackHandler` ("ours"), langchain-openai's
`ChatOpenAI` with `LogprobsCallbackHandler` ("langchain"), and a raw `openai` client with
`instrument_openai` ("raw"); each sync or async, invoked or streamed. A call records what the
caller got (:class:`Got`) and the one span it emitted into an in-memory OpenTelemetry pipeline
(`tests.support.otel.InMemoryOtel`) with content capture, so the tests can check the span
against exactly what the server returned.

langchain-openai sends `max_completion_tokens` for `max_tokens`, which llama-cpp-python ignores
(the tiny model then writes until its context is full), so the LangChain model also passes
`max_tokens` in `extra_body`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import openai
import pytest
from langchain_core.messages import AIMessageChunk as LangChainChunk
from langchain_core.messages import BaseMessage
from langchain_openai import ChatOpenAI as LangChainChatOpenAI
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from logprobscope import AIMessage, AIMessageChunk, ChatOpenAI
from logprobscope.instrument import instrument_openai
from logprobscope.langchain import LogprobsCallbackHandler
from tests.e2e.llama_servers import LlamaServer
from tests.support.otel import InMemoryOtel

__all__ = [
    "ENTRIES",
    "MAX_TOKENS",
    "MODES",
    "PROMPT",
    "SEED",
    "TOP_K",
    "Entry",
    "Got",
    "Mode",
    "Outcome",
    "Request",
    "Token",
    "acall",
    "call",
    "check_span",
    "event_tokens",
]

SEED = 1234
MAX_TOKENS = 24
TOP_K = 3
PROMPT = "Say hello to the world."
TIMEOUT = 60.0

Entry = Literal["ours", "langchain", "raw"]
ENTRIES: tuple[Entry, ...] = ("ours", "langchain", "raw")
Mode = Literal["invoke", "stream", "ainvoke", "astream"]
MODES: tuple[Mode, ...] = ("invoke", "stream", "ainvoke", "astream")


@dataclass(frozen=True)
class Request:
    """What a call asks for; `top_logprobs=None` leaves the field out of the request.

    `n` (several choices) goes through the raw client only: our model refuses `n` > 1.
    """

    prompt: str = PROMPT
    top_logprobs: int | None = TOP_K
    stop: tuple[str, ...] = ()
    max_tokens: int = MAX_TOKENS
    n: int | None = None


@dataclass(frozen=True)
class Token:
    """One generated token as the caller received it."""

    token: str
    logprob: float
    bytes: list[int] | None
    top: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Got:
    """What one call returned to its caller: choice 0, and how many choices came."""

    tokens: list[Token]
    text: str
    logprobs_null: bool  # the answer had no logprobs object at all
    finish_reasons: tuple[str, ...]  # of every choice, in index order
    choice_count: int
    output_tokens: int | None  # usage, when the answer had any
    response_id: str | None
    response_model: str | None


@dataclass(frozen=True)
class Outcome:
    """What one call returned to its caller, and the span it emitted."""

    got: Got
    span: ReadableSpan


# -- what the caller got -----------------------------------------------------------------------


def _from_mapping(entry: Mapping[str, Any]) -> Token:
    return Token(
        entry["token"],
        entry["logprob"],
        entry.get("bytes"),
        tuple((t["token"], t["logprob"]) for t in entry.get("top_logprobs") or ()),
    )


def _from_object(entry: Any) -> Token:
    return Token(
        entry.token,
        entry.logprob,
        entry.bytes,
        tuple((t.token, t.logprob) for t in entry.top_logprobs),
    )


def _got_ours(message: AIMessage) -> Got:
    meta = message.response_metadata
    logprobs = meta.logprobs
    usage = message.usage_metadata
    return Got(
        tokens=[_from_object(e) for e in (logprobs.content or ())] if logprobs else [],
        text=str(message.content),
        logprobs_null=logprobs is None,
        finish_reasons=(meta.finish_reason,) if meta.finish_reason else (),
        choice_count=1,
        output_tokens=usage.output_tokens if usage is not None else None,
        response_id=meta.id,
        response_model=meta.model_name,
    )


def _got_langchain(message: BaseMessage, tokens: list[Token] | None = None) -> Got:
    meta = message.response_metadata
    logprobs = meta.get("logprobs")
    if tokens is None:
        tokens = [_from_mapping(e) for e in (logprobs or {}).get("content") or ()]
    usage = getattr(message, "usage_metadata", None)
    return Got(
        tokens=tokens,
        text=str(message.content),
        logprobs_null=not tokens and not logprobs,
        finish_reasons=(meta["finish_reason"],) if meta.get("finish_reason") else (),
        choice_count=1,
        output_tokens=usage["output_tokens"] if usage else None,
        response_id=meta.get("id"),
        response_model=meta.get("model_name"),
    )


def _got_raw_chunks(chunks: Sequence[ChatCompletionChunk]) -> Got:
    every = [c for chunk in chunks for c in chunk.choices]
    choices = [c for c in every if c.index == 0]
    logprobs = [c.logprobs for c in choices if c.logprobs is not None]
    usage = [chunk.usage for chunk in chunks if chunk.usage is not None]
    finish = {c.index: c.finish_reason for c in every if c.finish_reason}
    return Got(
        tokens=[_from_object(e) for lp in logprobs for e in lp.content or ()],
        text="".join(c.delta.content or "" for c in choices),
        logprobs_null=not logprobs,
        finish_reasons=tuple(finish[i] for i in sorted(finish)),
        choice_count=len({c.index for c in every}),
        output_tokens=usage[-1].completion_tokens if usage else None,
        response_id=chunks[0].id if chunks else None,
        response_model=chunks[0].model if chunks else None,
    )


def _got_raw(completion: Any) -> Got:
    choice = completion.choices[0]
    logprobs = choice.logprobs
    return Got(
        tokens=[_from_object(e) for e in (logprobs.content or ())] if logprobs else [],
        text=choice.message.content or "",
        logprobs_null=logprobs is None,
        finish_reasons=tuple(c.finish_reason for c in completion.choices if c.finish_reason),
        choice_count=len(completion.choices),
        output_tokens=completion.usage.completion_tokens if completion.usage else None,
        response_id=completion.id,
        response_model=completion.model,
    )


# -- the three entry points, sync and async ----------------------------------------------------


def _sdk_args(server: LlamaServer) -> dict[str, Any]:
    # No retries: a flaky server must show up as a failure, not as a slow pass.
    return {"base_url": server.base_url, "api_key": "none", "max_retries": 0, "timeout": TIMEOUT}


def _ours_model(
    server: LlamaServer,
    otel: InMemoryOtel,
    request: Request,
    *,
    client: openai.OpenAI | None = None,
    async_client: openai.AsyncOpenAI | None = None,
) -> ChatOpenAI:
    return ChatOpenAI(
        model=server.model,
        client=client,
        async_client=async_client,
        logprobs=True,
        top_logprobs=request.top_logprobs,
        temperature=0,
        seed=SEED,
        max_tokens=request.max_tokens,
        stop=list(request.stop) or None,
        callbacks=[otel.handler(capture_content=True)],
    )


def _langchain_model(
    server: LlamaServer, otel: InMemoryOtel, request: Request, **http: Any
) -> tuple[LangChainChatOpenAI, LogprobsCallbackHandler]:
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry_with(capture_content=True))
    optional: dict[str, Any] = {}
    if request.top_logprobs is not None:
        optional["top_logprobs"] = request.top_logprobs
    if request.stop:
        optional["stop"] = list(request.stop)
    model = LangChainChatOpenAI(
        model=server.model,
        base_url=server.base_url,
        api_key="none",  # type: ignore[arg-type]
        max_retries=0,
        timeout=TIMEOUT,
        logprobs=True,
        temperature=0,
        seed=SEED,
        max_tokens=request.max_tokens,  # type: ignore[call-arg]
        extra_body={"max_tokens": request.max_tokens},  # it ignores max_completion_tokens
        callbacks=[handler],
        **http,
        **optional,
    )
    return model, handler


def _raw_args(server: LlamaServer, request: Request, *, stream: bool) -> dict[str, Any]:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": request.prompt}]
    args: dict[str, Any] = {
        "model": server.model,
        "messages": messages,
        "logprobs": True,
        "temperature": 0,
        "seed": SEED,
        "max_tokens": request.max_tokens,
    }
    if request.top_logprobs is not None:
        args["top_logprobs"] = request.top_logprobs
    if request.stop:
        args["stop"] = list(request.stop)
    if request.n is not None:
        args["n"] = request.n
    if stream:
        args.update(stream=True, stream_options={"include_usage": True})
    return args


def _ours(server: LlamaServer, otel: InMemoryOtel, request: Request, stream: bool) -> Got:
    with openai.OpenAI(**_sdk_args(server)) as client:
        model = _ours_model(server, otel, request, client=client)
        if not stream:
            return _got_ours(model.invoke(request.prompt))
        agg: AIMessageChunk | None = None
        for chunk in model.stream(request.prompt):
            agg = chunk if agg is None else agg + chunk
    assert agg is not None
    return _got_ours(agg)


async def _aours(server: LlamaServer, otel: InMemoryOtel, request: Request, stream: bool) -> Got:
    async with openai.AsyncOpenAI(**_sdk_args(server)) as client:
        model = _ours_model(server, otel, request, async_client=client)
        if not stream:
            return _got_ours(await model.ainvoke(request.prompt))
        agg: AIMessageChunk | None = None
        async for chunk in model.astream(request.prompt):
            agg = chunk if agg is None else agg + chunk
    assert agg is not None
    return _got_ours(agg)


def _langchain_stream_got(chunks: list[LangChainChunk]) -> Got:
    tokens: list[Token] = []
    for chunk in chunks:
        logprobs = chunk.response_metadata.get("logprobs") or {}
        tokens.extend(_from_mapping(e) for e in logprobs.get("content") or ())
    agg = chunks[0]
    for chunk in chunks[1:]:
        agg = agg + chunk
    return _got_langchain(agg, tokens)


def _langchain(server: LlamaServer, otel: InMemoryOtel, request: Request, stream: bool) -> Got:
    with openai.DefaultHttpxClient() as http:
        model, handler = _langchain_model(server, otel, request, http_client=http)
        if stream:
            got = _langchain_stream_got(list(model.stream(request.prompt)))
        else:
            got = _got_langchain(model.invoke(request.prompt))
    assert handler.active_calls == 0
    return got


async def _alangchain(
    server: LlamaServer, otel: InMemoryOtel, request: Request, stream: bool
) -> Got:
    async with openai.DefaultAsyncHttpxClient() as http:
        model, handler = _langchain_model(server, otel, request, http_async_client=http)
        if stream:
            got = _langchain_stream_got([c async for c in model.astream(request.prompt)])
        else:
            got = _got_langchain(await model.ainvoke(request.prompt))
    assert handler.active_calls == 0
    return got


def _raw(server: LlamaServer, otel: InMemoryOtel, request: Request, stream: bool) -> Got:
    with openai.OpenAI(**_sdk_args(server)) as client:
        instrument_openai(client, telemetry=otel.telemetry_with(capture_content=True))
        if not stream:
            return _got_raw(
                client.chat.completions.create(**_raw_args(server, request, stream=False))
            )
        with client.chat.completions.create(**_raw_args(server, request, stream=True)) as response:
            return _got_raw_chunks(list(response))


async def _araw(server: LlamaServer, otel: InMemoryOtel, request: Request, stream: bool) -> Got:
    async with openai.AsyncOpenAI(**_sdk_args(server)) as client:
        instrument_openai(client, telemetry=otel.telemetry_with(capture_content=True))
        args = _raw_args(server, request, stream=stream)
        if not stream:
            return _got_raw(await client.chat.completions.create(**args))
        async with await client.chat.completions.create(**args) as response:
            return _got_raw_chunks([chunk async for chunk in response])


_SYNC = {"ours": _ours, "langchain": _langchain, "raw": _raw}
_ASYNC = {"ours": _aours, "langchain": _alangchain, "raw": _araw}


async def acall(
    entry: Entry, server: LlamaServer, otel: InMemoryOtel, request: Request, *, stream: bool
) -> Got:
    """One async call (`ainvoke`/`astream` or the async SDK) recording into `otel`."""
    return await _ASYNC[entry](server, otel, request, stream)


def call(entry: Entry, server: LlamaServer, mode: Mode, request: Request | None = None) -> Outcome:
    """One call in `mode` through `entry`, in a fresh pipeline: what it returned and its span."""
    request = request or Request()
    stream = mode in ("stream", "astream")
    otel = InMemoryOtel()
    try:
        if mode.startswith("a"):
            got = asyncio.run(acall(entry, server, otel, request, stream=stream))
        else:
            got = _SYNC[entry](server, otel, request, stream)
        return Outcome(got, otel.span())
    finally:
        otel.close()  # also checks that every call's telemetry ended


def as_exported(tokens: Sequence[Token]) -> list[Token]:
    """The tokens as a span can give them back: bytes that are the text's UTF-8 (or that the
    server left out) are not exported (docs/telemetry.md), so both read as the text's UTF-8.
    """
    return [
        Token(t.token, t.logprob, t.bytes if t.bytes is not None else list(t.token.encode()), t.top)
        for t in tokens
    ]


def event_tokens(span: ReadableSpan) -> list[Token]:
    """The tokens of a span's `logprobs.token` events (mode "tokens", content captured).

    A token event without `logprobs.token.bytes` has the text's UTF-8 as its bytes.
    Only choice 0's content: other choices' and refusal events are marked with
    `logprobs.token.choice_index` / `logprobs.token.channel` and have indexes of their own.
    """
    tokens: list[Token] = []
    for event in span.events:
        assert event.name == "logprobs.token"
        attrs = dict(event.attributes or {})
        if attrs.get("logprobs.token.choice_index", 0) != 0:
            continue
        assert attrs.get("logprobs.token.channel", "content") == "content"
        assert attrs["logprobs.token.index"] == len(tokens)
        top_lps: Sequence[float] = attrs["logprobs.token.top_logprobs"]  # type: ignore[assignment]
        top_tokens: Sequence[str] = attrs["logprobs.token.top_tokens"]  # type: ignore[assignment]
        raw_bytes = attrs.get("logprobs.token.bytes")
        tokens.append(
            Token(
                str(attrs["logprobs.token.text"]),
                float(attrs["logprobs.token.logprob"]),  # type: ignore[arg-type]
                list(raw_bytes)  # type: ignore[arg-type]
                if raw_bytes is not None
                else list(str(attrs["logprobs.token.text"]).encode()),
                tuple(zip(top_tokens, top_lps, strict=True)),
            )
        )
    return tokens


def check_span(outcome: Outcome, server: LlamaServer, request: Request, mode: Mode) -> None:
    """Assert the span says exactly what the server returned to the caller, and what was asked."""
    got, span = outcome.got, outcome.span
    stream = mode in ("stream", "astream")
    assert span.name == f"chat {server.model}"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    # Every token of the answer, exactly as the caller got it.
    assert event_tokens(span) == as_exported(got.tokens)
    attrs = dict(span.attributes or {})
    expected: dict[str, object] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": server.model,
        "gen_ai.request.stream": stream,
        "gen_ai.request.temperature": 0.0,
        "gen_ai.request.seed": SEED,
        "gen_ai.request.max_tokens": request.max_tokens,
        "server.address": "127.0.0.1",
        "server.port": server.port,
        "gen_ai.response.model": got.response_model,
        "gen_ai.response.finish_reasons": got.finish_reasons,
        "gen_ai.request.choice.count": request.n if request.n != 1 else None,
        "gen_ai.usage.output_tokens": got.output_tokens,
        "logprobs.enabled": True,
        "logprobs.top_logprobs": request.top_logprobs or 0,
        "logprobs.token_count": len(got.tokens),
        "logprobs.events.mode": "tokens",
    }
    assert {k: attrs.get(k) for k in expected} == expected
    if got.response_id is not None:  # langchain-openai drops a stream's response id
        assert attrs["gen_ai.response.id"] == got.response_id
    if got.tokens:
        logprobs = [t.logprob for t in got.tokens]
        assert attrs["logprobs.sum"] == pytest.approx(math.fsum(logprobs))
        assert attrs["logprobs.min"] == pytest.approx(min(logprobs))
        assert attrs["logprobs.perplexity"] == pytest.approx(
            math.exp(-math.fsum(logprobs) / len(logprobs))
        )
    else:
        assert "logprobs.sum" not in attrs
    assert request.prompt in str(attrs["gen_ai.input.messages"])
    assert got.text in str(attrs["gen_ai.output.messages"])
    if stream:
        assert attrs["logprobs.stream.completed"] is True
        assert "gen_ai.response.time_to_first_chunk" in attrs
