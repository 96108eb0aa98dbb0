"""OpenTelemetry for logprobscope: every token's logprob as span events, plus metrics.

The names, units and buckets are the contract of TELEMETRY.md. Entry points:

- `OpenTelemetryCallbackHandler`: attach it to `ChatOpenAI` (one span per call).
- `configure_telemetry`: providers and exporters (OTLP, console, Prometheus) in one call.
- `LogprobTelemetry` / `CallTelemetry`: the telemetry core, for other entry points
  (LangChain callbacks, a wrapped `openai` client, your own) that feed it tokens
  (`TokenLogprobLike` objects or OpenAI-format entries) and `ResponseFacts`.
- `TelemetryOptions`: the options every entry point takes (`TelemetryKwargs` as keywords).

Example::

    from logprobscope import ChatOpenAI
    from logprobscope.otel import OpenTelemetryCallbackHandler, configure_telemetry

    configure_telemetry(service_name="my-app")
    model = ChatOpenAI(model="gpt-4o", logprobs=True, top_logprobs=3,
                       callbacks=[OpenTelemetryCallbackHandler()])

Your own entry point::

    telemetry = LogprobTelemetry(events="batched")             # once
    with telemetry.start_call(model="gpt-4o", stream=False, params=body) as call:
        answer = backend.complete(body)                        # an exception fails the call
        call.add_tokens(answer["choices"][0]["logprobs"]["content"])   # JSON entries
        call.set_response(ResponseFacts(id=answer["id"], model=answer["model"]))
"""

from __future__ import annotations

from .._figures import LogprobStats, LogprobSummary
from ._call import CallTelemetry, TokenChannel
from ._events import EventsMode
from ._handler import OpenTelemetryCallbackHandler
from ._input import ResponseFacts, TokenInput, TokenLogprobLike, TopLogprobLike
from ._setup import OTLPProtocol, TelemetryHandle, configure_telemetry
from ._telemetry import (
    LogprobTelemetry,
    TelemetryKwargs,
    TelemetryOptions,
    capture_content_from_env,
)

__all__ = [
    "CallTelemetry",
    "EventsMode",
    "LogprobStats",
    "LogprobSummary",
    "LogprobTelemetry",
    "OTLPProtocol",
    "OpenTelemetryCallbackHandler",
    "ResponseFacts",
    "TelemetryHandle",
    "TelemetryKwargs",
    "TelemetryOptions",
    "TokenChannel",
    "TokenInput",
    "TokenLogprobLike",
    "TopLogprobLike",
    "capture_content_from_env",
    "configure_telemetry",
]
