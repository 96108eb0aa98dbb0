"""What an instrumentor records with: its keyword arguments, else the environment.

`opentelemetry-instrument` calls `instrument()` with no argument, so every option a user may
want without code has an environment variable; an explicit keyword argument always wins.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import cast, get_args

from .. import _contract as n
from ..otel import EventsMode, LogprobTelemetry, TelemetryKwargs

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

    `telemetry` (a `LogprobTelemetry`) is used as it is; giving options with it is a
    `TypeError`, as for every entry point. Otherwise one is made from the
    `logprobscope.otel.TelemetryOptions` given (`tracer_provider`, `meter_provider`: default
    the global ones, which `opentelemetry-instrument` has configured by then;
    `capture_content`: default `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`), with
    `events` from `LOGPROBSCOPE_EVENTS` and `low_confidence_threshold` from
    `LOGPROBSCOPE_LOW_CONFIDENCE_THRESHOLD` when not given. An environment variable with a
    value out of range is logged and ignored; an argument out of range raises `ValueError`.
    """
    given = options.get("telemetry")
    rest = {k: v for k, v in options.items() if k != "telemetry" and v is not None}
    if given is not None and not isinstance(given, LogprobTelemetry):
        raise TypeError(f"telemetry must be a LogprobTelemetry, not {type(given).__name__}")
    if given is None:
        rest.setdefault("events", _events_from_env())
        rest.setdefault("low_confidence_threshold", _threshold_from_env())
    return LogprobTelemetry.shared_or_new(given, **cast(TelemetryKwargs, rest))
