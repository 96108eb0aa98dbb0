"""What an instrumentor records with: its keyword arguments, else the environment.

`opentelemetry-instrument` calls `instrument()` with no argument, so every option a user may
want without code has an environment variable; an explicit keyword argument always wins.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import cast, get_args

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from .. import _contract as n
from ..otel import EventsMode, LogprobTelemetry

logger = logging.getLogger("logprobscope")

# The keyword arguments our instrumentors understand (others, such as the logger_provider
# some distros pass to every instrumentor, are ignored).
OPTIONS = frozenset(
    {
        "telemetry",
        "tracer_provider",
        "meter_provider",
        "capture_content",
        "events",
        "low_confidence_threshold",
    }
)


def _events_from_env() -> EventsMode:
    value = os.environ.get(n.ENV_EVENTS, "").strip().lower()
    if not value:
        return n.DEFAULT_EVENTS_MODE
    if value in get_args(EventsMode):
        return cast(EventsMode, value)
    logger.warning(
        "%s=%r is not one of %s; using %r",
        n.ENV_EVENTS,
        value,
        ", ".join(n.EVENT_MODES),
        n.DEFAULT_EVENTS_MODE,
    )
    return n.DEFAULT_EVENTS_MODE


def _threshold_from_env() -> float:
    value = os.environ.get(n.ENV_LOW_CONFIDENCE_THRESHOLD, "").strip()
    if not value:
        return n.DEFAULT_LOW_CONFIDENCE_THRESHOLD
    try:
        threshold = float(value)
    except ValueError:
        threshold = -1.0
    if 0.0 <= threshold <= 1.0:
        return threshold
    logger.warning(
        "%s=%r is not a probability in [0, 1]; using %s",
        n.ENV_LOW_CONFIDENCE_THRESHOLD,
        value,
        n.DEFAULT_LOW_CONFIDENCE_THRESHOLD,
    )
    return n.DEFAULT_LOW_CONFIDENCE_THRESHOLD


def telemetry_from(options: Mapping[str, object]) -> LogprobTelemetry:
    """The telemetry an instrumentor records into, from `instrument()`'s keyword arguments.

    `telemetry` (a `LogprobTelemetry`) is used as it is. Otherwise one is made from
    `tracer_provider`, `meter_provider` (default: the global ones, which
    `opentelemetry-instrument` has configured by then), `capture_content` (default:
    `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`), `events` (default:
    `LOGPROBSCOPE_EVENTS`, else "tokens") and `low_confidence_threshold` (default:
    `LOGPROBSCOPE_LOW_CONFIDENCE_THRESHOLD`, else 0.5). An environment variable with a
    value out of range is logged and ignored; an explicit argument out of range raises
    `ValueError`, as `LogprobTelemetry` does.
    """
    given = options.get("telemetry")
    if given is not None:
        if not isinstance(given, LogprobTelemetry):
            raise TypeError(f"telemetry must be a LogprobTelemetry, not {type(given).__name__}")
        return given
    tracer_provider = options.get("tracer_provider")
    meter_provider = options.get("meter_provider")
    capture = options.get("capture_content")
    events = options.get("events")
    threshold = options.get("low_confidence_threshold")
    return LogprobTelemetry(
        tracer_provider=cast("TracerProvider | None", tracer_provider),
        meter_provider=cast("MeterProvider | None", meter_provider),
        capture_content=None if capture is None else bool(capture),
        events=cast(EventsMode, events) if events is not None else _events_from_env(),
        low_confidence_threshold=(
            cast(float, threshold) if threshold is not None else _threshold_from_env()
        ),
    )
