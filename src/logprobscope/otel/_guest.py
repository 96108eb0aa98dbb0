"""Recording on a span another instrumentation owns: its end is theirs, our part comes first.

The owner ends the span whenever its own code decides (a stream wrapper collected before
ours, its callback handler run before ours): `span.end` is hooked on that one span object so
that our summary attributes land just before, and the hook is taken off when our part ends
first. Only our attributes (`logprobs.*`) are ever set on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

__all__ = ["OURS", "hook_end", "ours_only", "unhook_end"]

logger = logging.getLogger("logprobscope.otel")

OURS = "logprobs."


def ours_only(attributes: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
    """The attributes that are ours to set on another's span."""
    return {k: v for k, v in attributes.items() if k.startswith(OURS)}


def hook_end(span: Span, before_end: Callable[[], None]) -> object:
    """Make `span.end()` run `before_end` first (once); return the hook, None if it failed."""
    try:
        original = span.end

        def end(*args: object, **kwargs: object) -> None:
            unhook_end(span, end)
            try:
                before_end()
            finally:
                original(*args, **kwargs)  # type: ignore[arg-type]

        span.end = end  # type: ignore[method-assign]
        return end
    except Exception:  # a span that takes no attribute: our part ends when the call does
        logger.debug("hooking the end of another instrumentation's span failed", exc_info=True)
        return None


def unhook_end(span: Span, hook: object) -> None:
    """Take `hook` (from `hook_end`) off `span`, if it is still there."""
    try:
        if hook is not None and vars(span).get("end") is hook:
            del vars(span)["end"]
    except Exception:
        logger.debug("unhooking a span's end failed", exc_info=True)
