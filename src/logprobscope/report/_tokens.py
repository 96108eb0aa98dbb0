"""A span's ``logprobs.token`` and ``logprobs.tokens`` events back to its tokens, in order.

Token events carry one token each (its index, or the event's position among them when the
index is missing); batch events carry a run of tokens from ``logprobs.tokens.start_index``,
with the alternatives row-major, k per token. Tokens are keyed by index: an index seen twice
keeps the record with text over one without (content capture), then a batch's over a token
event's (a batched call repeats its least likely tokens as token events; keeping the batch's
record keeps a batch's tokens together on the timeline, in whatever order the events come),
else the first. Older and newer layouts read alike:
``logprobs.tokens.first_index``, ``last_index`` and ``lines`` and
``logprobs.token.probability`` only repeat, for people, what the other fields say.
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


def reassemble(events: Iterable[SpanEvent], *, top_k: int | None) -> tuple[TokenRecord, ...]:
    """The tokens the events carry, in index order (gaps stay gaps).

    `top_k` (the span's ``logprobs.top_logprobs``) splits batch events' alternatives into
    rows; without it the row length is inferred.

    Raises:
        Malformed: an event lacks a logprob, or its arrays do not line up.
    """
    tokens: dict[int, TokenRecord] = {}
    batched: set[int] = set()  # indexes whose record came from a batch event
    ordinal = 0
    for event in events:
        if event.name == n.EVENT_TOKEN:
            _keep(tokens, batched, _token_event(event, ordinal), from_batch=False)
            ordinal += 1
        elif event.name == n.EVENT_TOKENS:
            for record in _tokens_event(event, top_k):
                _keep(tokens, batched, record, from_batch=True)
    return tuple(tokens[i] for i in sorted(tokens))


def _keep(
    tokens: dict[int, TokenRecord], batched: set[int], record: TokenRecord, *, from_batch: bool
) -> None:
    index = record.index
    old = tokens.get(index)
    if old is not None:
        if (old.text is None) == (record.text is None):
            if not from_batch or index in batched:
                return  # the first, or a batch's record over a token event's
        elif record.text is None:
            return  # the text wins
    tokens[index] = record
    if from_batch:
        batched.add(index)
    else:
        batched.discard(index)


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


def _token_event(event: SpanEvent, ordinal: int) -> TokenRecord:
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
    )


def _alternatives(
    logprobs: Sequence[float], tokens: Sequence[str] | None
) -> tuple[Alternative, ...]:
    out = []
    for j, lp in enumerate(logprobs):
        token = tokens[j] if tokens is not None and j < len(tokens) else None
        out.append(Alternative(token, lp))
    return tuple(out)


def _tokens_event(event: SpanEvent, top_k: int | None) -> Iterable[TokenRecord]:
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
        )
