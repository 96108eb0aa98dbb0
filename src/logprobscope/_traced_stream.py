"""`instrument_openai`'s streams: the caller's `openai.Stream`, observed chunk by chunk.

The proxy is still an `openai.Stream` (or `openai.AsyncStream`): it yields the SDK's own
chunks (or, for the Responses API, events: its recorder is `_traced_responses`') and forwards
every other attribute to the real stream. Each chunk's tokens (every
choice's content and refusal) and arrival go to the call as the caller's loop receives it.
The call ends exactly once, at once: when the stream is exhausted (completed); when it is
closed, left through its context manager or collected unclosed (not completed); or when it
fails (recorded; the exception propagates).

Closing the HTTP response itself closes the stream too: `stream.response.close()`, and the
SDK's `chat.completions.stream()` helper, whose `with` block and `close()` close the response
and never the stream. So the response's `close` (`aclose`) is wrapped, on that response
object only: when it runs outside the proxy's own reading (where the SDK closes the response
at the stream's end, which the proxy then sees itself), the call ends, not completed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Protocol, TypeVar

import openai
from openai.types.chat import ChatCompletionChunk

from .otel import CallTelemetry, ResponseFacts

__all__ = ["Recorder", "StreamRecorder", "TracedAsyncStream", "TracedStream"]

_T = TypeVar("_T")
_T_contra = TypeVar("_T_contra", contravariant=True)


class Recorder(Protocol[_T_contra]):
    """What a traced stream feeds: each item, then one end or failure.

    `reading` is True while the proxy waits for the real stream's next item.
    """

    reading: bool

    @property
    def call(self) -> CallTelemetry: ...

    def chunk(self, item: _T_contra) -> None: ...

    def end(self, *, completed: bool) -> None: ...

    def response_closed(self) -> None: ...

    def fail(self, error: BaseException) -> None: ...


logger = logging.getLogger("logprobscope")


class _Output:
    """Choice 0's text, refusal and tool calls, added up from the deltas (content capture)."""

    __slots__ = ("texts", "refusal", "calls")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.refusal: list[str] | None = None
        self.calls: dict[int, list[str | None]] = {}  # index -> [id, name, arguments]

    def add(self, delta: Any) -> None:
        if delta.content:
            self.texts.append(delta.content)
        if delta.refusal is not None:
            self.refusal = [*(self.refusal or []), delta.refusal]
        for call in delta.tool_calls or ():
            entry = self.calls.setdefault(call.index, [None, None, ""])
            function = call.function
            entry[0] = entry[0] or call.id
            if function is not None:
                entry[1] = entry[1] or function.name
                entry[2] = (entry[2] or "") + (function.arguments or "")

    def facts(self) -> ResponseFacts:
        calls = [
            {"id": c[0], "type": "function", "function": {"name": c[1], "arguments": c[2]}}
            for _, c in sorted(self.calls.items())
        ]
        return ResponseFacts(
            output_text="".join(self.texts),
            output_refusal=None if self.refusal is None else "".join(self.refusal),
            output_tool_calls=calls or None,
        )


class StreamRecorder:
    """Feeds one stream's chunks to its call and ends the call exactly once.

    `reading` is True while the proxy waits for the real stream's next chunk.
    """

    __slots__ = ("call", "output", "response_id", "model", "finish", "usage", "reading")

    def __init__(self, call: CallTelemetry, capture: bool) -> None:
        self.call = call
        self.output: _Output | None = _Output() if capture else None
        self.response_id: str | None = None
        self.model: str | None = None
        self.finish: dict[int, str] = {}
        self.usage: tuple[int, int] | None = None
        self.reading = False

    def chunk(self, chunk: ChatCompletionChunk) -> None:
        try:
            now = time.time_ns()
            call = self.call
            if self.response_id is None:
                # Known from the first chunk: metric observations can be recorded as they come.
                self.response_id = chunk.id
                self.model = chunk.model
                call.set_response(ResponseFacts(id=chunk.id, model=chunk.model))
            first = True  # the chunk's first token list counts its arrival
            for choice in chunk.choices:
                index = choice.index
                if choice.finish_reason:
                    self.finish[index] = choice.finish_reason
                logprobs = choice.logprobs
                if logprobs is not None:
                    if logprobs.content:
                        call.add_tokens(
                            logprobs.content, time_ns=now, choice=index, new_chunk=first
                        )
                        first = False
                    if logprobs.refusal:
                        call.add_tokens(
                            logprobs.refusal,
                            time_ns=now,
                            channel="refusal",
                            choice=index,
                            new_chunk=first,
                        )
                        first = False
                if self.output is not None and index == 0:
                    self.output.add(choice.delta)
            if first:
                call.add_tokens((), time_ns=now)  # one chunk's arrival, without tokens
            usage = chunk.usage
            if usage is not None:
                self.usage = (usage.prompt_tokens, usage.completion_tokens)
        except Exception:  # telemetry never breaks the caller's loop
            logger.debug("recording a stream chunk failed", exc_info=True)

    def _response(self) -> None:
        try:
            usage = self.usage
            output = self.output.facts() if self.output is not None else ResponseFacts()
            self.call.set_response(
                ResponseFacts(
                    id=self.response_id,
                    model=self.model,
                    finish_reasons=[self.finish[i] for i in sorted(self.finish)] or None,
                    input_tokens=usage[0] if usage else None,
                    output_tokens=usage[1] if usage else None,
                    output_text=output.output_text,
                    output_refusal=output.output_refusal,
                    output_tool_calls=output.output_tool_calls,
                )
            )
        except Exception:
            logger.debug("recording a stream's response failed", exc_info=True)

    def end(self, *, completed: bool) -> None:
        if self.call.ended:
            return
        self._response()
        self.call.end(completed=completed)

    def response_closed(self) -> None:
        """The HTTP response was closed: the stream is over, unless the proxy is reading
        (then the end or the error of that read ends the call)."""
        if not self.reading:
            self.end(completed=False)

    def fail(self, error: BaseException) -> None:
        if self.call.ended:
            return
        self._response()
        self.call.fail(error)


def _watch_close(stream: object, recorder: Recorder[Any]) -> None:
    # Wrap the response's own close, on this response object only (see the module docstring).
    response = getattr(stream, "response", None)
    original: Callable[[], object] | None = getattr(response, "close", None)
    if original is None:
        return

    def close() -> None:
        try:
            original()
        finally:
            recorder.response_closed()

    try:
        response.close = close  # type: ignore[union-attr]
    except Exception:  # a response that takes no attribute: closing it is not seen
        logger.debug("cannot watch a stream's response", exc_info=True)


def _watch_aclose(stream: object, recorder: Recorder[Any]) -> None:
    response = getattr(stream, "response", None)
    original: Callable[[], Awaitable[object]] | None = getattr(response, "aclose", None)
    if original is None:
        return

    async def aclose() -> None:
        try:
            await original()
        finally:
            recorder.response_closed()

    try:
        response.aclose = aclose  # type: ignore[union-attr]
    except Exception:
        logger.debug("cannot watch a stream's response", exc_info=True)


class _Delegating:
    """Attribute access and repr go to the wrapped SDK stream (kept in `_lps_stream`)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_lps_stream"], name)

    def __setattr__(self, name: str, value: object) -> None:
        setattr(self.__dict__["_lps_stream"], name, value)

    def __repr__(self) -> str:
        return f"<traced {self.__dict__['_lps_stream']!r}>"


class TracedStream(_Delegating, openai.Stream[_T]):
    """The caller's `openai.Stream`, observed: same chunks, same attributes, one span end."""

    def __init__(self, stream: openai.Stream[_T], recorder: Recorder[_T]):
        # The real stream does all the work; nothing of Stream.__init__ is needed here.
        self.__dict__["_lps_stream"] = stream
        self.__dict__["_lps_recorder"] = recorder
        _watch_close(stream, recorder)

    def __iter__(self) -> Iterator[_T]:
        return self

    def __next__(self) -> _T:
        recorder: Recorder[_T] = self.__dict__["_lps_recorder"]
        recorder.reading = True
        try:
            chunk: _T = next(self.__dict__["_lps_stream"])
        except StopIteration:
            recorder.end(completed=True)
            raise
        except BaseException as exc:
            recorder.fail(exc)
            raise
        finally:
            recorder.reading = False
        recorder.chunk(chunk)
        return chunk

    def __enter__(self) -> TracedStream[_T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.__dict__["_lps_recorder"].fail(exc)
        self.close()

    def close(self) -> None:
        """Close the real stream; the span ends now unless it already has."""
        try:
            self.__dict__["_lps_stream"].close()
        finally:
            self.__dict__["_lps_recorder"].end(completed=False)

    def __del__(self) -> None:
        recorder = self.__dict__.get("_lps_recorder")
        if recorder is not None and not recorder.call.ended:
            recorder.end(completed=False)


class TracedAsyncStream(_Delegating, openai.AsyncStream[_T]):
    """The caller's `openai.AsyncStream`, observed: same chunks, same attributes, one span end."""

    def __init__(self, stream: openai.AsyncStream[_T], recorder: Recorder[_T]) -> None:
        self.__dict__["_lps_stream"] = stream
        self.__dict__["_lps_recorder"] = recorder
        _watch_aclose(stream, recorder)

    def __aiter__(self) -> TracedAsyncStream[_T]:
        return self

    async def __anext__(self) -> _T:
        recorder: Recorder[_T] = self.__dict__["_lps_recorder"]
        recorder.reading = True
        try:
            chunk: _T = await self.__dict__["_lps_stream"].__anext__()
        except StopAsyncIteration:
            recorder.end(completed=True)
            raise
        except BaseException as exc:
            recorder.fail(exc)
            raise
        finally:
            recorder.reading = False
        recorder.chunk(chunk)
        return chunk

    async def __aenter__(self) -> TracedAsyncStream[_T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.__dict__["_lps_recorder"].fail(exc)
        await self.close()

    async def close(self) -> None:
        """Close the real stream; the span ends now unless it already has."""
        try:
            await self.__dict__["_lps_stream"].close()
        finally:
            self.__dict__["_lps_recorder"].end(completed=False)

    async def aclose(self) -> None:
        """Alias of `close()`, as on `openai.AsyncStream`."""
        await self.close()

    def __del__(self) -> None:
        recorder = self.__dict__.get("_lps_recorder")
        if recorder is not None and not recorder.call.ended:
            recorder.end(completed=False)
