"""Logprob telemetry for a raw `openai` client: one line, no change to the calling code.

```python
import openai
from logprobscope.instrument import instrument_openai

client = openai.OpenAI()
instrument_openai(client)            # this client only; instrument_openai() patches all clients
client.chat.completions.create(model="gpt-4o", messages=[...], logprobs=True, top_logprobs=3)
```

Every `chat.completions.create` and `chat.completions.parse` call (the SDK's structured-output
helper), sync or async, streamed or not, then emits the spans, span events and metrics of the
logprobscope telemetry contract (the same as `logprobscope.ChatOpenAI` with the OpenTelemetry
handler): one `chat {model}` CLIENT span, child of the span current when the call is made, with
the logprob summary attributes set when the call ends, one event per token (or the mode
chosen), and the `logprobs.*` and `gen_ai.client.*` metrics.

What is recorded comes from the SDK's own results: every choice's `logprobs.content` and
`logprobs.refusal` of a `ChatCompletion` (a `ParsedChatCompletion` too); for `stream=True`, the
logprobs of every `ChatCompletionChunk` as the caller's loop receives it. Choice 0's content
makes the summary and the metrics, its refusal the `logprobs.refusal.*` summary; the tokens of
other choices (`n` > 1) go to events marked with their choice index, counted in
`logprobs.other_choices.token_count`; every choice's finish reason is recorded. With content
capture, `gen_ai.output.messages` holds choice 0's text, refusal and tool calls.

The caller gets the SDK's objects unchanged: a `ChatCompletion` or `ParsedChatCompletion` is
returned as it is (its `parsed` object untouched), and a stream is returned as a proxy (still
an `openai.Stream` / `openai.AsyncStream`) that yields the SDK's own chunks and forwards every
other attribute (`response`, `close`, ...) to the real stream. Its span ends exactly once, at
once, however the stream ends: exhausted; closed (`close()`, `aclose()`, its context manager,
`stream.response.close()`, the `chat.completions.stream()` helper's `with` block or its
`close()`); garbage-collected unclosed (these with `logprobs.stream.completed = false`); or
failed. Exceptions (from the API, the network, the caller's code inside `with stream:`, a
cancelled task) end the span with status ERROR and `error.type`, and propagate unchanged. When
`parse()` raises because the answer was cut (`LengthFinishReasonError`) or filtered
(`ContentFilterFinishReasonError`), the completion the error carries is recorded first.

Also traced: `with_raw_response.create` and `with_raw_response.parse` without `stream=True`
(the SDK's own, cached `parse()` of the returned response is read, so the caller's `parse()`
gets that same object), and the SDK's `chat.completions.stream()` helper (it calls `create`).
Not traced, passed through untouched: `with_streaming_response` calls and
`with_raw_response.create(stream=True)` (the caller reads the HTTP body itself), and the calls
of `logprobscope.ChatOpenAI` (its OpenTelemetry handler traces those).

A LangChain `ChatOpenAI` calls `create` on its own client too, so instrumenting all clients
covers it; where `logprobscope.langchain.LogprobsCallbackHandler` records the LangChain run (the
handler attached, or `LangChainInstrumentor`), the `create` call under it is left to the
handler: each call is recorded once.

Next to other instrumentations: instrumenting all clients puts our wrappers innermost, under any
wrapper (wrapt proxy) another instrumentation already has on `create` or `parse`; one added
later wraps over ours. When `create` is called with another instrumentation's chat span current
(such as OpenTelemetry's `opentelemetry-instrumentation-genai-openai`, whose span is current
around the call and around each read of its stream), no span is started: the logprob attributes,
events and `logprobs.*` metrics go on that span, which its owner ends (see
`LogprobTelemetry.start_call(span=...)`). Uninstrumenting takes out our wrapper only; under
another's plain-function wrapper, where it cannot be taken out, it stays and passes calls
through. A client instrumented on its own (`instrument_openai(client)`) is wrapped on the
object, outside any class-level wrapper: next to another instrumentation, instrument all clients
instead.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any, Final, cast

import openai
from openai._legacy_response import LegacyAPIResponse
from openai.resources.chat.completions import AsyncCompletions, Completions
from openai.types.chat import ChatCompletion
from pydantic import BaseModel
from typing_extensions import Unpack

from ._endpoint import server_address_port
from ._neighbours import claimed_langchain_run, current_chat_span
from ._patching import below_proxies, remove_layer
from ._structured import response_format_param
from ._traced_stream import StreamRecorder, TracedAsyncStream, TracedStream
from .otel import CallTelemetry, LogprobTelemetry, ResponseFacts, TelemetryKwargs

__all__ = ["instrument_openai", "uninstrument_openai"]

logger = logging.getLogger("logprobscope")

_METHODS: Final = ("create", "parse")
_MARK: Final = "__logprobscope_instrumentation__"
_RAW_RESPONSE_HEADER: Final = "X-Stainless-Raw-Response"
_STACK_DEPTH: Final = 8
# Arguments of `create` that are not part of the request body.
_NOT_BODY: Final = frozenset({"messages", "extra_headers", "extra_query", "extra_body", "timeout"})
# Set while a traced `create` runs, so a client wrapper over the patched class (or any nested
# call) does not trace the same call twice.
_IN_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "logprobscope_instrument_in_call", default=False
)
_LOCK = threading.Lock()


class _State:
    """What one instrumentation (of a client, or of the classes) records into."""

    __slots__ = ("telemetry", "active")

    def __init__(self, telemetry: LogprobTelemetry) -> None:
        self.telemetry = telemetry
        self.active = True  # False: uninstrumented, but our layer could not be taken out


# Per patched method of a class: our layer, what it calls, and its state.
_CLASS_LAYERS: dict[tuple[type, str], tuple[object, object, _State]] = {}


# -- what the calls send and receive --------------------------------------------------------


def _raw_mode(kwargs: Mapping[str, object]) -> object:
    # with_raw_response marks its calls with this header ("true"), with_streaming_response
    # with "stream"; plain calls have none.
    headers = kwargs.get("extra_headers")
    return headers.get(_RAW_RESPONSE_HEADER) if isinstance(headers, Mapping) else None


def _from_logprobscope(depth: int) -> bool:
    # logprobscope.ChatOpenAI reads the responses' bytes itself and its telemetry comes from
    # its own handlers: its calls (directly or through the SDK's raw-response wrappers) are
    # passed through. The first caller outside the openai package tells.
    try:
        frame: FrameType | None = sys._getframe(depth + 1)
    except ValueError:
        return False
    for _ in range(_STACK_DEPTH):
        if frame is None:
            return False
        name = frame.f_globals.get("__name__", "")
        if not isinstance(name, str):
            return False
        if name != "openai" and not name.startswith("openai."):
            return name.startswith("logprobscope._")
        frame = frame.f_back
    return False


def _server(resource: object) -> tuple[str | None, int | None]:
    try:
        return server_address_port(resource._client.base_url)  # type: ignore[attr-defined]
    except Exception:  # an unusual client: the attributes are optional
        return None, None


def _params(kwargs: Mapping[str, object]) -> dict[str, object]:
    # The request body without the messages, as the API receives it.
    params = {k: v for k, v in kwargs.items() if k not in _NOT_BODY and _given(v)}
    extra = kwargs.get("extra_body")
    if isinstance(extra, Mapping):
        params.update((str(k), v) for k, v in extra.items())
    schema = params.get("response_format")
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:  # parse(response_format=Model) sends the model's strict schema
            params["response_format"] = response_format_param(schema)
        except Exception:
            del params["response_format"]
    return params


def _given(value: object) -> bool:
    # The SDK's sentinels for "not given" are falsy instances of NotGiven / Omit.
    return not isinstance(value, (openai.NotGiven, openai.Omit))


def _record_completion(call: CallTelemetry, completion: ChatCompletion, capture: bool) -> None:
    now = time.time_ns()
    choices = completion.choices
    output: ResponseFacts = ResponseFacts()
    for choice in choices:
        logprobs = choice.logprobs
        index = choice.index
        if logprobs is not None:
            # The SDK's entries are token-like (token, logprob, bytes, top_logprobs).
            if logprobs.content:
                call.add_tokens(logprobs.content, time_ns=now, choice=index)
            if logprobs.refusal:
                call.add_tokens(logprobs.refusal, time_ns=now, channel="refusal", choice=index)
        if capture and index == 0:
            message = choice.message
            calls = [
                c.model_dump(include={"id", "type", "function"}) for c in message.tool_calls or []
            ]
            output = ResponseFacts(
                output_text=message.content,
                output_refusal=message.refusal,
                output_tool_calls=calls or None,
            )
    usage = completion.usage
    call.set_response(
        ResponseFacts(
            id=completion.id,
            model=completion.model,
            finish_reasons=[c.finish_reason for c in choices if c.finish_reason],
            input_tokens=usage.prompt_tokens if usage is not None else None,
            output_tokens=usage.completion_tokens if usage is not None else None,
            output_text=output.output_text,
            output_refusal=output.output_refusal,
            output_tool_calls=output.output_tool_calls,
        )
    )


def _carried_completion(error: BaseException) -> ChatCompletion | None:
    # parse() raises these with the completion it could not parse: its tokens are kept.
    if isinstance(error, (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError)):
        completion = error.completion
        return completion if isinstance(completion, ChatCompletion) else None
    return None


def _fail(call: CallTelemetry, error: BaseException, capture: bool) -> None:
    try:
        completion = _carried_completion(error)
        if completion is not None:
            _record_completion(call, completion, capture)
    except Exception:  # telemetry never breaks the call
        logger.debug("recording a failed call's completion failed", exc_info=True)
    call.fail(error)


# -- the wrapped calls -------------------------------------------------------------------------


def _start(
    state: _State, resource: object, kwargs: Mapping[str, object]
) -> tuple[CallTelemetry, bool]:
    host, port = _server(resource)
    telemetry = state.telemetry
    messages = kwargs.get("messages")
    # Another instrumentation's span for this call, current around it (ours runs innermost,
    # inside theirs): the call is recorded on it instead of a span of ours.
    call = telemetry.start_call(
        span=current_chat_span(),
        model=str(kwargs.get("model", "")),
        stream=kwargs.get("stream") is True,
        params=_params(kwargs),
        provider="openai",
        server_address=host,
        server_port=port,
        input_messages=messages if isinstance(messages, Sequence) else None,
    )
    return call, telemetry.capture_content


def _finish(call: CallTelemetry, result: object, capture: bool) -> object:
    try:
        if isinstance(result, openai.Stream):
            return TracedStream(result, StreamRecorder(call, capture))
        if isinstance(result, openai.AsyncStream):
            return TracedAsyncStream(result, StreamRecorder(call, capture))
        completion = result
        if isinstance(result, LegacyAPIResponse):
            # with_raw_response: the SDK's own parse, cached, so the caller's later parse()
            # returns this very object (and raises what it raises: the call failed so).
            try:
                completion = result.parse()
            except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as exc:
                _fail(call, exc, capture)
                return result
        if isinstance(completion, ChatCompletion):
            _record_completion(call, completion, capture)
    except Exception:  # telemetry never breaks the call
        logger.debug("recording a chat completion failed", exc_info=True)
    call.end(completed=None)
    return result


def _traced_sync(
    state: _State, resource: object, create: Callable[..., object], args: Any, kwargs: Any
) -> object:
    call, capture = _start(state, resource, kwargs)
    token = _IN_CALL.set(True)
    try:
        result = create(*args, **kwargs)
    except BaseException as exc:
        _fail(call, exc, capture)
        raise
    finally:
        _IN_CALL.reset(token)
    return _finish(call, result, capture)


async def _traced_async(
    state: _State, resource: object, create: Callable[..., Any], args: Any, kwargs: Any
) -> object:
    call, capture = _start(state, resource, kwargs)
    token = _IN_CALL.set(True)
    try:
        result = await create(*args, **kwargs)
    except BaseException as exc:
        _fail(call, exc, capture)
        raise
    finally:
        _IN_CALL.reset(token)
    return _finish(call, result, capture)


def _passes_through(state: _State, kwargs: Mapping[str, object]) -> bool:
    if _IN_CALL.get() or not state.active:
        return True
    run = claimed_langchain_run()
    if run is not None:
        # Our LangChain handler records this call, unless another instrumentation made a span
        # for it, current now, and the handler has not started: then we record on that span.
        return current_chat_span() is None or not run.hand_over()
    raw = _raw_mode(kwargs)
    if raw is not None and (raw != "true" or kwargs.get("stream") is True):
        return True  # with_streaming_response, or a raw stream: the caller reads the bytes
    return _from_logprobscope(2)  # depth 2: the caller of the wrapper that called us


def _class_wrapper(original: Callable[..., Any], state: _State, is_async: bool) -> Any:
    if is_async:

        @functools.wraps(original)
        async def acreate(self: AsyncCompletions, *args: Any, **kwargs: Any) -> Any:
            if _passes_through(state, kwargs):
                return await original(self, *args, **kwargs)
            return await _traced_async(state, self, functools.partial(original, self), args, kwargs)

        wrapper: Any = acreate
    else:

        @functools.wraps(original)
        def create(self: Completions, *args: Any, **kwargs: Any) -> Any:
            if _passes_through(state, kwargs):
                return original(self, *args, **kwargs)
            return _traced_sync(state, self, functools.partial(original, self), args, kwargs)

        wrapper = create
    setattr(wrapper, _MARK, state)
    return wrapper


def _instance_wrapper(
    resource: Completions | AsyncCompletions, original: Callable[..., Any], state: _State
) -> Any:
    if isinstance(resource, AsyncCompletions):

        @functools.wraps(original)
        async def acreate(*args: Any, **kwargs: Any) -> Any:
            if _passes_through(state, kwargs):
                return await original(*args, **kwargs)
            return await _traced_async(state, resource, original, args, kwargs)

        wrapper: Any = acreate
    else:

        @functools.wraps(original)
        def create(*args: Any, **kwargs: Any) -> Any:
            if _passes_through(state, kwargs):
                return original(*args, **kwargs)
            return _traced_sync(state, resource, original, args, kwargs)

        wrapper = create
    setattr(wrapper, _MARK, state)
    return wrapper


def _reachable(cls: type, name: str, layer: object) -> bool:
    node: object = cls.__dict__[name]
    for _ in range(16):
        if node is layer:
            return True
        node = getattr(node, "__wrapped__", None)
        if node is None:
            return False
    return False


def _instrument_class(cls: type, name: str, state: _State, is_async: bool) -> None:
    # Innermost: under any other instrumentation's proxy (wrapt) already there, next to the
    # SDK's function; one patching later wraps over us. Either way their span is current
    # when ours runs, and ours can record on it.
    known = _CLASS_LAYERS.get((cls, name))
    if known is not None and _reachable(cls, name, known[0]):
        known[2].telemetry = state.telemetry
        known[2].active = True
        return
    holder, inner = below_proxies(cls, name)
    ours = _class_wrapper(cast("Callable[..., Any]", inner), state, is_async)
    if holder is None:
        setattr(cls, name, ours)
    else:
        holder.__wrapped__ = ours  # type: ignore[attr-defined]
    _CLASS_LAYERS[(cls, name)] = (ours, inner, state)


# -- public API ----------------------------------------------------------------------------------


def _resource(client: openai.OpenAI | openai.AsyncOpenAI) -> Completions | AsyncCompletions:
    resource = client.chat.completions
    if not isinstance(resource, (Completions, AsyncCompletions)):
        raise TypeError(f"{type(client).__name__}.chat.completions is not the openai SDK's")
    return resource


def instrument_openai(
    client: openai.OpenAI | openai.AsyncOpenAI | None = None,
    *,
    telemetry: LogprobTelemetry | None = None,
    **options: Unpack[TelemetryKwargs],
) -> None:
    """Emit logprob telemetry for every chat completion call of `client`, or of all clients.

    With a client (`openai.OpenAI` or `openai.AsyncOpenAI`): that client's
    `chat.completions.create` and `chat.completions.parse` are wrapped, on that object only.
    With None: those methods of the SDK's `Completions` and `AsyncCompletions` are patched,
    for every client, existing or future (like OpenTelemetry's instrumentors). Each call then
    emits one `chat {model}` span with the logprob events and summary attributes, and records
    the metrics, as described in the module's docstring.

    Idempotent: instrumenting what is already instrumented never wraps twice; it replaces the
    telemetry used from then on. `uninstrument_openai` undoes it.

    Args:
        client: the client to instrument, or None for all clients.
        telemetry: the `logprobscope.otel.LogprobTelemetry` to record into (it may be shared
            with other entry points); when None, one is made from the options.
        **options: the `logprobscope.otel.TelemetryOptions` (tracer_provider,
            meter_provider, capture_content, events, low_confidence_threshold), when
            `telemetry` is None.

    Raises:
        TypeError: `client` is not an openai SDK client, or both `telemetry` and options.
        ValueError: invalid options.
    """
    telemetry = LogprobTelemetry.shared_or_new(telemetry, **options)
    state = _State(telemetry)
    with _LOCK:
        if client is None:
            for cls, is_async in ((Completions, False), (AsyncCompletions, True)):
                for name in _METHODS:
                    _instrument_class(cls, name, state, is_async)
            return
        resource = _resource(client)
        for name in _METHODS:
            existing = getattr(resource.__dict__.get(name), _MARK, None)
            if isinstance(existing, _State):
                existing.telemetry = state.telemetry
            else:
                original = getattr(resource, name)
                setattr(resource, name, _instance_wrapper(resource, original, state))


def uninstrument_openai(client: openai.OpenAI | openai.AsyncOpenAI | None = None) -> None:
    """Undo `instrument_openai` for `client`, or for all clients when None.

    Calls started before keep their telemetry (a stream already returned still ends its span);
    calls from now on are the SDK's own, untouched. Uninstrumenting what is not instrumented
    does nothing. With None only the class-level patch is removed: clients instrumented one by
    one stay instrumented until uninstrumented with their own call.
    """
    with _LOCK:
        if client is None:
            for cls in (Completions, AsyncCompletions):
                for name in _METHODS:
                    layer = _CLASS_LAYERS.pop((cls, name), None)
                    if layer is not None:
                        ours, inner, state = layer
                        if not remove_layer(cls, name, ours, inner):
                            state.active = False  # under another's wrapper: passes through
            return
        resource = _resource(client)
        for name in _METHODS:
            if isinstance(getattr(resource.__dict__.get(name), _MARK, None), _State):
                del resource.__dict__[name]
