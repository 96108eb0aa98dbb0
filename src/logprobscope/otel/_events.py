"""Token logprobs as span events, within the span's event limit (TELEMETRY.md, "Span events").

A span keeps at most `max_events` events (the SDK's default: 128) and silently drops the
oldest beyond that. The writer never lets it come to that: it knows the limit, keeps one
slot for the exception event of a failed call, and spends the rest so that no token is lost:

- "tokens": one `logprobs.token` event per token, written as the token arrives, while the
  budget less a few slots lasts. The tokens after that are held to the end of the call:
  if they fit in the slots left they become token events too (at their arrival times);
  otherwise the call turns "batched": they are split into equal `logprobs.tokens` batches,
  over the slots left, and the least likely of them are written once more as token events.
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
cost no copy (the writer keeps ranges of the buffers, `_held`) and a span exports its events
at its end anyway; the events are written in time order.

Tokens come in streams: choice 0's content (the common case, and the only one whose events
carry no stream attributes), its refusal, and the content and refusal of other choices
(n > 1). Each stream has its own indexes from 0; its events carry `logprobs.token.channel`
("refusal") and `logprobs.token.choice_index` (when not 0), or the `logprobs.tokens.`
equivalents. The token events' share is spent by all streams in the order their tokens
come; past it each stream's tokens are held apart and a batch never mixes streams. A stream
starts being held only while a batch slot is left for each stream held so far; the slots
are shared out among the held streams in proportion to their tokens, and the least likely
repeats go to choice 0's content first, then to its refusal.

Tokens that find no room are counted (`dropped`), never lost silently. Other events written
after the tokens (`extra`) only take the room the tokens left.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from opentelemetry.trace import Span, TracerProvider
from opentelemetry.util.types import AttributeValue

from .. import _contract as n
from .._figures import probability
from .._logprobs import _DERIVED, TokenBuffer
from .._text import valid_text
from ._batch import batch_attributes, format_probability
from ._held import Held, Least, StreamKey, cut, shares
from ._span_events import AddEvent

__all__ = [
    "CONTENT",
    "DEFAULT_MAX_EVENTS",
    "AddEvent",
    "EventWriter",
    "EventsMode",
    "StreamKey",
    "event_limit",
]

EventsMode = Literal["tokens", "batched", "low_confidence", "none"]
"""How token logprobs become span events (see TELEMETRY.md, "Span events")."""


CONTENT: StreamKey = (n.CHANNEL_CONTENT, 0)
_REFUSAL: StreamKey = (n.CHANNEL_REFUSAL, 0)
# The streams whose least likely batched tokens are repeated as token events, in priority.
_LEAST_STREAMS = (CONTENT, _REFUSAL)

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


def _stream_attributes(key: StreamKey, channel: str, choice: str) -> dict[str, AttributeValue]:
    # Nothing for choice 0's content: its events keep the layout they always had (and
    # in a viewer sorting keys, its index stays the first field).
    attributes: dict[str, AttributeValue] = {}
    if key[0] != n.CHANNEL_CONTENT:
        attributes[channel] = key[0]
    if key[1] != 0:
        attributes[choice] = key[1]
    return attributes


class EventWriter:
    """The token events of one span, within its event limit.

    Args:
        add_event: called for each event with its name, attributes and timestamp.
        flush: called after each step (`add`, `close`, `extra`) that may have added events:
            an `add_event` that holds events back gives them to the span then.
        mode: the configured `EventsMode`.
        limit: the span's `max_events`; None for unlimited.
        capture: token texts, bytes and the alternatives' texts in the events.
        threshold: the low-confidence threshold ("low_confidence" mode, and the least
            likely tokens kept as token events in "batched" mode).

    Tokens are added in order with `add` (columns of a `TokenBuffer`, which must stay
    unchanged in that range until `close`), each with its stream; `close` writes what was
    held back; `extra` then writes other events in the room left.

    Attributes:
        mode: the mode now: "tokens" becomes "batched" when the call's tokens do not all
            fit in token events (at the latest at `close`; `logprobs.events.mode`).
        dropped: tokens that found no room in any event (`logprobs.events.dropped`).
        events_used: events written so far.
    """

    __slots__ = (
        "_add_event",
        "_flush",
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
        "_next",
        "_adds",
        "_last_ts",
        "_held",
    )

    def __init__(
        self,
        add_event: AddEvent,
        *,
        mode: EventsMode,
        limit: int | None,
        capture: bool,
        threshold: float,
        flush: Callable[[], object] | None = None,
    ) -> None:
        self._add_event = add_event
        self._flush = flush
        self._capture = capture
        self._threshold = threshold
        self._limit = limit
        self.mode: EventsMode = mode
        self.dropped = 0
        self.events_used = 0
        self._next: dict[StreamKey, int] = {}  # each stream's next token index
        self._adds = 0  # `add` calls so far: the order of arrivals across streams
        self._last_ts = 0
        self._held: dict[StreamKey, Held] = {}
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

    def add(
        self,
        buf: TokenBuffer,
        start: int,
        stop: int,
        time_ns: int,
        key: StreamKey = CONTENT,
    ) -> None:
        """Tokens [start, stop) of `buf` of stream `key`, arrived at `time_ns` (ns since epoch)."""
        if stop <= start:
            return
        if time_ns < self._last_ts:
            time_ns = self._last_ts  # a wall clock stepping back: keep the timeline ordered
        self._last_ts = time_ns
        self._adds += 1
        index = self._next.get(key, 0)
        self._next[key] = index + stop - start
        mode = self.mode
        try:
            if mode == n.MODE_TOKENS:
                left = self._tokens_left
                if left < 0 or stop - start <= left:
                    self._token_events(buf, start, stop, index, time_ns, key)
                    if left > 0:
                        self._tokens_left = left - (stop - start)
                else:
                    if left:
                        self._token_events(buf, start, start + left, index, time_ns, key)
                        self._tokens_left = 0
                    self._hold(buf, start + left, stop, index + left, time_ns, key)
            elif mode == n.MODE_BATCHED:
                self._hold(buf, start, stop, index, time_ns, key)
            elif mode == n.MODE_LOW_CONFIDENCE:
                self._low_confidence_events(buf, start, stop, index, time_ns, key)
        finally:
            self._written()

    def close(self) -> None:
        """Write the tokens held back: as token events if they fit, else as batches with
        the least likely of them once more as token events, all in the order they came."""
        try:
            if self._held:
                self._lay_out()
            self._held = {}
        finally:
            self._written()

    def extra(self, name: str, attributes: dict[str, AttributeValue], time_ns: int) -> bool:
        """Write another event after `close` if the span has room; whether it was written.

        It takes only what the token events left: no token event is ever pushed out.
        """
        if self._limit is not None and self.events_used >= self._limit:
            return False
        try:
            self._add_event(name, attributes, max(time_ns, self._last_ts))
        finally:
            self._written()
        self.events_used += 1
        return True

    def _written(self) -> None:
        # The events of one step reach the span together (see `_span_events`).
        flush = self._flush
        if flush is not None:
            flush()

    # -- one event per token --------------------------------------------------------------

    def _token_events(
        self, buf: TokenBuffer, start: int, stop: int, index: int, time_ns: int, key: StreamKey
    ) -> None:
        # The hot path: one call per chunk, locals instead of attribute lookups. Keys sort
        # as Jaeger shows them: index, then the line a person reads (probability and text),
        # then the numbers; bytes only when they are not the text's own UTF-8. Another
        # stream's channel and choice index sort before the index: those logs start there.
        add_event = self._add_event
        logprobs = buf.logprobs
        offsets = buf.top_offsets
        tops = buf.top_logprobs
        tokens = buf.tokens
        capture = self._capture
        exp = math.exp
        stream = _stream_attributes(key, n.TOKEN_CHANNEL, n.TOKEN_CHOICE_INDEX)
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
            if stream:
                attributes.update(stream)
            if o1 > o0:
                attributes[n.TOKEN_TOP_LOGPROBS] = tuple(tops[o0:o1])
            if capture:
                # Texts from the LangChain and raw-SDK entry points are the stdlib's
                # decoding and may hold lone surrogates, which the OTLP encoder refuses.
                text = valid_text(tokens[i])
                attributes[n.TOKEN_LINE] = f"{line} {text!r}"
                attributes[n.TOKEN_TEXT] = text
                raw = buf.bytes[i]
                if raw is not None and raw is not _DERIVED:  # bytes that say more than text
                    attributes[n.TOKEN_BYTES] = tuple(raw)  # type: ignore[arg-type]
                if o1 > o0:
                    attributes[n.TOKEN_TOP_TOKENS] = tuple(
                        [valid_text(t) for t in buf.top_tokens[o0:o1]]
                    )
            add_event(n.EVENT_TOKEN, attributes, time_ns)
            index += 1
        self.events_used += stop - start

    def _low_confidence_events(
        self, buf: TokenBuffer, start: int, stop: int, index: int, time_ns: int, key: StreamKey
    ) -> None:
        threshold = self._threshold
        logprobs = buf.logprobs
        for i in range(start, stop):
            if probability(logprobs[i]) < threshold:  # NaN compares False: not low
                if self._tokens_left == 0:
                    self.dropped += 1
                else:
                    self._token_events(buf, i, i + 1, index + i - start, time_ns, key)
                    if self._tokens_left > 0:
                        self._tokens_left -= 1

    # -- held tokens and batches ----------------------------------------------------------

    def _hold(
        self, buf: TokenBuffer, start: int, stop: int, index: int, time_ns: int, key: StreamKey
    ) -> None:
        """Hold tokens for `close` (the span exports its events at its end anyway; held,
        the batches can be even and in order)."""
        if start >= stop:
            return
        slots = self._batch_slots
        if slots == 0:
            self.dropped += stop - start
            self.mode = n.MODE_BATCHED
            return
        held = self._held
        stream = held.get(key)
        if stream is None:
            # Every held stream must keep a slot for its batch.
            if 0 <= slots <= len(held):
                self.dropped += stop - start
                return
            stream = held[key] = Held(key, index)
        stream.hold(buf, start, stop, index, time_ns, self._adds)

    def _lay_out(self) -> None:
        """The held tokens at the end: token events if they fit, else even batches."""
        held = list(self._held.values())
        count = sum(h.count for h in held)
        if self.mode == n.MODE_TOKENS and count <= self._batch_slots + self._spare:
            runs = [(*run, h.key) for h in held for run in h.runs()]
            runs.sort(key=lambda run: (run[0], run[1]))
            for time_ns, _, buf, start, stop, index, key in runs:
                self._token_events(buf, start, stop, index, time_ns, key)
            return
        self.mode = n.MODE_BATCHED
        slots = self._batch_slots
        split = [-1] * len(held) if slots < 0 else shares([h.count for h in held], slots)
        # (time, arrival order, first index, kind: 0 batch / 1 repeat, what to write)
        order: list[tuple[int, int, int, int, int]] = []
        batches: list[dict[str, AttributeValue]] = []
        for stream, stream_slots in zip(held, split, strict=True):
            size = self._min_batch
            if stream_slots > 0:
                size = max(size, -(-stream.count // stream_slots))
            marks = _stream_attributes(stream.key, n.TOKENS_CHANNEL, n.TOKENS_CHOICE_INDEX)
            least = self._spare and stream.key in _LEAST_STREAMS
            for first, parts in cut(stream, size):
                attributes, logprobs, probabilities = batch_attributes(
                    parts, first, capture=self._capture
                )
                attributes.update(marks)
                order.append((*stream.arrival(first), first, 0, len(batches)))
                batches.append(attributes)
                if least:
                    stream.keep_least_likely(
                        parts,
                        first,
                        logprobs,
                        probabilities,
                        threshold=self._threshold,
                        spare=self._spare,
                    )
        repeats: list[tuple[Least, StreamKey]] = []
        room = self._spare
        by_key = {h.key: h for h in held}
        for key in _LEAST_STREAMS:  # content first, then the refusal in the room left
            found = by_key.get(key)
            if found is not None and room > 0:
                kept = found.least[:room]
                room -= len(kept)
                for entry in kept:
                    order.append((entry[2], entry[3], entry[1], 1, len(repeats)))
                    repeats.append((entry, key))
        # In time order, each least likely token after the batch that holds it.
        order.sort()
        for time_ns, _, _, kind, which in order:
            if kind == 0:
                self._add_event(n.EVENT_TOKENS, batches[which], time_ns)
                self.events_used += 1
            else:
                entry, key = repeats[which]
                buf, row = entry[4], entry[5]
                self._token_events(buf, row, row + 1, entry[1], time_ns, key)
