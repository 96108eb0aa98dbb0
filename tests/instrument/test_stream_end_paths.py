"""Every way the SDK offers to end a traced stream ends its span at once, exactly once.

Through both APIs (the `api` fixture): `chat.completions.create(stream=True)` and its
`chat.completions.stream()` helper, `responses.create(stream=True)` and `responses.stream()`.
"At once" is checked before anything else can end it: the span is there right after the
call that ends the stream, with no garbage collection in between (except for the cases
whose end *is* the collection).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from logprobscope.instrument import instrument_openai
from logprobscope.testing import Faults, ReplayServer
from tests.support.apis import Api
from tests.support.otel import InMemoryOtel

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_global_instrumentation")]


class UserError(Exception):
    """The user's own exception, raised in their loop."""


@pytest.fixture(autouse=True)
def _no_double_end(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The SDK logs a warning when a span is ended twice or changed after its end."""
    caplog.set_level(logging.WARNING, logger="opentelemetry")
    yield
    bad = [r.getMessage() for r in caplog.get_records("call") if r.name.startswith("opentelemetry")]
    assert not bad, bad


@pytest.fixture
def client(server: ReplayServer, otel: InMemoryOtel) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        instrument_openai(sdk, telemetry=otel.telemetry)
        yield sdk


@pytest.fixture
async def aclient(server: ReplayServer, otel: InMemoryOtel) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        instrument_openai(sdk, telemetry=otel.telemetry)
        yield sdk


def _args(api: Api) -> dict[str, Any]:
    if api.responses:
        return {"model": "gpt-4o", "input": "hi", "include": ["message.output_text.logprobs"]}
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "logprobs": True}


def _open(client: Any, api: Api) -> Any:
    resource = client.responses if api.responses else client.chat.completions
    return resource.create(stream=True, **_args(api))


def _helper(client: Any, api: Api) -> Any:
    resource = client.responses if api.responses else client.chat.completions
    return resource.stream(**_args(api))


def _one_span(otel: InMemoryOtel, *, completed: bool) -> ReadableSpan:
    [span] = otel.spans()
    attrs = span.attributes or {}
    assert span.status.status_code is StatusCode.UNSET
    assert attrs["logprobs.stream.completed"] is completed
    return span


def _failed(otel: InMemoryOtel, error_type: str) -> ReadableSpan:
    [span] = otel.spans()
    attrs = span.attributes or {}
    assert span.status.status_code is StatusCode.ERROR
    assert attrs["error.type"] == error_type
    assert attrs["logprobs.stream.completed"] is False
    return span


def _tokens(span: ReadableSpan) -> object:
    return (span.attributes or {})["logprobs.token_count"]


# -- sync ---------------------------------------------------------------------------------------


def test_exhausted(client: openai.OpenAI, otel: InMemoryOtel, api: Api) -> None:
    stream = _open(client, api)
    list(stream)
    assert _tokens(_one_span(otel, completed=True)) == 19
    stream.close()  # after the end: nothing more
    assert "close" not in vars(stream.response)
    assert len(otel.spans()) == 1


def test_break_and_dropped(client: openai.OpenAI, otel: InMemoryOtel, api: Api) -> None:
    for count, _ in enumerate(_open(client, api)):
        if count == api.event(2):  # the third token's event
            break
    # the loop held the only reference: the stream is gone, its span has ended
    assert _tokens(_one_span(otel, completed=False)) == 3


def test_close(client: openai.OpenAI, otel: InMemoryOtel, api: Api) -> None:
    stream = _open(client, api)
    next(stream)
    assert otel.spans() == []
    stream.close()
    _one_span(otel, completed=False)
    stream.close()
    assert len(otel.spans()) == 1


def test_the_http_response_closed(client: openai.OpenAI, otel: InMemoryOtel, api: Api) -> None:
    stream = _open(client, api)
    for _ in range(api.event(2)):
        next(stream)
    stream.response.close()
    assert _tokens(_one_span(otel, completed=False)) == 2
    assert "close" not in vars(stream.response)  # the response is left as it was
    with contextlib.suppress(httpx2.StreamClosed):  # what the SDK still had read is yielded
        list(stream)
    assert len(otel.spans()) == 1


def test_with_block_left_early(client: openai.OpenAI, otel: InMemoryOtel, api: Api) -> None:
    with _open(client, api) as stream:
        next(stream)
    _one_span(otel, completed=False)


def test_helper_with_block_left_early(client: openai.OpenAI, otel: InMemoryOtel, api: Api) -> None:
    with _helper(client, api) as stream:
        for count, _ in enumerate(stream):
            if count == 1:
                break
        assert otel.spans() == []  # the helper still holds the stream
    _one_span(otel, completed=False)  # its `with` exit closed the response


def test_helper_close(client: openai.OpenAI, otel: InMemoryOtel, api: Api) -> None:
    manager = _helper(client, api)
    stream = manager.__enter__()
    next(iter(stream))
    stream.close()
    _one_span(otel, completed=False)
    manager.__exit__(None, None, None)
    assert len(otel.spans()) == 1


def test_helper_read_to_the_end(client: openai.OpenAI, otel: InMemoryOtel, api: Api) -> None:
    with _helper(client, api) as stream:
        stream.until_done()
        assert len(otel.spans()) == 1
    assert _tokens(_one_span(otel, completed=True)) == 19


def test_dropped_unclosed(client: openai.OpenAI, otel: InMemoryOtel, api: Api) -> None:
    stream = _open(client, api)
    next(stream)
    del stream
    gc.collect()
    _one_span(otel, completed=False)


def test_cut_by_the_server(
    server: ReplayServer, client: openai.OpenAI, otel: InMemoryOtel, api: Api
) -> None:
    server.set_faults(Faults(cut_after=api.event(4)))
    with pytest.raises(openai.APIConnectionError):
        for _ in _open(client, api):
            pass
    assert _tokens(_failed(otel, "openai.APIConnectionError")) == 4


def test_users_exception_inside_with(client: openai.OpenAI, otel: InMemoryOtel, api: Api) -> None:
    error = UserError("mine")
    with pytest.raises(UserError) as caught:
        with _open(client, api) as stream:
            for _ in stream:
                raise error
    assert caught.value is error
    _failed(otel, f"{__name__}.UserError")


# -- async --------------------------------------------------------------------------------------


async def test_async_exhausted_and_aclose(
    aclient: openai.AsyncOpenAI, otel: InMemoryOtel, api: Api
) -> None:
    stream = await _open(aclient, api)
    assert [e async for e in stream]
    _one_span(otel, completed=True)
    second = await _open(aclient, api)
    await second.__anext__()
    await second.close()
    assert [s.attributes["logprobs.stream.completed"] for s in otel.spans()] == [True, False]  # type: ignore[index]


async def test_async_http_response_closed(
    aclient: openai.AsyncOpenAI, otel: InMemoryOtel, api: Api
) -> None:
    stream = await _open(aclient, api)
    await stream.__anext__()
    await stream.response.aclose()
    _one_span(otel, completed=False)
    assert "aclose" not in vars(stream.response)


async def test_async_helper_left_early(
    aclient: openai.AsyncOpenAI, otel: InMemoryOtel, api: Api
) -> None:
    async with _helper(aclient, api) as stream:
        async for _ in stream:
            break
        assert otel.spans() == []
    _one_span(otel, completed=False)


async def test_async_cancelled(
    server: ReplayServer, aclient: openai.AsyncOpenAI, otel: InMemoryOtel, api: Api
) -> None:
    server.set_faults(Faults(stall_after=api.event(2), stall_seconds=20))
    got: list[object] = []

    async def consume() -> None:
        async for event in await _open(aclient, api):
            got.append(event)

    task = asyncio.create_task(consume())
    for _ in range(500):
        if len(got) == api.event(2):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the task now waits on the stalled socket
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _tokens(_failed(otel, "asyncio.exceptions.CancelledError")) == 2


async def test_async_dropped_unclosed(
    aclient: openai.AsyncOpenAI, otel: InMemoryOtel, api: Api
) -> None:
    stream = await _open(aclient, api)
    await stream.__anext__()
    del stream
    gc.collect()
    _one_span(otel, completed=False)
    await asyncio.sleep(0)  # the SDK's own cleanup of the dropped stream
