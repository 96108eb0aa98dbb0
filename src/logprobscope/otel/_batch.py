"""The attributes of one ``logprobs.tokens`` event: a run of tokens, built when it is written.

Its first fields in a viewer that sorts keys (Jaeger) say what it holds:
``logprobs.tokens.first_index`` and ``logprobs.tokens.last_index``, then
``logprobs.tokens.lines``, one line per token that a person reads without counting commas::

    115 p=0.7922 ' the' | top: ' the' 0.7922, ' a' 0.1203, ' an' 0.0510

(index, probability, the text with content capture, then the alternatives). The arrays
for programs follow, as before: ``logprobs.tokens.logprobs``, ``...start_index``,
``...texts``, ``...top_logprobs`` (row-major, k per token), ``...top_tokens``.

All of it is built once per batch, never per chunk: the writer keeps the ranges
(`Segment`) until the batch goes out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

from opentelemetry.util.types import AttributeValue

from .. import _contract as n
from .._figures import probability
from .._logprobs import TokenBuffer
from .._text import valid_texts

__all__ = ["Segment", "batch_attributes", "format_probability"]


class Segment:
    """Tokens [start, stop) of a buffer, waiting for a batch event."""

    __slots__ = ("buf", "start", "stop")

    def __init__(self, buf: TokenBuffer, start: int, stop: int) -> None:
        self.buf = buf
        self.start = start
        self.stop = stop


def format_probability(p: float) -> str:
    """A probability for a person: four decimals, or three significant digits below 0.0001."""
    return f"{p:.4f}" if p >= 0.0001 else f"{p:.2e}" if p > 0.0 else f"{p:g}"


def batch_attributes(
    segments: Sequence[Segment], first: int, *, capture: bool
) -> tuple[dict[str, AttributeValue], list[float], list[float]]:
    """The event's attributes for the tokens of `segments` (indexes from `first` on), with
    the tokens' logprobs and probabilities (for choosing the least likely)."""
    # Whole columns at once (a list comprehension per column, not a loop per token): this
    # runs for every token past the token events' share.
    logprobs: list[float] = []
    texts: list[str] = []
    alt_logprobs: list[float] = []  # every token's alternatives, one after the other
    alt_texts: list[str] = []
    starts: list[int] = []  # where each token's alternatives start in alt_logprobs
    for seg in segments:
        buf, start, stop = seg.buf, seg.start, seg.stop
        logprobs.extend(buf.logprobs[start:stop].tolist())
        offsets = buf.top_offsets
        o0, o1 = offsets[start], offsets[stop]
        shift = len(alt_logprobs) - o0
        starts.extend([o + shift for o in offsets[start:stop]])
        alt_logprobs.extend(buf.top_logprobs[o0:o1].tolist())
        if capture:  # valid_texts: lone surrogates never reach the exporter
            texts.extend(valid_texts(buf.tokens[start:stop]))
            alt_texts.extend(valid_texts(buf.top_tokens[o0:o1]))
    starts.append(len(alt_logprobs))
    count = len(logprobs)
    probabilities = _probabilities(logprobs)
    # Sequences as tuples: what the SDK's attribute cleaning would make of them (see
    # `_span_events`).
    attributes: dict[str, AttributeValue] = {
        n.TOKENS_FIRST_INDEX: first,
        n.TOKENS_LAST_INDEX: first + count - 1,
        n.TOKENS_LINES: tuple(
            _lines(
                first,
                probabilities,
                starts,
                _probabilities(alt_logprobs),
                texts,
                alt_texts,
                capture,
            )
        ),
        n.TOKENS_START_INDEX: first,
        n.TOKENS_LOGPROBS: tuple(logprobs),
    }
    k = max((b - a for a, b in zip(starts, starts[1:], strict=False)), default=0)
    if k:
        attributes[n.TOKENS_TOP_LOGPROBS] = tuple(_rows(alt_logprobs, starts, k, math.nan))
        if capture:
            attributes[n.TOKENS_TOP_TOKENS] = tuple(_rows(alt_texts, starts, k, ""))
    if capture:
        attributes[n.TOKENS_TEXTS] = tuple(texts)
    return attributes, logprobs, probabilities


def _probabilities(logprobs: list[float]) -> list[float]:
    exp = math.exp
    return [exp(lp) if lp <= 0.0 else probability(lp) for lp in logprobs]


_T = TypeVar("_T", float, str)


def _rows(values: list[_T], starts: list[int], k: int, pad: _T) -> list[_T]:
    """Row-major, k per token; a token with fewer alternatives (a server's quirk) is padded
    (NaN, "") so that the rows stay aligned."""
    if len(values) == k * (len(starts) - 1):
        return values  # the common case: k alternatives each
    out: list[_T] = []
    for a, b in zip(starts, starts[1:], strict=False):
        out.extend(values[a:b])
        if b - a < k:
            out.extend([pad] * (k - b + a))
    return out


def _lines(
    first: int,
    probabilities: list[float],
    starts: list[int],
    alt_probabilities: list[float],
    texts: list[str],
    alt_texts: list[str],
    capture: bool,
) -> list[str]:
    fmt = format_probability
    shown = [f"{p:.4f}" if p >= 0.0001 else fmt(p) for p in probabilities]
    alts = [f"{p:.4f}" if p >= 0.0001 else fmt(p) for p in alt_probabilities]
    # repr quotes a text so that spaces, newlines and empty tokens stay visible.
    if capture:
        alts = [f"{t!r} {p}" for t, p in zip(alt_texts, alts, strict=True)]
        heads = [
            f"{first + j} p={p} {t!r}" for j, (p, t) in enumerate(zip(shown, texts, strict=True))
        ]
    else:
        heads = [f"{first + j} p={p}" for j, p in enumerate(shown)]
    if not alts:
        return heads
    return [
        f"{head} | top: {', '.join(alts[a:b])}" if b > a else head
        for head, a, b in zip(heads, starts, starts[1:], strict=False)
    ]
