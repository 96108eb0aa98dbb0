"""Stream wrappers: SSE bytes to typed chunks, with exactly one end per run.

`ChatStream` and `AsyncChatStream` share the decoding (`_StreamCore`) and differ only in
how they read and how they call the handlers. However a stream ends (exhausted, closed,
left early and garbage-collected, an API or network error, an exception in the user's
loop under `with`, a cancelled task) the run gets exactly one `on_llm_end` or
`on_llm_error`, and the HTTP response is closed. The user's exception always wins over
an error while closing.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Protocol

import anyio
import httpx2
import openai

from ._callbacks import RunCallbacks
from ._messages import AIMessage, AIMessageChunk, BaseMessage
from ._responses_wire import ResponseError, ResponsesAccumulator
from ._sse import DONE, SSEParser
from ._wire import StreamAccumulator, loads

__all__ = ["AsyncChatStream", "ChatStream"]

logger = logging.getLogger("logprobscope")


class _SDKStream(Protocol):
    response: httpx2.Response


# A chat completion's chunks, or a Responses API stream's events.
Accumulator = StreamAccumulator | ResponsesAccumulator


def _transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(timeouts, all transport errors) as the SDK's streams classify them.

    The SDK also takes a legacy `httpx` client (`http_client=httpx.Client()`): its errors
    count when that module is loaded. TLS failures anyio leaves unmapped count too.
    """
    timeouts: list[type[BaseException]] = [httpx2.TimeoutException]
    errors: list[type[BaseException]] = [httpx2.RequestError, ssl.SSLError, anyio.EndOfStream]
    legacy = sys.modules.get("httpx")
    if legacy is not None:
        timeouts.append(legacy.TimeoutException)
        errors.append(legacy.RequestError)
    return tuple(timeouts), tuple(errors)


def _translate(error: BaseException, response: httpx2.Response | None) -> BaseException:
    """Network errors while reading become the SDK's own exception types, as in its streams."""
    if response is None:
        return error
    timeouts, errors = _transport_errors()
    if isinstance(error, timeouts):
        return openai.APITimeoutError(request=response.request)
    if isinstance(error, errors):
        return openai.APIConnectionError(request=response.request)
    return error


class _StreamCore:
    """Decoding state shared by both wrappers."""

    __slots__ = (
        "_callbacks",
        "_messages",
        "_acc",
        "_parser",
        "_ready",
        "_pos",
        "_response",
        "_finished",
        "__weakref__",
    )

    def __init__(
        self,
        callbacks: RunCallbacks | None,
        messages: Sequence[BaseMessage],
        accumulator: Accumulator | None,
    ) -> None:
        self._callbacks = callbacks
        self._messages = messages
        self._acc: Accumulator = accumulator if accumulator is not None else StreamAccumulator()
        self._parser = SSEParser()
        self._ready: list[bytes] = []
        self._pos = 0
        self._response: httpx2.Response | None = None
        self._finished = False

    def _decode(self, payload: bytes) -> AIMessageChunk | None:
        body = loads(payload)
        if type(body) is dict and body.get("error"):
            # The SDK raises APIError for an in-stream error object; so do we.
            error = body["error"]
            message = error.get("message") if isinstance(error, dict) else None
            if not isinstance(message, str) or not message:
                message = "An error occurred during streaming"
            assert self._response is not None
            raise openai.APIError(message, self._response.request, body=error)
        try:
            return self._acc.feed(body)
        except ResponseError as failed:  # a Responses stream's `error` or `response.failed`
            assert self._response is not None
            raise openai.APIError(
                failed.message, self._response.request, body=failed.body
            ) from None

    def message(self, *, incomplete: bool) -> AIMessage:
        """Everything received so far, as one message."""
        return self._acc.message(incomplete=incomplete)


class ChatStream(_StreamCore):
    """Iterator of `AIMessageChunk` for `ChatOpenAI.stream`; also a context manager.

    The request is sent on the first `next()`. Use `with model.stream(...) as s:` to have an
    exception raised in your loop recorded as the run's error; without `with`, a stream
    left early ends as incomplete when closed or garbage-collected.
    """

    __slots__ = ("_open", "_bytes")

    def __init__(
        self,
        open_stream: Callable[[], _SDKStream],
        *,
        callbacks: RunCallbacks | None,
        messages: Sequence[BaseMessage],
        accumulator: Accumulator | None = None,
    ) -> None:
        super().__init__(callbacks, messages, accumulator)
        self._open = open_stream
        self._bytes: Iterator[bytes] | None = None
        if callbacks:
            try:
                callbacks.start_sync(messages)
            except BaseException as exc:  # a raise_error handler: the run ends with its error
                self._fail(exc)
                raise

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> AIMessageChunk:
        if self._finished:
            raise StopIteration
        try:
            while True:
                ready = self._ready
                while self._pos < len(ready):
                    payload = ready[self._pos]
                    self._pos += 1
                    if payload == DONE:
                        self._complete()
                        raise StopIteration
                    chunk = self._decode(payload)
                    if chunk is not None:
                        callbacks = self._callbacks
                        if callbacks:
                            callbacks.token_sync(chunk)
                        return chunk
                self._read()
        except StopIteration:
            raise
        except BaseException as exc:
            error = _translate(exc, self._response)
            self._fail(error)
            if error is exc:
                raise
            raise error from exc

    def _read(self) -> None:
        source = self._bytes
        if source is None:
            self._response = self._open().response
            source = self._bytes = self._response.iter_bytes()
        try:
            data = next(source)
        except StopIteration:
            self._ready = self._parser.flush()
            self._pos = 0
            if not self._ready:
                self._complete()  # the server closed cleanly without [DONE]
                raise
            self._ready.append(DONE)
            return
        self._ready = self._parser.feed(data)
        self._pos = 0

    def _close_response(self) -> None:
        response = self._response
        if response is not None:
            try:
                response.close()
            except Exception:  # the user's result or exception matters more
                logger.debug("closing the stream's response failed", exc_info=True)

    def _complete(self) -> None:
        self._finished = True
        self._close_response()
        if self._callbacks:
            self._callbacks.end_sync(self.message(incomplete=False))

    def _fail(self, error: BaseException) -> None:
        if self._finished:
            return
        self._finished = True
        self._close_response()
        if self._callbacks:
            self._callbacks.error_sync(error)

    def close(self) -> None:
        """Stop reading; the run ends now, as incomplete if the stream was not finished."""
        if self._finished:
            return
        self._finished = True
        self._close_response()
        if self._callbacks:
            self._callbacks.end_sync(self.message(incomplete=True))

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self._fail(exc)
        except Exception:  # a raise_error handler must not replace the user's exception
            logger.warning("a callback handler failed while the stream ended", exc_info=True)

    def __del__(self) -> None:
        if not getattr(self, "_finished", True):
            try:
                self.close()
            except Exception:
                logger.debug("ending a garbage-collected stream failed", exc_info=True)


class AsyncChatStream(_StreamCore):
    """Async iterator of `AIMessageChunk` for `ChatOpenAI.astream`; also an async context manager.

    Synchronous handlers see the start when `astream()` is called (so a span gets the
    caller's parent); asynchronous handlers see it before the first chunk, or before the
    end of a stream closed, failed or dropped before that.
    """

    __slots__ = ("_open", "_bytes", "_started")

    def __init__(
        self,
        open_stream: Callable[[], Awaitable[_SDKStream]],
        *,
        callbacks: RunCallbacks | None,
        messages: Sequence[BaseMessage],
        accumulator: Accumulator | None = None,
    ) -> None:
        super().__init__(callbacks, messages, accumulator)
        self._open = open_stream
        self._bytes: AsyncIterator[bytes] | None = None
        self._started = False
        if callbacks:
            try:
                callbacks.start_inline(messages)
            except BaseException as exc:  # a raise_error handler: the run ends with its error
                self._finished = True
                callbacks.error_inline(exc)  # no asynchronous handler has seen the start
                raise

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> AIMessageChunk:
        if self._finished:
            raise StopAsyncIteration
        try:
            await self._start_async_handlers()
            while True:
                ready = self._ready
                while self._pos < len(ready):
                    payload = ready[self._pos]
                    self._pos += 1
                    if payload == DONE:
                        await self._complete()
                        raise StopAsyncIteration
                    chunk = self._decode(payload)
                    if chunk is not None:
                        callbacks = self._callbacks
                        if callbacks:
                            if callbacks.asynchronous:
                                await callbacks.atoken(chunk)
                            else:
                                callbacks.token_inline(chunk)
                        return chunk
                await self._read()
        except StopAsyncIteration:
            raise
        except BaseException as exc:
            error = _translate(exc, self._response)
            await self._fail(error)
            if error is exc:
                raise
            raise error from exc

    async def _start_async_handlers(self) -> None:
        """The asynchronous handlers' start, once, before anything else reaches them."""
        if self._started:
            return
        self._started = True
        callbacks = self._callbacks
        if callbacks and callbacks.asynchronous:
            await callbacks.astart(self._messages, inline_done=True)

    async def _read(self) -> None:
        source = self._bytes
        if source is None:
            self._response = (await self._open()).response
            source = self._bytes = self._response.aiter_bytes()
        try:
            data = await source.__anext__()
        except StopAsyncIteration:
            self._ready = self._parser.flush()
            self._pos = 0
            if not self._ready:
                await self._complete()
                raise
            self._ready.append(DONE)
            return
        self._ready = self._parser.feed(data)
        self._pos = 0

    async def _close_response(self) -> None:
        response = self._response
        if response is not None:
            try:
                await response.aclose()
            except BaseException:  # also a cancellation arriving while closing
                logger.debug("closing the stream's response failed", exc_info=True)

    async def _complete(self) -> None:
        self._finished = True
        await self._close_response()
        if self._callbacks:
            await self._callbacks.aend(self.message(incomplete=False))

    async def _fail(self, error: BaseException) -> None:
        if self._finished:
            return
        self._finished = True
        callbacks = self._callbacks
        if callbacks:
            # Handlers first: a cancellation may interrupt the close below.
            try:
                await self._start_async_handlers()  # failed before the first chunk
            finally:
                await callbacks.aerror(error)
        await self._close_response()

    async def aclose(self) -> None:
        """Stop reading; the run ends now, as incomplete if the stream was not finished."""
        if self._finished:
            return
        self._finished = True
        callbacks = self._callbacks
        if callbacks:
            try:
                await self._start_async_handlers()  # closed before the first chunk
            except BaseException as exc:  # a raise_error start: the run ends with its error
                await callbacks.aerror(exc)
                await self._close_response()
                raise
            await callbacks.aend(self.message(incomplete=True))
        await self._close_response()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.aclose()
            return
        try:
            await self._fail(exc)
        except Exception:
            logger.warning("a callback handler failed while the stream ended", exc_info=True)

    def __del__(self) -> None:
        # Garbage-collected unclosed: nothing can be awaited here. Synchronous handlers
        # end the run now; asynchronous ones are scheduled on the running loop if any.
        if getattr(self, "_finished", True):
            return
        self._finished = True
        try:
            callbacks = self._callbacks
            if callbacks:
                message = self.message(incomplete=True)
                if callbacks.asynchronous:
                    late = _late_end(callbacks, self._messages, message, started=self._started)
                    _schedule(late(), fallback=lambda: asyncio.run(late()))
                else:
                    callbacks.end_sync(message)
            if self._response is not None:
                _schedule(self._response.aclose(), fallback=None)
        except Exception:
            logger.debug("ending a garbage-collected stream failed", exc_info=True)


def _late_end(
    callbacks: RunCallbacks,
    messages: Sequence[BaseMessage],
    message: AIMessage,
    *,
    started: bool,
) -> Callable[[], Coroutine[object, object, None]]:
    """The end of a dropped stream, for handlers that may not have seen its start yet."""

    async def late() -> None:
        if started:
            await callbacks.aend(message)
            return
        try:
            await callbacks.astart(messages, inline_done=True)
        finally:
            await callbacks.aend(message)

    return late


_background: set[asyncio.Task[None]] = set()


def _schedule(coro: Awaitable[None], *, fallback: Callable[[], None] | None) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        close = getattr(coro, "close", None)
        if close is not None:
            close()  # never awaited: close it so it does not warn
        if fallback is not None:
            fallback()
        return
    task: asyncio.Task[None] = loop.create_task(coro)  # type: ignore[arg-type]
    _background.add(task)
    task.add_done_callback(_background.discard)
