"""Instrumenting a raw openai client: the SDK's own objects, our telemetry, one line."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Iterator

import openai
import pytest
from openai.resources.chat.completions import AsyncCompletions, Completions
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from opentelemetry.trace import StatusCode

from logprobscope.instrument import instrument_openai, uninstrument_openai
from logprobscope.otel import OpenTelemetryCallbackHandler
from logprobscope.testing import Faults, ReplayServer
from tests.support.entry_points import (
    MESSAGES,
    PROMPT,
    TOP_K,
    assert_chat_span,
    assert_same_metrics,
    attributes,
    events,
    metric_summary,
    token_logprobs,
)
from tests.support.factories import ModelFactory, ServerFactory
from tests.support.otel import InMemoryOtel

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_global_instrumentation")]

ORIGINAL_CREATE = Completions.__dict__["create"]
ORIGINAL_ACREATE = AsyncCompletions.__dict__["create"]


@pytest.fixture
def client(server: ReplayServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def aclient(server: ReplayServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        yield sdk


def _create(client: openai.OpenAI) -> ChatCompletion:
    return client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, logprobs=True, top_logprobs=TOP_K
    )


def _stream(client: openai.OpenAI) -> openai.Stream[ChatCompletionChunk]:
    return client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        logprobs=True,
        top_logprobs=TOP_K,
        stream=True,
        stream_options={"include_usage": True},
    )


def _stream_logprobs(chunks: list[ChatCompletionChunk]) -> list[float]:
    return [
        entry.logprob
        for chunk in chunks
        for choice in chunk.choices
        if choice.logprobs is not None
        for entry in choice.logprobs.content or []
    ]


# -- the SDK's objects, untouched -----------------------------------------------------------


def test_completion_is_the_sdks_and_matches_the_span(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    plain = _create(client)
    instrument_openai(client, telemetry=otel.telemetry)
    traced = _create(client)
    assert type(traced) is ChatCompletion
    assert traced.model_dump() == plain.model_dump()
    span = otel.span()
    assert_chat_span(span, stream=False)
    assert traced.choices[0].logprobs is not None
    content = traced.choices[0].logprobs.content or []
    assert token_logprobs(span) == [e.logprob for e in content]
    assert [e.attributes["logprobs.token.top_logprobs"] for e in span.events] == [  # type: ignore[index]
        tuple(t.logprob for t in e.top_logprobs) for e in content
    ]
    attrs = span.attributes or {}
    assert attrs["gen_ai.response.id"] == traced.id
    assert attrs["gen_ai.usage.output_tokens"] == traced.usage.completion_tokens  # type: ignore[union-attr]


def test_stream_yields_the_sdks_chunks_and_forwards_the_rest(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    with _stream(client) as plain_stream:
        plain = list(plain_stream)
    instrument_openai(client, telemetry=otel.telemetry)
    stream = _stream(client)
    assert isinstance(stream, openai.Stream)
    assert stream.response.status_code == 200  # forwarded to the real stream
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    chunks = list(stream)
    assert all(type(c) is ChatCompletionChunk for c in chunks)
    assert [c.model_dump() for c in chunks] == [c.model_dump() for c in plain]
    span = otel.span()
    assert_chat_span(span, stream=True)
    assert token_logprobs(span) == _stream_logprobs(chunks)
    assert span.attributes["logprobs.stream.completed"] is True  # type: ignore[index]
    assert span.attributes["gen_ai.usage.input_tokens"] == chunks[-1].usage.prompt_tokens  # type: ignore[index,union-attr]
    # Each token event has its chunk's arrival time: the events are the stream's timeline.
    assert span.start_time is not None and span.end_time is not None
    assert all(span.start_time <= e.timestamp <= span.end_time for e in span.events)
    stream.close()  # closing an exhausted stream changes nothing
    assert len(otel.spans()) == 1


def test_raw_client_and_our_model_emit_the_same_telemetry(
    server: ReplayServer, client: openai.OpenAI, otel: InMemoryOtel, make_model: ModelFactory
) -> None:
    ours, raw = otel.new(), otel.new()
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=ours.tracer_provider, meter_provider=ours.meter_provider
    )
    model = make_model(server, logprobs=True, top_logprobs=TOP_K, callbacks=[handler])
    model.invoke(PROMPT)
    for _ in model.stream(PROMPT):
        pass
    instrument_openai(client, telemetry=raw.telemetry)
    _create(client)
    for _ in _stream(client):
        pass
    # Two calls each: equal because both recorded them, not because both recorded nothing.
    assert [s.attributes["gen_ai.request.stream"] for s in ours.spans()] == [False, True]  # type: ignore[index]
    assert [len(s.events) for s in ours.spans()] == [25, 25]
    for got, want in zip(raw.spans(), ours.spans(), strict=True):
        assert attributes(got) == attributes(want)
        assert events(got) == events(want)
    want_metrics = metric_summary(ours)
    assert want_metrics["logprobs.token.probability"][0] == 50
    assert_same_metrics(metric_summary(raw), want_metrics)


# -- every way a stream ends, exactly once -----------------------------------------------------


def test_stream_left_with_break_ends_when_closed(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    instrument_openai(client, telemetry=otel.telemetry)
    with _stream(client) as stream:
        for count, _ in enumerate(stream):
            if count == 3:
                break
        assert otel.spans() == []  # still open: the caller may go on reading
    span = otel.span()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes["logprobs.stream.completed"] is False  # type: ignore[index]
    assert span.attributes["logprobs.token_count"] == 3  # type: ignore[index]


def test_stream_garbage_collected_unclosed_ends_once(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    instrument_openai(client, telemetry=otel.telemetry)
    stream = _stream(client)
    next(stream)
    next(stream)
    del stream
    gc.collect()
    span = otel.span()
    assert span.attributes["logprobs.stream.completed"] is False  # type: ignore[index]
    assert span.attributes["logprobs.token_count"] == 1  # type: ignore[index]


def test_user_exception_inside_the_stream_propagates_unchanged(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    instrument_openai(client, telemetry=otel.telemetry)
    mine = ValueError("mine")
    with pytest.raises(ValueError) as caught, _stream(client) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                raise mine
    assert caught.value is mine
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "ValueError"  # type: ignore[index]


def test_api_error_propagates_unchanged_and_ends_the_span(
    make_server: ServerFactory, otel: InMemoryOtel
) -> None:
    server = make_server(faults=Faults(status=503))
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        with pytest.raises(openai.InternalServerError) as plain:
            _create(client)
        instrument_openai(client, telemetry=otel.telemetry)
        with pytest.raises(openai.InternalServerError) as traced:
            _create(client)
    assert type(traced.value) is type(plain.value)
    assert traced.value.status_code == 503
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "openai.InternalServerError"  # type: ignore[index]


def test_stream_cut_by_the_server_fails_with_the_tokens_received(
    make_server: ServerFactory, otel: InMemoryOtel
) -> None:
    server = make_server(faults=Faults(cut_after=4))  # the role chunk and three tokens
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        instrument_openai(client, telemetry=otel.telemetry)
        received: list[ChatCompletionChunk] = []
        with pytest.raises(openai.APIConnectionError):
            for chunk in _stream(client):
                received.append(chunk)
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["logprobs.token_count"] == len(_stream_logprobs(received)) == 3  # type: ignore[index]
    assert span.attributes["logprobs.stream.completed"] is False  # type: ignore[index]


# -- async ------------------------------------------------------------------------------------


async def test_async_create_and_stream(aclient: openai.AsyncOpenAI, otel: InMemoryOtel) -> None:
    instrument_openai(aclient, telemetry=otel.telemetry)
    tracer = otel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:
        completion = await aclient.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, logprobs=True, top_logprobs=TOP_K
        )
        stream = await aclient.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, logprobs=True, stream=True
        )
    assert type(completion) is ChatCompletion
    assert isinstance(stream, openai.AsyncStream)

    async def consume() -> list[ChatCompletionChunk]:  # another task, after the span ended
        return [chunk async for chunk in stream]

    chunks = await asyncio.create_task(consume())
    invoked, streamed = otel.spans("chat gpt-4o")
    for span in (invoked, streamed):
        assert span.parent is not None
        assert span.parent.span_id == outer.get_span_context().span_id
    assert token_logprobs(streamed) == _stream_logprobs(chunks)
    assert streamed.attributes["logprobs.stream.completed"] is True  # type: ignore[index]


async def test_async_stream_left_through_its_context_manager(
    aclient: openai.AsyncOpenAI, otel: InMemoryOtel
) -> None:
    instrument_openai(aclient, telemetry=otel.telemetry)
    stream = await aclient.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, logprobs=True, stream=True
    )
    async with stream:
        async for _ in stream:
            break
    span = otel.span()
    assert span.attributes["logprobs.stream.completed"] is False  # type: ignore[index]
    await stream.aclose()  # ending twice changes nothing
    assert len(otel.spans()) == 1


async def test_async_stream_cancelled_ends_with_the_cancellation(
    make_server: ServerFactory, otel: InMemoryOtel
) -> None:
    server = make_server(faults=Faults(stall_after=3, stall_seconds=30))
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        instrument_openai(sdk, telemetry=otel.telemetry)
        started = asyncio.Event()

        async def read() -> None:
            stream = await sdk.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, logprobs=True, stream=True
            )
            async for _ in stream:
                started.set()

        task = asyncio.create_task(read())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "asyncio.exceptions.CancelledError"  # type: ignore[index]


# -- instrumenting and undoing it ------------------------------------------------------------


def test_client_instrumentation_is_idempotent_and_reversible(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    instrument_openai(client, telemetry=otel.telemetry)
    wrapped = client.chat.completions.create
    instrument_openai(client, telemetry=otel.telemetry)
    assert client.chat.completions.create is wrapped
    _create(client)
    assert len(otel.spans()) == 1
    uninstrument_openai(client)
    uninstrument_openai(client)
    assert "create" not in vars(client.chat.completions)
    _create(client)
    assert len(otel.spans()) == 1
    assert Completions.__dict__["create"] is ORIGINAL_CREATE


def test_a_second_instrumentation_replaces_the_telemetry(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    first, second = otel.new(), otel.new()
    instrument_openai(client, telemetry=first.telemetry)
    instrument_openai(client, telemetry=second.telemetry)
    _create(client)
    assert (len(first.spans()), len(second.spans())) == (0, 1)


def test_global_instrumentation_covers_every_client_and_is_reversible(
    server: ReplayServer, otel: InMemoryOtel
) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="k") as before:
        instrument_openai(telemetry=otel.telemetry)
        instrument_openai(telemetry=otel.telemetry)
        assert Completions.__dict__["create"] is not ORIGINAL_CREATE
        assert AsyncCompletions.__dict__["create"] is not ORIGINAL_ACREATE
        with openai.OpenAI(base_url=server.base_url, api_key="k") as after:
            _create(before)
            _create(after)
            assert len(otel.spans()) == 2
            uninstrument_openai()
            uninstrument_openai()
            assert Completions.__dict__["create"] is ORIGINAL_CREATE
            assert AsyncCompletions.__dict__["create"] is ORIGINAL_ACREATE
            _create(before)
            _create(after)
    assert len(otel.spans()) == 2


def test_client_and_global_instrumentation_together_trace_once(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    per_client, everywhere = otel.new(), otel.new()
    instrument_openai(client, telemetry=per_client.telemetry)
    instrument_openai(telemetry=everywhere.telemetry)
    _create(client)
    for _ in _stream(client):
        pass
    assert len(per_client.spans()) == 2
    assert everywhere.spans() == []


def test_instrumenting_something_else_is_refused() -> None:
    with pytest.raises(AttributeError):
        instrument_openai(object())  # type: ignore[arg-type]


# -- what is traced and what is passed through -------------------------------------------


def test_raw_response_is_traced_and_its_parse_is_the_same_object(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    instrument_openai(client, telemetry=otel.telemetry)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, logprobs=True
    )
    assert raw.status_code == 200
    parsed = raw.parse()
    assert parsed is raw.parse()
    span = otel.span()
    assert span.attributes["gen_ai.response.id"] == parsed.id  # type: ignore[index]
    assert span.attributes["logprobs.token_count"] == len(parsed.choices[0].logprobs.content)  # type: ignore[index,union-attr,arg-type]


async def test_async_raw_response_is_traced(
    aclient: openai.AsyncOpenAI, otel: InMemoryOtel
) -> None:
    instrument_openai(aclient, telemetry=otel.telemetry)
    raw = await aclient.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, logprobs=True
    )
    parsed = raw.parse()
    assert otel.span().attributes["gen_ai.response.id"] == parsed.id  # type: ignore[index]


def test_streaming_response_and_raw_streams_pass_through(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    instrument_openai(client, telemetry=otel.telemetry)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES, logprobs=True
    ) as response:
        assert b"logprobs" in response.read()
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, logprobs=True, stream=True
    )
    with raw.parse() as stream:
        assert type(stream) is openai.Stream
        for _ in stream:
            pass
    assert otel.spans() == []


def test_stream_helper_is_traced(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    instrument_openai(client, telemetry=otel.telemetry)
    with client.chat.completions.stream(
        model="gpt-4o", messages=MESSAGES, logprobs=True, top_logprobs=TOP_K
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    span = otel.span()
    assert final.choices[0].logprobs is not None
    assert token_logprobs(span) == [e.logprob for e in final.choices[0].logprobs.content or []]


async def test_our_model_is_traced_once_under_global_instrumentation(
    server: ReplayServer, otel: InMemoryOtel, make_model: ModelFactory
) -> None:
    ours, everywhere = otel.new(), otel.new()
    instrument_openai(telemetry=everywhere.telemetry)
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=ours.tracer_provider, meter_provider=ours.meter_provider
    )
    model = make_model(server, logprobs=True, callbacks=[handler])
    model.invoke(PROMPT)
    for _ in model.stream(PROMPT):
        pass
    await model.ainvoke(PROMPT)
    async for _ in model.astream(PROMPT):
        pass
    assert len(ours.spans()) == 4
    assert everywhere.spans() == []


def test_concurrent_calls_from_threads_get_their_own_spans(
    client: openai.OpenAI, otel: InMemoryOtel
) -> None:
    instrument_openai(client, telemetry=otel.telemetry)
    tracer = otel.tracer_provider.get_tracer("test")
    parents: dict[int, int] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with tracer.start_as_current_span(f"worker-{i}") as span:
                parents[i] = span.get_span_context().span_id
                for _ in _stream(client):
                    pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    spans = otel.spans("chat gpt-4o")
    assert len(spans) == 8
    assert sorted(s.parent.span_id for s in spans if s.parent) == sorted(parents.values())
    assert len({tuple(token_logprobs(s)) for s in spans}) == 1
