"""`CallTelemetry`: one model call's span, from its start to its one end.

The call starts its span with the request attributes, feeds its tokens to the running
statistics, the event writer and the metric observations, keeps the response's facts, and
at its end sets the summary attributes, ends the span and records the per-call metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TypeVar

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode

from .. import _contract as n
from .._figures import LogprobStats, LogprobSummary, summary_attributes
from .._logprobs import TokenLogprobList
from .._text import valid_text
from ._attributes import (
    Attributes,
    error_type,
    metric_attributes,
    output_messages_json,
    request_attributes,
    response_attributes,
)
from ._events import CONTENT, EventWriter, event_limit
from ._field_events import ContentTokens, field_attributes, structured_format
from ._guest import hook_end, ours_only, unhook_end
from ._input import ResponseFacts, TokenColumns, TokenInput
from ._metrics import NO_EXEMPLAR_CONTEXT, CallMetrics
from ._span_events import event_adder

if TYPE_CHECKING:
    from ._telemetry import LogprobTelemetry

__all__ = ["CallTelemetry", "TokenChannel"]

TokenChannel = Literal["content", "refusal"]
"""Which part of an answer tokens spell: its content, or the model's refusal."""

logger = logging.getLogger("logprobscope.otel")

_DEFER = 16
"""Token lists (about one per chunk) held before they are processed together: a call's
own work in one tight run instead of between every two of the caller's chunks costs a
streamed chunk a third less CPU here; what waits is at most this many chunks' tokens, and
each keeps the arrival time it was given (see docs/telemetry.md)."""

_NO_RESPONSE = ResponseFacts()
_T = TypeVar("_T")


class CallTelemetry:
    """The telemetry of one model call: its span, events and metric observations.

    Made by `LogprobTelemetry.start_call`. Feed it from one thread at a time (a call's
    chunks arrive in order): `add_tokens` and `add_chunk` as the answer arrives,
    `set_response` with what the server said, then `end` or `fail`, once.

    Tokens belong to a channel (the content, or the refusal) of a choice (0 unless the
    request asked for n > 1). Choice 0's content makes the `logprobs.*` summary and the
    metrics; its refusal the `logprobs.refusal.*` summary; other choices are counted in
    `logprobs.other_choices.token_count`. Every token goes to the span events, whichever.
    When the request asks for JSON (`response_format` `json_schema` or `json_object`), a
    call that ends with an answer also gets one `logprobs.field` event per leaf value of
    choice 0's content (see `_field_events`).

    Each method is safe to call in any state: after the end, everything is ignored;
    failures are logged (once per call at warning level, then at debug), never raised.
    Ending happens once; later ends are ignored.

    Also a context manager, for code that holds the whole call in one block::

        with telemetry.start_call(model="m", stream=False, params=body) as call:
            answer = backend.complete(body)    # an exception here fails the call
            call.add_tokens(answer.tokens)     # token-like objects or JSON entries
            call.set_response(ResponseFacts(id=answer.id, model=answer.model))

    Leaving the block ends the call (`end(completed=True)`); an exception fails it with that
    exception (`fail`), which then propagates unchanged; `GeneratorExit` (a generator left
    before its end) ends it with `completed=False`. A stream that outlives the block (one
    returned to the caller, say) must not be started in a `with`: end it with `end` or
    `fail` when it is done.
    """

    __slots__ = (
        "_telemetry",
        "_span",
        "_stream",
        "_capture",
        "_stats",
        "_metrics",
        "_events",
        "_columns",
        "_response",
        "_ended",
        "_warned",
        "_lock",
        "_refusal",
        "_others",
        "_format",
        "_content",
        "_owned",
        "_end_hook",
        "_pending",
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
        api: str = n.API_CHAT_COMPLETIONS,
        span: Span | None = None,
    ) -> None:
        start_perf = time.perf_counter_ns()
        self._owned = span is None  # our span, which we end; else its owner ends it
        self._end_hook: object = None
        if start_time_ns is not None:  # the same instant on the monotonic clock
            start_perf -= max(0, time.time_ns() - start_time_ns)
        self._telemetry = telemetry
        self._stream = stream
        self._ended = telemetry is None
        self._warned = False
        self._lock = threading.Lock()
        self._columns = TokenColumns()
        self._pending: list[tuple[TokenInput, int, TokenChannel, int]] = []
        self._response = _NO_RESPONSE
        self._events: EventWriter | None = None
        self._refusal: LogprobStats | None = None  # made with the first refusal token
        self._others = 0
        self._format: Mapping[str, object] | None = None
        self._content: ContentTokens | None = None
        if telemetry is None:  # the disabled stand-in
            self._span: Span = trace.INVALID_SPAN
            self._capture = False
            self._stats = LogprobStats()
            self._metrics = CallMetrics(None, {}, NO_EXEMPLAR_CONTEXT, start_perf)
            return

        capture = self._capture = telemetry.capture_content
        threshold = telemetry.low_confidence_threshold
        self._stats = LogprobStats(threshold)
        parent = context if context is not None else context_api.get_current()
        attributes = request_attributes(
            model=model,
            stream=stream,
            params=params,
            provider=provider,
            server_address=server_address,
            server_port=server_port,
            threshold=threshold,
            input_messages=input_messages if capture else None,
            api=api,
        )
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
            span.set_attributes(ours_only(attributes))
            parent = context_api.get_current()
        self._span = span
        self._metrics = CallMetrics(
            telemetry._instruments,
            metric_attributes(model=model, provider=provider, server_address=server_address),
            trace.set_span_in_context(span, parent),  # metric exemplars point at this span
            start_perf,
            owned=self._owned,
        )
        if span.is_recording():  # a span sampled out gets no events at all
            adder = event_adder(span)
            self._events = EventWriter(
                adder.add,
                flush=adder.flush,
                mode=telemetry.events,
                limit=event_limit(span, telemetry._tracer_provider),
                capture=capture,
                threshold=threshold,
            )
            if telemetry.events != n.MODE_NONE:
                self._format = structured_format(params)
                if self._format is not None:
                    self._content = ContentTokens()
        if not self._owned:
            self._end_hook = hook_end(span, self._owner_ends)

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
        return self._response.model

    @property
    def token_count(self) -> int:
        """Tokens added so far."""
        if not self._ended:
            with self._lock:
                if not self._ended:
                    self._drain()
        return self._stats.count

    def _failed(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("logprob telemetry failed in %s; the call goes on", what, exc_info=True)
        else:
            logger.debug("logprob telemetry failed in %s", what, exc_info=True)

    # -- feeding --------------------------------------------------------------------------

    def add_tokens(
        self,
        tokens: TokenInput,
        *,
        time_ns: int | None = None,
        channel: TokenChannel = "content",
        choice: int = 0,
        new_chunk: bool = True,
    ) -> None:
        """Tokens of `channel` of choice `choice` arrived at `time_ns` (ns since epoch; None: now).

        `tokens` are token-like objects (our `TokenLogprobList`, read in place; the openai
        SDK's `ChatCompletionTokenLogprob`s; `TokenLogprob`s) or OpenAI-format JSON entries
        (see `TokenInput`); malformed entries are kept as far as they make sense. On a
        streamed call each call is one chunk's arrival, even with no tokens; give the
        second and later token lists of one chunk (its refusal, other choices) with
        `new_chunk=False`. An unknown channel or a negative choice is logged and ignored.
        """
        if self._ended:
            return
        try:
            if channel not in n.CHANNELS or isinstance(choice, bool) or choice < 0:
                raise ValueError(f"no token channel {channel!r} of choice {choice!r}")
            if self._stream and new_chunk:
                self._metrics.chunk()  # the arrival is timed now, whenever it is processed
            now = time.time_ns() if time_ns is None else time_ns
            kind = type(tokens)
            with self._lock:  # `token_count` may process what waits from another thread
                if self._owned and (kind is TokenLogprobList or kind is list or kind is tuple):
                    # Processed in steps of a few chunks (see `_DEFER`): a list is copied, so
                    # the caller's list may change; its entries must not. On another's span
                    # the events go in as they come, in step with the owner's own events.
                    pending = self._pending
                    copied = tokens if kind is TokenLogprobList else list(tokens)
                    pending.append((copied, now, channel, choice))  # type: ignore[arg-type]
                    if len(pending) >= _DEFER:
                        self._drain()
                else:  # read now, after what waits
                    self._drain()
                    self._process(tokens, now, channel, choice)
                    self._metrics.observe(self._response.model)
        except Exception:
            self._failed("add_tokens")

    def _drain(self) -> None:
        """Process the token lists waiting, in order."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        for tokens, now, channel, choice in pending:
            try:
                self._process(tokens, now, channel, choice)
            except Exception:
                self._failed("add_tokens")
        try:  # also run from `_finish` and `token_count`: nothing may raise from here
            self._metrics.observe(self._response.model)
        except Exception:
            self._failed("recording metrics")

    def _process(self, tokens: TokenInput, now: int, channel: TokenChannel, choice: int) -> None:
        if isinstance(tokens, TokenLogprobList):
            buf, start, stop = tokens._columns()  # ours: read in place, zero-copy
        else:
            buf, start, stop = self._columns.append(tokens)
        if stop <= start:
            return
        key = (channel, choice)
        if key == CONTENT:
            metrics = self._metrics
            self._stats.add_columns(
                buf.logprobs, buf.top_logprobs, buf.top_offsets, start, stop, metrics.probabilities
            )
            if self._content is not None:
                self._content.add(buf, start, stop)
        elif choice == 0:  # the refusal: its own figures, no metric observations
            refusal = self._refusal
            if refusal is None:
                refusal = self._refusal = LogprobStats(self._stats.threshold)
            refusal.add_columns(
                buf.logprobs, buf.top_logprobs, buf.top_offsets, start, stop, array("d")
            )
        else:
            self._others += stop - start
        events = self._events
        if events is not None:
            events.add(buf, start, stop, now, key)

    def add_chunk(self, *, time_ns: int | None = None) -> None:
        """A streamed chunk without tokens arrived (role, finish or usage chunks).

        Chunk arrivals feed time-to-first-chunk and time-per-output-chunk. On a streamed
        call, `add_tokens` counts its chunk itself (even with no tokens): call `add_chunk`
        only for chunks not passed to it. The timing is read from a monotonic clock here;
        `time_ns` is accepted for symmetry and unused.
        """
        if self._ended:
            return
        try:
            metrics = self._metrics
            metrics.chunk()
            metrics.observe(self._response.model)
        except Exception:
            self._failed("add_chunk")

    def set_response(self, response: ResponseFacts) -> None:
        """What the server answered; may be called more than once (None keeps the earlier).

        Giving the response model early (e.g. from a stream's first chunk) lets metric
        observations be recorded during the stream instead of all at the end.
        `output_text` becomes `gen_ai.output.messages` only with content capture.
        """
        if self._ended:
            return
        try:
            # Server strings go into attributes: no lone surrogate may reach the exporter.
            known = self._response
            reasons = response.finish_reasons
            self._response = ResponseFacts(
                id=known.id if response.id is None else valid_text(response.id),
                model=known.model if response.model is None else valid_text(response.model),
                finish_reasons=known.finish_reasons
                if reasons is None
                else [valid_text(str(r)) for r in reasons],
                input_tokens=_keep(known.input_tokens, response.input_tokens),
                output_tokens=_keep(known.output_tokens, response.output_tokens),
                output_text=_keep(known.output_text, response.output_text),
                output_refusal=_keep(known.output_refusal, response.output_refusal),
                output_tool_calls=_keep(known.output_tool_calls, response.output_tool_calls),
            )
        except Exception:
            self._failed("set_response")

    # -- the end --------------------------------------------------------------------------

    def _owner_ends(self) -> None:
        # The owner of the span we record on ends it before the call ended here (its stream
        # wrapper closed or collected first, its handler run first): our part ends now.
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

    def __enter__(self) -> CallTelemetry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end(completed=True)
        elif isinstance(exc, GeneratorExit):  # the caller stopped reading: not an error
            self.end(completed=False)
        else:
            self.fail(exc)

    def _finish(self, error: BaseException | None, completed: bool | None) -> None:
        if self._telemetry is None:
            return
        end_perf = time.perf_counter_ns()
        summary: LogprobSummary | None = None
        with self._lock:
            self._drain()
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
            self._metrics.record_end(
                summary or self._stats.summary(),
                self._response,
                stream=self._stream,
                error=error,
                end_perf=end_perf,
            )
        except Exception:
            self._failed("recording metrics")
        self._events = None  # let go of the buffers of a batch never written

    def _end_span(
        self, summary: LogprobSummary, error: BaseException | None, completed: bool | None
    ) -> None:
        span = self._span
        events = self._events
        if not self._owned:
            unhook_end(span, self._end_hook)
        if events is None:  # not recording
            if self._owned:
                span.end()
            return
        events.close()
        response = self._response
        attributes: Attributes = {}
        response_attributes(attributes, response)
        if self._stream:
            first_chunk = self._metrics.time_to_first_chunk()
            if first_chunk is not None:
                attributes[n.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = first_chunk
        attributes.update(summary_attributes(summary))
        if self._refusal is not None:
            refusal = summary_attributes(self._refusal.summary())
            attributes.update((n.REFUSAL_SUMMARY[k], v) for k, v in refusal.items())
        if self._others:
            attributes[n.LOGPROBS_OTHER_CHOICES_TOKEN_COUNT] = self._others
        if self._stream:
            attributes[n.LOGPROBS_STREAM_COMPLETED] = bool(completed) and error is None
        attributes[n.LOGPROBS_EVENTS_MODE] = events.mode
        if events.dropped:
            attributes[n.LOGPROBS_EVENTS_DROPPED] = events.dropped
        if error is None:
            self._field_events(events, attributes)
        if self._capture and (
            response.output_text is not None
            or response.output_refusal is not None
            or response.output_tool_calls
        ):
            reasons = response.finish_reasons
            attributes[n.GEN_AI_OUTPUT_MESSAGES] = output_messages_json(
                response.output_text,
                reasons[0] if reasons else None,
                refusal=response.output_refusal,
                tool_calls=response.output_tool_calls,
            )
        if not self._owned:  # the rest, the status and the end are the owner's
            span.set_attributes(ours_only(attributes))
            return
        if error is not None:
            kind = error_type(error)
            attributes[n.ERROR_TYPE] = kind
            span.set_attributes(attributes)
            if events.room_for_exception:  # never push out a token event
                span.record_exception(error, escaped=True)
            span.set_status(StatusCode.ERROR, str(error) or kind)
        else:
            span.set_attributes(attributes)
        span.end()

    def _field_events(self, events: EventWriter, attributes: Attributes) -> None:
        # After the token events and in the room they left: never one token event less.
        content, format = self._content, self._format
        if content is None or format is None or not content:
            return
        try:
            report = content.report(format)
        except Exception:  # field_confidence never raises on model output; a bug must not end it
            self._failed("field confidence")
            return
        now = time.time_ns()
        dropped = 0
        for field in report.fields:
            if not events.extra(n.EVENT_FIELD, field_attributes(field, capture=self._capture), now):
                dropped += 1
        attributes[n.LOGPROBS_FIELDS_COUNT] = len(report.fields)
        attributes[n.LOGPROBS_FIELDS_COMPLETE] = report.complete
        if dropped:
            attributes[n.LOGPROBS_FIELDS_DROPPED] = dropped


def _keep(known: _T | None, given: _T | None) -> _T | None:
    return known if given is None else given
