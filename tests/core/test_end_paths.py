"""Every way a call ends gives its run exactly one `on_llm_end` or `on_llm_error`.

Each test attaches a synchronous and an asynchronous recording handler; the fixtures check
after the test that every run started once and ended exactly once, last. Errors come from
the real replay server (HTTP statuses, a cut connection, a stall, malformed or error events).
Every test runs through both APIs, Chat Completions and Responses (the `api` fixture; fault
indexes are `api.event(n)`, after n token events, which leaves 1 + n chunks either way).
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from logprobscope import AIMessage, AIMessageChunk, AsyncChatStream, ChatOpenAI, ChatStream
from logprobscope.testing import SEED_STREAM, Faults, ReplayServer
from tests.support.apis import Api, through
from tests.support.factories import ModelFactory, ServerFactory
from tests.support.recording import AsyncRecordingHandler, RecordingHandler

SEED_TEXT = "Thank you for asking! I'm here and ready to help. How can I assist you today?"


@pytest.fixture
def make_model(make_model: ModelFactory, api: Api) -> ModelFactory:
    """The shared factory, its models calling through `api` (every test runs through both)."""
    return through(make_model, api)


class UserError(Exception):
    """The user's own exception, raised in their loop."""


def _both(rec: RecordingHandler, arec: AsyncRecordingHandler) -> list[object]:
    return [rec, arec]


def _check_end(
    rec: RecordingHandler, arec: AsyncRecordingHandler, *, incomplete: bool
) -> AIMessage:
    message = rec.message()
    assert arec.message() is message
    assert message.response_metadata.incomplete is incomplete
    assert rec.only_run() == arec.only_run()
    return message


def _check_error(rec: RecordingHandler, arec: AsyncRecordingHandler, error: BaseException) -> None:
    assert rec.error() is error
    assert arec.error() is error


def _agg(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    agg = chunks[0]
    for chunk in chunks[1:]:
        agg = agg + chunk
    return agg


# -- sync: normal ends -------------------------------------------------------------------------


def test_invoke_returned(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    message = model.invoke("hi", callbacks=[recorder, async_recorder])
    assert _check_end(recorder, async_recorder, incomplete=False) is message
    assert recorder.hooks() == ["start", "end"]  # no token hooks for a non-streamed call


def test_stream_exhausted(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    chunks = list(model.stream("hi", callbacks=[recorder, async_recorder]))
    message = _check_end(recorder, async_recorder, incomplete=False)
    assert message.content == SEED_TEXT
    assert message == _agg(chunks).to_message()
    assert recorder.tokens() == [c.content for c in chunks]
    assert async_recorder.tokens() == [c.content for c in chunks]


def test_break_out_of_for_loop_ends_when_dropped(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    seen: list[AIMessageChunk] = []
    for chunk in model.stream("hi", callbacks=[recorder, async_recorder]):
        seen.append(chunk)
        if len(seen) == 4:
            break
    # the loop held the only reference: the stream is gone, the run has ended
    message = _check_end(recorder, async_recorder, incomplete=True)
    assert message.content == "".join(c.content for c in seen) == "Thank you for"
    assert message.response_metadata.logprobs is not None
    assert [t.token for t in message.response_metadata.logprobs.content or []] == [
        "Thank",
        " you",
        " for",
    ]
    assert message.response_metadata.finish_reason is None
    assert message.usage_metadata is None


def test_break_with_a_reference_ends_on_close(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    stream = model.stream("hi", callbacks=[recorder, async_recorder])
    for _ in stream:
        break
    assert recorder.hooks() == ["start", "token"]  # still open
    stream.close()
    _check_end(recorder, async_recorder, incomplete=True)
    stream.close()  # idempotent
    assert list(stream) == []  # a closed stream is exhausted
    assert len(recorder.ends()) == 1


def test_close_before_the_first_chunk_sends_nothing(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    stream = model.stream("hi", callbacks=[recorder, async_recorder])
    stream.close()
    message = _check_end(recorder, async_recorder, incomplete=True)
    assert message.content == ""
    assert server.requests == []


def test_close_after_exhaustion_is_a_no_op(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    stream = model.stream("hi", callbacks=[recorder, async_recorder])
    list(stream)
    stream.close()
    _check_end(recorder, async_recorder, incomplete=False)


def test_with_block_exhausted_and_left_early(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    with model.stream("hi", callbacks=[recorder, async_recorder]) as stream:
        assert isinstance(stream, ChatStream)
        list(stream)
    with model.stream("hi", callbacks=[recorder, async_recorder]) as stream:
        next(stream)
    first, second = recorder.run_ids()
    assert recorder.message(first).response_metadata.incomplete is False
    assert recorder.message(second).response_metadata.incomplete is True
    assert async_recorder.message(second).response_metadata.incomplete is True


def test_garbage_collected_unclosed(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    stream = model.stream("hi", callbacks=[recorder, async_recorder])
    next(stream)
    next(stream)
    assert recorder.ends() == []
    del stream
    gc.collect()
    message = _check_end(recorder, async_recorder, incomplete=True)
    assert message.content == "Thank"


def test_garbage_collected_in_a_reference_cycle(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)

    class Holder:
        stream: ChatStream | None = None
        me: object = None

    holder = Holder()
    holder.me = holder
    holder.stream = model.stream("hi", callbacks=[recorder, async_recorder])
    next(holder.stream)
    del holder
    assert recorder.ends() == []  # only the cycle collector can free it
    gc.collect()
    _check_end(recorder, async_recorder, incomplete=True)


def test_never_iterated_and_dropped(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    model.stream("hi", callbacks=[recorder, async_recorder])
    gc.collect()
    message = _check_end(recorder, async_recorder, incomplete=True)
    assert message.content == ""
    assert server.requests == []


def test_exception_in_users_loop_inside_with(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    error = UserError("mine")
    with pytest.raises(UserError) as caught:
        with model.stream("hi", callbacks=[recorder, async_recorder]) as stream:
            for i, _ in enumerate(stream):
                if i == 3:
                    raise error
    assert caught.value is error
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    _check_error(recorder, async_recorder, error)


def test_exception_in_users_loop_without_with(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    # Without `with`, the stream cannot see the exception: it is left early (incomplete).
    model = make_model(server, logprobs=True)
    with pytest.raises(UserError):
        for i, _ in enumerate(model.stream("hi", callbacks=[recorder, async_recorder])):
            if i == 2:
                raise UserError
    gc.collect()
    _check_end(recorder, async_recorder, incomplete=True)


# -- sync: errors from the server ----------------------------------------------------------


def test_api_error_invoke(
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(faults=Faults(status=500))
    model = make_model(server, logprobs=True, max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        model.invoke("hi", callbacks=[recorder, async_recorder])
    assert type(caught.value) is openai.InternalServerError
    assert caught.value.status_code == 500
    _check_error(recorder, async_recorder, caught.value)
    assert len(server.requests) == 1


def test_api_error_stream(
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(faults=Faults(status=500))
    model = make_model(server, logprobs=True, max_retries=0)
    stream = model.stream("hi", callbacks=[recorder, async_recorder])
    with pytest.raises(openai.InternalServerError) as caught:
        next(stream)
    _check_error(recorder, async_recorder, caught.value)
    assert list(stream) == []
    stream.close()
    assert len(recorder.ends()) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 429])
def test_other_statuses_are_the_sdks_errors(
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    status: int,
) -> None:
    expected: dict[int, type[openai.APIStatusError]] = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        404: openai.NotFoundError,
        429: openai.RateLimitError,
    }
    server = make_server(faults=Faults(status=status))
    model = make_model(server, logprobs=True, max_retries=0)
    with pytest.raises(expected[status]) as caught:
        model.invoke("hi", callbacks=[recorder])
    assert recorder.error() is caught.value


def test_sdk_retries_make_one_run(
    api: Api,
    make_server: ServerFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(faults=Faults(status=429, fail_first=1, retry_after=0.05))
    model = ChatOpenAI(  # the SDK's default retries
        model="gpt-4o",
        logprobs=True,
        base_url=server.base_url,
        api_key="k",
        use_responses_api=api.responses,
    )
    message = model.invoke("hi", callbacks=[recorder, async_recorder])
    assert message.content.startswith("Thank you")
    assert _check_end(recorder, async_recorder, incomplete=False) is message
    assert len(server.requests) == 2
    server.set_faults(Faults(status=429, fail_first=1, retry_after=0.05))
    chunks = list(model.stream("hi", callbacks=[recorder]))
    assert _agg(chunks).content == SEED_TEXT
    assert len(server.requests) == 4
    assert len(recorder.run_ids()) == 2
    assert recorder.hooks(recorder.run_ids()[1]).count("start") == 1


def test_connection_cut_mid_stream(
    api: Api,
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(faults=Faults(cut_after=api.event(4)))
    model = make_model(server, logprobs=True)
    got: list[AIMessageChunk] = []
    with pytest.raises(openai.APIConnectionError) as caught:
        for chunk in model.stream("hi", callbacks=[recorder, async_recorder]):
            got.append(chunk)
    assert type(caught.value) is openai.APIConnectionError
    assert len(got) == 5
    assert _agg(got).content == "Thank you for asking"
    _check_error(recorder, async_recorder, caught.value)
    assert recorder.tokens() == [c.content for c in got]


def test_connection_cut_invoke(
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(faults=Faults(cut_after=0))
    model = make_model(server, logprobs=True)
    with pytest.raises(openai.APIConnectionError) as caught:
        model.invoke("hi", callbacks=[recorder, async_recorder])
    _check_error(recorder, async_recorder, caught.value)


def test_stall_past_the_timeout(
    api: Api,
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(faults=Faults(stall_after=api.event(2), stall_seconds=20))
    model = make_model(server, logprobs=True, timeout=0.5)
    got: list[AIMessageChunk] = []
    with pytest.raises(openai.APITimeoutError) as caught:
        for chunk in model.stream("hi", callbacks=[recorder, async_recorder]):
            got.append(chunk)
    assert len(got) == 3
    _check_error(recorder, async_recorder, caught.value)


@pytest.mark.parametrize(
    ("fault", "error"),
    [("cut", openai.APIConnectionError), ("stall", openai.APITimeoutError)],
)
def test_legacy_httpx_client_errors_are_the_sdks(
    api: Api,
    make_server: ServerFactory,
    recorder: RecordingHandler,
    fault: str,
    error: type[openai.APIError],
) -> None:
    # The SDK also takes a legacy httpx client; its transport errors must be mapped too.
    httpx = pytest.importorskip("httpx")
    faults = {
        "cut": Faults(cut_after=api.event(4)),
        "stall": Faults(stall_after=api.event(4), stall_seconds=20),
    }[fault]
    server = make_server(faults=faults)
    with openai.OpenAI(
        base_url=server.base_url,
        api_key="k",
        max_retries=0,
        http_client=httpx.Client(timeout=0.5),
    ) as client:
        model = ChatOpenAI(
            model="gpt-4o", logprobs=True, client=client, use_responses_api=api.responses
        )
        got: list[AIMessageChunk] = []
        with pytest.raises(error) as caught:
            for chunk in model.stream("hi", callbacks=[recorder]):
                got.append(chunk)
    assert type(caught.value) is error
    assert isinstance(caught.value.__cause__, httpx.HTTPError)
    assert len(got) == 5
    assert recorder.error() is caught.value


async def test_legacy_httpx_async_client_cut(
    api: Api, make_server: ServerFactory, recorder: RecordingHandler
) -> None:
    httpx = pytest.importorskip("httpx")
    server = make_server(faults=Faults(cut_after=api.event(2)))
    client = openai.AsyncOpenAI(
        base_url=server.base_url, api_key="k", max_retries=0, http_client=httpx.AsyncClient()
    )
    try:
        model = ChatOpenAI(
            model="gpt-4o", logprobs=True, async_client=client, use_responses_api=api.responses
        )
        with pytest.raises(openai.APIConnectionError) as caught:
            async for _ in model.astream("hi", callbacks=[recorder]):
                pass
    finally:
        await client.close()
    assert recorder.error() is caught.value


def test_stall_past_the_timeout_invoke(
    make_server: ServerFactory, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    server = make_server(faults=Faults(stall_after=0, stall_seconds=20))
    model = make_model(server, logprobs=True, timeout=0.5)
    with pytest.raises(openai.APITimeoutError) as caught:
        model.invoke("hi", callbacks=[recorder])
    assert recorder.error() is caught.value


def _sdk_events(server: ReplayServer, api: Api) -> list[Any]:
    """What the bare SDK yields while streaming from this server through `api`."""
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=5) as sdk:
        if api.responses:
            return list(
                sdk.responses.create(
                    model="gpt-4o",
                    input="hi",
                    include=["message.output_text.logprobs"],
                    stream=True,
                )
            )
        return list(
            sdk.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "hi"}],
                logprobs=True,
                stream=True,
            )
        )


def _sdk_error(server: ReplayServer, api: Api) -> BaseException:
    """What the bare SDK raises while streaming from this server through `api`."""
    try:
        _sdk_events(server, api)
    except Exception as exc:
        return exc
    raise AssertionError("the SDK did not raise")


def test_malformed_json_chunk(
    api: Api,
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(faults=Faults(malformed_at=api.event(2)))
    sdk_error = _sdk_error(server, api)
    assert type(sdk_error) is json.JSONDecodeError  # the SDK's own behaviour
    model = make_model(server, logprobs=True)
    got: list[AIMessageChunk] = []
    with pytest.raises(json.JSONDecodeError) as caught:
        for chunk in model.stream("hi", callbacks=[recorder, async_recorder]):
            got.append(chunk)
    assert type(caught.value) is type(sdk_error)
    assert len(got) == 3
    _check_error(recorder, async_recorder, caught.value)


def test_invalid_utf8_chunk(
    api: Api, make_server: ServerFactory, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    server = make_server(faults=Faults(invalid_utf8_at=api.event(1)))
    sdk_error = _sdk_error(server, api)
    model = make_model(server, logprobs=True)
    with pytest.raises(UnicodeDecodeError) as caught:
        list(model.stream("hi", callbacks=[recorder]))
    assert isinstance(sdk_error, UnicodeDecodeError)
    assert recorder.error() is caught.value


def test_in_stream_error_event(
    api: Api,
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(faults=Faults(error_event_at=api.event(3)))
    if api.responses:
        # The SDK yields the Responses API's `error` event; our model raises it, as the
        # SDK raises a chat stream's error payload.
        event = _sdk_events(server, api)[-1]
        assert event.type == "error"
        message, body = event.message, event.model_dump()
    else:
        sdk_error = _sdk_error(server, api)
        assert type(sdk_error) is openai.APIError
        message, body = sdk_error.message, sdk_error.body
    model = make_model(server, logprobs=True)
    got: list[AIMessageChunk] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in model.stream("hi", callbacks=[recorder, async_recorder]):
            got.append(chunk)
    assert type(caught.value) is openai.APIError
    assert caught.value.message == message
    assert caught.value.body == body
    assert len(got) == 4
    _check_error(recorder, async_recorder, caught.value)


def test_stream_error_through_with_block(
    api: Api, make_server: ServerFactory, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    server = make_server(faults=Faults(cut_after=api.event(2)))
    model = make_model(server, logprobs=True)
    with pytest.raises(openai.APIConnectionError) as caught:
        with model.stream("hi", callbacks=[recorder]) as stream:
            for _ in stream:
                pass
    assert recorder.error() is caught.value


def test_stream_sent_event_by_event(
    make_server: ServerFactory, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    # one write per event (the fault index is past the end): reads split differently
    server = make_server(faults=Faults(error_event_at=10_000))
    model = make_model(server, logprobs=True)
    chunks = list(model.stream("hi", callbacks=[recorder]))
    assert _agg(chunks).content == SEED_TEXT
    assert recorder.message().response_metadata.incomplete is False


# -- async ----------------------------------------------------------------------------------


async def test_ainvoke_returned(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    message = await model.ainvoke("hi", callbacks=[recorder, async_recorder])
    assert _check_end(recorder, async_recorder, incomplete=False) is message
    assert async_recorder.hooks() == ["start", "end"]


async def test_astream_exhausted(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    chunks = [c async for c in model.astream("hi", callbacks=[recorder, async_recorder])]
    message = _check_end(recorder, async_recorder, incomplete=False)
    assert message == _agg(chunks).to_message()
    assert async_recorder.tokens() == [c.content for c in chunks]


async def test_async_break_and_aclose(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    stream = model.astream("hi", callbacks=[recorder, async_recorder])
    n = 0
    async for _ in stream:
        n += 1
        if n == 3:
            break
    assert recorder.ends() == []
    await stream.aclose()
    message = _check_end(recorder, async_recorder, incomplete=True)
    assert message.content == "Thank you"
    await stream.aclose()
    assert [c async for c in stream] == []


async def test_async_with_block(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    async with model.astream("hi", callbacks=[recorder, async_recorder]) as stream:
        assert isinstance(stream, AsyncChatStream)
        await stream.__anext__()
    _check_end(recorder, async_recorder, incomplete=True)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_async_garbage_collected_unclosed(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    stream = model.astream("hi", callbacks=[recorder, async_recorder])
    await stream.__anext__()
    await stream.__anext__()
    del stream
    gc.collect()
    await _settle()  # async handlers are scheduled on the running loop
    message = _check_end(recorder, async_recorder, incomplete=True)
    assert message.content == "Thank"


async def test_async_break_and_dropped(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    async for _ in model.astream("hi", callbacks=[recorder, async_recorder]):
        break
    gc.collect()
    await _settle()
    _check_end(recorder, async_recorder, incomplete=True)


async def test_async_stream_closed_before_its_first_chunk(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    # async handlers start at the first chunk; a stream closed before it still gives them
    # their start before the end (the fixtures check the order)
    model = make_model(server, logprobs=True)
    stream = model.astream("hi", callbacks=[recorder, async_recorder])
    await stream.aclose()
    assert async_recorder.hooks() == ["start", "end"]
    assert recorder.hooks() == ["start", "end"]
    assert server.requests == []


async def test_async_stream_dropped_before_its_first_chunk(
    server: ReplayServer, make_model: ModelFactory, async_recorder: AsyncRecordingHandler
) -> None:
    model = make_model(server, logprobs=True)
    model.astream("hi", callbacks=[async_recorder])
    gc.collect()
    await _settle()
    assert async_recorder.hooks() == ["start", "end"]
    assert async_recorder.message().response_metadata.incomplete is True


async def test_async_with_failing_before_its_first_chunk(
    server: ReplayServer, make_model: ModelFactory, async_recorder: AsyncRecordingHandler
) -> None:
    model = make_model(server, logprobs=True)
    error = UserError()
    with pytest.raises(UserError):
        async with model.astream("hi", callbacks=[async_recorder]):
            raise error
    assert async_recorder.hooks() == ["start", "error"]
    assert async_recorder.error() is error


def test_async_stream_dropped_with_no_loop_running(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    # created and dropped in synchronous code: the async handlers are run to completion
    model = make_model(server, logprobs=True)
    model.astream("hi", callbacks=[recorder, async_recorder])
    gc.collect()
    assert async_recorder.hooks() == ["start", "end"]
    assert recorder.hooks() == ["start", "end"]


async def test_async_sync_handlers_only_end_at_once_when_collected(
    server: ReplayServer, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    model = make_model(server, logprobs=True)
    stream = model.astream("hi", callbacks=[recorder])
    await stream.__anext__()
    del stream
    gc.collect()
    assert recorder.message().response_metadata.incomplete is True  # no loop turn needed
    await _settle()


async def test_async_api_error(
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(faults=Faults(status=500))
    model = make_model(server, logprobs=True, max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        await model.ainvoke("hi", callbacks=[recorder, async_recorder])
    _check_error(recorder, async_recorder, caught.value)
    with pytest.raises(openai.InternalServerError) as caught2:
        async for _ in model.astream("hi", callbacks=[recorder, async_recorder]):
            pass
    second = recorder.run_ids()[1]
    assert recorder.error(second) is caught2.value
    assert async_recorder.error(second) is caught2.value


async def test_async_retries_make_one_run(
    api: Api,
    make_server: ServerFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(faults=Faults(status=429, fail_first=1, retry_after=0.05))
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="k")  # default retries
    try:
        model = ChatOpenAI(
            model="gpt-4o", logprobs=True, async_client=client, use_responses_api=api.responses
        )
        chunks = [c async for c in model.astream("hi", callbacks=[recorder, async_recorder])]
    finally:
        await client.close()
    assert _agg(chunks).content == SEED_TEXT
    _check_end(recorder, async_recorder, incomplete=False)
    assert len(server.requests) == 2


async def test_async_connection_cut(
    api: Api,
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(faults=Faults(cut_after=api.event(4)))
    model = make_model(server, logprobs=True)
    got: list[AIMessageChunk] = []
    with pytest.raises(openai.APIConnectionError) as caught:
        async for chunk in model.astream("hi", callbacks=[recorder, async_recorder]):
            got.append(chunk)
    assert type(caught.value) is openai.APIConnectionError
    assert len(got) == 5
    _check_error(recorder, async_recorder, caught.value)


async def test_async_stall_past_the_timeout(
    api: Api,
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(faults=Faults(stall_after=api.event(1), stall_seconds=20))
    model = make_model(server, logprobs=True, timeout=0.5)
    got: list[AIMessageChunk] = []
    with pytest.raises(openai.APITimeoutError) as caught:
        async for chunk in model.astream("hi", callbacks=[recorder, async_recorder]):
            got.append(chunk)
    assert len(got) == 2
    _check_error(recorder, async_recorder, caught.value)


async def test_async_malformed_and_error_event(
    api: Api, make_server: ServerFactory, make_model: ModelFactory, recorder: RecordingHandler
) -> None:
    bad = make_server(faults=Faults(malformed_at=api.event(1)))
    with pytest.raises(json.JSONDecodeError) as caught:
        async for _ in make_model(bad, logprobs=True).astream("hi", callbacks=[recorder]):
            pass
    assert recorder.error(recorder.run_ids()[0]) is caught.value
    failing = make_server(faults=Faults(error_event_at=api.event(1)))
    with pytest.raises(openai.APIError) as caught2:
        async for _ in make_model(failing, logprobs=True).astream("hi", callbacks=[recorder]):
            pass
    assert recorder.error(recorder.run_ids()[1]) is caught2.value


async def test_async_exception_in_users_loop_inside_with(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    error = UserError("mine")
    with pytest.raises(UserError) as caught:
        async with model.astream("hi", callbacks=[recorder, async_recorder]) as stream:
            async for _ in stream:
                raise error
    assert caught.value is error
    _check_error(recorder, async_recorder, error)


async def _wait_for(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out waiting")


@pytest.mark.parametrize("use_with", [False, True])
async def test_task_cancelled_while_iterating(
    api: Api,
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
    use_with: bool,
) -> None:
    server = make_server(faults=Faults(stall_after=api.event(2), stall_seconds=20))
    model = make_model(server, logprobs=True)
    got: list[AIMessageChunk] = []

    async def consume() -> None:
        stream = model.astream("hi", callbacks=[recorder, async_recorder])
        if use_with:
            async with stream:
                async for chunk in stream:
                    got.append(chunk)
        else:
            async for chunk in stream:
                got.append(chunk)

    task = asyncio.create_task(consume())
    await _wait_for(lambda: len(got) == 3)
    await asyncio.sleep(0.05)  # the task now waits on the stalled socket
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _settle()
    error = recorder.error()
    assert isinstance(error, asyncio.CancelledError)
    assert async_recorder.error() is error


async def test_task_cancelled_in_users_code_inside_with(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    started = asyncio.Event()

    async def consume() -> None:
        async with model.astream("hi", callbacks=[recorder, async_recorder]) as stream:
            async for _ in stream:
                started.set()
                await asyncio.sleep(30)  # the user's own await is cancelled

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert isinstance(recorder.error(), asyncio.CancelledError)
    assert async_recorder.error() is recorder.error()


async def test_ainvoke_cancelled(
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(faults=Faults(stall_after=0, stall_seconds=20))
    model = make_model(server, logprobs=True)
    task = asyncio.create_task(model.ainvoke("hi", callbacks=[recorder, async_recorder]))
    await _wait_for(lambda: len(server.requests) == 1)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert isinstance(recorder.error(), asyncio.CancelledError)
    assert async_recorder.error() is recorder.error()


# -- batch ------------------------------------------------------------------------------------


def test_batch_one_run_each(
    server: ReplayServer,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    model = make_model(server, logprobs=True)
    results = model.batch(["a", "b", "c", "d"], callbacks=[recorder, async_recorder])
    assert len(results) == 4
    assert len(recorder.run_ids()) == 4
    assert len(async_recorder.run_ids()) == 4


async def test_abatch_with_a_failure(
    make_server: ServerFactory,
    make_model: ModelFactory,
    recorder: RecordingHandler,
    async_recorder: AsyncRecordingHandler,
) -> None:
    server = make_server(faults=Faults(status=500, fail_first=1))
    model = make_model(server, logprobs=True, max_retries=0)
    with pytest.raises(openai.InternalServerError):
        await model.abatch(["a", "b", "c"], max_concurrency=1, callbacks=[recorder, async_recorder])
    assert len(recorder.run_ids()) == 3
    assert [c.hook for c in recorder.ends()].count("error") == 1
    assert [c.hook for c in async_recorder.ends()].count("error") == 1


def test_seed_stream_event_count(api: Api, server: ReplayServer) -> None:
    # the arithmetic the cut/stall tests rely on
    entries = SEED_STREAM["choices"][0]["logprobs"]["content"]  # type: ignore[index]
    assert len(entries) == 19
    events = _sdk_events(server, api)
    assert len(events) == api.seed_stream_events - (0 if api.responses else 1)  # no usage asked
    if api.responses:
        kinds = [e.type for e in events]
        assert kinds.index("response.output_text.delta") == api.first_text_event
    else:
        assert events[api.first_text_event].choices[0].delta.content == "Thank"
