"""`LogprobTelemetry`: a tracer and the instruments, once; a `CallTelemetry` per model call."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import get_args

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from .. import _contract as n
from .._version import __version__
from ._call import CallTelemetry
from ._events import EventsMode
from ._metrics import instruments_for

__all__ = ["LogprobTelemetry", "capture_content_from_env"]

logger = logging.getLogger("logprobscope.otel")


def capture_content_from_env() -> bool:
    """Whether `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` asks for content capture.

    "true" (any case) turns it on, as do the newer values "span_only" and "span_and_event";
    anything else, or the variable unset, leaves it off.
    """
    value = os.environ.get(n.ENV_CAPTURE_CONTENT, "").strip().lower()
    return value in ("true", "span_only", "span_and_event")


class LogprobTelemetry:
    """Turns model calls into spans, span events and metrics per TELEMETRY.md.

    One instance serves any number of concurrent calls, from any number of entry points.
    It gets a tracer and creates the metric instruments once (per meter provider);
    `start_call` then starts a span per call and returns the `CallTelemetry` that the
    caller feeds until the call ends.

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
        threshold = None
        if not isinstance(low_confidence_threshold, bool) and isinstance(
            low_confidence_threshold, (int, float)
        ):
            threshold = float(low_confidence_threshold)
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
        self._instruments = instruments_for(meter_provider or metrics.get_meter_provider())

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

        The recorder is also a context manager (`with telemetry.start_call(...) as call:`)
        that ends the call when the block ends; see `CallTelemetry`.
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
            )
        except Exception:
            logger.warning("starting the telemetry of a model call failed", exc_info=True)
            return CallTelemetry._disabled()
