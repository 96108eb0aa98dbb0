"""Spans other instrumentations made for the call we are about to record.

OpenTelemetry's GenAI instrumentations make one span per model call and record no logprob.
Where one of them has made the span of the call at hand, our telemetry goes on that span
instead of a second one (see `LogprobTelemetry.start_call(span=...)`). Two ways to find it:

- `current_chat_span()`: the span current right now, when it is another instrumentation's
  chat span (`opentelemetry-instrumentation-genai-openai` makes its span current around the
  `openai` call; so does its LangChain instrumentation around a chat model's generation).
- `langchain_run_span(run_id)`: the span `opentelemetry-instrumentation-genai-langchain`
  made for a LangChain run, which it keeps by run id and does not make current when its
  callback starts the run. Read from that package's state: anything unexpected there means
  "no such span", never an error.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import weakref
from typing import Final, Protocol
from uuid import UUID

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind

from . import _contract as n

__all__ = [
    "adoptable",
    "claim_langchain_run",
    "current_chat_span",
    "claimed_langchain_run",
    "langchain_run_span",
    "official_langchain_active",
    "official_openai_active",
]

logger = logging.getLogger("logprobscope")

_OFFICIAL_LANGCHAIN: Final = "opentelemetry.instrumentation.genai.langchain"
_OFFICIAL_OPENAI: Final = "opentelemetry.instrumentation.genai.openai"


class _Run(Protocol):
    @property
    def done(self) -> bool: ...

    def hand_over(self) -> bool:
        """Let the `openai` call's instrumentation record the run; False if too late."""
        ...


# The LangChain run our handler is recording in this context: the `openai` call LangChain
# makes for it is then left to the handler (one record per call, not two). Set by the
# handler's start hook, which LangChain calls in the caller's thread or task (and, for a
# stream, in the context the caller reads it from); a run that has ended claims nothing.
# A weak reference: the context outlives the run, and must not keep its telemetry alive.
_LANGCHAIN_RUN: contextvars.ContextVar[weakref.ref[_Run] | None] = contextvars.ContextVar(
    "logprobscope_langchain_run", default=None
)


def claim_langchain_run(run: _Run) -> None:
    """Mark `run` as the LangChain run recorded in the current context."""
    _LANGCHAIN_RUN.set(weakref.ref(run))


def claimed_langchain_run() -> _Run | None:
    """The LangChain run our handler records in the current context, if under way."""
    ref = _LANGCHAIN_RUN.get()
    run = ref() if ref is not None else None
    return run if run is not None and not run.done else None


def adoptable(span: object) -> bool:
    """Whether `span` is another instrumentation's chat span, still open and recording.

    Only SDK spans can tell (their kind, attributes, end and scope are readable); any
    other span is never taken for a neighbour's.
    """
    try:
        if not isinstance(span, Span) or not span.is_recording():
            return False
        if getattr(span, "end_time", 0) is not None:  # SDK spans: None until ended
            return False
        attributes = getattr(span, "attributes", None)
        if attributes is None or attributes.get(n.GEN_AI_OPERATION_NAME) != n.OPERATION_CHAT:
            return False
        if getattr(span, "kind", None) is not SpanKind.CLIENT:
            return False
        scope = getattr(span, "instrumentation_scope", None)
        return getattr(scope, "name", None) != n.SCOPE_NAME  # not one of ours
    except Exception:
        return False


def current_chat_span(context: Context | None = None) -> Span | None:
    """The span current in `context` (default: now) if another instrumentation's chat span."""
    span = trace.get_current_span(context)
    return span if adoptable(span) else None


def _instrumented(module_name: str, class_name: str) -> bool:
    module = sys.modules.get(module_name)
    if module is None:
        return False
    try:
        instrumentor = getattr(module, class_name)._instance
        return bool(instrumentor is not None and instrumentor.is_instrumented_by_opentelemetry)
    except Exception:
        return False


def official_langchain_active() -> bool:
    """Whether OpenTelemetry's LangChain instrumentation is instrumented in this process."""
    return _instrumented(_OFFICIAL_LANGCHAIN, "LangChainInstrumentor")


def official_openai_active() -> bool:
    """Whether OpenTelemetry's OpenAI instrumentation is instrumented in this process."""
    return _instrumented(_OFFICIAL_OPENAI, "OpenAIInstrumentor")


def langchain_run_span(run_id: UUID) -> Span | None:
    """The open span OpenTelemetry's LangChain instrumentation made for run `run_id`."""
    module = sys.modules.get(_OFFICIAL_LANGCHAIN)
    if module is None:
        return None
    try:
        handler = module.LangChainInstrumentor._instance._callback_handler
        invocation = handler._invocation_manager.get_invocation(run_id=run_id)
        span = getattr(invocation, "span", None)
    except Exception:
        logger.debug("reading the LangChain instrumentation's run failed", exc_info=True)
        return None
    return span if adoptable(span) else None
