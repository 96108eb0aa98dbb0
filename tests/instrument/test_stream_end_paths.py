"""Every way the openai SDK lets a caller end a stream ends the span at once, exactly once.

Sync and async, for `create(stream=True)` and for the SDK's `stream()` helper, through both
APIs (the `api` fixture): `chat.completions` and `responses`. "At once" is checked while the
caller still holds the stream: the span must already be exported, not waiting for garbage
collection (a span still open at exit is lost).
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
from tests.support.apis import Api
from tests.support.entry_points import MESSAGES
from tests.support.factories import ServerFactory
from tests.support.otel import InMemoryOtel

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_global_instrumentation")]

SEED_TOKENS = 25  # the seed stream's tokens (SEED_TOP_LOGPROBS, chosen by top_logprobs)
CHAT_ARGS: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": MESSAGES,
    "logprobs": True,
    "top_logprobs": 2,
}
RESPONSES_ARGS: dict[str, Any] = {
    "model": "gpt-4o",
    "input": MESSAGES,
    "include": ["message.output_text.logprobs"],
    "top_logprobs": 2,
}
# The helpers' events that carry tokens: the chat helper's own, the Responses API's delta.
TOKEN_EVENTS = ("logprobs.content.delta", "response.output_text.delta")


class Endpoint:
    """`client.chat.completions` or `client.responses`, with its arguments."""

    def __init__(self, client: Any, api: Api) -> None:
        self.resource = client.responses if api.responses else client.chat.completions
        self.args = RESPONSES_ARGS if api.responses else CHAT_ARGS

    def create(self) -> Any:
        return self.resource.create(stream=True, **self.args)

    def stream(self) -> Any:
        return self.resource.stream(**self.args)


def final_tokens(final: Any) -> int:
    """Tokens of a helper's final answer: a chat completion's, or a response's."""
    if hasattr(final, "choices"):
        logprobs = final.choices[0].logprobs
        assert logprobs is not None and logprobs.content is not None
        return len(logprobs.content)
    return len(final.output[0].content[0].logprobs)


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


def _has_tokens(item: Any) -> bool:
    kind = getattr(item, "type", None)
    if kind is not None:  # a Responses API event
        return kind == "response.output_text.delta" and bool(item.logprobs)
    return bool(item.choices and item.choices[0].logprobs and item.choices[0].logprobs.content)


def content_chunks(stream: Any, count: int) -> None:
    """Read chunks (or events) until `count` of them carried tokens."""
    seen = 0
    for chunk in stream:
        if _has_tokens(chunk):
            seen += 1
            if seen == count:
                return


async def acontent_chunks(stream: Any, count: int) -> None:
    seen = 0
    async for chunk in stream:
        if _has_tokens(chunk):
            seen += 1
            if seen == count:
                return


# -- create(stream=True), sync --------------------------------------------------------------


def test_exhausted(api: Api, client: openai.OpenAI, otel: InMemoryOtel) -> None:
    stream = Endpoint(client, api).create()
    for _ in stream:
        pass
    ended(otel, completed=True, tokens=SEED_TOKENS)
    stream.close()
    assert len(otel.spans()) == 1


def test_close(api: Api, client: openai.OpenAI, otel: InMemoryOtel) -> None:
    stream = Endpoint(client, api).create()
    content_chunks(stream, 3)
    assert otel.spans() == []  # the caller may read on
    stream.close()
    ended(otel, completed=False, tokens=3)


def test_with_block(api: Api, client: openai.OpenAI, otel: InMemoryOtel) -> None:
    with Endpoint(client, api).create() as stream:
        content_chunks(stream, 2)
    ended(otel, completed=False, tokens=2)


def test_response_close(api: Api, client: openai.OpenAI, otel: InMemoryOtel) -> None:
    stream = Endpoint(client, api).create()
    content_chunks(stream, 4)
    stream.response.close()
    ended(otel, completed=False, tokens=4)
    stream.close()  # the proxy's own close after it changes nothing
    assert len(otel.spans()) == 1


def test_break_and_garbage_collection(api: Api, client: openai.OpenAI, otel: InMemoryOtel) -> None:
    stream = Endpoint(client, api).create()
    content_chunks(stream, 1)
    assert otel.spans() == []
    del stream
    gc.collect()
    ended(otel, completed=False, tokens=1)


def test_server_error(api: Api, make_server: ServerFactory, otel: InMemoryOtel) -> None:
    server = make_server(faults=Faults(cut_after=api.event(3)))
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        instrument_openai(sdk, telemetry=otel.telemetry)
        stream = Endpoint(sdk, api).create()
        with pytest.raises(openai.APIConnectionError):
            for _ in stream:
                pass
        failed(otel, "openai.APIConnectionError")


def test_callers_exception(api: Api, client: openai.OpenAI, otel: InMemoryOtel) -> None:
    with pytest.raises(KeyError), Endpoint(client, api).create() as stream:
        content_chunks(stream, 1)
        raise KeyError("mine")
    failed(otel, "KeyError")


# -- the stream() helper, sync -------------------------------------------------------------------


def test_helper_exhausted(api: Api, client: openai.OpenAI, otel: InMemoryOtel) -> None:
    with Endpoint(client, api).stream() as stream:
        final = stream.get_final_response() if api.responses else stream.get_final_completion()
        span = ended(otel, completed=True, tokens=SEED_TOKENS)
    assert (span.attributes or {})["logprobs.token_count"] == final_tokens(final)


def test_helper_with_block_left_early(api: Api, client: openai.OpenAI, otel: InMemoryOtel) -> None:
    with Endpoint(client, api).stream() as stream:
        for event in stream:
            if event.type in TOKEN_EVENTS:
                break
        assert otel.spans() == []
    ended(otel, completed=False, tokens=1)
    assert stream is not None  # still held: the end did not wait for garbage collection


def test_helper_close(api: Api, client: openai.OpenAI, otel: InMemoryOtel) -> None:
    with Endpoint(client, api).stream() as stream:
        for event in stream:
            if event.type in TOKEN_EVENTS:
                break
        stream.close()
        ended(otel, completed=False, tokens=1)
    assert len(otel.spans()) == 1


def test_helper_callers_exception(api: Api, client: openai.OpenAI, otel: InMemoryOtel) -> None:
    # The helper's `with` closes the response and never sees the exception: the span ends
    # as a stream left early; the exception reaches the caller unchanged.
    mine = ValueError("mine")
    with pytest.raises(ValueError) as caught, Endpoint(client, api).stream() as stream:
        for _ in stream:
            raise mine
    assert caught.value is mine
    ended(otel, completed=False)


# -- async ------------------------------------------------------------------------------------


async def test_async_exhausted(api: Api, aclient: openai.AsyncOpenAI, otel: InMemoryOtel) -> None:
    stream = await Endpoint(aclient, api).create()
    async for _ in stream:
        pass
    ended(otel, completed=True, tokens=SEED_TOKENS)
    await stream.close()
    assert len(otel.spans()) == 1


async def test_async_close(api: Api, aclient: openai.AsyncOpenAI, otel: InMemoryOtel) -> None:
    stream = await Endpoint(aclient, api).create()
    await acontent_chunks(stream, 3)
    assert otel.spans() == []
    await stream.close()
    ended(otel, completed=False, tokens=3)


async def test_async_aclose(api: Api, aclient: openai.AsyncOpenAI, otel: InMemoryOtel) -> None:
    stream = await Endpoint(aclient, api).create()
    await acontent_chunks(stream, 3)
    await stream.aclose()
    ended(otel, completed=False, tokens=3)


async def test_async_with_block(api: Api, aclient: openai.AsyncOpenAI, otel: InMemoryOtel) -> None:
    async with await Endpoint(aclient, api).create() as stream:
        await acontent_chunks(stream, 2)
    ended(otel, completed=False, tokens=2)


async def test_async_response_aclose(
    api: Api, aclient: openai.AsyncOpenAI, otel: InMemoryOtel
) -> None:
    stream = await Endpoint(aclient, api).create()
    await acontent_chunks(stream, 4)
    await stream.response.aclose()
    ended(otel, completed=False, tokens=4)
    await stream.close()
    assert len(otel.spans()) == 1


async def test_async_break_and_garbage_collection(
    api: Api, aclient: openai.AsyncOpenAI, otel: InMemoryOtel
) -> None:
    stream = await Endpoint(aclient, api).create()
    await acontent_chunks(stream, 1)
    assert otel.spans() == []
    del stream
    gc.collect()
    ended(otel, completed=False, tokens=1)


async def test_async_server_error(api: Api, make_server: ServerFactory, otel: InMemoryOtel) -> None:
    server = make_server(faults=Faults(cut_after=api.event(3)))
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        instrument_openai(sdk, telemetry=otel.telemetry)
        stream = await Endpoint(sdk, api).create()
        with pytest.raises(openai.APIConnectionError):
            async for _ in stream:
                pass
        failed(otel, "openai.APIConnectionError")


async def test_async_callers_exception(
    api: Api, aclient: openai.AsyncOpenAI, otel: InMemoryOtel
) -> None:
    with pytest.raises(KeyError):
        async with await Endpoint(aclient, api).create() as stream:
            await acontent_chunks(stream, 1)
            raise KeyError("mine")
    failed(otel, "KeyError")


async def test_async_cancelled(api: Api, make_server: ServerFactory, otel: InMemoryOtel) -> None:
    server = make_server(faults=Faults(stall_after=api.event(2), stall_seconds=30))
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
        instrument_openai(sdk, telemetry=otel.telemetry)
        started = asyncio.Event()

        async def read() -> None:
            stream = await Endpoint(sdk, api).create()
            async for _ in stream:
                started.set()

        task = asyncio.create_task(read())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        failed(otel, "asyncio.exceptions.CancelledError")


async def test_async_helper_exhausted(
    api: Api, aclient: openai.AsyncOpenAI, otel: InMemoryOtel
) -> None:
    async with Endpoint(aclient, api).stream() as stream:
        if api.responses:
            final: Any = await stream.get_final_response()
        else:
            final = await stream.get_final_completion()
        ended(otel, completed=True, tokens=SEED_TOKENS)
    assert final_tokens(final) == SEED_TOKENS


async def test_async_helper_with_block_left_early(
    api: Api, aclient: openai.AsyncOpenAI, otel: InMemoryOtel
) -> None:
    async with Endpoint(aclient, api).stream() as stream:
        async for event in stream:
            if event.type in TOKEN_EVENTS:
                break
        assert otel.spans() == []
    ended(otel, completed=False, tokens=1)
    assert stream is not None


async def test_async_helper_close(
    api: Api, aclient: openai.AsyncOpenAI, otel: InMemoryOtel
) -> None:
    async with Endpoint(aclient, api).stream() as stream:
        async for event in stream:
            if event.type in TOKEN_EVENTS:
                break
        await stream.close()
        ended(otel, completed=False, tokens=1)
    assert len(otel.spans()) == 1


async def test_async_helper_callers_exception(
    api: Api, aclient: openai.AsyncOpenAI, otel: InMemoryOtel
) -> None:
    mine = ValueError("mine")
    with pytest.raises(ValueError) as caught:
        async with Endpoint(aclient, api).stream() as stream:
            async for _ in stream:
                raise mine
    assert caught.value is mine
    ended(otel, completed=False)
