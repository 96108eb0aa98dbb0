"""Logprob telemetry for LangChain chat models: attach one callback handler.

```python
from langchain_openai import ChatOpenAI
from logprobscope.langchain import LogprobsCallbackHandler

handler = LogprobsCallbackHandler()          # global tracer/meter providers by default
model = ChatOpenAI(model="gpt-4o", logprobs=True, top_logprobs=3, callbacks=[handler])
model.invoke("how are you today?")          # or stream, ainvoke, astream, batch, in chains
```

Each chat model run (`invoke`, `stream`, `ainvoke`, `astream`, each input of `batch`/`abatch`,
each call from inside a chain or agent) emits what `logprobscope.ChatOpenAI` with the
OpenTelemetry handler emits for the same completion (the logprobscope telemetry contract): one
`chat {model}` CLIENT span, child of the OpenTelemetry span current when LangChain starts the run
(`on_chat_model_start`), with the GenAI request/response attributes and the logprob summary
attributes set when the run ends; one span event per token (or the mode chosen); and the
`logprobs.*` and `gen_ai.client.*` metrics.

Where the tokens come from:

- streamed runs (`stream`, `astream`, or a model with `streaming=True`): the logprobs of every
  chunk LangChain hands `on_llm_new_token` (`chunk.generation_info["logprobs"]`: its `content`
  and its `refusal` tokens, the latter in events marked `logprobs.token.channel = "refusal"`),
  as they arrive, so span events carry each chunk's arrival time. Chunks are never merged here.
- non-streamed runs: the logprobs of the final generation handed to `on_llm_end`.

With content capture, `gen_ai.output.messages` holds the answer's text, its refusal (from the
message's `additional_kwargs["refusal"]`, which langchain-openai fills for non-streamed runs
only) and its tool calls (their argument text as the model wrote it where LangChain keeps it).

Response id, model, finish reasons and token usage come from the `LLMResult` (`llm_output`,
the generation's `generation_info`, the message's `response_metadata` and `usage_metadata`).
langchain-openai does not keep the response id of a streamed call, so such spans have no
`gen_ai.response.id`; usage on streams needs `stream_usage=True` on the model.

A stream left early (`break`, closed) ends its span with `logprobs.stream.completed = false`;
any other `on_llm_error` ends it with status ERROR and `error.type` (the class the caller sees:
langchain-openai re-raises the SDK's errors as its own subclasses, e.g. `OpenAIAPIError`).

LangChain does not say in `on_chat_model_start` whether a run will stream (its invocation
parameters say `stream: False` for `stream()` too). The span, started right then so that its
start and duration are the run's, takes `gen_ai.request.stream` from the model's `streaming`
flag or from whether the run comes from `BaseChatModel.stream`/`astream`. A run that streams
without either (`invoke` under `astream_events`, for instance) still gets every token with its
arrival time, but is labelled not streamed.

One handler serves any number of concurrent runs (threads, tasks), keyed by LangChain's run id.
Its hooks never raise into LangChain. While it records a run, the `openai` call LangChain makes
for it is left alone by `logprobscope.instrument` (one record per call).

Next to OpenTelemetry's LangChain instrumentation (`opentelemetry-instrumentation-genai-langchain`,
instrumented), no span is started: each run's telemetry goes on the span that instrumentation
made for the run, found by run id at the run's first chunk or end (its span exists only after
its own start hook, which LangChain calls after ours when ours comes first, as
`LangChainInstrumentor` puts it); that span's end is its owner's. Next to OpenTelemetry's OpenAI
instrumentation, whose span is current around the `openai` call, the raw-client patch of
`logprobscope.instrument` (if instrumented for all clients) records the run on that span and
this handler stands aside. Attached after the LangChain instrumentation's handler, ours still
records, but a non-streamed run's tokens, which arrive with the end, may come after that span
ended.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any, Final
from uuid import UUID

from opentelemetry import context as otel_context
from opentelemetry.trace import Span
from typing_extensions import Unpack

try:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import ChatGeneration, LLMResult
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "logprobscope.langchain needs langchain-core; install the extra: "
        "pip install 'logprobscope[langchain]'"
    ) from exc

from ._endpoint import server_address_port
from ._neighbours import (
    claim_langchain_run,
    langchain_run_span,
    official_langchain_active,
    official_openai_active,
)
from .otel import CallTelemetry, LogprobTelemetry, ResponseFacts, TelemetryKwargs

__all__ = ["LogprobsCallbackHandler"]

logger = logging.getLogger("logprobscope")

# Invocation parameters LangChain adds that are not part of the request body.
_NOT_BODY: Final = frozenset({"_type", "model_name", "stream", "stop"})
_ROLES: Final = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
_DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"
_CHAT_MODELS_MODULE: Final = "langchain_core.language_models.chat_models"
_STACK_DEPTH: Final = 32


def _logprobs_of(info: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    # OpenAI's choice `logprobs` object ({"content": [...], "refusal": [...]}), if any tokens.
    logprobs = info.get("logprobs") if info else None
    if isinstance(logprobs, Mapping) and (logprobs.get("content") or logprobs.get("refusal")):
        return logprobs
    return None


def _tool_calls(message: object) -> list[dict[str, object]] | None:
    # The wire shape: langchain-openai keeps the raw calls of a non-streamed answer in
    # additional_kwargs; a stream's aggregate has the argument text in its chunks.
    kwargs = getattr(message, "additional_kwargs", None) or {}
    raw = kwargs.get("tool_calls") if isinstance(kwargs, Mapping) else None
    if isinstance(raw, list) and raw:
        return [dict(c) for c in raw if isinstance(c, Mapping)] or None
    chunks = getattr(message, "tool_call_chunks", None) or []
    if chunks:
        return [
            {
                "id": c.get("id"),
                "type": "function",
                "function": {"name": c.get("name"), "arguments": c.get("args") or ""},
            }
            for c in chunks
        ]
    calls = getattr(message, "tool_calls", None) or []
    out: list[dict[str, object]] = [
        {
            "id": c.get("id"),
            "type": "function",
            "function": {"name": c.get("name"), "arguments": json.dumps(c.get("args") or {})},
        }
        for c in calls
    ]
    return out or None


def _server(serialized: Mapping[str, Any] | None) -> tuple[str | None, int | None]:
    # langchain-openai serializes its base URL as kwargs.openai_api_base when one is set.
    kwargs = serialized.get("kwargs") if isinstance(serialized, Mapping) else None
    base = kwargs.get("openai_api_base") if isinstance(kwargs, Mapping) else None
    if not isinstance(base, str) or not base:
        ids = serialized.get("id") if isinstance(serialized, Mapping) else None
        if not (isinstance(ids, list) and ids and ids[-1] == "ChatOpenAI"):
            return None, None
        base = os.environ.get("OPENAI_BASE_URL") or _DEFAULT_BASE_URL
    return server_address_port(base)


def _model_name(invocation: Mapping[str, Any], metadata: Mapping[str, Any] | None) -> str:
    for value in (
        invocation.get("model"),
        invocation.get("model_name"),
        (metadata or {}).get("ls_model_name"),
    ):
        if isinstance(value, str) and value:
            return value
    return ""


def _streaming_call() -> bool:
    # Whether the nearest LangChain chat model entry point on the stack is stream()/astream()
    # (through awaits too: a running coroutine's frame links to the one awaiting it).
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_STACK_DEPTH):
        if frame is None:
            break
        if frame.f_globals.get("__name__") == _CHAT_MODELS_MODULE:
            name = frame.f_code.co_name
            if name in ("stream", "astream"):
                return True
            if name in ("generate", "agenerate"):
                return False
        frame = frame.f_back
    return False


def _openai_messages(messages: Sequence[BaseMessage]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for message in messages:
        role = _ROLES.get(message.type) or str(getattr(message, "role", message.type))
        out.append({"role": role, "content": message.content})
    return out


class _Run:
    """One chat model run: its telemetry and what its chunks said so far.

    The telemetry starts with the run, or, next to another instrumentation that makes the
    run's span later, at the run's first chunk or end (`start`, given that span or None),
    unless the `openai` call's instrumentation took the run over first (`hand_over`).
    """

    __slots__ = (
        "_call",
        "_start",
        "run_id",
        "done",
        "handed_over",
        "stream",
        "streamed",
        "response_model",
        "finish",
        "texts",
        "__weakref__",
    )

    def __init__(
        self,
        call: CallTelemetry | None,
        stream: bool,
        capture: bool,
        *,
        run_id: UUID | None = None,
        start: Callable[[Span | None], CallTelemetry] | None = None,
    ) -> None:
        self._call = call
        self._start = start
        self.run_id = run_id
        self.done = False  # ended: it no longer claims the openai call under it
        self.handed_over = False  # recorded by the openai call's instrumentation instead
        self.stream = stream
        self.streamed = False  # tokens came through on_llm_new_token
        self.response_model: str | None = None
        self.finish: str | None = None
        self.texts: list[str] | None = [] if capture else None

    def hand_over(self) -> bool:
        """Leave the run to the openai call's instrumentation, if ours has not started."""
        if self._call is not None or self._start is None:
            return False
        self._start = None
        self.handed_over = True
        self._call = CallTelemetry._disabled()
        return True

    @property
    def call(self) -> CallTelemetry:
        """The run's telemetry, started now if it was deferred."""
        call = self._call
        if call is None:
            start, self._start = self._start, None
            span = langchain_run_span(self.run_id) if self.run_id is not None else None
            call = self._call = start(span) if start is not None else CallTelemetry._disabled()
        return call

    def add(self, logprobs: object, time_ns: int) -> None:
        # On a streamed call every add is one chunk's arrival, with tokens or without.
        # The entries are LangChain's decoded JSON; anything malformed is the core's to skip.
        content = refusal = None
        if isinstance(logprobs, Mapping):
            content, refusal = logprobs.get("content"), logprobs.get("refusal")
        entries = content if isinstance(content, Sequence) else ()
        refused = refusal if isinstance(refusal, Sequence) and refusal else None
        if entries or refused is None:
            self.call.add_tokens(entries, time_ns=time_ns)
        if refused is not None:
            self.call.add_tokens(refused, time_ns=time_ns, channel="refusal", new_chunk=not entries)


class LogprobsCallbackHandler(BaseCallbackHandler):
    """A LangChain callback handler that turns chat model runs into logprob telemetry.

    Attach it to a chat model (`ChatOpenAI(..., callbacks=[handler])`), to one call
    (`config={"callbacks": [handler]}`), or to a chain; every chat model run it sees emits one
    `chat {model}` span with logprob events and summary attributes, and the logprob and GenAI
    metrics, exactly as `logprobscope.ChatOpenAI` with `OpenTelemetryCallbackHandler` does
    (see the module's docstring for what, when, and from where).

    Args:
        telemetry: the `logprobscope.otel.LogprobTelemetry` to record into (it may be shared
            with other entry points); when None, one is made from the options.
        **options: the `logprobscope.otel.TelemetryOptions` (tracer_provider,
            meter_provider, capture_content, events, low_confidence_threshold), when
            `telemetry` is None.

    Raises:
        TypeError: both `telemetry` and options.
        ValueError: invalid options.

    LangChain calls the hooks of sync runs in the caller's thread, and, since `run_inline` is
    set, those of async runs in the caller's task: the parent span is the caller's.
    """

    run_inline = True  # async runs: call the hooks in the caller's task, not in an executor
    raise_error = False

    def __init__(
        self, *, telemetry: LogprobTelemetry | None = None, **options: Unpack[TelemetryKwargs]
    ) -> None:
        self.telemetry = LogprobTelemetry.shared_or_new(telemetry, **options)
        # Keyed by run id: get/set/pop of distinct keys are atomic, no lock is needed.
        self._runs: dict[UUID, _Run] = {}

    @property
    def active_calls(self) -> int:
        """Runs started and not ended yet (zero once every run has ended)."""
        return len(self._runs)

    # Chains, agents, retrievers and custom events are not recorded: LangChain skips us there.
    @property
    def ignore_chain(self) -> bool:
        """Chain events are not recorded."""
        return True

    @property
    def ignore_agent(self) -> bool:
        """Agent events are not recorded."""
        return True

    @property
    def ignore_retriever(self) -> bool:
        """Retriever events are not recorded."""
        return True

    @property
    def ignore_custom_event(self) -> bool:
        """Custom events are not recorded."""
        return True

    # -- hooks -----------------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Start the run's span, child of the current OpenTelemetry span, with the request."""
        try:
            invocation = kwargs.get("invocation_params") or {}
            stream = invocation.get("stream") is True or _streaming_call()
            params = {k: v for k, v in invocation.items() if k not in _NOT_BODY and v is not None}
            params["stream"] = stream
            telemetry = self.telemetry
            capture = telemetry.capture_content
            host, port = _server(serialized)
            start = functools.partial(
                telemetry.start_call,
                model=_model_name(invocation, metadata),
                stream=stream,
                params=params,
                server_address=host,
                server_port=port,
                input_messages=_openai_messages(messages[0]) if capture and messages else None,
                context=otel_context.get_current(),
                start_time_ns=time.time_ns(),
            )
            if official_langchain_active() or official_openai_active():
                # Another instrumentation makes this run's span later: its LangChain one in
                # its own hook, after this one (ours starts on it at the first chunk or the
                # end), or its OpenAI one around the openai call (our raw-client patch, if
                # instrumented, then records the run there and this handler stands aside).
                run = _Run(None, stream, capture, run_id=run_id, start=lambda s: start(span=s))
            else:
                run = _Run(start(), stream, capture)
            self._runs[run_id] = run
            claim_langchain_run(run)
        except Exception:
            logger.warning("LangChain handler: on_chat_model_start failed", exc_info=True)

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: Any = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a streamed chunk: its arrival, its tokens' logprobs, its finish reason."""
        run = self._runs.get(run_id)
        if run is None:
            return
        try:
            now = time.time_ns()
            message = getattr(chunk, "message", None)
            info = getattr(chunk, "generation_info", None)
            if (
                not info
                and message is not None
                and getattr(message, "chunk_position", None) == "last"
                and not token
                and getattr(message, "usage_metadata", None) is None
            ):
                return  # LangChain's own closing chunk, not one from the server
            run.streamed = True
            if not info and message is not None:
                info = message.response_metadata
            info = info or {}
            run.add(info.get("logprobs"), now)
            finish = info.get("finish_reason")
            if finish:
                run.finish = finish
                run.response_model = info.get("model_name") or run.response_model
            if run.texts is not None and isinstance(token, str) and token:
                run.texts.append(token)
        except Exception:
            logger.debug("LangChain handler: on_llm_new_token failed", exc_info=True)

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """End the run's span: the tokens of a non-streamed run, the response, the summary."""
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        run.done = True
        try:
            self._respond(run, response, add_tokens=not run.streamed)
        except Exception:
            logger.warning("LangChain handler: on_llm_end failed", exc_info=True)
        finally:
            run.call.end(completed=True if run.stream else None)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """End the run's span: a stream left early (`GeneratorExit`), or failed with `error`."""
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        run.done = True
        try:
            response = kwargs.get("response")
            self._respond(run, response if isinstance(response, LLMResult) else None)
        except Exception:
            logger.debug("LangChain handler: on_llm_error failed", exc_info=True)
        finally:
            if isinstance(error, GeneratorExit):
                # The caller stopped reading (break, close, garbage collection): not an error.
                run.call.end(completed=False if run.stream else None)
            else:
                run.call.fail(error)

    # -- internals ---------------------------------------------------------------------------

    def _respond(self, run: _Run, response: LLMResult | None, *, add_tokens: bool = False) -> None:
        llm_output: Mapping[str, Any] = {}
        generations: Sequence[Any] = ()
        if response is not None:
            llm_output = response.llm_output or {}
            if response.generations:
                generations = response.generations[0]
        first = generations[0] if generations else None
        info: Mapping[str, Any] = (first.generation_info or {}) if first is not None else {}
        metadata: Mapping[str, Any] = {}
        usage: Mapping[str, Any] | None = None
        if isinstance(first, ChatGeneration):
            metadata = first.message.response_metadata or {}
            usage = getattr(first.message, "usage_metadata", None)
        if add_tokens:
            logprobs = _logprobs_of(info) or _logprobs_of(metadata)
            if logprobs:
                run.add(logprobs, time.time_ns())
        finish = [
            reason
            for reason in ((g.generation_info or {}).get("finish_reason") for g in generations)
            if isinstance(reason, str) and reason
        ]
        if not finish:
            reason = metadata.get("finish_reason") or run.finish
            finish = [reason] if isinstance(reason, str) and reason else []
        input_tokens = output_tokens = None
        if usage:
            input_tokens = usage.get("input_tokens")
            output_tokens = usage.get("output_tokens")
        else:
            token_usage = llm_output.get("token_usage") or metadata.get("token_usage")
            if isinstance(token_usage, Mapping):
                input_tokens = token_usage.get("prompt_tokens")
                output_tokens = token_usage.get("completion_tokens")
        text = refusal = None
        calls: list[dict[str, object]] | None = None
        if run.texts is not None:
            if run.streamed:
                text = "".join(run.texts)
            elif first is not None:
                text = first.text
            message = getattr(first, "message", None)
            kwargs = getattr(message, "additional_kwargs", None) or {}
            found = kwargs.get("refusal") if isinstance(kwargs, Mapping) else None
            refusal = found if isinstance(found, str) else None
            calls = _tool_calls(message)
        model = llm_output.get("model_name") or metadata.get("model_name") or run.response_model
        response_id = llm_output.get("id") or metadata.get("id")
        run.call.set_response(
            ResponseFacts(
                id=response_id if isinstance(response_id, str) else None,
                model=model if isinstance(model, str) else None,
                finish_reasons=finish or None,
                input_tokens=input_tokens if isinstance(input_tokens, int) else None,
                output_tokens=output_tokens if isinstance(output_tokens, int) else None,
                output_text=text,
                output_refusal=refusal,
                output_tool_calls=calls,
            )
        )
