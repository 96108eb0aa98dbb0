"""Callback handlers: where they attach, in what order they run, failure isolation, `run`."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import openai
import pytest
from pydantic import ValidationError

from logprobscope import (
    AIMessage,
    AIMessageChunk,
    AsyncCallbackHandler,
    BaseCallbackHandler,
    BaseMessage,
    ChatOpenAI,
    HumanMessage,
    Run,
    SystemMessage,
)
from logprobscope.testing import Completion, Faults, ReplayServer, make_completion
from tests.support.factories import ModelFactory, ServerFactory
from tests.support.recording import AsyncRecordingHandler, RecordingHandler


class Labelled(BaseCallbackHandler):
    """Appends (label, hook) to a shared log."""

    def __init__(self, label: str, log: list[tuple[str, str]]) -> None:
        self.label = label
        self.log = log

    def on_chat_model_start(self, messages: Sequence[BaseMessage], *, run: Run) -> None:
        self.log.append((self.label, "start"))

    def on_llm_new_token(self, token: str, *, chunk: AIMessageChunk, run: Run) -> None:
        self.log.append((self.label, "token"))

    def on_llm_end(self, message: AIMessage, *, run: Run) -> None:
        self.log.append((self.label, "end"))

    def on_llm_error(self, error: BaseException, *, run: Run) -> None:
        self.log.append((self.label, "error"))


class Boom(Exception):
    """A handler's own failure."""


class Failing(BaseCallbackHandler):
    """Raises in the named hooks."""

    def __init__(self, hooks: set[str], *, raise_error: bool = False) -> None:
        self.hooks = hooks
        self.raise_error = raise_error
        self.calls: list[str] = []

    def _maybe(self, hook: str) -> None:
        self.calls.append(hook)
        if hook in self.hooks:
            raise Boom(hook)

    def on_chat_model_start(self, messages: Sequence[BaseMessage], *, run: Run) -> None:
        self._maybe("start")

    def on_llm_new_token(self, token: str, *, chunk: AIMessageChunk, run: Run) -> None:
        self._maybe("token")

    def on_llm_end(self, message: AIMessage, *, run: Run) -> None:
        self._maybe("end")

    def on_llm_error(self, error: BaseException, *, run: Run) -> None:
        self._maybe("error")


class AsyncFailing(AsyncCallbackHandler):
    def __init__(self, hooks: set[str], *, raise_error: bool = False) -> None:
        self.hooks = hooks
        self.raise_error = raise_error

    async def on_chat_model_start(self, messages: Sequence[BaseMessage], *, run: Run) -> None:
        await asyncio.sleep(0)
        if "start" in self.hooks:
            raise Boom("start")

    async def on_llm_new_token(self, token: str, *, chunk: AIMessageChunk, run: Run) -> None:
        if "token" in self.hooks:
            raise Boom("token")

    async def on_llm_end(self, message: AIMessage, *, run: Run) -> None:
        if "end" in self.hooks:
            raise Boom("end")


# -- where handlers attach ----------------------------------------------------------------


def test_model_with_callbacks_and_per_call_order(
    seed_server: ReplayServer, make_model: ModelFactory
) -> None:
    log: list[tuple[str, str]] = []
    model = make_model(seed_server, callbacks=[Labelled("model", log)])
    derived = model.with_callbacks([Labelled("with", log)])
    assert derived is not model
    assert len(model.callbacks) == 1 and len(derived.callbacks) == 2
    derived.invoke("hi", callbacks=[Labelled("call", log)])
    assert log == [
        ("model", "start"),
        ("with", "start"),
        ("call", "start"),
        ("model", "end"),
        ("with", "end"),
        ("call", "end"),
    ]
    log.clear()
    model.invoke("hi")  # the original model keeps only its own handler
    assert log == [("model", "start"), ("model", "end")]


def test_order_on_a_stream(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    log: list[tuple[str, str]] = []
    model = make_model(seed_server, logprobs=True, callbacks=[Labelled("model", log)])
    chunks = list(model.stream("hi", callbacks=[Labelled("call", log)]))
    assert log[:2] == [("model", "start"), ("call", "start")]
    assert log[2:4] == [("model", "token"), ("call", "token")]
    assert log[-2:] == [("model", "end"), ("call", "end")]
    assert log.count(("call", "token")) == len(chunks)


async def test_order_async(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    log: list[tuple[str, str]] = []
    model = make_model(seed_server, callbacks=[Labelled("model", log)])
    await model.ainvoke("hi", callbacks=[Labelled("call", log)])
    assert log == [("model", "start"), ("call", "start"), ("model", "end"), ("call", "end")]


def test_single_handler_not_in_a_list(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    rec = RecordingHandler()
    make_model(seed_server).invoke("hi", callbacks=rec)  # type: ignore[arg-type]
    assert rec.hooks() == ["start", "end"]


def test_no_token_hooks_on_non_streamed_calls(
    seed_server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(seed_server, logprobs=True, callbacks=[recorder, async_recorder])
    model.invoke("hi")
    model.batch(["a", "b"])
    assert "token" not in recorder.hooks()
    assert "token" not in async_recorder.hooks()


async def test_no_token_hooks_on_non_streamed_async_calls(
    seed_server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(seed_server, logprobs=True, callbacks=[recorder, async_recorder])
    await model.ainvoke("hi")
    await model.abatch(["a", "b"])
    assert "token" not in recorder.hooks()
    assert "token" not in async_recorder.hooks()
    assert len(recorder.run_ids()) == 3


def test_token_hook_gets_text_and_chunk(
    seed_server: ReplayServer, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    model = make_model(seed_server, logprobs=True)
    chunks = list(model.stream("hi", callbacks=[recorder]))
    calls = [c for c in recorder.calls if c.hook == "token"]
    assert [c.payload[1] for c in calls] == chunks
    assert all(c.payload[1] is chunk for c, chunk in zip(calls, chunks, strict=True))
    assert [c.payload[0] for c in calls] == [c.content for c in chunks]
    second: AIMessageChunk = calls[1].payload[1]
    assert second.response_metadata.logprobs is not None
    assert second.response_metadata.logprobs.content is not None
    assert second.response_metadata.logprobs.content[0].token == "Thank"


def test_start_gets_the_typed_messages(
    seed_server: ReplayServer, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    make_model(seed_server).invoke(
        [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        callbacks=[recorder],
    )
    (start,) = [c for c in recorder.calls if c.hook == "start"]
    assert start.payload == [SystemMessage(content="s"), HumanMessage(content="u")]


# -- failing handlers ----------------------------------------------------------------------


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "logprobscope" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("hook", ["start", "end"])
def test_failing_handler_is_logged_and_skipped_invoke(
    seed_server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    caplog: pytest.LogCaptureFixture,
    hook: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="logprobscope")
    bad = Failing({hook})
    after = RecordingHandler()
    message = make_model(seed_server).invoke("hi", callbacks=[bad, recorder, after])
    assert message.content.startswith("Thank")
    assert recorder.message() is message
    assert after.message() is message
    (record,) = _warnings(caplog)
    assert (
        "Failing" in record.getMessage()
        and f"on_{'chat_model_start' if hook == 'start' else 'llm_end'}" in record.getMessage()
    )
    assert record.exc_info is not None and isinstance(record.exc_info[1], Boom)


def test_failing_token_hook_logs_once_per_run(
    seed_server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="logprobscope")
    bad = Failing({"token", "end"})
    model = make_model(seed_server, logprobs=True)
    chunks = list(model.stream("hi", callbacks=[bad, recorder]))
    assert bad.calls.count("token") == len(chunks)  # still called for every chunk
    assert len(recorder.tokens()) == len(chunks)
    assert recorder.message().content.startswith("Thank you")
    assert len(_warnings(caplog)) == 2  # token once, end once
    list(model.stream("hi", callbacks=[bad, recorder]))  # a new run logs again
    assert len(_warnings(caplog)) == 4


async def test_failing_async_handler_is_logged_and_skipped(
    seed_server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="logprobscope")
    bad = AsyncFailing({"start", "token", "end"})
    model = make_model(seed_server, logprobs=True)
    chunks = [c async for c in model.astream("hi", callbacks=[bad, recorder, async_recorder])]
    assert len(async_recorder.tokens()) == len(chunks)
    assert recorder.message().response_metadata.incomplete is False
    assert len(_warnings(caplog)) == 3
    await model.ainvoke("hi", callbacks=[bad, async_recorder])
    assert len(async_recorder.run_ids()) == 2


def test_failing_error_hook_does_not_hide_the_error(
    make_server: ServerFactory, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    server = make_server(faults=Faults(status=500))
    with pytest.raises(openai.InternalServerError):
        make_model(server).invoke("hi", callbacks=[Failing({"error"}), recorder])
    assert isinstance(recorder.error(), openai.InternalServerError)


# -- raise_error = True ------------------------------------------------------------------------


def test_raise_error_in_end_propagates_and_others_still_end(
    seed_server: ReplayServer, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    strict = Failing({"end"}, raise_error=True)
    with pytest.raises(Boom, match="end"):
        make_model(seed_server).invoke("hi", callbacks=[strict, recorder])
    recorder.message()  # the handler after the strict one still got its one end


def test_raise_error_in_start_propagates_and_the_run_ends(
    server: ReplayServer, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    strict = Failing({"start"}, raise_error=True)
    with pytest.raises(Boom, match="start"):
        make_model(server).invoke("hi", callbacks=[recorder, strict])
    error = recorder.error()  # the run that started ended, with the handler's error
    assert isinstance(error, Boom)
    assert server.requests == []


async def test_raise_error_in_start_propagates_async(
    server: ReplayServer, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    strict = Failing({"start"}, raise_error=True)
    with pytest.raises(Boom):
        await make_model(server).ainvoke("hi", callbacks=[recorder, strict])
    assert isinstance(recorder.error(), Boom)
    assert server.requests == []


def test_raise_error_in_stream_start(
    server: ReplayServer, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    strict = Failing({"start"}, raise_error=True)
    with pytest.raises(Boom):
        make_model(server).stream("hi", callbacks=[recorder, strict])
    assert isinstance(recorder.error(), Boom)


async def test_raise_error_in_astream_start(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    # a synchronous strict handler fails at astream(): nothing async has started yet
    with pytest.raises(Boom):
        make_model(server).astream(
            "hi", callbacks=[recorder, Failing({"start"}, raise_error=True), async_recorder]
        )
    assert isinstance(recorder.error(), Boom)
    assert async_recorder.calls == []
    # an asynchronous strict handler fails at the first chunk: everybody gets the error
    stream = make_model(server).astream(
        "hi", callbacks=[AsyncFailing({"start"}, raise_error=True), async_recorder]
    )
    with pytest.raises(Boom):
        await stream.__anext__()
    assert isinstance(async_recorder.error(), Boom)
    assert server.requests == []


def test_raise_error_in_token_hook_ends_the_stream(
    seed_server: ReplayServer, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    strict = Failing({"token"}, raise_error=True)
    stream = make_model(seed_server, logprobs=True).stream("hi", callbacks=[strict, recorder])
    with pytest.raises(Boom):
        next(stream)
    assert isinstance(recorder.error(), Boom)
    assert list(stream) == []


async def test_raise_error_async_handler(
    seed_server: ReplayServer, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    strict = AsyncFailing({"token"}, raise_error=True)
    with pytest.raises(Boom):
        async for _ in make_model(seed_server).astream("hi", callbacks=[strict, recorder]):
            pass
    assert isinstance(recorder.error(), Boom)


def test_raise_error_in_end_inside_with_keeps_the_users_exception(
    seed_server: ReplayServer, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    class Mine(Exception):
        pass

    strict = Failing({"error"}, raise_error=True)
    with pytest.raises(Mine):
        with make_model(seed_server).stream("hi", callbacks=[strict, recorder]) as stream:
            next(stream)
            raise Mine
    assert isinstance(recorder.error(), Mine)


# -- async handlers: awaited on async calls, driven on sync ones -----------------------------


class LoopSpy(AsyncCallbackHandler):
    """Records the loop and thread each hook ran on, after a real await."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, asyncio.AbstractEventLoop, int]] = []

    async def _note(self, hook: str) -> None:
        await asyncio.sleep(0.001)
        self.seen.append((hook, asyncio.get_running_loop(), threading.get_ident()))

    async def on_chat_model_start(self, messages: Sequence[BaseMessage], *, run: Run) -> None:
        await self._note("start")

    async def on_llm_new_token(self, token: str, *, chunk: AIMessageChunk, run: Run) -> None:
        await self._note("token")

    async def on_llm_end(self, message: AIMessage, *, run: Run) -> None:
        await self._note("end")


async def test_async_handlers_are_awaited_on_the_callers_loop(
    seed_server: ReplayServer, make_model: ModelFactory
) -> None:
    spy = LoopSpy()
    model = make_model(seed_server, callbacks=[spy])
    await model.ainvoke("hi")
    chunks = [c async for c in model.astream("hi")]
    loop = asyncio.get_running_loop()
    assert [h for h, _, _ in spy.seen] == ["start", "end", "start"] + ["token"] * len(chunks) + [
        "end"
    ]
    assert all(seen_loop is loop for _, seen_loop, _ in spy.seen)
    assert all(t == threading.get_ident() for _, _, t in spy.seen)


def test_async_handlers_are_driven_on_sync_calls(
    seed_server: ReplayServer, make_model: ModelFactory
) -> None:
    spy = LoopSpy()
    model = make_model(seed_server, callbacks=[spy])
    model.invoke("hi")
    chunks = list(model.stream("hi"))
    assert [h for h, _, _ in spy.seen] == ["start", "end", "start"] + ["token"] * len(chunks) + [
        "end"
    ]


async def test_async_handlers_on_a_sync_call_inside_a_running_loop(
    seed_server: ReplayServer, make_model: ModelFactory
) -> None:
    # A synchronous call made from async code: the hooks cannot use the busy loop.
    spy = LoopSpy()
    model = make_model(seed_server, callbacks=[spy])
    model.invoke("hi")
    assert [h for h, _, _ in spy.seen] == ["start", "end"]
    assert all(seen_loop is not asyncio.get_running_loop() for _, seen_loop, _ in spy.seen)


# -- the run record ------------------------------------------------------------------------


def test_run_fields(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    rec = RecordingHandler()
    model = make_model(
        seed_server,
        logprobs=True,
        top_logprobs=2,
        temperature=0.3,
        callbacks=[rec],
        tags=["model-tag"],
        metadata={"team": "a", "shared": "model"},
    )
    model.invoke("hi", tags=["call-tag"], metadata={"shared": "call", "req": 1})
    list(model.stream("hi", max_tokens=5))
    first, second = rec.run_ids()
    run1 = rec.for_run(first)[0].run
    run2 = rec.for_run(second)[0].run
    assert run1 != run2 and run1.run_id != run2.run_id
    assert all(c.run is run1 for c in rec.for_run(first))  # one record per run
    assert run1.model == "gpt-4o"
    assert run1.stream is False and run2.stream is True
    assert run1.invocation_params == {
        "model": "gpt-4o",
        "logprobs": True,
        "top_logprobs": 2,
        "temperature": 0.3,
    }
    assert run2.invocation_params == {
        "model": "gpt-4o",
        "logprobs": True,
        "top_logprobs": 2,
        "temperature": 0.3,
        "max_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for run in (run1, run2):
        assert "messages" not in run.invocation_params
        text = repr(run.model_dump())
        assert "test-key" not in text and "api_key" not in text
        assert run.provider == "openai"
        assert run.server_address == "127.0.0.1"
        assert run.server_port == seed_server.port
    assert run1.tags == ("model-tag", "call-tag")
    assert run2.tags == ("model-tag",)
    assert run1.metadata == {"team": "a", "shared": "call", "req": 1}
    assert run2.metadata == {"team": "a", "shared": "model"}
    with pytest.raises(ValidationError):
        run1.model = "other"


def test_run_for_model_kwargs(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    rec = RecordingHandler()
    model = make_model(seed_server, model_kwargs={"frequency_penalty": 0.1, "x_custom": [1]})
    model.invoke("hi", callbacks=[rec], stop=("a", "b"))
    run = rec.calls[0].run
    assert run.invocation_params["frequency_penalty"] == 0.1
    assert run.invocation_params["x_custom"] == [1]
    assert run.invocation_params["stop"] == ["a", "b"]


def test_run_for_a_model_overridden_per_call(
    seed_server: ReplayServer, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    make_model(seed_server).invoke("hi", model="gpt-4o-mini", callbacks=[recorder])
    run = recorder.calls[0].run
    assert run.model == "gpt-4o-mini"
    assert run.invocation_params["model"] == "gpt-4o-mini"
    assert seed_server.requests[-1]["model"] == "gpt-4o-mini"


# -- batch ---------------------------------------------------------------------------------


def _echo(body: Mapping[str, object]) -> Completion:
    messages: Any = body["messages"]
    text = str(messages[-1]["content"])
    return make_completion([text, "!"], id=f"chatcmpl-{text}")


def test_batch_one_run_each_in_input_order(
    make_server: ServerFactory, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    server = make_server(_echo)  # type: ignore[arg-type]
    inputs = [f"p{i}" for i in range(12)]
    results = make_model(server, logprobs=True).batch(
        inputs, max_concurrency=4, callbacks=[recorder]
    )
    assert [r.content for r in results] == [f"{p}!" for p in inputs]
    assert len(recorder.run_ids()) == len(inputs)
    by_prompt = {c.payload[0].content: c.run_id for c in recorder.calls if c.hook == "start"}
    for prompt, result in zip(inputs, results, strict=True):
        assert recorder.message(by_prompt[prompt]) is result


async def test_abatch_one_run_each_in_input_order(
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(_echo)  # type: ignore[arg-type]
    inputs = [f"q{i}" for i in range(12)]
    results = await make_model(server, logprobs=True).abatch(
        inputs, max_concurrency=3, callbacks=[recorder, async_recorder]
    )
    assert [r.content for r in results] == [f"{p}!" for p in inputs]
    assert len(recorder.run_ids()) == len(async_recorder.run_ids()) == len(inputs)
    by_prompt = {c.payload[0].content: c.run_id for c in async_recorder.calls if c.hook == "start"}
    for prompt, result in zip(inputs, results, strict=True):
        assert async_recorder.message(by_prompt[prompt]) is result


def test_batch_on_a_fresh_model_makes_one_client(
    seed_server: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[object] = []
    real_init = openai.OpenAI.__init__

    def counting_init(self: openai.OpenAI, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(openai.OpenAI, "__init__", counting_init)
    model = ChatOpenAI(model="gpt-4o", base_url=seed_server.base_url, api_key="k")
    try:
        assert len(model.batch(["a"] * 8, max_concurrency=8)) == 8
    finally:
        model.close()
    assert len(made) == 1  # not one per worker thread, racing (and leaking the others)


def test_batch_of_nothing(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    assert make_model(seed_server).batch([]) == []


async def test_abatch_of_nothing(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    assert await make_model(seed_server).abatch([]) == []


def test_handler_base_classes_are_no_ops(
    seed_server: ReplayServer, make_model: ModelFactory
) -> None:
    model = make_model(seed_server, callbacks=[BaseCallbackHandler(), AsyncCallbackHandler()])
    assert model.invoke("hi").content
    assert list(model.stream("hi"))


def test_chat_openai_model_property(seed_server: ReplayServer) -> None:
    assert ChatOpenAI(model="m", base_url=seed_server.base_url, api_key="k").model == "m"
