"""The LangChain handler: the same telemetry as our model, for every way LangChain runs a model."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import sys
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.runnables import RunnableConfig, RunnableLambda
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from logprobscope.instrument import instrument_openai, uninstrument_openai
from logprobscope.langchain import LogprobsCallbackHandler
from logprobscope.otel import OpenTelemetryCallbackHandler
from logprobscope.testing import Faults, ReplayServer, make_completion
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
from tests.support.factories import LangChainFactory, ModelFactory, ServerFactory
from tests.support.otel import InMemoryOtel

pytestmark = pytest.mark.timeout(60)


# -- the same completion through the three entry points --------------------------------------


def _ours(otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer, stream: bool) -> None:
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    model = make_model(server, logprobs=True, top_logprobs=TOP_K, callbacks=[handler])
    if stream:
        for _ in model.stream(PROMPT):
            pass
    else:
        model.invoke(PROMPT)


def _langchain(
    otel: InMemoryOtel, make_lc_model: LangChainFactory, server: ReplayServer, stream: bool
) -> None:
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry)
    model = make_lc_model(
        server, logprobs=True, top_logprobs=TOP_K, stream_usage=True, callbacks=[handler]
    )
    if stream:
        for _ in model.stream(PROMPT):
            pass
    else:
        model.invoke(PROMPT)
    assert handler.active_calls == 0


def _raw(otel: InMemoryOtel, server: ReplayServer, stream: bool) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        instrument_openai(client, telemetry=otel.telemetry)
        if stream:
            chunks = client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                logprobs=True,
                top_logprobs=TOP_K,
                stream=True,
                stream_options={"include_usage": True},
            )
            for _ in chunks:
                pass
        else:
            client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                logprobs=True,
                top_logprobs=TOP_K,
            )


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_three_entry_points_emit_the_same_telemetry(
    stream: bool,
    server: ReplayServer,
    otel: InMemoryOtel,
    make_model: ModelFactory,
    make_lc_model: LangChainFactory,
) -> None:
    ours, lc, raw = otel.new(), otel.new(), otel.new()
    _ours(ours, make_model, server, stream)
    _langchain(lc, make_lc_model, server, stream)
    _raw(raw, server, stream)

    want = ours.span()
    assert_chat_span(want, stream=stream)
    assert len(want.events) == 25  # the seed completion's tokens, one event each
    # langchain-openai drops the response id of streamed chunks: nothing to record.
    drop = ["gen_ai.response.id"] if stream else []
    for got in (lc.span(), raw.span()):
        assert_chat_span(got, stream=stream)
        assert (got.name, got.kind) == (want.name, want.kind)
        assert attributes(got, drop=drop) == attributes(want, drop=drop)
        assert events(got) == events(want)
    assert "gen_ai.response.id" in (raw.span().attributes or {})
    for got_metrics in (metric_summary(lc), metric_summary(raw)):
        assert_same_metrics(got_metrics, metric_summary(ours))


# -- every way LangChain runs a model ----------------------------------------------------------


async def test_ainvoke_and_astream_are_children_of_the_current_span(
    server: ReplayServer, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry)
    model = make_lc_model(server, logprobs=True, top_logprobs=TOP_K, callbacks=[handler])
    tracer = otel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:
        message = await model.ainvoke(PROMPT)
        chunks = [chunk async for chunk in model.astream(PROMPT)]
    assert chunks and handler.active_calls == 0
    spans = otel.spans("chat gpt-4o")
    assert [s.attributes["gen_ai.request.stream"] for s in spans] == [False, True]  # type: ignore[index]
    for span in spans:
        assert span.parent is not None
        assert span.parent.span_id == outer.get_span_context().span_id
        assert span.context.trace_id == outer.get_span_context().trace_id
    # Non-streamed: the tokens of the final message; streamed: the chunks' tokens, once.
    invoked = message.response_metadata["logprobs"]["content"]
    assert token_logprobs(spans[0]) == [e["logprob"] for e in invoked]
    streamed = [
        e["logprob"]
        for c in chunks
        for e in (c.response_metadata.get("logprobs") or {}).get("content") or []
    ]
    assert token_logprobs(spans[1]) == streamed
    assert spans[1].attributes["logprobs.stream.completed"] is True  # type: ignore[index]


def test_batch_runs_one_span_per_input_under_the_callers_span(
    server: ReplayServer, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry)
    model = make_lc_model(server, logprobs=True, callbacks=[handler])
    tracer = otel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:
        answers = model.batch(["one", "two", "three"], config={"max_concurrency": 3})
    assert len(answers) == 3
    spans = otel.spans("chat gpt-4o")
    assert len(spans) == 3
    assert [s.parent.span_id if s.parent else None for s in spans] == [
        outer.get_span_context().span_id
    ] * 3
    for span, answer in zip(sorted(spans, key=lambda s: str(s.attributes)), answers, strict=False):
        assert span.attributes["logprobs.token_count"] == len(  # type: ignore[index]
            answer.response_metadata["logprobs"]["content"]
        )
    assert handler.active_calls == 0


async def test_abatch_runs_one_span_per_input_under_the_callers_span(
    server: ReplayServer, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry)
    model = make_lc_model(server, logprobs=True, callbacks=[handler])
    tracer = otel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:
        await model.abatch(["one", "two", "three"])
    spans = otel.spans("chat gpt-4o")
    assert len(spans) == 3
    assert [s.parent.span_id if s.parent else None for s in spans] == [
        outer.get_span_context().span_id
    ] * 3


def test_model_called_inside_a_chain_is_nested_under_the_current_span(
    server: ReplayServer, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry)
    model = make_lc_model(server, logprobs=True, top_logprobs=TOP_K)
    parents: list[Any] = []

    def two_calls(prompt: str, config: RunnableConfig) -> str:
        parents.append(trace.get_current_span().get_span_context().span_id)
        first = model.invoke(prompt, config=config)
        second = "".join(str(c.content) for c in model.stream(prompt, config=config))
        return f"{first.content} / {second}"

    chain = RunnableLambda(two_calls) | RunnableLambda(lambda text: text.upper())
    tracer = otel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:
        chain.invoke(PROMPT, config={"callbacks": [handler]})
    # The chain's own runs make no spans; the model's runs are children of the caller's span.
    spans = otel.spans()
    assert [s.name for s in spans] == ["chat gpt-4o", "chat gpt-4o", "outer"]
    assert parents == [outer.get_span_context().span_id]
    for span in spans[:2]:
        assert span.parent is not None
        assert span.parent.span_id == outer.get_span_context().span_id
    assert [s.attributes["gen_ai.request.stream"] for s in spans[:2]] == [False, True]  # type: ignore[index]
    assert handler.active_calls == 0


async def test_async_chain_runs_keep_the_callers_span(
    server: ReplayServer, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry)
    model = make_lc_model(server, logprobs=True)

    async def call(prompt: str, config: RunnableConfig) -> str:
        return str((await model.ainvoke(prompt, config=config)).content)

    chain = RunnableLambda(call)
    tracer = otel.tracer_provider.get_tracer("test")

    async def one(name: str) -> int:
        with tracer.start_as_current_span(name) as span:
            await chain.ainvoke(PROMPT, config={"callbacks": [handler]})
            return span.get_span_context().span_id

    outers = await asyncio.gather(one("a"), one("b"), one("c"))
    spans = otel.spans("chat gpt-4o")
    assert sorted(s.parent.span_id for s in spans if s.parent) == sorted(outers)


def test_streaming_model_invoke_is_recorded_as_a_stream(
    server: ReplayServer, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry)
    model = make_lc_model(server, logprobs=True, streaming=True, callbacks=[handler])
    message = model.invoke(PROMPT)
    span = otel.span()
    assert_chat_span(span, stream=True)
    assert span.attributes["logprobs.stream.completed"] is True  # type: ignore[index]
    # The tokens came as chunks; on_llm_end's merged list is not added a second time.
    assert token_logprobs(span) == [
        e["logprob"] for e in message.response_metadata["logprobs"]["content"]
    ]


def test_stream_left_early_is_not_completed(
    server: ReplayServer, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry)
    model = make_lc_model(server, logprobs=True, callbacks=[handler])
    seen: list[AIMessageChunk] = []
    stream = model.stream(PROMPT)
    for chunk in stream:
        seen.append(chunk)
        if len(seen) == 4:  # the role chunk and three tokens
            break
    del stream
    gc.collect()  # LangChain ends the run when its generator is closed
    span = otel.span()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes["logprobs.stream.completed"] is False  # type: ignore[index]
    assert span.attributes["logprobs.token_count"] == 3  # type: ignore[index]
    assert handler.active_calls == 0


def test_api_error_ends_the_span_with_the_error_the_caller_gets(
    make_server: ServerFactory, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    server = make_server(faults=Faults(status=500))
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry)
    model = make_lc_model(server, logprobs=True, callbacks=[handler])
    with pytest.raises(openai.InternalServerError) as caught:
        model.invoke(PROMPT)
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    error_type = type(caught.value)
    assert span.attributes["error.type"] == f"{error_type.__module__}.{error_type.__qualname__}"  # type: ignore[index]
    assert [e.name for e in span.events] == ["exception"]
    duration = otel.metric_points()["gen_ai.client.operation.duration"]
    assert [dict(p.attributes or {}).get("error.type") for p in duration] == [
        span.attributes["error.type"]  # type: ignore[index]
    ]


def test_stream_cut_by_the_server_keeps_the_tokens_received(
    make_server: ServerFactory, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    server = make_server(faults=Faults(cut_after=6))  # the role chunk and five tokens
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry)
    model = make_lc_model(server, logprobs=True, callbacks=[handler])
    with pytest.raises(openai.APIConnectionError):
        for _ in model.stream(PROMPT):
            pass
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["logprobs.token_count"] == 5  # type: ignore[index]
    assert span.attributes["logprobs.stream.completed"] is False  # type: ignore[index]
    assert [e.name for e in span.events].count("logprobs.token") == 5


def test_user_exception_in_the_loop_propagates_unchanged(
    server: ReplayServer, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry)
    model = make_lc_model(server, logprobs=True, callbacks=[handler])
    mine = KeyError("mine")
    with pytest.raises(KeyError) as caught:
        for chunk in model.stream(PROMPT):
            if chunk.content:
                raise mine
    assert caught.value is mine
    gc.collect()
    span = otel.span()
    # LangChain closes its generator (GeneratorExit): the run was left, not failed.
    assert span.attributes["logprobs.stream.completed"] is False  # type: ignore[index]


async def test_concurrent_streams_share_one_handler(
    make_server: ServerFactory, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    completions = [
        make_completion([f" w{i}_{j}" for j in range(10 + i)], id=f"chatcmpl-{i}", seed=i)
        for i in range(6)
    ]
    server = make_server(completions)
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry)
    model = make_lc_model(server, logprobs=True, callbacks=[handler])

    async def read(prompt: str) -> list[float]:
        logprobs: list[float] = []
        async for chunk in model.astream(prompt):
            content = (chunk.response_metadata.get("logprobs") or {}).get("content") or []
            logprobs.extend(e["logprob"] for e in content)
        return logprobs

    results = await asyncio.gather(*(read(f"p{i}") for i in range(6)))
    spans = otel.spans("chat gpt-4o")
    assert len(spans) == 6
    assert sorted(token_logprobs(s) for s in spans) == sorted(results)
    assert handler.active_calls == 0


def test_content_capture_records_texts_and_messages(
    server: ReplayServer, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    handler = LogprobsCallbackHandler(telemetry=otel.telemetry_with(capture_content=True))
    model = make_lc_model(server, logprobs=True, top_logprobs=TOP_K, callbacks=[handler])
    answer = "".join(str(c.content) for c in model.stream(PROMPT))
    span = otel.span()
    texts = [e.attributes["logprobs.token.text"] for e in span.events]  # type: ignore[index]
    assert "".join(texts) == answer  # type: ignore[arg-type]
    assert all("logprobs.token.top_tokens" in (e.attributes or {}) for e in span.events)
    attrs = span.attributes or {}
    assert PROMPT in str(attrs["gen_ai.input.messages"])
    assert answer in str(attrs["gen_ai.output.messages"])


def test_content_is_not_captured_by_default(
    server: ReplayServer, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    model = make_lc_model(
        server, logprobs=True, callbacks=[LogprobsCallbackHandler(telemetry=otel.telemetry)]
    )
    model.invoke(PROMPT)
    span = otel.span()
    assert not any("text" in name for e in span.events for name in e.attributes or {})
    assert "gen_ai.input.messages" not in (span.attributes or {})


def test_handler_makes_its_own_telemetry(
    server: ReplayServer, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    handler = LogprobsCallbackHandler(
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
        events="batched",
        low_confidence_threshold=0.9,
    )
    make_lc_model(server, logprobs=True, callbacks=[handler]).invoke(PROMPT)
    span = otel.span()
    assert span.attributes["logprobs.events.mode"] == "batched"  # type: ignore[index]
    assert span.attributes["logprobs.low_confidence.threshold"] == 0.9  # type: ignore[index]
    # One batch, then the low-confidence tokens (p < 0.9) once more, up to 8.
    names = [e.name for e in span.events]
    assert names[0] == "logprobs.tokens" and names.count("logprobs.tokens") == 1
    assert 1 <= len(names) - 1 <= 8 and set(names[1:]) == {"logprobs.token"}


def test_global_instrumentation_alone_also_covers_langchain_models(
    server: ReplayServer, otel: InMemoryOtel, make_lc_model: LangChainFactory
) -> None:
    # The documented alternative to the handler (not both: each call would be traced twice).
    via_handler, via_instrument = otel.new(), otel.new()
    handler = LogprobsCallbackHandler(telemetry=via_handler.telemetry)
    make_lc_model(server, logprobs=True, stream_usage=True, callbacks=[handler]).invoke(PROMPT)
    instrument_openai(telemetry=via_instrument.telemetry)
    try:
        model = make_lc_model(server, logprobs=True, stream_usage=True)
        model.invoke(PROMPT)  # langchain-openai uses with_raw_response.create here
        for _ in model.stream(PROMPT):
            pass
    finally:
        uninstrument_openai()
    invoked, streamed = via_instrument.spans("chat gpt-4o")
    assert attributes(invoked) == attributes(via_handler.span())
    assert events(invoked) == events(via_handler.span())
    assert streamed.attributes["gen_ai.request.stream"] is True  # type: ignore[index]
    assert streamed.attributes["logprobs.stream.completed"] is True  # type: ignore[index]


def test_missing_langchain_gives_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langchain_core.callbacks", None)
    spec = importlib.util.find_spec("logprobscope.langchain")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(ImportError, match=r"pip install 'logprobscope\[langchain\]'"):
        spec.loader.exec_module(module)
