"""LangChainInstrumentor: our handler on every callback manager, so no handler is passed."""

from __future__ import annotations

import asyncio

import pytest
import wrapt
from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager, CallbackManager
from langchain_core.prompts import ChatPromptTemplate

from logprobscope import _contract as n
from logprobscope.instrumentation import LangChainInstrumentor
from logprobscope.langchain import LogprobsCallbackHandler
from logprobscope.testing import ReplayServer
from tests.support.entry_points import PROMPT, TOP_K, token_logprobs
from tests.support.factories import LangChainFactory
from tests.support.otel import InMemoryOtel

pytestmark = pytest.mark.timeout(60)

ORIGINAL_INIT = BaseCallbackManager.__dict__["__init__"]


def _instrument(otel: InMemoryOtel) -> LangChainInstrumentor:
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    return instrumentor


def test_a_singleton_with_its_dependencies() -> None:
    assert LangChainInstrumentor() is LangChainInstrumentor()
    assert list(LangChainInstrumentor().instrumentation_dependencies()) == ["langchain-core >= 0.3"]
    assert LangChainInstrumentor().handler is None


@pytest.mark.parametrize("stream", [False, True])
def test_a_model_with_no_handler_gets_its_span(
    otel: InMemoryOtel, server: ReplayServer, make_lc_model: LangChainFactory, stream: bool
) -> None:
    instrumentor = _instrument(otel)
    model = make_lc_model(server, logprobs=True, top_logprobs=TOP_K)
    if stream:
        chunks = list(model.stream(PROMPT))
        expected = [
            e["logprob"]
            for c in chunks
            for e in ((c.response_metadata.get("logprobs") or {}).get("content") or [])
        ]
    else:
        message = model.invoke(PROMPT)
        expected = [e["logprob"] for e in message.response_metadata["logprobs"]["content"]]
    [span] = otel.spans()
    assert span.name == "chat gpt-4o"
    assert expected and token_logprobs(span) == expected
    assert dict(span.attributes or {})[n.GEN_AI_REQUEST_STREAM] is stream
    assert instrumentor.handler is not None and instrumentor.handler.active_calls == 0


async def test_async_and_in_a_chain(
    otel: InMemoryOtel, server: ReplayServer, make_lc_model: LangChainFactory
) -> None:
    _instrument(otel)
    model = make_lc_model(server, logprobs=True, top_logprobs=TOP_K)
    chain = ChatPromptTemplate.from_messages([("user", "{question}")]) | model
    await chain.ainvoke({"question": PROMPT})
    async for _ in chain.astream({"question": PROMPT}):
        pass
    await asyncio.gather(*(model.ainvoke(PROMPT) for _ in range(3)))
    spans = otel.spans()
    assert [s.name for s in spans] == ["chat gpt-4o"] * 5  # chains are not recorded
    assert all(token_logprobs(s) for s in spans)


def test_a_handler_of_the_users_own_is_not_doubled(
    otel: InMemoryOtel, server: ReplayServer, make_lc_model: LangChainFactory
) -> None:
    _instrument(otel)
    mine = otel.new()
    own = LogprobsCallbackHandler(telemetry=mine.telemetry)
    make_lc_model(server, logprobs=True, callbacks=[own]).invoke(PROMPT)
    make_lc_model(server, logprobs=True).invoke(PROMPT, config={"callbacks": [own]})
    assert len(mine.spans()) == 2
    assert otel.spans() == []


def test_first_in_the_managers_lists_and_the_callers_lists_untouched(otel: InMemoryOtel) -> None:
    instrumentor = _instrument(otel)

    class Other(BaseCallbackHandler):
        pass

    theirs: list[BaseCallbackHandler] = [Other()]
    manager = CallbackManager(handlers=theirs, inheritable_handlers=theirs)
    assert manager.handlers[0] is instrumentor.handler
    assert manager.inheritable_handlers[0] is instrumentor.handler
    assert manager.handlers[1:] == theirs and len(theirs) == 1
    child = CallbackManager.configure(inheritable_callbacks=manager)  # as a chain's model gets
    assert [h for h in child.handlers if h is instrumentor.handler] == [instrumentor.handler]


def test_uninstrument_stops_new_runs(
    otel: InMemoryOtel, server: ReplayServer, make_lc_model: LangChainFactory
) -> None:
    instrumentor = _instrument(otel)
    handler = instrumentor.handler
    manager = CallbackManager(handlers=[])
    instrumentor.uninstrument()
    assert BaseCallbackManager.__dict__["__init__"] is ORIGINAL_INIT
    assert instrumentor.handler is None
    make_lc_model(server, logprobs=True).invoke(PROMPT)
    make_lc_model(server, logprobs=True).invoke(PROMPT, config={"callbacks": manager})
    assert manager.handlers == [handler]  # made before: keeps it, but it records nothing
    assert otel.spans() == []


def test_undone_under_another_instrumentation_leaves_that_one(otel: InMemoryOtel) -> None:
    # An instrumentation that wraps the manager's __init__ after us (wrapt, as OpenTelemetry's
    # LangChain instrumentation does) keeps its wrapper when we are undone.
    calls: list[str] = []

    def theirs(
        wrapped: object, instance: object, args: tuple[object, ...], kwargs: dict[str, object]
    ) -> None:
        calls.append("theirs")
        wrapped(*args, **kwargs)  # type: ignore[operator]

    instrumentor = _instrument(otel)
    wrapt.wrap_function_wrapper(BaseCallbackManager, "__init__", theirs)
    try:
        proxy = BaseCallbackManager.__dict__["__init__"]
        instrumentor.uninstrument()
        assert BaseCallbackManager.__dict__["__init__"] is proxy
        assert proxy.__wrapped__ is ORIGINAL_INIT
        manager = CallbackManager(handlers=[])
        assert calls == ["theirs"]
        assert manager.handlers == []
    finally:
        BaseCallbackManager.__init__ = ORIGINAL_INIT  # type: ignore[method-assign]
