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

The Responses API is traced the same way, by the same call: `responses.create` (streamed or
not, and its `with_raw_response`), the `responses.stream()` helper (it calls `create`) and
`responses.parse()`, sync and async. The span is a chat completion's with
`openai.api.type = "responses"`; its tokens are those of every `output_text` part, a stream's
taken from its `response.output_text.delta` events (see `_traced_responses` and
docs/telemetry.md); its streams end their span however they end, as chat streams do. Not
traced: `responses.retrieve(..., stream=True)` and `responses.stream(response_id=...)`, which
resume a response instead of creating one.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Final, Literal, cast

import openai
from openai._legacy_response import LegacyAPIResponse
from openai.resources.chat.completions import AsyncCompletions, Completions
from openai.resources.responses import AsyncResponses, Responses
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from pydantic import BaseModel
from typing_extensions import Unpack

from ._endpoint import server_address_port
from ._neighbours import claimed_langchain_run, current_chat_span
from ._patching import below_proxies, remove_layer
from ._structured import response_format_param
from ._traced_chat import fail_call, record_completion
from ._traced_responses import ResponsesRecorder, input_messages, record_response, request_of
from ._traced_stream import Recorder, StreamRecorder, TracedAsyncStream, TracedStream
from .otel import CallTelemetry, LogprobTelemetry, TelemetryKwargs

__all__ = ["instrument_openai", "uninstrument_openai"]

logger = logging.getLogger("logprobscope")

_MARK: Final = "__logprobscope_instrumentation__"
_RAW_RESPONSE_HEADER: Final = "X-Stainless-Raw-Response"
_STACK_DEPTH: Final = 8
# Arguments of `create` that are not part of the request body (the messages or input aside;
# `text_format` is the Responses `parse()`'s class to parse the answer into).
_NOT_BODY: Final = frozenset(
    {"extra_headers", "extra_query", "extra_body", "timeout", "text_format"}
)
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


@dataclass(frozen=True)
class _Endpoint:
    """One traced method of the SDK: its classes, and the API its calls go to."""

    api: Literal["chat_completions", "responses"]
    classes: tuple[type, type]  # sync, async
    method: str
    inputs: str  # the argument holding the messages (not a request attribute)

    def resource(self, client: openai.OpenAI | openai.AsyncOpenAI) -> Any:
        return client.responses if self.api == "responses" else client.chat.completions


_CHAT: Final = (Completions, AsyncCompletions)
_RESPONSES: Final = (Responses, AsyncResponses)
_ENDPOINTS: Final = (
    _Endpoint("chat_completions", _CHAT, "create", "messages"),
    _Endpoint("chat_completions", _CHAT, "parse", "messages"),
    _Endpoint("responses", _RESPONSES, "create", "input"),
    # Responses.parse posts the request itself (not through create): traced on its own
    _Endpoint("responses", _RESPONSES, "parse", "input"),
)

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


def _params(kwargs: Mapping[str, object], inputs: str) -> dict[str, object]:
    # The request body without the messages, as the API receives it.
    params = {k: v for k, v in kwargs.items() if k not in _NOT_BODY and k != inputs and _given(v)}
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


# -- the wrapped calls -------------------------------------------------------------------------


def _start(
    state: _State, endpoint: _Endpoint, resource: object, kwargs: Mapping[str, object]
) -> tuple[CallTelemetry, bool]:
    host, port = _server(resource)
    telemetry = state.telemetry
    capture = telemetry.capture_content
    messages: object = kwargs.get(endpoint.inputs)
    if endpoint.api == "responses" and capture:
        messages = input_messages(messages)
    # Another instrumentation's span for this call, current around it (ours runs innermost,
    # inside theirs): the call is recorded on it instead of a span of ours.
    call = telemetry.start_call(
        span=current_chat_span(),
        model=str(kwargs.get("model", "")),
        stream=kwargs.get("stream") is True,
        params=_params(kwargs, endpoint.inputs),
        provider="openai",
        server_address=host,
        server_port=port,
        input_messages=messages if isinstance(messages, Sequence) else None,
        api=endpoint.api,
    )
    return call, capture


def _finish(
    call: CallTelemetry, result: object, capture: bool, endpoint: _Endpoint, resource: object
) -> object:
    try:
        if isinstance(result, (openai.Stream, openai.AsyncStream)):
            recorder: Recorder[Any] = StreamRecorder(call, capture)
            if endpoint.api == "responses":
                recorder = ResponsesRecorder(call, capture, request_of(resource, result))
            if isinstance(result, openai.Stream):
                return TracedStream(result, recorder)
            return TracedAsyncStream(result, recorder)
        answer = result
        if isinstance(result, LegacyAPIResponse):
            # with_raw_response: the SDK's own parse, cached, so the caller's later parse()
            # returns this very object (and raises what it raises: the call failed so).
            try:
                answer = result.parse()
            except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as exc:
                fail_call(call, exc, capture)
                return result
        if isinstance(answer, ChatCompletion):
            record_completion(call, answer, capture)
        elif isinstance(answer, Response):
            record_response(call, answer, capture, request_of(resource, result))
    except Exception:  # telemetry never breaks the call
        logger.debug("recording an answer failed", exc_info=True)
    call.end(completed=None)
    return result


def _traced_sync(
    state: _State,
    endpoint: _Endpoint,
    resource: object,
    create: Callable[..., object],
    args: Any,
    kwargs: Any,
) -> object:
    call, capture = _start(state, endpoint, resource, kwargs)
    token = _IN_CALL.set(True)
    try:
        result = create(*args, **kwargs)
    except BaseException as exc:
        fail_call(call, exc, capture)
        raise
    finally:
        _IN_CALL.reset(token)
    return _finish(call, result, capture, endpoint, resource)


async def _traced_async(
    state: _State,
    endpoint: _Endpoint,
    resource: object,
    create: Callable[..., Any],
    args: Any,
    kwargs: Any,
) -> object:
    call, capture = _start(state, endpoint, resource, kwargs)
    token = _IN_CALL.set(True)
    try:
        result = await create(*args, **kwargs)
    except BaseException as exc:
        fail_call(call, exc, capture)
        raise
    finally:
        _IN_CALL.reset(token)
    return _finish(call, result, capture, endpoint, resource)


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


def _class_wrapper(
    original: Callable[..., Any], state: _State, endpoint: _Endpoint, is_async: bool
) -> Any:
    if is_async:

        @functools.wraps(original)
        async def acreate(self: object, *args: Any, **kwargs: Any) -> Any:
            if _passes_through(state, kwargs):
                return await original(self, *args, **kwargs)
            bound = functools.partial(original, self)
            return await _traced_async(state, endpoint, self, bound, args, kwargs)

        wrapper: Any = acreate
    else:

        @functools.wraps(original)
        def create(self: object, *args: Any, **kwargs: Any) -> Any:
            if _passes_through(state, kwargs):
                return original(self, *args, **kwargs)
            bound = functools.partial(original, self)
            return _traced_sync(state, endpoint, self, bound, args, kwargs)

        wrapper = create
    setattr(wrapper, _MARK, state)
    return wrapper


def _instance_wrapper(
    resource: object, original: Callable[..., Any], state: _State, endpoint: _Endpoint
) -> Any:
    if isinstance(resource, endpoint.classes[1]):

        @functools.wraps(original)
        async def acreate(*args: Any, **kwargs: Any) -> Any:
            if _passes_through(state, kwargs):
                return await original(*args, **kwargs)
            return await _traced_async(state, endpoint, resource, original, args, kwargs)

        wrapper: Any = acreate
    else:

        @functools.wraps(original)
        def create(*args: Any, **kwargs: Any) -> Any:
            if _passes_through(state, kwargs):
                return original(*args, **kwargs)
            return _traced_sync(state, endpoint, resource, original, args, kwargs)

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


def _instrument_class(cls: type, endpoint: _Endpoint, state: _State, is_async: bool) -> None:
    # Innermost: under any other instrumentation's proxy (wrapt) already there, next to the
    # SDK's function; one patching later wraps over us. Either way their span is current
    # when ours runs, and ours can record on it.
    name = endpoint.method
    known = _CLASS_LAYERS.get((cls, name))
    if known is not None and _reachable(cls, name, known[0]):
        known[2].telemetry = state.telemetry
        known[2].active = True
        return
    holder, inner = below_proxies(cls, name)
    ours = _class_wrapper(cast("Callable[..., Any]", inner), state, endpoint, is_async)
    if holder is None:
        setattr(cls, name, ours)
    else:
        holder.__wrapped__ = ours  # type: ignore[attr-defined]
    _CLASS_LAYERS[(cls, name)] = (ours, inner, state)


# -- public API ----------------------------------------------------------------------------------


def _resources(client: openai.OpenAI | openai.AsyncOpenAI) -> list[tuple[_Endpoint, Any]]:
    """Each traced method's resource of `client`, checked to be the SDK's own."""
    if not isinstance(client.chat.completions, _CHAT):
        raise TypeError(f"{type(client).__name__}.chat.completions is not the openai SDK's")
    out: list[tuple[_Endpoint, Any]] = []
    for endpoint in _ENDPOINTS:
        resource = endpoint.resource(client)
        if not isinstance(resource, endpoint.classes):
            raise TypeError(f"{type(client).__name__}.{endpoint.api} is not the openai SDK's")
        out.append((endpoint, resource))
    return out


def instrument_openai(
    client: openai.OpenAI | openai.AsyncOpenAI | None = None,
    *,
    telemetry: LogprobTelemetry | None = None,
    **options: Unpack[TelemetryKwargs],
) -> None:
    """Emit logprob telemetry for every model call of `client`, or of all clients.

    The calls are `chat.completions.create` and `.parse`, and `responses.create` and
    `.parse` (the SDK's `stream()` helpers call `create`). With a client (`openai.OpenAI`
    or `openai.AsyncOpenAI`): those methods are wrapped, on that client's objects only. With
    None: those methods of the SDK's `Completions`, `AsyncCompletions`, `Responses` and
    `AsyncResponses` are patched, for every client, existing or future (like OpenTelemetry's
    instrumentors). Each call then emits one `chat {model}` span with the logprob events and
    summary attributes, and records the metrics, as described in the module's docstring.

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
            for endpoint in _ENDPOINTS:
                for cls, is_async in zip(endpoint.classes, (False, True), strict=True):
                    _instrument_class(cls, endpoint, state, is_async)
            return
        for endpoint, resource in _resources(client):
            name = endpoint.method
            existing = getattr(resource.__dict__.get(name), _MARK, None)
            if isinstance(existing, _State):
                existing.telemetry = state.telemetry
            else:
                original = getattr(resource, name)
                setattr(resource, name, _instance_wrapper(resource, original, state, endpoint))


def uninstrument_openai(client: openai.OpenAI | openai.AsyncOpenAI | None = None) -> None:
    """Undo `instrument_openai` for `client`, or for all clients when None.

    Calls started before keep their telemetry (a stream already returned still ends its span);
    calls from now on are the SDK's own, untouched. Uninstrumenting what is not instrumented
    does nothing. With None only the class-level patch is removed: clients instrumented one by
    one stay instrumented until uninstrumented with their own call.
    """
    with _LOCK:
        if client is None:
            for endpoint in _ENDPOINTS:
                for cls in endpoint.classes:
                    name = endpoint.method
                    layer = _CLASS_LAYERS.pop((cls, name), None)
                    if layer is not None:
                        ours, inner, state = layer
                        if not remove_layer(cls, name, ours, inner):
                            state.active = False  # under another's wrapper: passes through
            return
        for endpoint, resource in _resources(client):
            name = endpoint.method
            if isinstance(getattr(resource.__dict__.get(name), _MARK, None), _State):
                del resource.__dict__[name]
