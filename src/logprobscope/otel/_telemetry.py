"""`LogprobTelemetry` and its options: a tracer and the instruments, once; a call per model call.

The options are declared here only: `TelemetryOptions` is the validated value,
`TelemetryKwargs` the same names as keyword arguments of every entry point.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, TypedDict, get_args

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, TracerProvider
from typing_extensions import Unpack

from .. import _contract as n
from .._version import __version__
from ._call import CallTelemetry
from ._events import EventsMode
from ._metrics import instruments_for

__all__ = [
    "LogprobTelemetry",
    "TelemetryKwargs",
    "TelemetryOptions",
    "capture_content_from_env",
]

logger = logging.getLogger("logprobscope.otel")


def capture_content_from_env() -> bool:
    """Whether `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` asks for content capture.

    "true" (any case) turns it on, as do the newer values "span_only" and "span_and_event";
    anything else, or the variable unset, leaves it off.
    """
    value = os.environ.get(n.ENV_CAPTURE_CONTENT, "").strip().lower()
    return value in ("true", "span_only", "span_and_event")


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetryOptions:
    """How model calls become telemetry; validated when made.

    Attributes:
        tracer_provider: where spans go; None: the global tracer provider.
        meter_provider: where metrics go; None: the global meter provider.
        capture_content: put token texts, bytes, top alternatives' texts and messages in
            the telemetry. None: as `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`
            says when the `LogprobTelemetry` is made, else off.
        events: how tokens become span events: "tokens" (one `logprobs.token` event per
            token, switching to "batched" before the span's event limit would drop any),
            "batched" (`logprobs.tokens` events with arrays), "low_confidence" (events
            only for tokens below the threshold) or "none" (summary attributes only).
        low_confidence_threshold: probability below which a token is low-confidence.

    Raises:
        ValueError: an unknown `events` mode or a threshold outside [0, 1].
    """

    # Providers are options like the others: each None is resolved when a LogprobTelemetry
    # is made from them, and every entry point takes all five under the same names.
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    capture_content: bool | None = None
    events: EventsMode = n.DEFAULT_EVENTS_MODE
    low_confidence_threshold: float = n.DEFAULT_LOW_CONFIDENCE_THRESHOLD

    def __post_init__(self) -> None:
        events = self.events
        if events not in get_args(EventsMode):
            raise ValueError(f"events must be one of {', '.join(n.EVENT_MODES)}, not {events!r}")
        value = self.low_confidence_threshold
        threshold = None
        if not isinstance(value, bool) and isinstance(value, (int, float)):
            threshold = float(value)
        if threshold is None or not 0.0 <= threshold <= 1.0:
            raise ValueError(
                f"low_confidence_threshold must be a probability in [0, 1], not {value!r}"
            )
        object.__setattr__(self, "low_confidence_threshold", threshold)
        if self.capture_content is not None:
            object.__setattr__(self, "capture_content", bool(self.capture_content))


class TelemetryKwargs(TypedDict, total=False):
    """The fields of `TelemetryOptions` as keyword arguments (see there for each)."""

    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None
    capture_content: bool | None
    events: EventsMode
    low_confidence_threshold: float


class LogprobTelemetry:
    """Turns model calls into spans, span events and metrics per TELEMETRY.md.

    One instance serves any number of concurrent calls, from any number of entry points.
    It gets a tracer and creates the metric instruments once (per meter provider);
    `start_call` then starts a span per call and returns the `CallTelemetry` that the
    caller feeds until the call ends.

    Made from a `TelemetryOptions`, or from its fields as keyword arguments:
    `LogprobTelemetry(events="batched")` is `LogprobTelemetry(TelemetryOptions(events="batched"))`.

    Raises:
        ValueError: an unknown `events` mode or a threshold outside [0, 1].
        TypeError: both a `TelemetryOptions` and keyword options.
    """

    def __init__(
        self, options: TelemetryOptions | None = None, /, **kwargs: Unpack[TelemetryKwargs]
    ) -> None:
        if options is None:
            options = TelemetryOptions(**kwargs)
        elif kwargs:
            raise TypeError("pass a TelemetryOptions or keyword options, not both")
        tracer_provider = options.tracer_provider or trace.get_tracer_provider()
        meter_provider = options.meter_provider or metrics.get_meter_provider()
        capture = options.capture_content
        self._options = replace(
            options,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            capture_content=capture_content_from_env() if capture is None else capture,
        )
        self._tracer_provider = tracer_provider
        self._tracer = tracer_provider.get_tracer(n.SCOPE_NAME, __version__)
        self._instruments = instruments_for(meter_provider)

    @classmethod
    def shared_or_new(
        cls, telemetry: LogprobTelemetry | None, /, **options: Unpack[TelemetryKwargs]
    ) -> LogprobTelemetry:
        """`telemetry` when given (to share it), else a new one made from `options`.

        For entry points that take either; giving both is a mistake (the options would be
        silently ignored).

        Raises:
            TypeError: both `telemetry` and options.
            ValueError: invalid options (see `TelemetryOptions`).
        """
        if telemetry is None:
            return cls(**options)
        if options:
            raise TypeError(
                f"pass telemetry= or its options ({', '.join(sorted(options))}), not both"
            )
        return telemetry

    @property
    def options(self) -> TelemetryOptions:
        """The options in effect: the providers and content capture resolved."""
        return self._options

    @property
    def capture_content(self) -> bool:
        """Whether texts and messages go into the telemetry."""
        return bool(self._options.capture_content)

    @property
    def events(self) -> EventsMode:
        """How tokens become span events."""
        return self._options.events

    @property
    def low_confidence_threshold(self) -> float:
        """Probability below which a token is low-confidence."""
        return self._options.low_confidence_threshold

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
        api: Literal["chat_completions", "responses"] = "chat_completions",
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
        `api="responses"`: a Responses API call, whose `params` are that API's body
        (`include`, `max_output_tokens`, `instructions`); its span also gets
        `openai.api.type = "responses"`. The span, events and metrics are otherwise a chat
        completion's.

        The recorder is also a context manager (`with telemetry.start_call(...) as call:`)
        that ends the call when the block ends; see `CallTelemetry`.

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
                api=api,
                span=span,
            )
        except Exception:
            logger.warning("starting the telemetry of a model call failed", exc_info=True)
            return CallTelemetry._disabled()
