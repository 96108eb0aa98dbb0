"""Next to OpenTelemetry's own GenAI instrumentations (the real packages from PyPI).

`opentelemetry-instrumentation-genai-openai` and `-genai-langchain` make a span per call; with
them active, ours make none: every call has exactly one span, theirs, ended once, carrying
their `gen_ai.*` attributes and our logprob attributes and events, whichever was instrumented
first, however the call ends.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from opentelemetry.instrumentation.genai.langchain import (
    LangChainInstrumentor as _TheirLangChain,
)
from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor as TheirOpenAI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from logprobscope import _contract as n
from logprobscope.instrumentation import LangChainInstrumentor, OpenAIInstrumentor
from logprobscope.testing import Faults, ReplayServer
from tests.support.entry_points import MESSAGES, PROMPT, TOP_K, token_logprobs
from tests.support.factories import LangChainFactory, ServerFactory
from tests.support.otel import InMemoryOtel

pytestmark = pytest.mark.timeout(60)

# Its __init__ is not annotated: typed here once.
TheirLangChain: Callable[[], Any] = _TheirLangChain

THEIR_OPENAI_SCOPE = "opentelemetry.instrumentation.genai.openai"
THEIR_LANGCHAIN_SCOPE = "opentelemetry.instrumentation.genai.langchain"


@pytest.fixture(autouse=True)
def theirs_undone() -> Iterator[None]:
    yield
    for instrumentor in (TheirOpenAI(), TheirLangChain()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


@pytest.fixture
def ended_twice(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails the test if the SDK saw a span ended twice (it logs a warning then)."""
    with caplog.at_level(logging.WARNING, logger="opentelemetry.sdk.trace"):
        yield
    assert "already ended" not in caplog.text.lower() and "ended span" not in caplog.text


def _instrument(otel: InMemoryOtel, order: str, ours: Any, theirs: Any) -> None:
    kwargs = {"tracer_provider": otel.tracer_provider, "meter_provider": otel.meter_provider}
    steps = [
        lambda: ours.instrument(**kwargs),
        lambda: theirs.instrument(**kwargs, skip_dep_check=True),
    ]
    for step in steps if order == "ours-first" else reversed(steps):
        step()


def _the_one_span(otel: InMemoryOtel, scope: str) -> ReadableSpan:
    spans = otel.spans()
    assert len(spans) == 1, [(s.name, s.instrumentation_scope) for s in spans]
    [span] = spans
    assert span.instrumentation_scope is not None and span.instrumentation_scope.name == scope
    assert span.kind is SpanKind.CLIENT and span.name == "chat gpt-4o"
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.request.model"] == "gpt-4o"  # theirs
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes[n.LOGPROBS_ENABLED] is True  # ours
    assert attributes[n.LOGPROBS_TOP_LOGPROBS] == TOP_K
    return span


def _our_metrics_only(otel: InMemoryOtel) -> None:
    scopes: dict[str, set[str]] = {}
    for rm in otel.reader.get_metrics_data().resource_metrics:  # type: ignore[union-attr]
        for sm in rm.scope_metrics:
            scopes.setdefault(sm.scope.name, set()).update(m.name for m in sm.metrics)
    ours = scopes.get(n.SCOPE_NAME, set())
    assert n.METRIC_TOKEN_PROBABILITY in ours
    assert not {m for m in ours if m.startswith("gen_ai.")}, ours  # theirs record those


def _chunk_logprobs(chunks: list[Any]) -> list[float]:
    return [
        e.logprob
        for c in chunks
        for ch in c.choices
        if ch.logprobs is not None
        for e in ch.logprobs.content or []
    ]


ORDERS = ["ours-first", "theirs-first"]


# -- the raw openai client -----------------------------------------------------------------


@pytest.mark.usefixtures("ended_twice")
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("way", ["invoke", "exhausted", "break-and-close", "with", "gc"])
def test_openai_one_span(otel: InMemoryOtel, server: ReplayServer, order: str, way: str) -> None:
    _instrument(otel, order, OpenAIInstrumentor(), TheirOpenAI())
    seen: list[float] = []
    completed: bool | None = None
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        create: Callable[..., Any] = client.chat.completions.create
        options = {"model": "gpt-4o", "messages": MESSAGES, "logprobs": True, "top_logprobs": TOP_K}
        if way == "invoke":
            result = create(**options)
            seen = [e.logprob for e in result.choices[0].logprobs.content]
        elif way == "exhausted":
            seen = _chunk_logprobs(list(create(**options, stream=True)))
            completed = True
        elif way == "with":
            with create(**options, stream=True) as stream:
                seen = _chunk_logprobs(list(stream))
            completed = True
        else:
            stream = create(**options, stream=True)
            chunks = []
            for chunk in stream:
                chunks.append(chunk)
                if len(_chunk_logprobs(chunks)) >= 3:
                    break
            seen = _chunk_logprobs(chunks)
            if way == "break-and-close":
                stream.close()
            else:
                del stream, chunk
                gc.collect()
            completed = False
    span = _the_one_span(otel, THEIR_OPENAI_SCOPE)
    assert seen and token_logprobs(span) == seen
    attributes = dict(span.attributes or {})
    assert attributes[n.LOGPROBS_TOKEN_COUNT] == len(seen)
    assert attributes.get(n.LOGPROBS_STREAM_COMPLETED) is completed
    _our_metrics_only(otel)


@pytest.mark.usefixtures("ended_twice")
@pytest.mark.parametrize("order", ORDERS)
def test_openai_cut_and_error(otel: InMemoryOtel, make_server: ServerFactory, order: str) -> None:
    _instrument(otel, order, OpenAIInstrumentor(), TheirOpenAI())
    cut = make_server(faults=Faults(cut_after=4))
    with openai.OpenAI(base_url=cut.base_url, api_key="k", max_retries=0) as client:
        with pytest.raises(openai.APIError):
            for _ in client.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, logprobs=True, top_logprobs=TOP_K, stream=True
            ):
                pass
    span = _the_one_span(otel, THEIR_OPENAI_SCOPE)
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})[n.LOGPROBS_STREAM_COMPLETED] is False
    assert token_logprobs(span)  # the tokens before the cut


@pytest.mark.usefixtures("ended_twice")
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("way", ["exhausted", "cancelled"])
async def test_openai_async(
    otel: InMemoryOtel, make_server: ServerFactory, order: str, way: str
) -> None:
    _instrument(otel, order, OpenAIInstrumentor(), TheirOpenAI())
    server = make_server(faults=Faults(chunk_delay=0.05 if way == "cancelled" else 0.0))
    seen: list[float] = []

    async def read() -> None:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as c:
            stream = await c.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, logprobs=True, top_logprobs=TOP_K, stream=True
            )
            async for chunk in stream:
                seen.extend(_chunk_logprobs([chunk]))

    if way == "exhausted":
        await read()
    else:
        task = asyncio.create_task(read())
        while len(seen) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    span = _the_one_span(otel, THEIR_OPENAI_SCOPE)
    assert token_logprobs(span) == seen
    assert dict(span.attributes or {})[n.LOGPROBS_STREAM_COMPLETED] is (way == "exhausted")


# -- LangChain ---------------------------------------------------------------------------


@pytest.mark.usefixtures("ended_twice")
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("way", ["invoke", "stream", "error"])
def test_langchain_one_span(
    otel: InMemoryOtel,
    make_server: ServerFactory,
    make_lc_model: LangChainFactory,
    order: str,
    way: str,
) -> None:
    _instrument(otel, order, LangChainInstrumentor(), TheirLangChain())
    server = make_server(faults=Faults(status=500) if way == "error" else Faults())
    model = make_lc_model(server, logprobs=True, top_logprobs=TOP_K)
    seen: list[float] = []
    if way == "invoke":
        message = model.invoke(PROMPT)
        seen = [e["logprob"] for e in message.response_metadata["logprobs"]["content"]]
    elif way == "stream":
        for chunk in model.stream(PROMPT):
            content = (chunk.response_metadata.get("logprobs") or {}).get("content") or []
            seen += [e["logprob"] for e in content]
    else:
        with pytest.raises(openai.InternalServerError):
            model.invoke(PROMPT)
    span = _the_one_span(otel, THEIR_LANGCHAIN_SCOPE)
    assert token_logprobs(span) == seen
    if way == "error":
        assert span.status.status_code is StatusCode.ERROR
    else:
        assert seen
        assert dict(span.attributes or {})[n.LOGPROBS_TOKEN_COUNT] == len(seen)


@pytest.mark.usefixtures("ended_twice")
async def test_all_four_on_a_langchain_app(
    otel: InMemoryOtel, server: ReplayServer, make_lc_model: LangChainFactory
) -> None:
    # As opentelemetry-instrument loads them: theirs suppress their OpenAI span under their
    # LangChain one; ours add none and record the logprobs once.
    _instrument(otel, "theirs-first", OpenAIInstrumentor(), TheirOpenAI())
    _instrument(otel, "theirs-first", LangChainInstrumentor(), TheirLangChain())
    model = make_lc_model(server, logprobs=True, top_logprobs=TOP_K)
    message = await model.ainvoke(PROMPT)
    seen = [e["logprob"] for e in message.response_metadata["logprobs"]["content"]]
    span = _the_one_span(otel, THEIR_LANGCHAIN_SCOPE)
    assert token_logprobs(span) == seen


@pytest.mark.usefixtures("ended_twice")
@pytest.mark.parametrize("way", ["invoke", "stream"])
def test_langchain_next_to_their_openai_instrumentation_only(
    otel: InMemoryOtel, server: ReplayServer, make_lc_model: LangChainFactory, way: str
) -> None:
    # Their OpenAI span is the call's only span: our handler stands aside, our raw-client
    # patch records the run on it.
    _instrument(otel, "theirs-first", OpenAIInstrumentor(), TheirOpenAI())
    LangChainInstrumentor().instrument(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    model = make_lc_model(server, logprobs=True, top_logprobs=TOP_K)
    if way == "invoke":
        message = model.invoke(PROMPT)
        seen = [e["logprob"] for e in message.response_metadata["logprobs"]["content"]]
    else:
        seen = []
        for chunk in model.stream(PROMPT):
            content = (chunk.response_metadata.get("logprobs") or {}).get("content") or []
            seen += [e["logprob"] for e in content]
    span = _the_one_span(otel, THEIR_OPENAI_SCOPE)
    assert seen and token_logprobs(span) == seen
    handler = LangChainInstrumentor().handler
    assert handler is not None and handler.active_calls == 0
