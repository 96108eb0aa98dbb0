"""Token logprobs as span events, within the span's event limit (TELEMETRY.md, "Span events").

A span keeps at most `max_events` events (the SDK's default: 128) and silently drops the
oldest beyond that. The writer never lets it come to that: it knows the limit, keeps one
slot for the exception event of a failed call, and spends the rest so that no token is lost:

- "tokens": one `logprobs.token` event per token while they fit in the budget less a few
  slots kept for batches; then it switches to "batched" for the rest of the call;
- "batched": `logprobs.tokens` events of many tokens each, growing with the stream so that
  the slots left cover a stream of any length; the last slot takes whatever remains;
- "low_confidence": a `logprobs.token` event for each token below the threshold, while the
  budget lasts (the others are counted as dropped);
- "none": no events.

Tokens come in streams: choice 0's content (the common case, and the only one whose events
carry no stream attributes), its refusal, and the content and refusal of other choices
(n > 1). Each stream has its own indexes from 0; its events carry `logprobs.token.channel`
("refusal") and `logprobs.token.choice_index` (when not 0), or the `logprobs.tokens.`
equivalents. A batch never mixes streams: each stream has its own pending batch, and a new
one is started only while a slot is left for every pending batch's final event.

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
from .._logprobs import TokenBuffer, _unpack_bytes
from .._text import valid_text

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

AddEvent = Callable[[str, dict[str, AttributeValue], int], object]
"""`Span.add_event`: name, attributes, timestamp (ns since epoch)."""

StreamKey = tuple[str, int]
"""A stream of tokens: (channel, choice index)."""

CONTENT: StreamKey = (n.CHANNEL_CONTENT, 0)

# Event slots kept free for the exception event of a failed call.
_RESERVED_EVENTS = 1
# The SDK's default `max_events`, assumed for providers whose limit cannot be read.
DEFAULT_MAX_EVENTS = 128
# Slots kept for `logprobs.tokens` batches once `tokens` mode has used its share.
_MAX_BATCH_SLOTS = 12
_MIN_BATCH_TOKENS = 64


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


class _Segment:
    """Tokens [start, stop) of a buffer waiting for a `logprobs.tokens` batch event."""

    __slots__ = ("buf", "start", "stop")

    def __init__(self, buf: TokenBuffer, start: int, stop: int) -> None:
        self.buf = buf
        self.start = start
        self.stop = stop


class _Pending:
    """One stream's tokens waiting for their batch event, from index `start_index` on."""

    __slots__ = ("key", "segments", "count", "start_index")

    def __init__(self, key: StreamKey, start_index: int) -> None:
        self.key = key
        self.segments: list[_Segment] = []
        self.count = 0
        self.start_index = start_index


def _stream_attributes(key: StreamKey, channel: str, choice: str) -> dict[str, AttributeValue]:
    # Nothing for choice 0's content: its events keep the layout they always had.
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
        mode: the configured `EventsMode`.
        limit: the span's `max_events`; None for unlimited.
        capture: token texts, bytes and the alternatives' texts in the events.
        threshold: the low-confidence threshold (for "low_confidence" mode).

    Tokens are added in order with `add` (columns of a `TokenBuffer`, which must stay
    unchanged in that range until `close`), each with its stream; `close` writes the last
    batches; `extra` then writes other events in the room left.

    Attributes:
        mode: the mode now: "tokens" becomes "batched" once the token events' share of
            the budget is spent (`logprobs.events.mode`).
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
        "_next",
        "_last_ts",
        "_pending",
        "_covered",
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
        self._next: dict[StreamKey, int] = {}  # each stream's next token index
        self._last_ts = 0
        self._pending: dict[StreamKey, _Pending] = {}
        self._covered = 0  # tokens written to events so far, all streams
        if limit is None:  # unlimited: tokens stay tokens
            tokens_left = -1 if mode in (n.MODE_TOKENS, n.MODE_LOW_CONFIDENCE) else 0
            slots = -1
        else:
            budget = max(0, limit - _RESERVED_EVENTS)
            if mode == n.MODE_TOKENS:
                slots = min(_MAX_BATCH_SLOTS, max(1, budget // 4)) if budget else 0
                tokens_left = budget - slots
            elif mode == n.MODE_BATCHED:
                slots, tokens_left = budget, 0
            elif mode == n.MODE_LOW_CONFIDENCE:
                slots, tokens_left = 0, budget
            else:
                slots = tokens_left = 0
        # -1: no limit. Token events left before the switch (or low-confidence events left),
        # and batch events left.
        self._tokens_left = tokens_left
        self._batch_slots = slots

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
        index = self._next.get(key, 0)
        self._next[key] = index + stop - start
        mode = self.mode
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
                self.mode = n.MODE_BATCHED
                self._batch(buf, start + left, stop, index + left, time_ns, key)
        elif mode == n.MODE_BATCHED:
            self._batch(buf, start, stop, index, time_ns, key)
        elif mode == n.MODE_LOW_CONFIDENCE:
            self._low_confidence_events(buf, start, stop, index, time_ns, key)

    def close(self) -> None:
        """Write the pending batches, if any (stamped with the last tokens' time)."""
        for pending in list(self._pending.values()):
            self._emit_batch(pending, self._last_ts)

    def extra(self, name: str, attributes: dict[str, AttributeValue], time_ns: int) -> bool:
        """Write another event after `close` if the span has room; whether it was written.

        It takes only what the token events left: no token event is ever pushed out.
        """
        if self._limit is not None and self.events_used >= self._limit:
            return False
        self._add_event(name, attributes, max(time_ns, self._last_ts))
        self.events_used += 1
        return True

    # -- one event per token --------------------------------------------------------------

    def _token_events(
        self, buf: TokenBuffer, start: int, stop: int, index: int, time_ns: int, key: StreamKey
    ) -> None:
        add_event = self._add_event
        logprobs = buf.logprobs
        offsets = buf.top_offsets
        tops = buf.top_logprobs
        capture = self._capture
        stream = _stream_attributes(key, n.TOKEN_CHANNEL, n.TOKEN_CHOICE_INDEX)
        for i in range(start, stop):
            o0 = offsets[i]
            o1 = offsets[i + 1]
            attributes: dict[str, AttributeValue] = {
                n.TOKEN_INDEX: index,
                n.TOKEN_LOGPROB: logprobs[i],
            }
            if stream:
                attributes.update(stream)
            if o1 > o0:
                attributes[n.TOKEN_TOP_LOGPROBS] = tops[o0:o1].tolist()
            if capture:
                _token_content(attributes, buf, i, o0, o1)
            add_event(n.EVENT_TOKEN, attributes, time_ns)
            index += 1
        self.events_used += stop - start
        self._covered += stop - start

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

    # -- batches --------------------------------------------------------------------------

    def _batch(
        self, buf: TokenBuffer, start: int, stop: int, index: int, time_ns: int, key: StreamKey
    ) -> None:
        if start >= stop:
            return
        waiting = self._pending
        pending = waiting.get(key)
        if pending is None:
            # Every pending batch must keep a slot for its final event.
            if 0 <= self._batch_slots <= len(waiting):
                self.dropped += stop - start
                return
            pending = waiting[key] = _Pending(key, index)
        segments = pending.segments
        last = segments[-1] if segments else None
        if last is not None and last.buf is buf and last.stop == start:
            last.stop = stop
        else:
            segments.append(_Segment(buf, start, stop))
        pending.count += stop - start
        # A closed batch may go out while more than the pending batches' final slots are
        # left; a final slot takes whatever remains of its stream at the end.
        slots = self._batch_slots
        if slots < 0:
            if pending.count >= _MIN_BATCH_TOKENS:
                self._emit_batch(pending, time_ns)
            return
        spare = slots - len(waiting)
        if spare >= 1:
            # Batches grow with what is covered, so the slots left cover a stream of any
            # length long before they run out (about ∏(1 + 2/s) growth).
            target = max(_MIN_BATCH_TOKENS, (self._covered * 2) // (spare + 1))
            if pending.count >= target:
                self._emit_batch(pending, time_ns)

    def _emit_batch(self, pending: _Pending, time_ns: int) -> None:
        del self._pending[pending.key]
        segments = pending.segments
        count = pending.count
        logprobs: list[float] = []
        rows: list[list[float]] = []
        texts: list[str] = []
        top_texts: list[list[str]] = []
        capture = self._capture
        for seg in segments:
            buf, start, stop = seg.buf, seg.start, seg.stop
            logprobs.extend(buf.logprobs[start:stop].tolist())
            offsets = buf.top_offsets
            tops = buf.top_logprobs
            for i in range(start, stop):
                rows.append(tops[offsets[i] : offsets[i + 1]].tolist())
            if capture:  # valid_text: see _token_content
                texts.extend([valid_text(t) for t in buf.tokens[start:stop]])
                names = buf.top_tokens
                for i in range(start, stop):
                    top_texts.append([valid_text(t) for t in names[offsets[i] : offsets[i + 1]]])
        k = max((len(r) for r in rows), default=0)
        attributes: dict[str, AttributeValue] = {
            n.TOKENS_START_INDEX: pending.start_index,
            n.TOKENS_LOGPROBS: logprobs,
        }
        attributes.update(_stream_attributes(pending.key, n.TOKENS_CHANNEL, n.TOKENS_CHOICE_INDEX))
        if k:
            # Row-major, k per token; a token with fewer alternatives (a server's quirk)
            # is padded with NaN (and "" in the texts) so rows stay aligned.
            flat: list[float] = []
            for row in rows:
                flat.extend(row)
                if len(row) < k:
                    flat.extend([math.nan] * (k - len(row)))
            attributes[n.TOKENS_TOP_LOGPROBS] = flat
        if capture:
            attributes[n.TOKENS_TEXTS] = texts
            if k:
                flat_texts: list[str] = []
                for names in top_texts:
                    flat_texts.extend(names)
                    if len(names) < k:
                        flat_texts.extend([""] * (k - len(names)))
                attributes[n.TOKENS_TOP_TOKENS] = flat_texts
        self._add_event(n.EVENT_TOKENS, attributes, time_ns)
        self.events_used += 1
        if self._batch_slots > 0:
            self._batch_slots -= 1
        self._covered += count


def _token_content(
    attributes: dict[str, AttributeValue], buf: TokenBuffer, i: int, o0: int, o1: int
) -> None:
    # Texts from the LangChain and raw-SDK entry points are the stdlib's decoding and
    # may hold lone surrogates, which the OTLP encoder refuses (losing the whole batch).
    token = buf.tokens[i]
    attributes[n.TOKEN_TEXT] = valid_text(token)
    raw = _unpack_bytes(token, buf.bytes[i])
    if raw is not None:
        attributes[n.TOKEN_BYTES] = raw
    if o1 > o0:
        attributes[n.TOKEN_TOP_TOKENS] = [valid_text(t) for t in buf.top_tokens[o0:o1]]
