"""The telemetry core: one model call's tokens in, one span with its events and metrics out.

Every entry point (our callback handler, the LangChain handler, the raw-client wrapper) feeds
the same two classes with primitive data, so the telemetry is the same whichever way a user
calls the model:

    telemetry = LogprobTelemetry()                       # once: tracer, instruments
    call = telemetry.start_call(model=..., stream=True, params=body)   # span starts
    call.add_chunk(time_ns=t)                            # per streamed chunk (timing)
    call.add_columns(buf, start, stop, time_ns=t)        # tokens (or add_entries(dicts))
    call.set_response(response_id=..., response_model=..., ...)
    call.end(completed=True)                             # or call.fail(error); exactly once

Nothing here raises into the caller's code: failures are logged (once per call at warning
level, then at debug) and the call goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import weakref
from array import array
from collections.abc import Mapping, Sequence
from typing import Literal, cast, get_args

from opentelemetry import context as context_api
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider
from opentelemetry.trace import Span, SpanKind, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from .. import _contract as n
from .._figures import LogprobStats, LogprobSummary, probability
from .._logprobs import TokenBuffer, _unpack_bytes
from .._text import valid_text
from .._version import __version__

__all__ = ["CallTelemetry", "EventsMode", "LogprobTelemetry", "capture_content_from_env"]

logger = logging.getLogger("logprobscope.otel")

EventsMode = Literal["tokens", "batched", "low_confidence", "none"]
"""How token logprobs become span events (see TELEMETRY.md, "Span events")."""

# Event slots kept free for the exception event of a failed call.
_RESERVED_EVENTS = 1
# The SDK's default `max_events`, assumed for providers whose limit cannot be read.
_DEFAULT_MAX_EVENTS = 128
# Slots kept for `logprobs.tokens` batches once `tokens` mode has used its share.
_MAX_BATCH_SLOTS = 12
_MIN_BATCH_TOKENS = 64

# A context whose span is invalid: no exemplar is sampled from it. (An empty Context would
# not do: the SDK takes a falsy context as "none given" and uses the current one.)
_NO_EXEMPLAR_CONTEXT = trace.set_span_in_context(trace.INVALID_SPAN)


# Our attributes, the only ones set on another instrumentation's span.
_OURS = "logprobs."


def _hook_end(span: Span, call: CallTelemetry) -> object:
    """Make `span.end()` (its owner's call) finish `call`'s part first; return the hook."""
    try:
        original = span.end

        def end(*args: object, **kwargs: object) -> None:
            _unhook_end(span, end)
            try:
                call._owner_ends()
            finally:
                original(*args, **kwargs)  # type: ignore[arg-type]

        span.end = end  # type: ignore[method-assign]
        return end
    except Exception:  # a span that takes no attribute: our part ends when the call does
        logger.debug("hooking the end of another instrumentation's span failed", exc_info=True)
        return None


def _unhook_end(span: Span, hook: object) -> None:
    try:
        if hook is not None and vars(span).get("end") is hook:
            del vars(span)["end"]
    except Exception:
        logger.debug("unhooking a span's end failed", exc_info=True)


def capture_content_from_env() -> bool:
    """Whether `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` asks for content capture.

    "true" (any case) turns it on, as do the newer values "span_only" and "span_and_event";
    anything else, or the variable unset, leaves it off.
    """
    value = os.environ.get(n.ENV_CAPTURE_CONTENT, "").strip().lower()
    return value in ("true", "span_only", "span_and_event")


def _error_type(error: BaseException) -> str:
    # The same spelling as the SDK's `exception.type`: module-qualified except builtins.
    cls = type(error)
    module = cls.__module__
    return f"{module}.{cls.__qualname__}" if module and module != "builtins" else cls.__qualname__


class _Instruments:
    """The histograms and counter, created once per meter provider."""

    __slots__ = (
        "token_usage",
        "duration",
        "time_to_first_chunk",
        "time_per_output_chunk",
        "token_probability",
        "perplexity",
        "min_probability",
        "entropy",
        "low_confidence",
    )

    def __init__(self, meter: Meter) -> None:
        def histogram(
            name: str, unit: str, description: str, buckets: Sequence[float]
        ) -> Histogram:
            return meter.create_histogram(
                name,
                unit=unit,
                description=description,
                explicit_bucket_boundaries_advisory=list(buckets),
            )

        self.token_usage = histogram(
            n.GEN_AI_CLIENT_TOKEN_USAGE,
            n.UNIT_TOKEN,
            "Number of input and output tokens used.",
            n.TOKEN_USAGE_BUCKETS,
        )
        self.duration = histogram(
            n.GEN_AI_CLIENT_OPERATION_DURATION,
            n.UNIT_SECONDS,
            "GenAI operation duration.",
            n.DURATION_BUCKETS,
        )
        self.time_to_first_chunk = histogram(
            n.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
            n.UNIT_SECONDS,
            "Time to receive the first chunk of a streamed response.",
            n.CHUNK_TIME_BUCKETS,
        )
        self.time_per_output_chunk = histogram(
            n.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
            n.UNIT_SECONDS,
            "Time between consecutive chunks of a streamed response.",
            n.CHUNK_TIME_BUCKETS,
        )
        self.token_probability = histogram(
            n.METRIC_TOKEN_PROBABILITY,
            n.UNIT_RATIO,
            "Probability of each generated token (exp of its logprob).",
            n.PROBABILITY_BUCKETS,
        )
        self.perplexity = histogram(
            n.METRIC_RESPONSE_PERPLEXITY,
            n.UNIT_RATIO,
            "Perplexity of each response, exp(-mean logprob).",
            n.PERPLEXITY_BUCKETS,
        )
        self.min_probability = histogram(
            n.METRIC_RESPONSE_MIN_PROBABILITY,
            n.UNIT_RATIO,
            "Probability of the least likely token of each response.",
            n.PROBABILITY_BUCKETS,
        )
        self.entropy = histogram(
            n.METRIC_RESPONSE_ENTROPY,
            n.UNIT_NAT,
            "Mean entropy over the returned top alternatives of each response's tokens.",
            n.ENTROPY_BUCKETS,
        )
        self.low_confidence: Counter = meter.create_counter(
            n.METRIC_TOKEN_LOW_CONFIDENCE,
            unit=n.UNIT_TOKEN,
            description="Generated tokens with a probability below the low-confidence threshold.",
        )


_instrument_cache: weakref.WeakKeyDictionary[MeterProvider, _Instruments] = (
    weakref.WeakKeyDictionary()
)
_instrument_lock = threading.Lock()


def _instruments_for(provider: MeterProvider) -> _Instruments:
    with _instrument_lock:
        try:
            found = _instrument_cache.get(provider)
        except TypeError:  # a provider that cannot be weakly referenced: no caching
            return _Instruments(provider.get_meter(n.SCOPE_NAME, __version__))
        if found is None:
            found = _Instruments(provider.get_meter(n.SCOPE_NAME, __version__))
            _instrument_cache[provider] = found
        return found


def _event_limit(span: Span, provider: TracerProvider) -> int | None:
    """The span's `max_events` (None: unlimited), as precisely as it can be known."""
    # SDK spans carry their SpanLimits; the provider's are the same unless a custom
    # tracer passes others. Anything else gets the SDK default, the common case.
    for owner, attribute in ((span, "_limits"), (provider, "_span_limits")):
        limits = getattr(owner, attribute, None)
        if limits is not None and hasattr(limits, "max_events"):
            value = limits.max_events
            if value is None or (isinstance(value, int) and value >= 0):
                return value
    return _DEFAULT_MAX_EVENTS


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _integer(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _genai_parts(message: Mapping[str, object]) -> list[dict[str, object]]:
    role = message.get("role")
    content = message.get("content")
    parts: list[dict[str, object]] = []
    if role == "tool":
        parts.append(
            {"type": "tool_call_response", "id": message.get("tool_call_id"), "response": content}
        )
        return parts
    if isinstance(content, str):
        if content:
            parts.append({"type": "text", "content": content})
    elif isinstance(content, Sequence):
        for item in content:
            if not isinstance(item, Mapping):
                continue
            kind = item.get("type")
            if kind == "text":
                parts.append({"type": "text", "content": item.get("text")})
            elif kind == "image_url" and isinstance(item.get("image_url"), Mapping):
                url = cast("Mapping[str, object]", item["image_url"]).get("url")
                parts.append({"type": "uri", "modality": "image", "uri": url})
            else:
                parts.append({str(k): v for k, v in item.items()})
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, Sequence) and not isinstance(tool_calls, str):
        for call in tool_calls:
            if not isinstance(call, Mapping):
                continue
            function = call.get("function")
            function = function if isinstance(function, Mapping) else {}
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments"),
                }
            )
    return parts


def _input_messages_json(messages: Sequence[Mapping[str, object]]) -> str:
    """OpenAI-format messages in the GenAI conventions' `gen_ai.input.messages` shape."""
    out = [
        {"role": str(m.get("role", "user")), "parts": _genai_parts(m)}
        for m in messages
        if isinstance(m, Mapping)
    ]
    return valid_text(json.dumps(out, ensure_ascii=False, default=str))


def _output_messages_json(text: str, finish_reason: str | None) -> str:
    parts = [{"type": "text", "content": text}] if text else []
    message = {"role": "assistant", "parts": parts, "finish_reason": finish_reason or ""}
    return valid_text(json.dumps([message], ensure_ascii=False))


class _Segment:
    """Tokens [start, stop) of a buffer waiting for a `logprobs.tokens` batch event."""

    __slots__ = ("buf", "start", "stop")

    def __init__(self, buf: TokenBuffer, start: int, stop: int) -> None:
        self.buf = buf
        self.start = start
        self.stop = stop


class LogprobTelemetry:
    """Turns model calls into spans, span events and metrics per TELEMETRY.md.

    One instance serves any number of concurrent calls. It gets a tracer and creates the
    metric instruments once (per meter provider); `start_call` then starts a span per call
    and returns the `CallTelemetry` that the caller feeds until the call ends.

    Args:
        tracer_provider: where spans go; default: the global tracer provider.
        meter_provider: where metrics go; default: the global meter provider.
        capture_content: put token texts, bytes, top alternatives' texts and messages in
            the telemetry. Default: `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`
            (read now), else off.
        events: how tokens become span events: "tokens" (one `logprobs.token` event per
            token, switching to "batched" before the span's event limit would drop any),
            "batched" (`logprobs.tokens` events with arrays), "low_confidence" (events
            only for tokens below the threshold) or "none" (summary attributes only).
        low_confidence_threshold: probability below which a token is low-confidence.

    Raises:
        ValueError: an unknown `events` mode or a threshold outside [0, 1].
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        capture_content: bool | None = None,
        events: EventsMode = "tokens",
        low_confidence_threshold: float = 0.5,
    ) -> None:
        if events not in get_args(EventsMode):
            raise ValueError(f"events must be one of {', '.join(n.EVENT_MODES)}, not {events!r}")
        threshold = _number(low_confidence_threshold)
        if threshold is None or not 0.0 <= threshold <= 1.0:
            raise ValueError(
                f"low_confidence_threshold must be a probability in [0, 1], "
                f"not {low_confidence_threshold!r}"
            )
        self.capture_content: bool = (
            capture_content_from_env() if capture_content is None else bool(capture_content)
        )
        self.events: EventsMode = events
        self.low_confidence_threshold: float = threshold
        self._tracer_provider = tracer_provider or trace.get_tracer_provider()
        self._tracer = self._tracer_provider.get_tracer(n.SCOPE_NAME, __version__)
        self._instruments = _instruments_for(meter_provider or metrics.get_meter_provider())

    def start_call(
        self,
        *,
        model: str,
        stream: bool,
        params: Mapping[str, object],
        provider: str = n.PROVIDER_OPENAI,
        server_address: str | None = None,
        server_port: int | None = None,
        input_messages: Sequence[Mapping[str, object]] | None = None,
        context: Context | None = None,
        start_time_ns: int | None = None,
        span: Span | None = None,
    ) -> CallTelemetry:
        """Start the span `chat {model}` (kind CLIENT) for one call; return its recorder.

        The span's parent is `context`, or the context current now; the span is never made
        current (the caller's context is not touched). Request attributes (model, stream,
        temperature, top_p, max_tokens, seed, choice count, server, `logprobs.enabled`,
        `logprobs.top_logprobs`, the low-confidence threshold) are set now, from `params`
        (the request body without messages, OpenAI names). `input_messages` (OpenAI-format
        dicts) become `gen_ai.input.messages` only when content capture is on.
        `start_time_ns` (wall clock, ns since epoch) backdates the span's start and the
        duration's origin, for entry points that learn of a call after it started.

        `span`: another instrumentation's open span for this very call (see
        `logprobscope._neighbours`). Then no span is started: our request attributes
        (`logprobs.enabled`, `logprobs.top_logprobs`, the threshold), the token events and
        the `logprobs.*` summary attributes go on that span, which its owner names, sets
        the status of and ends; only the `logprobs.*` metrics are recorded (the owner records
        `gen_ai.client.*`). If the owner ends the span before this call ends, our part is
        finished just before (a stream as not completed), so nothing is set on an ended span.
        """
        try:
            return CallTelemetry(
                self,
                model=model,
                stream=stream,
                params=params,
                provider=provider,
                server_address=server_address,
                server_port=server_port,
                input_messages=input_messages,
                context=context,
                start_time_ns=start_time_ns,
                span=span,
            )
        except Exception:
            logger.warning("starting the telemetry of a model call failed", exc_info=True)
            return CallTelemetry._disabled()


class CallTelemetry:
    """The telemetry of one model call: its span, events and metric observations.

    Feed it from one thread at a time (a call's chunks arrive in order). Each method is
    safe to call in any state: after the end, everything is ignored; failures are logged,
    never raised. Ending (`end` or `fail`) happens once; later ends are ignored.
    """

    __slots__ = (
        "_telemetry",
        "_span",
        "_recording",
        "_metric_context",
        "_attrs",
        "_stream",
        "_capture",
        "_mode",
        "_configured_mode",
        "_stats",
        "_start_perf",
        "_first_chunk_perf",
        "_last_chunk_perf",
        "_last_ts",
        "_probabilities",
        "_chunk_times",
        "_model_attrs",
        "_token_events_left",
        "_batch_slots",
        "_events_used",
        "_event_budget",
        "_event_limit",
        "_dropped",
        "_pending",
        "_pending_count",
        "_pending_index",
        "_covered",
        "_response_id",
        "_response_model",
        "_finish_reasons",
        "_input_tokens",
        "_output_tokens",
        "_output_text",
        "_ended",
        "_warned",
        "_lock",
        "_owned",
        "_end_hook",
    )

    def __init__(
        self,
        telemetry: LogprobTelemetry | None,
        *,
        model: str,
        stream: bool,
        params: Mapping[str, object],
        provider: str,
        server_address: str | None,
        server_port: int | None,
        input_messages: Sequence[Mapping[str, object]] | None,
        context: Context | None,
        start_time_ns: int | None = None,
        span: Span | None = None,
    ) -> None:
        self._telemetry = telemetry
        self._owned = span is None  # our span, which we end; else its owner ends it
        self._end_hook: object = None
        self._stream = stream
        self._ended = telemetry is None
        self._warned = False
        self._lock = threading.Lock()
        self._start_perf = time.perf_counter_ns()
        if start_time_ns is not None:  # the same instant on the monotonic clock
            self._start_perf -= max(0, time.time_ns() - start_time_ns)
        self._first_chunk_perf = 0
        self._last_chunk_perf = 0
        self._last_ts = 0
        self._probabilities: array[float] = array("d")
        self._chunk_times: array[float] = array("d")
        self._model_attrs: dict[str, AttributeValue] | None = None
        self._pending: list[_Segment] = []
        self._pending_count = 0
        self._pending_index = 0
        self._covered = 0
        self._dropped = 0
        self._events_used = 0
        self._response_id: str | None = None
        self._response_model: str | None = None
        self._finish_reasons: list[str] | None = None
        self._input_tokens: int | None = None
        self._output_tokens: int | None = None
        self._output_text: str | None = None
        self._attrs: dict[str, AttributeValue] = {}
        if telemetry is None:  # the disabled stand-in
            self._span: Span = trace.INVALID_SPAN
            self._recording = False
            self._metric_context = _NO_EXEMPLAR_CONTEXT
            self._capture = False
            self._mode = self._configured_mode = n.MODE_NONE
            self._stats = LogprobStats()
            self._token_events_left = self._batch_slots = self._event_budget = 0
            self._event_limit: int | None = 0
            return

        self._capture = telemetry.capture_content
        self._stats = LogprobStats(telemetry.low_confidence_threshold)
        parent = context if context is not None else context_api.get_current()

        attributes: dict[str, AttributeValue] = {
            n.GEN_AI_OPERATION_NAME: n.OPERATION_CHAT,
            n.GEN_AI_PROVIDER_NAME: provider,
            n.GEN_AI_REQUEST_MODEL: model,
            n.GEN_AI_REQUEST_STREAM: stream,
        }
        if server_address:
            attributes[n.SERVER_ADDRESS] = server_address
            if server_port is not None:
                attributes[n.SERVER_PORT] = server_port
        for key, name in (
            ("temperature", n.GEN_AI_REQUEST_TEMPERATURE),
            ("top_p", n.GEN_AI_REQUEST_TOP_P),
        ):
            number = _number(params.get(key))
            if number is not None:
                attributes[name] = number
        max_tokens = _integer(params.get("max_tokens"))
        if max_tokens is None:
            max_tokens = _integer(params.get("max_completion_tokens"))
        if max_tokens is not None:
            attributes[n.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
        seed = _integer(params.get("seed"))
        if seed is not None:
            attributes[n.GEN_AI_REQUEST_SEED] = seed
        choices = _integer(params.get("n"))
        if choices is not None and choices != 1:
            attributes[n.GEN_AI_REQUEST_CHOICE_COUNT] = choices
        attributes[n.LOGPROBS_ENABLED] = params.get("logprobs") is True
        attributes[n.LOGPROBS_TOP_LOGPROBS] = _integer(params.get("top_logprobs")) or 0
        attributes[n.LOGPROBS_LOW_CONFIDENCE_THRESHOLD] = telemetry.low_confidence_threshold
        if self._capture and input_messages is not None:
            attributes[n.GEN_AI_INPUT_MESSAGES] = _input_messages_json(input_messages)

        if span is None:
            span = telemetry._tracer.start_span(
                f"{n.OPERATION_CHAT} {model}",
                context=parent,
                kind=SpanKind.CLIENT,
                attributes=attributes,
                start_time=start_time_ns,
                record_exception=False,
                set_status_on_exception=False,
            )
        else:  # the owner's span: its gen_ai.* attributes are the owner's
            span.set_attributes({k: v for k, v in attributes.items() if k.startswith(_OURS)})
            parent = context_api.get_current()
        self._span = span
        self._recording = span.is_recording()
        # Metric exemplars point at this call's span.
        self._metric_context = trace.set_span_in_context(span, parent)
        metric_attrs: dict[str, AttributeValue] = {
            n.GEN_AI_OPERATION_NAME: n.OPERATION_CHAT,
            n.GEN_AI_PROVIDER_NAME: provider,
            n.GEN_AI_REQUEST_MODEL: model,
        }
        if server_address:
            metric_attrs[n.SERVER_ADDRESS] = server_address
        self._attrs = metric_attrs

        mode = telemetry.events
        self._configured_mode = mode
        self._mode = mode
        limit = _event_limit(span, telemetry._tracer_provider) if self._recording else 0
        if limit is None:  # unlimited: tokens stay tokens
            budget = -1
            tokens_left = -1 if mode in (n.MODE_TOKENS, n.MODE_LOW_CONFIDENCE) else 0
            slots = -1
        else:
            budget = max(0, limit - _RESERVED_EVENTS)
            if mode == n.MODE_TOKENS:
                slots = min(_MAX_BATCH_SLOTS, max(1, budget // 4)) if budget else 0
                tokens_left = budget - slots
            elif mode == n.MODE_BATCHED:
                slots, tokens_left = budget, 0
            elif mode == n.MODE_LOW_CONFIDENCE:
                slots, tokens_left = 0, budget
            else:
                slots = tokens_left = 0
        self._event_limit = limit
        self._event_budget = budget
        self._token_events_left = tokens_left
        self._batch_slots = slots
        if not self._owned:
            self._end_hook = _hook_end(span, self)

    @classmethod
    def _disabled(cls) -> CallTelemetry:
        return cls(
            None,
            model="",
            stream=False,
            params={},
            provider="",
            server_address=None,
            server_port=None,
            input_messages=None,
            context=None,
        )

    # -- state ----------------------------------------------------------------------------

    @property
    def span(self) -> Span:
        """The call's span (non-recording when sampled out or disabled)."""
        return self._span

    @property
    def ended(self) -> bool:
        """True once `end` or `fail` has run."""
        return self._ended

    @property
    def response_model(self) -> str | None:
        """The response model set so far, if any."""
        return self._response_model

    @property
    def token_count(self) -> int:
        """Tokens added so far."""
        return self._stats.count

    def _failed(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("logprob telemetry failed in %s; the call goes on", what, exc_info=True)
        else:
            logger.debug("logprob telemetry failed in %s", what, exc_info=True)

    # -- feeding --------------------------------------------------------------------------

    def add_chunk(self, *, time_ns: int | None = None) -> None:
        """A streamed chunk without tokens arrived (role, finish or usage chunks).

        Chunk arrivals feed time-to-first-chunk and time-per-output-chunk. On a streamed
        call, `add_columns` and `add_entries` count their chunk themselves (even with no
        tokens): call `add_chunk` only for chunks not passed to them. The timing is read
        from a monotonic clock here; `time_ns` is accepted for symmetry and unused.
        """
        if self._ended:
            return
        try:
            self._chunk()
            self._observe()
        except Exception:
            self._failed("add_chunk")

    def _chunk(self) -> None:
        now = time.perf_counter_ns()
        last = self._last_chunk_perf
        if last:
            self._chunk_times.append((now - last) / 1e9)
        else:
            self._first_chunk_perf = now
        self._last_chunk_perf = now

    def add_columns(self, buf: TokenBuffer, start: int, stop: int, *, time_ns: int) -> None:
        """Tokens [start, stop) of `buf` arrived at `time_ns` (wall clock, ns since epoch).

        The fast path: numbers are read from the buffer's columns, no models are built.
        The buffer must stay unchanged in that range (TokenBuffers are append-only).
        On a streamed call each call is one chunk's arrival, tokens or not.
        """
        if self._ended:
            return
        try:
            if self._stream:
                self._chunk()
            if stop > start:
                self._add(buf, start, stop, time_ns)
            self._observe()
        except Exception:
            self._failed("add_columns")

    def add_entries(self, entries: Sequence[Mapping[str, object]], *, time_ns: int) -> None:
        """Tokens as OpenAI-format `logprobs.content` entries arrived at `time_ns`.

        For entry points that hold decoded JSON (LangChain, the raw SDK): malformed entries
        are kept as far as they make sense (see `TokenBuffer.append_json`). On a streamed
        call each call is one chunk's arrival, even with no entries.
        """
        if self._ended:
            return
        try:
            if self._stream:
                self._chunk()
            if entries:
                buf = TokenBuffer()
                buf.append_json([e if isinstance(e, dict) else dict(e) for e in entries])
                if len(buf):
                    self._add(buf, 0, len(buf), time_ns)
            self._observe()
        except Exception:
            self._failed("add_entries")

    def set_response(
        self,
        *,
        response_id: str | None = None,
        response_model: str | None = None,
        finish_reasons: Sequence[str] | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        output_text: str | None = None,
    ) -> None:
        """What the server answered; may be called more than once (None keeps the earlier).

        Giving `response_model` early (e.g. from a stream's first chunk) lets metric
        observations be recorded during the stream instead of all at the end.
        `output_text` becomes `gen_ai.output.messages` only with content capture.
        """
        if self._ended:
            return
        # Server strings go into attributes: no lone surrogate may reach the exporter.
        if response_id is not None:
            self._response_id = valid_text(response_id)
        if response_model is not None:
            self._response_model = valid_text(response_model)
        if finish_reasons is not None:
            self._finish_reasons = [valid_text(str(r)) for r in finish_reasons]
        if input_tokens is not None:
            self._input_tokens = input_tokens
        if output_tokens is not None:
            self._output_tokens = output_tokens
        if output_text is not None:
            self._output_text = output_text

    def _owner_ends(self) -> None:
        # The owner of the span we record into ends it before the call ended here (a stream
        # it closed or collected first, a run its handler ended first): our part ends now.
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self._finish(None, False if self._stream else None)

    def end(self, *, completed: bool | None = None) -> None:
        """The call ended with an answer: set the summary attributes, end the span, record.

        `completed` is for streams: False when the stream was left before its end
        (`logprobs.stream.completed = false`); None for non-streamed calls.
        """
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self._finish(None, completed)

    def fail(self, error: BaseException) -> None:
        """The call failed with `error`: status ERROR, `error.type`, the exception recorded."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self._finish(error, False if self._stream else None)

    # -- the hot path ---------------------------------------------------------------------

    def _add(self, buf: TokenBuffer, start: int, stop: int, time_ns: int) -> None:
        if time_ns < self._last_ts:
            time_ns = self._last_ts  # a wall clock stepping back: keep the timeline ordered
        self._last_ts = time_ns
        index = self._stats.count
        self._stats.add_columns(
            buf.logprobs, buf.top_logprobs, buf.top_offsets, start, stop, self._probabilities
        )
        if self._recording:
            mode = self._mode
            if mode == n.MODE_TOKENS:
                left = self._token_events_left
                if left < 0 or stop - start <= left:
                    self._token_events(buf, start, stop, index, time_ns)
                    if left > 0:
                        self._token_events_left = left - (stop - start)
                else:
                    if left:
                        self._token_events(buf, start, start + left, index, time_ns)
                    self._token_events_left = 0
                    self._mode = n.MODE_BATCHED
                    self._batch(buf, start + left, stop, index + left, time_ns)
            elif mode == n.MODE_BATCHED:
                self._batch(buf, start, stop, index, time_ns)
            elif mode == n.MODE_LOW_CONFIDENCE:
                self._low_confidence_events(buf, start, stop, index, time_ns)

    def _token_events(
        self, buf: TokenBuffer, start: int, stop: int, index: int, time_ns: int
    ) -> None:
        add_event = self._span.add_event
        logprobs = buf.logprobs
        offsets = buf.top_offsets
        tops = buf.top_logprobs
        capture = self._capture
        for i in range(start, stop):
            o0 = offsets[i]
            o1 = offsets[i + 1]
            attributes: dict[str, AttributeValue] = {
                n.TOKEN_INDEX: index,
                n.TOKEN_LOGPROB: logprobs[i],
            }
            if o1 > o0:
                attributes[n.TOKEN_TOP_LOGPROBS] = tops[o0:o1].tolist()
            if capture:
                self._token_content(attributes, buf, i, o0, o1)
            add_event(n.EVENT_TOKEN, attributes, time_ns)
            index += 1
        self._events_used += stop - start
        self._covered = index

    @staticmethod
    def _token_content(
        attributes: dict[str, AttributeValue], buf: TokenBuffer, i: int, o0: int, o1: int
    ) -> None:
        # Texts from the LangChain and raw-SDK entry points are the stdlib's decoding and
        # may hold lone surrogates, which the OTLP encoder refuses (losing the whole batch).
        token = buf.tokens[i]
        attributes[n.TOKEN_TEXT] = valid_text(token)
        raw = _unpack_bytes(token, buf.bytes[i])
        if raw is not None:
            attributes[n.TOKEN_BYTES] = raw
        if o1 > o0:
            attributes[n.TOKEN_TOP_TOKENS] = [valid_text(t) for t in buf.top_tokens[o0:o1]]

    def _low_confidence_events(
        self, buf: TokenBuffer, start: int, stop: int, index: int, time_ns: int
    ) -> None:
        threshold = self._stats.threshold
        logprobs = buf.logprobs
        for i in range(start, stop):
            if probability(logprobs[i]) < threshold:  # NaN compares False: not low
                if self._token_events_left == 0:
                    self._dropped += 1
                else:
                    self._token_events(buf, i, i + 1, index + i - start, time_ns)
                    if self._token_events_left > 0:
                        self._token_events_left -= 1

    def _batch(self, buf: TokenBuffer, start: int, stop: int, index: int, time_ns: int) -> None:
        if start >= stop:
            return
        if self._batch_slots == 0:
            self._dropped += stop - start
            return
        pending = self._pending
        if not pending:
            self._pending_index = index
        last = pending[-1] if pending else None
        if last is not None and last.buf is buf and last.stop == start:
            last.stop = stop
        else:
            pending.append(_Segment(buf, start, stop))
        self._pending_count += stop - start
        # A closed batch may go out while more than the final slot is left; the final
        # slot takes whatever remains at the end, however much that is.
        slots = self._batch_slots
        if slots < 0 or slots > 1:
            target = _MIN_BATCH_TOKENS
            if slots > 1:
                # Batches grow with what is covered, so the slots left cover a stream of
                # any length long before they run out (about ∏(1 + 2/s) growth).
                target = max(target, (self._covered * 2) // slots)
            if self._pending_count >= target:
                self._emit_batch(time_ns)

    def _emit_batch(self, time_ns: int) -> None:
        segments = self._pending
        if not segments:
            return
        self._pending = []
        count = self._pending_count
        self._pending_count = 0
        logprobs: list[float] = []
        rows: list[list[float]] = []
        texts: list[str] = []
        top_texts: list[list[str]] = []
        capture = self._capture
        for seg in segments:
            buf, start, stop = seg.buf, seg.start, seg.stop
            logprobs.extend(buf.logprobs[start:stop].tolist())
            offsets = buf.top_offsets
            tops = buf.top_logprobs
            for i in range(start, stop):
                rows.append(tops[offsets[i] : offsets[i + 1]].tolist())
            if capture:  # valid_text: see _token_content
                texts.extend([valid_text(t) for t in buf.tokens[start:stop]])
                names = buf.top_tokens
                for i in range(start, stop):
                    top_texts.append([valid_text(t) for t in names[offsets[i] : offsets[i + 1]]])
        k = max((len(r) for r in rows), default=0)
        attributes: dict[str, AttributeValue] = {
            n.TOKENS_START_INDEX: self._pending_index,
            n.TOKENS_LOGPROBS: logprobs,
        }
        if k:
            # Row-major, k per token; a token with fewer alternatives (a server's quirk)
            # is padded with NaN (and "" in the texts) so rows stay aligned.
            flat: list[float] = []
            for row in rows:
                flat.extend(row)
                if len(row) < k:
                    flat.extend([math.nan] * (k - len(row)))
            attributes[n.TOKENS_TOP_LOGPROBS] = flat
        if capture:
            attributes[n.TOKENS_TEXTS] = texts
            if k:
                flat_texts: list[str] = []
                for names in top_texts:
                    flat_texts.extend(names)
                    if len(names) < k:
                        flat_texts.extend([""] * (k - len(names)))
                attributes[n.TOKENS_TOP_TOKENS] = flat_texts
        self._span.add_event(n.EVENT_TOKENS, attributes, time_ns)
        self._events_used += 1
        if self._batch_slots > 0:
            self._batch_slots -= 1
        self._pending_index += count
        self._covered = self._pending_index

    # -- metrics --------------------------------------------------------------------------

    def _metric_attributes(self) -> dict[str, AttributeValue]:
        model = self._response_model
        if model is None:
            return self._attrs
        cached = self._model_attrs
        if cached is None or cached[n.GEN_AI_RESPONSE_MODEL] != model:
            cached = self._model_attrs = {**self._attrs, n.GEN_AI_RESPONSE_MODEL: model}
        return cached

    def _observe(self) -> None:
        # Once the response model (a metric attribute) is known, each chunk's observations
        # are recorded as it arrives: on a real stream that work fits in the gaps between
        # chunks instead of piling up after the last one.
        if self._response_model is not None and (self._probabilities or self._chunk_times):
            self._flush_observations()

    def _flush_observations(self) -> None:
        instruments = self._instruments()
        if instruments is None:
            return
        attrs = self._metric_attributes()
        # Per-token and per-chunk observations carry no exemplars: offering each one to
        # the exemplar reservoir costs ~20% of a record() and the per-call histograms
        # (duration, perplexity, min probability, entropy) already link to the span.
        context = _NO_EXEMPLAR_CONTEXT
        probabilities = self._probabilities
        if probabilities:
            self._probabilities = array("d")
            record = instruments.token_probability.record
            for p in probabilities:
                record(p, attrs, context)
        times = self._chunk_times
        if times and self._owned:
            self._chunk_times = array("d")
            record = instruments.time_per_output_chunk.record
            for seconds in times:
                record(seconds, attrs, context)

    def _instruments(self) -> _Instruments | None:
        telemetry = self._telemetry
        return telemetry._instruments if telemetry is not None else None

    # -- the end --------------------------------------------------------------------------

    def _finish(self, error: BaseException | None, completed: bool | None) -> None:
        if self._telemetry is None:
            return
        end_perf = time.perf_counter_ns()
        summary: LogprobSummary | None = None
        try:
            summary = self._stats.summary()
            self._end_span(summary, error, completed)
        except Exception:
            self._failed("ending the span")
            try:
                if self._owned and self._span.is_recording():
                    self._span.end()
            except Exception:
                logger.debug("ending the span failed", exc_info=True)
        try:
            self._record_metrics(summary or self._stats.summary(), error, end_perf)
        except Exception:
            self._failed("recording metrics")
        self._pending = []

    def _end_span(
        self, summary: LogprobSummary, error: BaseException | None, completed: bool | None
    ) -> None:
        span = self._span
        if not self._owned:
            _unhook_end(span, self._end_hook)
        if not self._recording:
            if self._owned:
                span.end()
            return
        if self._pending:
            self._emit_batch(self._last_ts)
        attributes: dict[str, AttributeValue] = {}
        if self._response_id is not None:
            attributes[n.GEN_AI_RESPONSE_ID] = self._response_id
        if self._response_model is not None:
            attributes[n.GEN_AI_RESPONSE_MODEL] = self._response_model
        if self._finish_reasons is not None:
            attributes[n.GEN_AI_RESPONSE_FINISH_REASONS] = self._finish_reasons
        if self._input_tokens is not None:
            attributes[n.GEN_AI_USAGE_INPUT_TOKENS] = self._input_tokens
        if self._output_tokens is not None:
            attributes[n.GEN_AI_USAGE_OUTPUT_TOKENS] = self._output_tokens
        if self._stream and self._first_chunk_perf:
            attributes[n.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = (
                self._first_chunk_perf - self._start_perf
            ) / 1e9
        attributes[n.LOGPROBS_TOKEN_COUNT] = summary.token_count
        if summary.sum is not None:
            attributes[n.LOGPROBS_SUM] = summary.sum
            attributes[n.LOGPROBS_MEAN] = cast(float, summary.mean)
            attributes[n.LOGPROBS_PERPLEXITY] = cast(float, summary.perplexity)
            attributes[n.LOGPROBS_MIN] = cast(float, summary.min)
            attributes[n.LOGPROBS_MIN_INDEX] = cast(int, summary.min_index)
            attributes[n.LOGPROBS_LOW_CONFIDENCE_COUNT] = summary.low_confidence_count
            if summary.entropy_mean is not None:
                attributes[n.LOGPROBS_ENTROPY_MEAN] = summary.entropy_mean
            if summary.margin_mean is not None:
                attributes[n.LOGPROBS_MARGIN_MEAN] = summary.margin_mean
        if self._stream:
            attributes[n.LOGPROBS_STREAM_COMPLETED] = bool(completed) and error is None
        attributes[n.LOGPROBS_EVENTS_MODE] = self._mode
        if self._dropped:
            attributes[n.LOGPROBS_EVENTS_DROPPED] = self._dropped
        if self._capture and self._output_text is not None:
            reasons = self._finish_reasons
            attributes[n.GEN_AI_OUTPUT_MESSAGES] = _output_messages_json(
                self._output_text, reasons[0] if reasons else None
            )
        if not self._owned:  # the rest, the status and the end are the owner's
            span.set_attributes({k: v for k, v in attributes.items() if k.startswith(_OURS)})
            return
        if error is not None:
            error_type = _error_type(error)
            attributes[n.ERROR_TYPE] = error_type
            span.set_attributes(attributes)
            limit = self._event_limit
            if limit is None or self._events_used < limit:  # never push out a token event
                span.record_exception(error, escaped=True)
            span.set_status(StatusCode.ERROR, str(error) or error_type)
        else:
            span.set_attributes(attributes)
        span.end()

    def _record_metrics(
        self, summary: LogprobSummary, error: BaseException | None, end_perf: int
    ) -> None:
        instruments = self._instruments()
        if instruments is None:
            return
        attrs = self._metric_attributes()
        context = self._metric_context
        if not self._owned:  # the owner records gen_ai.client.*
            self._flush_observations()
            self._record_logprob_metrics(instruments, summary, attrs, context)
            return
        duration_attrs = attrs
        if error is not None:
            duration_attrs = {**attrs, n.ERROR_TYPE: _error_type(error)}
        instruments.duration.record((end_perf - self._start_perf) / 1e9, duration_attrs, context)
        if self._input_tokens is not None:
            instruments.token_usage.record(
                self._input_tokens, {**attrs, n.GEN_AI_TOKEN_TYPE: n.TOKEN_TYPE_INPUT}, context
            )
        if self._output_tokens is not None:
            instruments.token_usage.record(
                self._output_tokens, {**attrs, n.GEN_AI_TOKEN_TYPE: n.TOKEN_TYPE_OUTPUT}, context
            )
        if self._stream and self._first_chunk_perf:
            instruments.time_to_first_chunk.record(
                (self._first_chunk_perf - self._start_perf) / 1e9, attrs, context
            )
        self._flush_observations()
        self._record_logprob_metrics(instruments, summary, attrs, context)

    @staticmethod
    def _record_logprob_metrics(
        instruments: _Instruments,
        summary: LogprobSummary,
        attrs: Mapping[str, AttributeValue],
        context: Context,
    ) -> None:
        if summary.sum is not None:
            # Histograms take finite values only: an infinite perplexity (a -inf logprob
            # or an underflowing mean) stays on the span and is not observed here.
            perplexity = cast(float, summary.perplexity)
            if math.isfinite(perplexity):
                instruments.perplexity.record(perplexity, attrs, context)
            min_p = probability(cast(float, summary.min))
            if math.isfinite(min_p):
                instruments.min_probability.record(min_p, attrs, context)
            if summary.entropy_mean is not None and math.isfinite(summary.entropy_mean):
                instruments.entropy.record(max(0.0, summary.entropy_mean), attrs, context)
            instruments.low_confidence.add(summary.low_confidence_count, attrs, context)
