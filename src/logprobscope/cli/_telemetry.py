"""Telemetry for the CLI: where the standard OTEL_* variables say, or nowhere.

`run` attaches the OpenTelemetry handler only when the environment asks for telemetry (an
OTLP endpoint, or ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``); with nothing set it
sends nothing anywhere. The providers are the CLI's own (not the global ones) and are
flushed and shut down before the command exits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace.export import SpanExporter

from logprobscope import BaseCallbackHandler
from logprobscope import _contract as n

from ._errors import EXIT_USAGE, CliError

if TYPE_CHECKING:
    from logprobscope.otel import EventsMode, TelemetryHandle

_ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)
_EXPORTER_VARIABLES = ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER")


def otlp_endpoint_configured() -> bool:
    """Whether an OTLP endpoint is set in the environment."""
    return any(os.environ.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


def telemetry_requested() -> bool:
    """Whether the standard variables ask for telemetry (and the SDK is not disabled)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if otlp_endpoint_configured():
        return True
    for name in _EXPORTER_VARIABLES:
        values = {v.strip().lower() for v in os.environ.get(name, "").split(",") if v.strip()}
        if values - {"none"}:
            return True
    return False


def start_telemetry(
    *,
    span_exporters: Sequence[SpanExporter] = (),
    capture_content: bool | None = None,
    events: EventsMode = n.DEFAULT_EVENTS_MODE,
) -> tuple[TelemetryHandle, BaseCallbackHandler]:
    """Providers and the OpenTelemetry handler.

    OTLP exporters are added as `configure_telemetry` decides from the environment (an
    endpoint variable, or no `span_exporters` at all), plus `span_exporters`.

    Raises:
        CliError: an exporter's optional dependency is missing, or a variable is invalid.
    """
    from logprobscope.otel import OpenTelemetryCallbackHandler, configure_telemetry

    traces = {v.strip().lower() for v in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")}
    try:
        handle = configure_telemetry(
            service_name=None if os.environ.get("OTEL_SERVICE_NAME") else "logprobscope",
            console="console" in traces,
            span_exporters=span_exporters,
            set_global=False,
        )
    except ImportError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    except ValueError as error:
        raise CliError(f"telemetry configuration: {error}", EXIT_USAGE) from None
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=handle.tracer_provider,
        meter_provider=handle.meter_provider,
        capture_content=capture_content,
        events=events,
    )
    return handle, handler


@contextmanager
def telemetry_from_env() -> Iterator[list[BaseCallbackHandler]]:
    """The OpenTelemetry handler when the environment asks for telemetry; flushed on exit."""
    if not telemetry_requested():
        yield []
        return
    handle, handler = start_telemetry()
    try:
        yield [handler]
    finally:
        handle.shutdown()
