"""`instrument_openai`'s streams: the caller's `openai.Stream`, observed item by item.

The proxy is still an `openai.Stream` (or `openai.AsyncStream`): it yields the SDK's own
items (chat chunks, or Responses API events) and forwards every other attribute to the real
stream. Each item goes to a recorder (`StreamRecorder` here for chat completions) as the
caller's loop receives it. The call ends exactly once: when the stream is exhausted
(completed); when it is closed, left through its context manager or collected unclosed (not
completed), or its HTTP response is closed by other code (the SDK's `stream()` helpers close
it directly, as may the caller: `stream.response.close()`); or when it fails (recorded; the
exception propagates).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Protocol, TypeVar

import openai
from openai.types.chat import ChatCompletionChunk, ChatCompletionTokenLogprob

from .otel import CallTelemetry, ResponseFacts

__all__ = ["Recorder", "StreamRecorder", "TracedAsyncStream", "TracedStream"]

_T = TypeVar("_T")
_T_contra = TypeVar("_T_contra", contravariant=True)

logger = logging.getLogger("logprobscope")


class Recorder(Protocol[_T_contra]):
    """What a traced stream feeds: each item, then one end or failure."""

    @property
    def call(self) -> CallTelemetry: ...

    def chunk(self, item: _T_contra) -> None: ...

    def end(self, *, completed: bool) -> None: ...

    def fail(self, error: BaseException) -> None: ...


class StreamRecorder:
    """Feeds one chat stream's chunks to its call and ends the call exactly once."""

    __slots__ = ("call", "texts", "response_id", "model", "finish", "usage")

    def __init__(self, call: CallTelemetry, capture: bool) -> None:
        self.call = call
        self.texts: list[str] | None = [] if capture else None
        self.response_id: str | None = None
        self.model: str | None = None
        self.finish: dict[int, str] = {}
        self.usage: tuple[int, int] | None = None

    def chunk(self, chunk: ChatCompletionChunk) -> None:
        try:
            now = time.time_ns()
            call = self.call
            if self.response_id is None:
                # Known from the first chunk: metric observations can be recorded as they come.
                self.response_id = chunk.id
                self.model = chunk.model
                call.set_response(ResponseFacts(id=chunk.id, model=chunk.model))
            content: Sequence[ChatCompletionTokenLogprob] = ()
            for choice in chunk.choices:
                if choice.finish_reason:
                    self.finish[choice.index] = choice.finish_reason
                if choice.index != 0:
                    continue
                logprobs = choice.logprobs
                if logprobs is not None and logprobs.content:
                    content = logprobs.content
                if self.texts is not None and choice.delta.content:
                    self.texts.append(choice.delta.content)
            call.add_tokens(content, time_ns=now)  # one chunk's arrival, tokens or not
            usage = chunk.usage
            if usage is not None:
                self.usage = (usage.prompt_tokens, usage.completion_tokens)
        except Exception:  # telemetry never breaks the caller's loop
            logger.debug("recording a stream chunk failed", exc_info=True)

    def _response(self) -> None:
        try:
            usage = self.usage
            self.call.set_response(
                ResponseFacts(
                    id=self.response_id,
                    model=self.model,
                    finish_reasons=[self.finish[i] for i in sorted(self.finish)] or None,
                    input_tokens=usage[0] if usage else None,
                    output_tokens=usage[1] if usage else None,
                    output_text="".join(self.texts) if self.texts is not None else None,
                )
            )
        except Exception:
            logger.debug("recording a stream's response failed", exc_info=True)

    def end(self, *, completed: bool) -> None:
        if self.call.ended:
            return
        self._response()
        self.call.end(completed=completed)

    def fail(self, error: BaseException) -> None:
        if self.call.ended:
            return
        self._response()
        self.call.fail(error)


class _CloseWatch:
    """Ends the call when the stream's HTTP response is closed outside the caller's loop.

    Installed as the response's own `close` (or `aclose`) until the call ends, then removed:
    the response behaves as before, and is left as it was. A close from inside the loop (the
    SDK closes the response when the body ends or fails) is left to the loop, which knows
    how the stream ended.
    """

    __slots__ = ("_traced", "_response", "_name", "__weakref__")

    def __init__(self, traced: _Traced, response: Any, name: str) -> None:
        # Weak references: the response holds this watch, which must not keep it alive.
        self._traced = weakref.ref(traced)
        self._response: weakref.ref[Any] = weakref.ref(response)
        self._name = name
        try:
            vars(response)[name] = self._aclose if name == "aclose" else self._close
        except TypeError:  # a response without a __dict__: closes end the span at collection
            pass

    def _closed(self) -> None:
        traced = self._traced()
        if traced is not None and not traced._reading:
            traced._end(completed=False)

    def _close(self) -> None:
        response = self._response()
        try:
            if response is not None:
                type(response).close(response)
        finally:
            self._closed()

    async def _aclose(self) -> None:
        response = self._response()
        try:
            if response is not None:
                await type(response).aclose(response)
        finally:
            self._closed()

    def remove(self) -> None:
        response = self._response()
        if response is None:
            return
        attributes = getattr(response, "__dict__", None)
        if attributes is not None:
            mine = attributes.get(self._name)
            if getattr(mine, "__self__", None) is self:
                del attributes[self._name]


class _Traced:
    """The state both proxies keep beside the real stream, in their own `__dict__`."""

    _reading: bool

    def _setup(self, stream: object, recorder: Recorder[Any], close: str) -> None:
        state = self.__dict__
        state["_lps_stream"] = stream
        state["_lps_recorder"] = recorder
        state["_reading"] = False
        state["_lps_watch"] = None
        response = getattr(stream, "response", None)
        if response is not None:
            try:
                state["_lps_watch"] = _CloseWatch(self, response, close)
            except Exception:  # telemetry never breaks the call
                logger.debug("watching the stream's response failed", exc_info=True)

    def _unwatch(self) -> None:
        watch = self.__dict__.get("_lps_watch")
        if watch is not None:
            self.__dict__["_lps_watch"] = None
            try:
                watch.remove()
            except Exception:
                logger.debug("unwatching the stream's response failed", exc_info=True)

    def _end(self, *, completed: bool) -> None:
        try:
            self.__dict__["_lps_recorder"].end(completed=completed)
        finally:
            self._unwatch()

    def _fail(self, error: BaseException) -> None:
        try:
            self.__dict__["_lps_recorder"].fail(error)
        finally:
            self._unwatch()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_lps_stream"], name)

    def __setattr__(self, name: str, value: object) -> None:
        setattr(self.__dict__["_lps_stream"], name, value)

    def __repr__(self) -> str:
        return f"<traced {self.__dict__['_lps_stream']!r}>"

    def __del__(self) -> None:
        recorder = self.__dict__.get("_lps_recorder")
        if recorder is not None and not recorder.call.ended:
            self._end(completed=False)


class TracedStream(_Traced, openai.Stream[_T]):
    """The caller's `openai.Stream`, observed: same items, same attributes, one span end."""

    def __init__(self, stream: openai.Stream[_T], recorder: Recorder[_T]) -> None:
        # The real stream does all the work; nothing of Stream.__init__ is needed here.
        self._setup(stream, recorder, "close")

    def __iter__(self) -> Iterator[_T]:
        return self

    def __next__(self) -> _T:
        state = self.__dict__
        state["_reading"] = True
        try:
            item: _T = next(state["_lps_stream"])
        except StopIteration:
            state["_reading"] = False
            self._end(completed=True)
            raise
        except BaseException as exc:
            state["_reading"] = False
            self._fail(exc)
            raise
        state["_reading"] = False
        state["_lps_recorder"].chunk(item)
        return item

    def __enter__(self) -> TracedStream[_T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._fail(exc)
        self.close()

    def close(self) -> None:
        """Close the real stream; the span ends now unless it already has."""
        try:
            self.__dict__["_lps_stream"].close()
        finally:
            self._end(completed=False)


class TracedAsyncStream(_Traced, openai.AsyncStream[_T]):
    """The caller's `openai.AsyncStream`, observed: same items, same attributes, one span end."""

    def __init__(self, stream: openai.AsyncStream[_T], recorder: Recorder[_T]) -> None:
        self._setup(stream, recorder, "aclose")

    def __aiter__(self) -> TracedAsyncStream[_T]:
        return self

    async def __anext__(self) -> _T:
        state = self.__dict__
        state["_reading"] = True
        try:
            item: _T = await state["_lps_stream"].__anext__()
        except StopAsyncIteration:
            state["_reading"] = False
            self._end(completed=True)
            raise
        except BaseException as exc:
            state["_reading"] = False
            self._fail(exc)
            raise
        state["_reading"] = False
        state["_lps_recorder"].chunk(item)
        return item

    async def __aenter__(self) -> TracedAsyncStream[_T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._fail(exc)
        await self.close()

    async def close(self) -> None:
        """Close the real stream; the span ends now unless it already has."""
        try:
            await self.__dict__["_lps_stream"].close()
        finally:
            self._end(completed=False)

    async def aclose(self) -> None:
        """Alias of `close()`, as on `openai.AsyncStream`."""
        await self.close()
