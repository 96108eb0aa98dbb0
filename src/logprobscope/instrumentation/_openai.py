"""`OpenAIInstrumentor`: `instrument_openai()` for all clients, as an OpenTelemetry instrumentor."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

# The module says `# type: ignore` at its top: mypy sees none of its names.
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from ..instrument import instrument_openai, uninstrument_openai
from ._options import OPTIONS, telemetry_from

__all__ = ["OpenAIInstrumentor"]

_DEPENDENCIES = ("openai >= 3.50, < 4",)


class OpenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Logprob telemetry for every `openai` client's `chat.completions.create`, sync and async.

    `OpenAIInstrumentor().instrument()` does what `logprobscope.instrument.instrument_openai()`
    (no client) does, the same patch: every call, streamed or not, emits the logprobscope
    telemetry contract (a `chat {model}` span with logprob events and summary attributes, and
    the metrics). `opentelemetry-instrument` calls it on its own through the
    `opentelemetry_instrumentor` entry point `logprobscope_openai`; list that name in
    `OTEL_PYTHON_DISABLED_INSTRUMENTATIONS` to leave it out.

    `instrument(**options)` takes `telemetry`, `tracer_provider`, `meter_provider`,
    `capture_content`, `events` and `low_confidence_threshold` (see
    `instrument_openai`); without them the global providers and the environment
    (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`, `LOGPROBSCOPE_EVENTS`,
    `LOGPROBSCOPE_LOW_CONFIDENCE_THRESHOLD`) decide. `uninstrument()` removes the patch; calls
    already started end their spans as usual. Like every OpenTelemetry instrumentor it is a
    singleton: `OpenAIInstrumentor()` is always the same object.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """The `openai` versions this instruments."""
        return _DEPENDENCIES

    def _instrument(self, **kwargs: Any) -> None:
        telemetry = telemetry_from({k: v for k, v in kwargs.items() if k in OPTIONS})
        instrument_openai(telemetry=telemetry)

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument_openai()
