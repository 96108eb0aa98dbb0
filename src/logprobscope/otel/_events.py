"""Token logprobs as span events, within the span's event limit (TELEMETRY.md, "Span events").

A span keeps at most `max_events` events (the SDK's default: 128) and silently drops the
oldest beyond that. The writer never lets it come to that: it knows the limit, keeps one
slot for the exception event of a failed call, and spends the rest so that no token is lost:

- "tokens": one `logprobs.token` event per token, written as the token arrives, while the
  budget less a few slots lasts. The tokens after that are held to the end of the call:
  if they fit in the slots left they become token events too (at their arrival times);
  otherwise the call turns "batched": they are split into equal `logprobs.tokens` batches,
  one per slot left, and the least likely of them are written once more as token events.
- "batched": all tokens in `logprobs.tokens` events of at least 64 tokens each, held to the
  end and split evenly over the slots, and the least likely again as token events.
- "low_confidence": a `logprobs.token` event for each token below the threshold, while the
  budget lasts (the others are counted as dropped);
- "none": no events.

A batch event's timestamp is the arrival of its first token, so on a timeline (Jaeger's
ticks) batches of equal size sit where every m-th token arrived: their spacing shows the
stream's pace, as the token events before them do token by token. The least likely tokens
of the batched part (the lowest, and the other low-confidence ones, up to a few slots) stay
clickable as events of their own (`logprobs.min_index` always points at one). Held tokens
cost no copy (the writer keeps ranges of the buffers) and a span exports its events at its
end anyway; the events are written in time order.

Tokens that find no room are counted (`dropped`), never lost silently.
"""

from __future__ import annotations

import heapq
import math
from array import array
from bisect import bisect_right
from collections.abc import Callable
from typing import Literal

from opentelemetry.trace import Span, TracerProvider
from opentelemetry.util.types import AttributeValue

from .. import _contract as n
from .._figures import counted, probability
from .._logprobs import _DERIVED, TokenBuffer
from .._text import valid_text
from ._batch import Segment, batch_attributes, format_probability

__all__ = [
    "DEFAULT_MAX_EVENTS",
    "AddEvent",
    "EventWriter",
    "EventsMode",
    "event_limit",
]

EventsMode = Literal["tokens", "batched", "low_confidence", "none"]
"""How token logprobs become span events (see TELEMETRY.md, "Span events")."""

AddEvent = Callable[[str, dict[str, AttributeValue], int], object]
"""`Span.add_event`: name, attributes, timestamp (ns since epoch)."""

# Event slots kept free for the exception event of a failed call.
_RESERVED_EVENTS = 1
# The SDK's default `max_events`, assumed for providers whose limit cannot be read.
DEFAULT_MAX_EVENTS = 128
# Slots kept for `logprobs.tokens` batches once `tokens` mode has used its share.
_MAX_BATCH_SLOTS = 12
# Slots kept for the least likely tokens of the batched part, as token events.
_MAX_LEAST_LIKELY = 8
_MIN_BATCH_TOKENS = 64  # in "batched" mode; the tail of "tokens" mode takes any size
_INF = math.inf

_Least = tuple[float, int, int, TokenBuffer, int]
"""A least likely batched token: logprob, index, arrival time, buffer, row."""


def event_limit(span: Span, provider: TracerProvider) -> int | None:
    """The span's `max_events` (None: unlimited), as precisely as it can be known."""
    # SDK spans carry their SpanLimits; the provider's are the same unless a custom
    # tracer passes others. Anything else gets the SDK default, the common case.
    for owner, attribute in ((span, "_limits"), (provider, "_span_limits")):
        limits = getattr(owner, attribute, None)
        if limits is not None and hasattr(limits, "max_events"):
            value = limits.max_events
            if value is None or (isinstance(value, int) and value >= 0):
                return value
    return DEFAULT_MAX_EVENTS


class EventWriter:
    """The token events of one span, within its event limit.

    Args:
        add_event: called for each event with its name, attributes and timestamp.
        mode: the configured `EventsMode`.
        limit: the span's `max_events`; None for unlimited.
        capture: token texts, bytes and the alternatives' texts in the events.
        threshold: the low-confidence threshold ("low_confidence" mode, and the least
            likely tokens kept as token events in "batched" mode).

    Tokens are added in order with `add` (columns of a `TokenBuffer`, which must stay
    unchanged in that range until `close`); `close` writes what was held back.

    Attributes:
        mode: the mode now: "tokens" becomes "batched" when the call's tokens do not all
            fit in token events (at the latest at `close`; `logprobs.events.mode`).
        dropped: tokens that found no room in any event (`logprobs.events.dropped`).
        events_used: events written so far.
    """

    __slots__ = (
        "_add_event",
        "_capture",
        "_threshold",
        "_limit",
        "mode",
        "dropped",
        "events_used",
        "_tokens_left",
        "_batch_slots",
        "_spare",
        "_min_batch",
        "_count",
        "_last_ts",
        "_pending",
        "_pending_count",
        "_pending_index",
        "_arrival_index",
        "_arrival_time",
        "_least",
        "_least_low",
    )

    def __init__(
        self,
        add_event: AddEvent,
        *,
        mode: EventsMode,
        limit: int | None,
        capture: bool,
        threshold: float,
    ) -> None:
        self._add_event = add_event
        self._capture = capture
        self._threshold = threshold
        self._limit = limit
        self.mode: EventsMode = mode
        self.dropped = 0
        self.events_used = 0
        self._count = 0  # tokens added so far: the next token's index
        self._last_ts = 0
        self._pending: list[Segment] = []
        self._pending_count = 0
        self._pending_index = 0
        # Where each arrival of held tokens starts (token index) and when it came.
        self._arrival_index = array("q")
        self._arrival_time = array("q")
        self._least: list[_Least] = []
        self._least_low = False  # whether they are low-confidence ones
        self._min_batch = 1 if mode == n.MODE_TOKENS else _MIN_BATCH_TOKENS
        spare = 0
        if limit is None:  # unlimited: tokens stay tokens; batches hold 64 tokens
            tokens_left = -1 if mode in (n.MODE_TOKENS, n.MODE_LOW_CONFIDENCE) else 0
            slots = -1
            spare = _MAX_LEAST_LIKELY if mode == n.MODE_BATCHED else 0
        else:
            budget = max(0, limit - _RESERVED_EVENTS)
            if mode in (n.MODE_TOKENS, n.MODE_BATCHED):
                spare = min(_MAX_LEAST_LIKELY, budget // 8)
            if mode == n.MODE_TOKENS:
                slots = min(_MAX_BATCH_SLOTS, max(1, budget // 4)) if budget else 0
                tokens_left = budget - slots - spare
            elif mode == n.MODE_BATCHED:
                slots, tokens_left = budget - spare, 0
            elif mode == n.MODE_LOW_CONFIDENCE:
                slots, tokens_left = 0, budget
            else:
                slots = tokens_left = 0
        # -1: no limit. Token events left before holding back (or low-confidence events
        # left), batch events left, and slots for the least likely tokens.
        self._tokens_left = tokens_left
        self._batch_slots = slots
        self._spare = spare

    @property
    def room_for_exception(self) -> bool:
        """Whether an exception event fits without pushing out a token event."""
        return self._limit is None or self.events_used < self._limit

    def add(self, buf: TokenBuffer, start: int, stop: int, time_ns: int) -> None:
        """Tokens [start, stop) of `buf`, arrived at `time_ns` (ns since epoch)."""
        if stop <= start:
            return
        if time_ns < self._last_ts:
            time_ns = self._last_ts  # a wall clock stepping back: keep the timeline ordered
        self._last_ts = time_ns
        index = self._count
        self._count = index + stop - start
        mode = self.mode
        if mode == n.MODE_TOKENS:
            left = self._tokens_left
            if left < 0 or stop - start <= left:
                self._token_events(buf, start, stop, index, time_ns)
                if left > 0:
                    self._tokens_left = left - (stop - start)
            else:
                if left:
                    self._token_events(buf, start, start + left, index, time_ns)
                    self._tokens_left = 0
                self._batch(buf, start + left, stop, index + left, time_ns)
        elif mode == n.MODE_BATCHED:
            self._batch(buf, start, stop, index, time_ns)
        elif mode == n.MODE_LOW_CONFIDENCE:
            self._low_confidence_events(buf, start, stop, index, time_ns)

    def close(self) -> None:
        """Write the tokens held back: as token events if they fit, else as batches with
        the least likely of them once more as token events, all in the order they came."""
        if self._pending_count:
            self._lay_out()
        self._pending = []
        self._pending_count = 0
        self._least = []

    # -- one event per token --------------------------------------------------------------

    def _token_events(
        self, buf: TokenBuffer, start: int, stop: int, index: int, time_ns: int
    ) -> None:
        # The hot path: one call per chunk, locals instead of attribute lookups. Keys sort
        # as Jaeger shows them: index, then the line a person reads (probability and text),
        # then the numbers; bytes only when they are not the text's own UTF-8.
        add_event = self._add_event
        logprobs = buf.logprobs
        offsets = buf.top_offsets
        tops = buf.top_logprobs
        tokens = buf.tokens
        capture = self._capture
        exp = math.exp
        for i in range(start, stop):
            lp = logprobs[i]
            p = exp(lp) if lp <= 0.0 else probability(lp)
            if p >= 0.0001:
                line = f"p={p:.4f}"
                if p != _INF:
                    p = int(p * 10000.0 + 0.5) / 10000.0  # 4 decimals, cheaply
            else:  # rare: three significant digits
                line = f"p={format_probability(p)}"
                if p > 0.0:
                    p = float(f"{p:.3g}")
            o0 = offsets[i]
            o1 = offsets[i + 1]
            attributes: dict[str, AttributeValue] = {
                n.TOKEN_INDEX: index,
                n.TOKEN_LINE: line,
                n.TOKEN_LOGPROB: lp,
                n.TOKEN_PROBABILITY: p,
            }
            if o1 > o0:
                attributes[n.TOKEN_TOP_LOGPROBS] = tops[o0:o1].tolist()
            if capture:
                # Texts from the LangChain and raw-SDK entry points are the stdlib's
                # decoding and may hold lone surrogates, which the OTLP encoder refuses.
                text = valid_text(tokens[i])
                attributes[n.TOKEN_LINE] = f"{line} {text!r}"
                attributes[n.TOKEN_TEXT] = text
                raw = buf.bytes[i]
                if raw is not None and raw is not _DERIVED:  # bytes that say more than text
                    attributes[n.TOKEN_BYTES] = list(raw)  # type: ignore[arg-type]
                if o1 > o0:
                    attributes[n.TOKEN_TOP_TOKENS] = [valid_text(t) for t in buf.top_tokens[o0:o1]]
            add_event(n.EVENT_TOKEN, attributes, time_ns)
            index += 1
        self.events_used += stop - start

    def _low_confidence_events(
        self, buf: TokenBuffer, start: int, stop: int, index: int, time_ns: int
    ) -> None:
        threshold = self._threshold
        logprobs = buf.logprobs
        for i in range(start, stop):
            if probability(logprobs[i]) < threshold:  # NaN compares False: not low
                if self._tokens_left == 0:
                    self.dropped += 1
                else:
                    self._token_events(buf, i, i + 1, index + i - start, time_ns)
                    if self._tokens_left > 0:
                        self._tokens_left -= 1

    # -- batches --------------------------------------------------------------------------

    def _batch(self, buf: TokenBuffer, start: int, stop: int, index: int, time_ns: int) -> None:
        """Hold tokens for the batches written at `close` (the span exports its events at
        its end anyway; held, the batches can be even and in order)."""
        if start >= stop:
            return
        if self._batch_slots == 0:
            self.dropped += stop - start
            self.mode = n.MODE_BATCHED
            return
        pending = self._pending
        if not pending:
            self._pending_index = index
        last = pending[-1] if pending else None
        if last is not None and last.buf is buf and last.stop == start:
            last.stop = stop
        else:
            pending.append(Segment(buf, start, stop))
        self._pending_count += stop - start
        times = self._arrival_time
        if not times or times[-1] != time_ns:
            self._arrival_index.append(index)
            times.append(time_ns)

    def _lay_out(self) -> None:
        """The held tokens at the end: token events if they fit, else even batches."""
        count = self._pending_count
        first = self._pending_index
        if self.mode == n.MODE_TOKENS and count <= self._batch_slots + self._spare:
            arrivals = self._arrival_index
            index = first
            for seg in self._pending:
                i = seg.start
                while i < seg.stop:
                    k = bisect_right(arrivals, index) - 1
                    upto = arrivals[k + 1] if k + 1 < len(arrivals) else self._count
                    j = min(seg.stop, i + upto - index)
                    self._token_events(seg.buf, i, j, index, self._arrival_time[k])
                    index += j - i
                    i = j
            return
        self.mode = n.MODE_BATCHED
        slots = self._batch_slots
        size = self._min_batch if slots < 0 else max(self._min_batch, -(-count // slots))
        batches: list[tuple[int, int, dict[str, AttributeValue]]] = []
        segments = self._pending
        s = 0  # the segment being cut, and where in it
        at = segments[0].start
        for batch_first in range(first, first + count, size):
            take = min(size, first + count - batch_first)
            parts: list[Segment] = []
            while take:
                seg = segments[s]
                piece = min(take, seg.stop - at)
                parts.append(Segment(seg.buf, at, at + piece))
                take -= piece
                at += piece
                if at == seg.stop and s + 1 < len(segments):
                    s += 1
                    at = segments[s].start
            attributes, logprobs, probabilities = batch_attributes(
                parts, batch_first, capture=self._capture
            )
            batches.append((self._arrival(batch_first), batch_first, attributes))
            if self._spare:
                self._keep_least_likely(parts, batch_first, logprobs, probabilities)
        # In time order, each least likely token after the batch that holds it.
        order: list[tuple[int, int, int]] = [(t, i, 0) for t, i, _ in batches]
        order.extend((t, i, 1) for _, i, t, _, _ in self._least)
        order.sort()
        by_first = {i: attributes for _, i, attributes in batches}
        rows = {i: (buf, row) for _, i, _, buf, row in self._least}
        for time_ns, index, kind in order:
            if kind == 0:
                self._add_event(n.EVENT_TOKENS, by_first[index], time_ns)
                self.events_used += 1
            else:
                buf, row = rows[index]
                self._token_events(buf, row, row + 1, index, time_ns)

    def _arrival(self, index: int) -> int:
        """When the held token `index` arrived."""
        return self._arrival_time[bisect_right(self._arrival_index, index) - 1]

    def _keep_least_likely(
        self,
        segments: list[Segment],
        first: int,
        logprobs: list[float],
        probabilities: list[float],
    ) -> None:
        """Keep the batch's least likely tokens among the call's, for `close`: the
        low-confidence ones, lowest first, as many as the spare slots; while there is no
        low-confidence token, the lowest (`logprobs.min_index` is always one of them)."""
        threshold = self._threshold
        # p < threshold leaves out NaN and overflowing logprobs, as the statistics do.
        found = [(logprobs[j], first + j) for j, p in enumerate(probabilities) if p < threshold]
        if found:
            if not self._least_low:  # a low-confidence token is lower than any other
                self._least_low = True
                self._least = []
        elif self._least_low:
            return
        else:
            valid = [lp for lp in logprobs if counted(lp)]
            if not valid:
                return
            lowest = min(valid)
            found = [(lowest, first + logprobs.index(lowest))]  # the first if tied
        keep = self._spare if self._least_low else 1
        new = [
            (lp, index, self._arrival(index), *_locate(segments, index - first))
            for lp, index in heapq.nsmallest(keep, found)
        ]
        self._least = heapq.nsmallest(keep, [*self._least, *new], key=_by_logprob)


def _by_logprob(entry: _Least) -> tuple[float, int]:
    return entry[0], entry[1]


def _locate(segments: list[Segment], offset: int) -> tuple[TokenBuffer, int]:
    """The buffer and row of the token `offset` places into `segments`."""
    for seg in segments:
        size = seg.stop - seg.start
        if offset < size:
            return seg.buf, seg.start + offset
        offset -= size
    raise IndexError(offset)
