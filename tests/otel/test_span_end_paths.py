"""However a call ends, its span ends exactly once, with the right status and attributes.

Errors come from the real replay server; the user's exception always propagates unchanged.
Every test runs through both APIs, Chat Completions and Responses (the `api` fixture).
"""

from __future__ import annotations

import asyncio
import gc
import logging

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from logprobscope.testing import Faults, ReplayServer
from tests.support.apis import Api, through
from tests.support.factories import ModelFactory, ServerFactory
from tests.support.otel import InMemoryOtel, histogram_points, reassemble


class UserError(Exception):
    """The user's own exception, raised in their loop."""


USER_ERROR = f"{__name__}.UserError"


@pytest.fixture
def make_model(make_model: ModelFactory, api: Api) -> ModelFactory:
    """The shared factory, its models calling through `api` (every test runs through both)."""
    return through(make_model, api)


@pytest.fixture(autouse=True)
def _no_double_end(caplog: pytest.LogCaptureFixture) -> object:
    """The SDK logs a warning when a span is ended twice or changed after its end."""
    caplog.set_level(logging.WARNING, logger="opentelemetry")
    yield
    bad = [r.getMessage() for r in caplog.get_records("call") if r.name.startswith("opentelemetry")]
    assert not bad, bad


def _ok(span: ReadableSpan, *, completed: bool | None) -> None:
    attrs = span.attributes or {}
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in attrs
    assert not [e for e in span.events if e.name == "exception"]
    if completed is None:
        assert "logprobs.stream.completed" not in attrs
    else:
        assert attrs["logprobs.stream.completed"] is completed


def _failed(
    otel: InMemoryOtel, error: BaseException, error_type: str, *, stream: bool
) -> ReadableSpan:
    span = otel.span()
    attrs = span.attributes or {}
    assert span.status.status_code is StatusCode.ERROR
    assert attrs["error.type"] == error_type
    [exception] = [e for e in span.events if e.name == "exception"]
    assert (exception.attributes or {})["exception.type"] == error_type
    if stream:
        assert attrs["logprobs.stream.completed"] is False
    else:
        assert "logprobs.stream.completed" not in attrs
    [duration] = histogram_points(otel.metrics()["gen_ai.client.operation.duration"])
    assert (duration.attributes or {})["error.type"] == error_type
    return span


def _tokens(span: ReadableSpan) -> int:
    return len(reassemble([e for e in span.events if e.name != "exception"]))


# -- returned and exhausted ---------------------------------------------------------------------


def test_invoke_returned(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    make_model(server, logprobs=True).invoke("hi", callbacks=[otel.handler()])
    _ok(otel.span(), completed=None)


def test_stream_exhausted(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    list(make_model(server, logprobs=True).stream("hi", callbacks=[otel.handler()]))
    span = otel.span()
    _ok(span, completed=True)
    assert _tokens(span) == 19


def test_with_block_exhausted(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    with make_model(server, logprobs=True).stream("hi", callbacks=[otel.handler()]) as s:
        list(s)
    _ok(otel.span(), completed=True)


# -- left early ---------------------------------------------------------------------------------


def test_break_out_of_the_loop(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    for i, _ in enumerate(
        make_model(server, logprobs=True).stream("hi", callbacks=[otel.handler()])
    ):
        if i == 4:
            break
    gc.collect()
    span = otel.span()
    _ok(span, completed=False)
    assert _tokens(span) == 4  # role chunk, then 4 tokens: the 5th chunk is token 4
    assert (span.attributes or {})["logprobs.token_count"] == 4


def test_close(otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer) -> None:
    stream = make_model(server, logprobs=True).stream("hi", callbacks=[otel.handler()])
    next(stream)
    next(stream)
    assert otel.spans() == []  # still open
    stream.close()
    stream.close()
    _ok(otel.span(), completed=False)


def test_with_block_left_early(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    with make_model(server, logprobs=True).stream("hi", callbacks=[otel.handler()]) as s:
        next(s)
    _ok(otel.span(), completed=False)


def test_garbage_collected_unclosed(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    stream = make_model(server, logprobs=True).stream("hi", callbacks=[otel.handler()])
    next(stream)
    next(stream)
    del stream
    gc.collect()
    _ok(otel.span(), completed=False)


def test_never_iterated(otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer) -> None:
    make_model(server, logprobs=True).stream("hi", callbacks=[otel.handler()])
    gc.collect()
    span = otel.span()
    _ok(span, completed=False)
    assert "gen_ai.response.time_to_first_chunk" not in (span.attributes or {})
    assert (span.attributes or {})["logprobs.token_count"] == 0


# -- errors -------------------------------------------------------------------------------------


def test_api_error_invoke(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    server = make_server(faults=Faults(status=500))
    with pytest.raises(openai.InternalServerError) as caught:
        make_model(server, logprobs=True, max_retries=0).invoke("hi", callbacks=[otel.handler()])
    assert type(caught.value) is openai.InternalServerError
    _failed(otel, caught.value, "openai.InternalServerError", stream=False)


def test_api_error_stream(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    server = make_server(faults=Faults(status=500))
    stream = make_model(server, logprobs=True, max_retries=0).stream(
        "hi", callbacks=[otel.handler()]
    )
    with pytest.raises(openai.InternalServerError) as caught:
        next(stream)
    stream.close()
    _failed(otel, caught.value, "openai.InternalServerError", stream=True)


def test_connection_cut_mid_stream(
    api: Api, otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    server = make_server(faults=Faults(cut_after=api.event(4)))
    with pytest.raises(openai.APIConnectionError) as caught:
        list(make_model(server, logprobs=True).stream("hi", callbacks=[otel.handler()]))
    span = _failed(otel, caught.value, "openai.APIConnectionError", stream=True)
    assert _tokens(span) == 4
    assert (span.attributes or {})["logprobs.token_count"] == 4


def test_user_exception_inside_with(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    error = UserError("mine")
    with pytest.raises(UserError) as caught:
        with make_model(server, logprobs=True).stream("hi", callbacks=[otel.handler()]) as s:
            for i, _ in enumerate(s):
                if i == 3:
                    raise error
    assert caught.value is error
    assert error.__context__ is None and error.__cause__ is None
    span = _failed(otel, error, USER_ERROR, stream=True)
    assert span.status.description == "mine"


async def test_task_cancelled(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    server = make_server(faults=Faults(chunk_delay=0.05))
    model = make_model(server, logprobs=True)
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in model.astream("hi", callbacks=[otel.handler()]):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _failed(otel, asyncio.CancelledError(), "asyncio.exceptions.CancelledError", stream=True)


# -- async ends ---------------------------------------------------------------------------------


async def test_async_exhausted_and_invoke(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    handler = otel.handler()
    model = make_model(server, logprobs=True)
    chunks = [c async for c in model.astream("hi", callbacks=[handler])]
    assert chunks
    await model.ainvoke("hi", callbacks=[handler])
    stream_span, invoke_span = sorted(
        otel.spans(),
        key=lambda s: bool((s.attributes or {})["gen_ai.request.stream"]),
        reverse=True,
    )
    _ok(stream_span, completed=True)
    _ok(invoke_span, completed=None)


async def test_async_aclose_and_with(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    handler = otel.handler()
    model = make_model(server, logprobs=True)
    stream = model.astream("hi", callbacks=[handler])
    await stream.__anext__()
    await stream.aclose()
    async with model.astream("hi", callbacks=[handler]) as second:
        await second.__anext__()
    spans = otel.spans()
    assert len(spans) == 2
    for span in spans:
        _ok(span, completed=False)


async def test_async_user_exception_inside_with(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    with pytest.raises(UserError):
        async with make_model(server, logprobs=True).astream(
            "hi", callbacks=[otel.handler()]
        ) as stream:
            async for _ in stream:
                raise UserError("in the loop")
    _failed(otel, UserError(), USER_ERROR, stream=True)


async def test_async_api_error(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    server = make_server(faults=Faults(status=500))
    with pytest.raises(openai.InternalServerError):
        await make_model(server, logprobs=True, max_retries=0).ainvoke(
            "hi", callbacks=[otel.handler()]
        )
    _failed(otel, RuntimeError(), "openai.InternalServerError", stream=False)


async def test_async_garbage_collected(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    stream = make_model(server, logprobs=True).astream("hi", callbacks=[otel.handler()])
    await stream.__anext__()
    del stream
    gc.collect()
    await asyncio.sleep(0)  # let the scheduled response close run
    _ok(otel.span(), completed=False)
