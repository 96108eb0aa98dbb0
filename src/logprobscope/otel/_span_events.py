"""Adding span events whose attributes are clean by construction, without cleaning them again.

The OpenTelemetry SDK's `Span.add_event` wraps every event's attributes in a
`BoundedAttributes`, which checks each value and each element of each sequence and copies
sequences into tuples, then takes two locks to append the event: about 5 µs for a token event
of 7 attributes, more than the rest of what a token costs. The token and batch events
(`_events`, `_batch`) are built from typed columns, so their values already are what that
cleaning returns: `str`, `bool`, `int`, `float`, or tuples of one of those. `event_adder`
builds the same `Event` for them (same timestamp, the SDK's read-only `BoundedAttributes`
around the dict, with nothing to clean) and appends the events of one step to the span's
event list together, under the span's lock, as `add_event` appends each: the span keeps its
`max_events` newest and counts the others, and takes nothing once it has ended.

It does so only for the SDK's own span class exactly, in an SDK version named in
`CHECKED_SDK`, with no attribute value length limit (`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`,
which truncates strings) and, per event, when the attribute count is within
`max_event_attributes` and every value has one of those types. Anything else goes through
`span.add_event` unchanged, in order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

__all__ = ["CHECKED_SDK", "AddEvent", "SpanEvents", "event_adder"]

AddEvent = Callable[[str, dict[str, AttributeValue], int], object]
"""`Span.add_event`: name, attributes, timestamp (ns since epoch). The dict is handed over:
the caller does not change it afterwards."""

logger = logging.getLogger("logprobscope.otel")

# What the SDK's cleaning returns unchanged (it turns lists into tuples; builders make tuples).
_CLEAN = frozenset({str, bool, int, float, tuple})


def _sdk_classes() -> tuple[type, type, type] | None:
    # The SDK's own span class exactly (a subclass may do more in `add_event`), in the SDK
    # versions this was checked against; others get `add_event`.
    try:
        from opentelemetry.attributes import BoundedAttributes
        from opentelemetry.sdk.trace import Event, _Span
        from opentelemetry.sdk.version import __version__
    except ImportError:  # pragma: no cover - depends on the SDK installed
        return None
    if not __version__.startswith(CHECKED_SDK) or not hasattr(BoundedAttributes(0), "_dict"):
        return None
    return _Span, Event, BoundedAttributes


CHECKED_SDK = ("1.45.",)
"""OpenTelemetry SDK versions whose span and metric internals `_span_events` and `_bulk`
were checked against (their tests compare them with the public paths)."""


_SDK = _sdk_classes()


class SpanEvents:
    """How a call adds events to its span: `add` (an `AddEvent`), then `flush` after each
    step. With an SDK span that takes them directly (see the module's docstring), `add`
    builds the SDK's `Event` and holds it; `flush` appends those held to the span's event
    list under the span's lock, in order, as many `add_event` calls would (the oldest
    dropped past `max_events`, and counted; nothing added once the span has ended). Else
    `add` is the span's `add_event` and `flush` does nothing."""

    __slots__ = ("add", "flush")

    def __init__(self, add: AddEvent, flush: Callable[[], object]) -> None:
        self.add = add
        self.flush = flush


def _nothing() -> None:
    pass


def event_adder(span: Span) -> SpanEvents:
    """The way to add events to `span` (see `SpanEvents`)."""
    public: AddEvent = span.add_event
    sdk = _SDK
    plain = SpanEvents(public, _nothing)
    if sdk is None or type(span) is not sdk[0]:
        return plain
    sdk_event, bounded = sdk[1], sdk[2]
    limits = getattr(span, "_limits", None)
    lock = getattr(span, "_lock", None)
    events: Any = getattr(span, "_events", None)  # the SDK's BoundedList
    if limits is None or lock is None or not callable(getattr(events, "extend", None)):
        return plain
    if not hasattr(span, "_end_time"):
        return plain
    if getattr(limits, "max_attribute_length", 0) is not None:
        return plain  # the SDK truncates long strings: let it
    max_attributes = getattr(limits, "max_event_attributes", 0)
    if max_attributes is not None and not isinstance(max_attributes, int):
        return plain
    clean = _CLEAN.__contains__
    held: list[object] = []

    def flush() -> None:
        if not held:
            return
        batch = held[:]
        held.clear()
        with lock:
            ended = getattr(span, "_end_time", None) is not None
            if not ended:
                events.extend(batch)
        if ended:
            logger.warning("Tried calling add_event on an ended span (%d events).", len(batch))

    def add(name: str, attributes: dict[str, AttributeValue], timestamp: int) -> object:
        if (max_attributes is not None and len(attributes) > max_attributes) or not all(
            map(clean, map(type, attributes.values()))
        ):
            flush()  # in order: what is held first
            return public(name, attributes, timestamp)
        # The caller hands the dict over (the writers build one per event): the SDK's own
        # read-only attributes around it, with nothing to clean (copies, pickles, reprs and
        # dropped counts as the SDK's do).
        frozen = bounded(max_attributes, None, immutable=False)
        frozen._dict = attributes
        frozen._immutable = True
        held.append(sdk_event(name, frozen, timestamp))
        return None

    return SpanEvents(add, flush)
