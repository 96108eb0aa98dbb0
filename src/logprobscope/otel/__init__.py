"""OpenTelemetry for logprobscope: every token's logprob as span events, plus metrics.

The names, units and buckets are the contract of TELEMETRY.md. Entry points:

- `OpenTelemetryCallbackHandler`: attach it to `ChatOpenAI` (one span per call).
- `configure_telemetry`: providers and exporters (OTLP, console, Prometheus) in one call.
- `LogprobTelemetry` / `CallTelemetry`: the telemetry core, for other entry points
  (LangChain callbacks, a wrapped `openai` client) that feed it primitive data.

Example::

    from logprobscope import ChatOpenAI
    from logprobscope.otel import OpenTelemetryCallbackHandler, configure_telemetry

    configure_telemetry(service_name="my-app")
    model = ChatOpenAI(model="gpt-4o", logprobs=True, top_logprobs=3,
                       callbacks=[OpenTelemetryCallbackHandler()])
"""

from __future__ import annotations

from .._figures import LogprobStats, LogprobSummary
from ._core import CallTelemetry, EventsMode, LogprobTelemetry, capture_content_from_env
from ._handler import OpenTelemetryCallbackHandler
from ._setup import OTLPProtocol, TelemetryHandle, configure_telemetry

__all__ = [
    "CallTelemetry",
    "EventsMode",
    "LogprobStats",
    "LogprobSummary",
    "LogprobTelemetry",
    "OTLPProtocol",
    "OpenTelemetryCallbackHandler",
    "TelemetryHandle",
    "capture_content_from_env",
    "configure_telemetry",
]
