"""A span's ``logprobs.token`` and ``logprobs.tokens`` events back to its tokens, in order.

Token events carry one token each (its index, or the event's position among its stream's
token events when the index is missing); batch events carry a run of tokens from
``logprobs.tokens.start_index``, with the alternatives row-major, k per token. Each event
belongs to a stream: its ``channel`` and ``choice_index`` attributes, absent for choice 0's
content. Tokens are keyed by stream and index: an index seen twice keeps the record with text
over one without (content capture), then a batch's over a token event's (a batched call
repeats its least likely tokens as token events; keeping the batch's record keeps a batch's
tokens together on the timeline, in whatever order the events come), else the first. Older
and newer layouts read alike: ``logprobs.tokens.first_index``, ``last_index`` and ``lines``
and ``logprobs.token.probability`` only repeat, for people, what the other fields say.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .. import _contract as n
from ._records import Alternative, AttributeValue, TokenRecord
from ._values import Malformed, as_float, as_int

__all__ = ["SpanEvent", "reassemble"]


@dataclass
class SpanEvent:
    """A span event as read from the file."""

    name: str
    time_unix_nano: int
    attributes: dict[str, AttributeValue]


_Key = tuple[int, int, int]  # (choice, channel: 0 content / 1 refusal / 2 other, index)


def reassemble(
    events: Iterable[SpanEvent], *, top_k: int | None
) -> tuple[tuple[TokenRecord, ...], tuple[TokenRecord, ...]]:
    """(choice 0's content tokens, every other stream's tokens), each in index order.

    Gaps stay gaps. The other streams come by choice, the content before the refusal.
    `top_k` (the span's ``logprobs.top_logprobs``) splits batch events' alternatives into
    rows; without it the row length is inferred.

    Raises:
        Malformed: an event lacks a logprob, its arrays do not line up, or its choice index
            is not an integer.
    """
    tokens: dict[_Key, TokenRecord] = {}
    batched: set[_Key] = set()  # keys whose record came from a batch event
    ordinals: dict[tuple[str, int], int] = {}
    for event in events:
        if event.name == n.EVENT_TOKEN:
            stream = _stream(event.attributes, n.TOKEN_CHANNEL, n.TOKEN_CHOICE_INDEX)
            ordinal = ordinals.get(stream, 0)
            ordinals[stream] = ordinal + 1
            _keep(tokens, batched, _token_event(event, ordinal, stream), from_batch=False)
        elif event.name == n.EVENT_TOKENS:
            stream = _stream(event.attributes, n.TOKENS_CHANNEL, n.TOKENS_CHOICE_INDEX)
            for record in _tokens_event(event, top_k, stream):
                _keep(tokens, batched, record, from_batch=True)
    content: list[TokenRecord] = []
    others: list[TokenRecord] = []
    for key in sorted(tokens):
        record = tokens[key]
        (content if key[:2] == (0, 0) else others).append(record)
    return tuple(content), tuple(others)


def _stream(attributes: dict[str, AttributeValue], channel: str, choice: str) -> tuple[str, int]:
    value = attributes.get(channel)
    name = n.CHANNEL_CONTENT if value is None else str(value)
    number = attributes.get(choice)
    return name, 0 if number is None else as_int(number, choice)


def _keep(
    tokens: dict[_Key, TokenRecord],
    batched: set[_Key],
    record: TokenRecord,
    *,
    from_batch: bool,
) -> None:
    rank = n.CHANNELS.index(record.channel) if record.channel in n.CHANNELS else len(n.CHANNELS)
    key = (record.choice, rank, record.index)
    old = tokens.get(key)
    if old is not None:
        if (old.text is None) == (record.text is None):
            if not from_batch or key in batched:
                return  # the first, or a batch's record over a token event's
        elif record.text is None:
            return  # the text wins
    tokens[key] = record
    if from_batch:
        batched.add(key)
    else:
        batched.discard(key)


def _floats(value: AttributeValue, what: str) -> list[float]:
    if value is None:
        return []
    if not isinstance(value, tuple):
        value = (value,)
    return [as_float(v, what) for v in value]


def _strings(value: AttributeValue) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, tuple):
        value = (value,)
    return [v if isinstance(v, str) else str(v) for v in value]


def _token_event(event: SpanEvent, ordinal: int, stream: tuple[str, int]) -> TokenRecord:
    a = event.attributes
    index = a.get(n.TOKEN_INDEX)
    logprob = a.get(n.TOKEN_LOGPROB)
    if logprob is None:
        raise Malformed(f"a {n.EVENT_TOKEN} event has no {n.TOKEN_LOGPROB}")
    text = a.get(n.TOKEN_TEXT)
    raw_bytes = a.get(n.TOKEN_BYTES)
    tops = _floats(a.get(n.TOKEN_TOP_LOGPROBS), n.TOKEN_TOP_LOGPROBS)
    top_tokens = _strings(a.get(n.TOKEN_TOP_TOKENS))
    byte_values: tuple[int, ...] | None = None
    if isinstance(raw_bytes, tuple):
        byte_values = tuple(as_int(b, n.TOKEN_BYTES) for b in raw_bytes)
    return TokenRecord(
        index=as_int(index, n.TOKEN_INDEX) if index is not None else ordinal,
        logprob=as_float(logprob, n.TOKEN_LOGPROB),
        text=text if isinstance(text, str) else None,
        bytes=byte_values,
        alternatives=_alternatives(tops, top_tokens),
        time_unix_nano=event.time_unix_nano or None,
        channel=stream[0],
        choice=stream[1],
    )


def _alternatives(
    logprobs: Sequence[float], tokens: Sequence[str] | None
) -> tuple[Alternative, ...]:
    out = []
    for j, lp in enumerate(logprobs):
        token = tokens[j] if tokens is not None and j < len(tokens) else None
        out.append(Alternative(token, lp))
    return tuple(out)


def _tokens_event(
    event: SpanEvent, top_k: int | None, stream: tuple[str, int]
) -> Iterable[TokenRecord]:
    a = event.attributes
    start = as_int(a.get(n.TOKENS_START_INDEX), n.TOKENS_START_INDEX)
    logprobs = _floats(a.get(n.TOKENS_LOGPROBS), n.TOKENS_LOGPROBS)
    tops = _floats(a.get(n.TOKENS_TOP_LOGPROBS), n.TOKENS_TOP_LOGPROBS)
    texts = _strings(a.get(n.TOKENS_TEXTS))
    top_tokens = _strings(a.get(n.TOKENS_TOP_TOKENS))
    count = len(logprobs)
    k = 0
    if count and tops:
        if top_k and len(tops) == count * top_k:
            k = top_k
        elif len(tops) % count == 0:
            k = len(tops) // count
        else:
            raise Malformed(
                f"a {n.EVENT_TOKENS} event has {len(tops)} top logprobs for {count} tokens"
            )
    for i, lp in enumerate(logprobs):
        row = tops[i * k : (i + 1) * k] if k else []
        row_tokens = top_tokens[i * k : (i + 1) * k] if (k and top_tokens is not None) else None
        yield TokenRecord(
            index=start + i,
            logprob=lp,
            text=texts[i] if texts is not None and i < len(texts) else None,
            alternatives=_alternatives(row, row_tokens),
            time_unix_nano=event.time_unix_nano or None,
            channel=stream[0],
            choice=stream[1],
        )
