"""Every way the openai SDK lets a caller end a stream ends the span at once, exactly once.

Sync and async, for `create(stream=True)` and for the SDK's `chat.completions.stream()`
helper. "At once" is checked while the caller still holds the stream: the span must already
be exported, not waiting for garbage collection (a span still open at exit is lost).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from logprobscope.instrument import instrument_openai
from logprobscope.testing import Faults, ReplayServer
from tests.support.entry_points import MESSAGES
from tests.support.factories import ServerFactory
from tests.support.otel import InMemoryOtel

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_global_instrumentation")]

SEED_TOKENS = 25  # the seed stream's tokens (SEED_TOP_LOGPROBS, chosen by top_logprobs)
ARGS: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": MESSAGES,
    "logprobs": True,
    "top_logprobs": 2,
}


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


def ended(otel: InMemoryOtel, *, completed: bool, tokens: int | None = None) -> ReadableSpan:
    """The one span, already ended, not failed, with `logprobs.stream.completed`."""
    span = otel.span()
    attrs = span.attributes or {}
    assert span.status.status_code is StatusCode.UNSET
    assert attrs["logprobs.stream.completed"] is completed
    if tokens is not None:
        assert attrs["logprobs.token_count"] == tokens
    return span


def failed(otel: InMemoryOtel, error_type: str) -> ReadableSpan:
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == error_type
    assert (span.attributes or {})["logprobs.stream.completed"] is False
    return span


def content_chunks(stream: Any, count: int) -> None:
    """Read chunks until `count` of them carried tokens."""
    seen = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            seen += 1
            if seen == count:
                return


async def acontent_chunks(stream: Any, count: int) -> None:
    seen = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            seen += 1
            if seen == count:
                return


# -- create(stream=True), sync --------------------------------------------------------------


def test_exhausted(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    stream = client.chat.completions.create(stream=True, **ARGS)
    for _ in stream:
        pass
    ended(otel, completed=True, tokens=SEED_TOKENS)
    stream.close()
    assert len(otel.spans()) == 1


def test_close(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    stream = client.chat.completions.create(stream=True, **ARGS)
    content_chunks(stream, 3)
    assert otel.spans() == []  # the caller may read on
    stream.close()
    ended(otel, completed=False, tokens=3)


def test_with_block(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    with client.chat.completions.create(stream=True, **ARGS) as stream:
        content_chunks(stream, 2)
    ended(otel, completed=False, tokens=2)


def test_response_close(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    stream = client.chat.completions.create(stream=True, **ARGS)
    content_chunks(stream, 4)
    stream.response.close()
    ended(otel, completed=False, tokens=4)
    stream.close()  # the proxy's own close after it changes nothing
    assert len(otel.spans()) == 1


def test_break_and_garbage_collection(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    stream = client.chat.completions.create(stream=True, **ARGS)
    content_chunks(stream, 1)
    assert otel.spans() == []
    del stream
    gc.collect()
    ended(otel, completed=False, tokens=1)


def test_server_error(make_server: ServerFactory, otel: InMemoryOtel) -> None:
    server = make_server(faults=Faults(cut_after=4))
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        instrument_openai(sdk, telemetry=otel.telemetry)
        stream = sdk.chat.completions.create(stream=True, **ARGS)
        with pytest.raises(openai.APIConnectionError):
            for _ in stream:
                pass
        failed(otel, "openai.APIConnectionError")


def test_callers_exception(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    with pytest.raises(KeyError), client.chat.completions.create(stream=True, **ARGS) as stream:
        content_chunks(stream, 1)
        raise KeyError("mine")
    failed(otel, "KeyError")


# -- the stream() helper, sync -------------------------------------------------------------------


def test_helper_exhausted(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    with client.chat.completions.stream(**ARGS) as stream:
        final = stream.get_final_completion()
        span = ended(otel, completed=True, tokens=SEED_TOKENS)
    logprobs = final.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert (span.attributes or {})["logprobs.token_count"] == len(logprobs.content)


def test_helper_with_block_left_early(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    with client.chat.completions.stream(**ARGS) as stream:
        for event in stream:
            if event.type == "logprobs.content.delta":
                break
        assert otel.spans() == []
    ended(otel, completed=False, tokens=1)
    assert stream is not None  # still held: the end did not wait for garbage collection


def test_helper_close(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    with client.chat.completions.stream(**ARGS) as stream:
        for event in stream:
            if event.type == "logprobs.content.delta":
                break
        stream.close()
        ended(otel, completed=False, tokens=1)
    assert len(otel.spans()) == 1


def test_helper_callers_exception(client: openai.OpenAI, otel: InMemoryOtel) -> None:
    # The helper's `with` closes the response and never sees the exception: the span ends
    # as a stream left early; the exception reaches the caller unchanged.
    mine = ValueError("mine")
    with pytest.raises(ValueError) as caught, client.chat.completions.stream(**ARGS) as stream:
        for _ in stream:
            raise mine
    assert caught.value is mine
    ended(otel, completed=False)


# -- async ------------------------------------------------------------------------------------


async def test_async_exhausted(aclient: openai.AsyncOpenAI, otel: InMemoryOtel) -> None:
    stream = await aclient.chat.completions.create(stream=True, **ARGS)
    async for _ in stream:
        pass
    ended(otel, completed=True, tokens=SEED_TOKENS)
    await stream.close()
    assert len(otel.spans()) == 1


async def test_async_close(aclient: openai.AsyncOpenAI, otel: InMemoryOtel) -> None:
    stream = await aclient.chat.completions.create(stream=True, **ARGS)
    await acontent_chunks(stream, 3)
    assert otel.spans() == []
    await stream.close()
    ended(otel, completed=False, tokens=3)


async def test_async_aclose(aclient: openai.AsyncOpenAI, otel: InMemoryOtel) -> None:
    stream = await aclient.chat.completions.create(stream=True, **ARGS)
    await acontent_chunks(stream, 3)
    await stream.aclose()
    ended(otel, completed=False, tokens=3)


async def test_async_with_block(aclient: openai.AsyncOpenAI, otel: InMemoryOtel) -> None:
    async with await aclient.chat.completions.create(stream=True, **ARGS) as stream:
        await acontent_chunks(stream, 2)
    ended(otel, completed=False, tokens=2)


async def test_async_response_aclose(aclient: openai.AsyncOpenAI, otel: InMemoryOtel) -> None:
    stream = await aclient.chat.completions.create(stream=True, **ARGS)
    await acontent_chunks(stream, 4)
    await stream.response.aclose()
    ended(otel, completed=False, tokens=4)
    await stream.close()
    assert len(otel.spans()) == 1


async def test_async_break_and_garbage_collection(
    aclient: openai.AsyncOpenAI, otel: InMemoryOtel
) -> None:
    stream = await aclient.chat.completions.create(stream=True, **ARGS)
    await acontent_chunks(stream, 1)
    assert otel.spans() == []
    del stream
    gc.collect()
    ended(otel, completed=False, tokens=1)


async def test_async_server_error(make_server: ServerFactory, otel: InMemoryOtel) -> None:
    server = make_server(faults=Faults(cut_after=4))
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        instrument_openai(sdk, telemetry=otel.telemetry)
        stream = await sdk.chat.completions.create(stream=True, **ARGS)
        with pytest.raises(openai.APIConnectionError):
            async for _ in stream:
                pass
        failed(otel, "openai.APIConnectionError")


async def test_async_callers_exception(aclient: openai.AsyncOpenAI, otel: InMemoryOtel) -> None:
    with pytest.raises(KeyError):
        async with await aclient.chat.completions.create(stream=True, **ARGS) as stream:
            await acontent_chunks(stream, 1)
            raise KeyError("mine")
    failed(otel, "KeyError")


async def test_async_cancelled(make_server: ServerFactory, otel: InMemoryOtel) -> None:
    server = make_server(faults=Faults(stall_after=3, stall_seconds=30))
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        instrument_openai(sdk, telemetry=otel.telemetry)
        started = asyncio.Event()

        async def read() -> None:
            stream = await sdk.chat.completions.create(stream=True, **ARGS)
            async for _ in stream:
                started.set()

        task = asyncio.create_task(read())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        failed(otel, "asyncio.exceptions.CancelledError")


async def test_async_helper_exhausted(aclient: openai.AsyncOpenAI, otel: InMemoryOtel) -> None:
    async with aclient.chat.completions.stream(**ARGS) as stream:
        final = await stream.get_final_completion()
        ended(otel, completed=True, tokens=SEED_TOKENS)
    assert final.choices[0].logprobs is not None


async def test_async_helper_with_block_left_early(
    aclient: openai.AsyncOpenAI, otel: InMemoryOtel
) -> None:
    async with aclient.chat.completions.stream(**ARGS) as stream:
        async for event in stream:
            if event.type == "logprobs.content.delta":
                break
        assert otel.spans() == []
    ended(otel, completed=False, tokens=1)
    assert stream is not None


async def test_async_helper_close(aclient: openai.AsyncOpenAI, otel: InMemoryOtel) -> None:
    async with aclient.chat.completions.stream(**ARGS) as stream:
        async for event in stream:
            if event.type == "logprobs.content.delta":
                break
        await stream.close()
        ended(otel, completed=False, tokens=1)
    assert len(otel.spans()) == 1


async def test_async_helper_callers_exception(
    aclient: openai.AsyncOpenAI, otel: InMemoryOtel
) -> None:
    mine = ValueError("mine")
    with pytest.raises(ValueError) as caught:
        async with aclient.chat.completions.stream(**ARGS) as stream:
            async for _ in stream:
                raise mine
    assert caught.value is mine
    ended(otel, completed=False)
