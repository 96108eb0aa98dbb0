"""`instrument_openai`'s streams: the caller's `openai.Stream`, observed chunk by chunk.

The proxy is still an `openai.Stream` (or `openai.AsyncStream`): it yields the SDK's own
chunks and forwards every other attribute to the real stream. Each chunk's tokens and
arrival go to the call as the caller's loop receives it. The call ends exactly once: when
the stream is exhausted (completed); when it is closed, left through its context manager or
collected unclosed (not completed); or when it fails (recorded; the exception propagates).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

import openai
from openai.types.chat import ChatCompletionChunk, ChatCompletionTokenLogprob

from .otel import CallTelemetry, ResponseFacts

__all__ = ["StreamRecorder", "TracedAsyncStream", "TracedStream"]

logger = logging.getLogger("logprobscope")


class StreamRecorder:
    """Feeds one stream's chunks to its call and ends the call exactly once."""

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


class TracedStream(openai.Stream[ChatCompletionChunk]):
    """The caller's `openai.Stream`, observed: same chunks, same attributes, one span end."""

    def __init__(self, stream: openai.Stream[ChatCompletionChunk], recorder: StreamRecorder):
        # The real stream does all the work; nothing of Stream.__init__ is needed here.
        self.__dict__["_lps_stream"] = stream
        self.__dict__["_lps_recorder"] = recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_lps_stream"], name)

    def __setattr__(self, name: str, value: object) -> None:
        setattr(self.__dict__["_lps_stream"], name, value)

    def __repr__(self) -> str:
        return f"<traced {self.__dict__['_lps_stream']!r}>"

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        return self

    def __next__(self) -> ChatCompletionChunk:
        try:
            chunk: ChatCompletionChunk = next(self.__dict__["_lps_stream"])
        except StopIteration:
            self.__dict__["_lps_recorder"].end(completed=True)
            raise
        except BaseException as exc:
            self.__dict__["_lps_recorder"].fail(exc)
            raise
        self.__dict__["_lps_recorder"].chunk(chunk)
        return chunk

    def __enter__(self) -> TracedStream:
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


class TracedAsyncStream(openai.AsyncStream[ChatCompletionChunk]):
    """The caller's `openai.AsyncStream`, observed: same chunks, same attributes, one span end."""

    def __init__(
        self, stream: openai.AsyncStream[ChatCompletionChunk], recorder: StreamRecorder
    ) -> None:
        self.__dict__["_lps_stream"] = stream
        self.__dict__["_lps_recorder"] = recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_lps_stream"], name)

    def __setattr__(self, name: str, value: object) -> None:
        setattr(self.__dict__["_lps_stream"], name, value)

    def __repr__(self) -> str:
        return f"<traced {self.__dict__['_lps_stream']!r}>"

    def __aiter__(self) -> TracedAsyncStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        try:
            chunk: ChatCompletionChunk = await self.__dict__["_lps_stream"].__anext__()
        except StopAsyncIteration:
            self.__dict__["_lps_recorder"].end(completed=True)
            raise
        except BaseException as exc:
            self.__dict__["_lps_recorder"].fail(exc)
            raise
        self.__dict__["_lps_recorder"].chunk(chunk)
        return chunk

    async def __aenter__(self) -> TracedAsyncStream:
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
