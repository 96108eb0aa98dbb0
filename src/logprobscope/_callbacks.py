"""Callback handlers: typed hooks with no-op defaults, and their per-run dispatch.

A handler sees, per run (one model call): the start, every streamed chunk, and exactly one
end or error. Handlers are isolated from the call: an exception from a hook is logged
(once per hook and run) and the call and the other handlers go on, unless the handler
sets `raise_error = True`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ._messages import AIMessage, AIMessageChunk, BaseMessage

__all__ = [
    "AsyncCallbackHandler",
    "BaseCallbackHandler",
    "Callbacks",
    "Run",
    "RunCallbacks",
]

logger = logging.getLogger("logprobscope")


class Run(BaseModel):
    """What a handler knows about the model call its hooks belong to.

    `invocation_params` is the request body without the messages (no credentials), in the
    names of the API the call goes to: `api` is "chat_completions" or "responses" (the
    Responses API, `ChatOpenAI(use_responses_api=True)`).
    """

    model_config = ConfigDict(frozen=True)

    run_id: UUID
    model: str
    stream: bool
    invocation_params: dict[str, object] = Field(default_factory=dict)
    tags: tuple[str, ...] = ()
    metadata: dict[str, object] = Field(default_factory=dict)
    provider: str = "openai"
    server_address: str | None = None
    server_port: int | None = None
    api: Literal["chat_completions", "responses"] = "chat_completions"


class BaseCallbackHandler:
    """Synchronous handler; override the hooks you need. Hooks run inline: keep them fast.

    Non-streamed calls fire `on_llm_new_token` never; their tokens arrive in `on_llm_end`.
    """

    raise_error: bool = False

    def on_chat_model_start(self, messages: Sequence[BaseMessage], *, run: Run) -> None:
        """The call starts; `messages` are what will be sent."""

    def on_llm_new_token(self, token: str, *, chunk: AIMessageChunk, run: Run) -> None:
        """A streamed chunk arrived; `token` is its text, `chunk` has its logprobs."""

    def on_llm_end(self, message: AIMessage, *, run: Run) -> None:
        """The call ended with an answer (for a stream, everything received).

        A stream left before its end gives `message.response_metadata.incomplete == True`.
        """

    def on_llm_error(self, error: BaseException, *, run: Run) -> None:
        """The call failed with `error`, which the user's code receives unchanged."""


class AsyncCallbackHandler:
    """Asynchronous handler: awaited on `ainvoke`/`astream`/`abatch`.

    On synchronous calls its hooks are run to completion on a private event loop, which
    blocks the call: prefer `BaseCallbackHandler` there.
    """

    raise_error: bool = False

    async def on_chat_model_start(self, messages: Sequence[BaseMessage], *, run: Run) -> None:
        """The call starts; `messages` are what will be sent."""

    async def on_llm_new_token(self, token: str, *, chunk: AIMessageChunk, run: Run) -> None:
        """A streamed chunk arrived; `token` is its text, `chunk` has its logprobs."""

    async def on_llm_end(self, message: AIMessage, *, run: Run) -> None:
        """The call ended with an answer (for a stream, everything received)."""

    async def on_llm_error(self, error: BaseException, *, run: Run) -> None:
        """The call failed with `error`, which the user's code receives unchanged."""


Handler = BaseCallbackHandler | AsyncCallbackHandler
Callbacks = Sequence[Handler]


def check_handlers(handlers: object) -> tuple[Handler, ...]:
    """Validate a callbacks argument early, with a clear message."""
    if handlers is None:
        return ()
    if isinstance(handlers, (BaseCallbackHandler, AsyncCallbackHandler)):
        return (handlers,)
    if not isinstance(handlers, Sequence):
        raise TypeError("callbacks must be a list of callback handlers")
    for h in handlers:
        if not isinstance(h, (BaseCallbackHandler, AsyncCallbackHandler)):
            raise TypeError(
                f"{type(h).__name__} is not a callback handler: subclass "
                "logprobscope.BaseCallbackHandler or AsyncCallbackHandler"
            )
    return tuple(handlers)


def _drive(coro: Coroutine[object, object, None]) -> None:
    """Run an async hook to completion from synchronous code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    # A loop is running in this thread (a sync call inside async code): it cannot be
    # re-entered, so the hook runs on its own loop in a helper thread.
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # handed back to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=target, name="logprobscope-async-hook")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


class RunCallbacks:
    """The handlers of one run, with exactly-once end and failure isolation.

    The `*_sync` methods serve synchronous calls; the `a*` methods serve asynchronous ones.
    Synchronous handlers always run inline, in both.
    """

    __slots__ = ("run", "sync", "asynchronous", "ended", "_logged")

    def __init__(self, run: Run, handlers: Sequence[Handler]) -> None:
        self.run = run
        self.sync = tuple(h for h in handlers if isinstance(h, BaseCallbackHandler))
        self.asynchronous = tuple(h for h in handlers if isinstance(h, AsyncCallbackHandler))
        self.ended = False
        self._logged: set[tuple[int, str]] = set()

    def __bool__(self) -> bool:
        return bool(self.sync or self.asynchronous)

    def _failed(self, handler: Handler, hook: str, error: Exception) -> Exception | None:
        """Log and skip a handler's failure; a `raise_error` handler's is returned instead.

        The caller raises the first returned error only after every handler got the hook,
        so one strict handler never keeps the others from their start or their one end.
        """
        if handler.raise_error:
            return error
        key = (id(handler), hook)
        if key not in self._logged:  # a failing per-token hook must not flood the log
            self._logged.add(key)
            logger.warning(
                "callback handler %s raised in %s (run %s); skipped, the call goes on",
                type(handler).__name__,
                hook,
                self.run.run_id,
                exc_info=error,
            )
        return None

    # -- the loops, shared by both shells -----------------------------------------------
    # Each runs the hook on every handler of its kind and returns (not raises) the first
    # `raise_error` failure, so one strict handler never keeps the others from a hook.
    # `hook` only names the hook in the log.

    def _each_sync(
        self, hook: str, call: Callable[[BaseCallbackHandler], None]
    ) -> Exception | None:
        first: Exception | None = None
        for h in self.sync:
            try:
                call(h)
            except Exception as exc:
                failure = self._failed(h, hook, exc)
                first = first or failure
        return first

    def _each_async_driven(
        self, hook: str, call: Callable[[AsyncCallbackHandler], Coroutine[object, object, None]]
    ) -> Exception | None:
        first: Exception | None = None
        for h in self.asynchronous:
            try:
                _drive(call(h))
            except Exception as exc:
                failure = self._failed(h, hook, exc)
                first = first or failure
        return first

    async def _each_async(
        self, hook: str, call: Callable[[AsyncCallbackHandler], Coroutine[object, object, None]]
    ) -> Exception | None:
        first: Exception | None = None
        for h in self.asynchronous:
            try:
                await call(h)
            except Exception as exc:
                failure = self._failed(h, hook, exc)
                first = first or failure
        return first

    def token_inline(self, chunk: AIMessageChunk) -> None:
        """Per-chunk hook of the synchronous handlers (the hot path: no closure per chunk)."""
        run = self.run
        text = chunk.content
        first: Exception | None = None
        for h in self.sync:
            try:
                h.on_llm_new_token(text, chunk=chunk, run=run)
            except Exception as exc:
                failure = self._failed(h, "on_llm_new_token", exc)
                first = first or failure
        if first is not None:
            raise first

    def _mark_ended(self) -> bool:
        if self.ended:
            return False
        self.ended = True
        return True

    # -- what each hook does to one handler ----------------------------------------------

    def _start(self, messages: Sequence[BaseMessage]) -> tuple[_SyncCall, _AsyncCall]:
        run = self.run
        return (
            lambda h: h.on_chat_model_start(messages, run=run),
            lambda h: h.on_chat_model_start(messages, run=run),
        )

    def _token(self, chunk: AIMessageChunk) -> _AsyncCall:
        run = self.run
        text = chunk.content
        return lambda h: h.on_llm_new_token(text, chunk=chunk, run=run)

    def _end(self, message: AIMessage) -> tuple[_SyncCall, _AsyncCall]:
        run = self.run
        return (lambda h: h.on_llm_end(message, run=run), lambda h: h.on_llm_end(message, run=run))

    def _error(self, error: BaseException) -> tuple[_SyncCall, _AsyncCall]:
        run = self.run
        return (
            lambda h: h.on_llm_error(error, run=run),
            lambda h: h.on_llm_error(error, run=run),
        )

    # -- synchronous shell --------------------------------------------------------------

    def start_sync(self, messages: Sequence[BaseMessage]) -> None:
        """`on_chat_model_start` on every handler."""
        sync, asynchronous = self._start(messages)
        first = self._each_sync("on_chat_model_start", sync)
        _raise_first(first, self._each_async_driven("on_chat_model_start", asynchronous))

    def token_sync(self, chunk: AIMessageChunk) -> None:
        """`on_llm_new_token` on every handler."""
        first = _attempt(self.token_inline, chunk)
        if self.asynchronous:  # no closure per chunk when there is no async handler
            _raise_first(first, self._each_async_driven("on_llm_new_token", self._token(chunk)))
        elif first is not None:
            raise first

    def end_sync(self, message: AIMessage) -> None:
        """`on_llm_end` on every handler, unless the run already ended."""
        if not self._mark_ended():
            return
        sync, asynchronous = self._end(message)
        first = self._each_sync("on_llm_end", sync)
        _raise_first(first, self._each_async_driven("on_llm_end", asynchronous))

    def error_sync(self, error: BaseException) -> None:
        """`on_llm_error` on every handler, unless the run already ended."""
        if not self._mark_ended():
            return
        sync, asynchronous = self._error(error)
        first = self._each_sync("on_llm_error", sync)
        _raise_first(first, self._each_async_driven("on_llm_error", asynchronous))

    # -- asynchronous shell -------------------------------------------------------------

    async def astart(self, messages: Sequence[BaseMessage], *, inline_done: bool = False) -> None:
        """`on_chat_model_start` on every handler (sync ones may have run already)."""
        sync, asynchronous = self._start(messages)
        first = None if inline_done else self._each_sync("on_chat_model_start", sync)
        _raise_first(first, await self._each_async("on_chat_model_start", asynchronous))

    def start_inline(self, messages: Sequence[BaseMessage]) -> None:
        """Only the synchronous handlers' start (where nothing can be awaited yet)."""
        _raise_first(self._each_sync("on_chat_model_start", self._start(messages)[0]), None)

    def error_inline(self, error: BaseException) -> None:
        """Only the synchronous handlers' error, unless the run already ended.

        For a run that failed before any asynchronous handler saw its start.
        """
        if self._mark_ended():
            _raise_first(self._each_sync("on_llm_error", self._error(error)[0]), None)

    async def atoken(self, chunk: AIMessageChunk) -> None:
        """`on_llm_new_token` on every handler."""
        first = _attempt(self.token_inline, chunk)
        _raise_first(first, await self._each_async("on_llm_new_token", self._token(chunk)))

    async def aend(self, message: AIMessage) -> None:
        """`on_llm_end` on every handler, unless the run already ended."""
        if not self._mark_ended():
            return
        sync, asynchronous = self._end(message)
        first = self._each_sync("on_llm_end", sync)
        _raise_first(first, await self._each_async("on_llm_end", asynchronous))

    async def aerror(self, error: BaseException) -> None:
        """`on_llm_error` on every handler, unless the run already ended."""
        if not self._mark_ended():
            return
        sync, asynchronous = self._error(error)
        first = self._each_sync("on_llm_error", sync)
        _raise_first(first, await self._each_async("on_llm_error", asynchronous))


_SyncCall = Callable[[BaseCallbackHandler], None]
_AsyncCall = Callable[[AsyncCallbackHandler], Coroutine[object, object, None]]


def _raise_first(first: Exception | None, second: Exception | None) -> None:
    """Raise the earliest `raise_error` failure, once every handler got its hook."""
    failure = first or second
    if failure is not None:
        raise failure


_A = TypeVar("_A")


def _attempt(hook: Callable[[_A], None], arg: _A) -> Exception | None:
    """Run the synchronous handlers' hook; return (not raise) a `raise_error` failure."""
    try:
        hook(arg)
    except Exception as exc:
        return exc
    return None
