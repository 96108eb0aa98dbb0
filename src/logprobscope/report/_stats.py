"""Confidence figures over a sequence of token logprobs (shared by the CLI and the report)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "LOW_CONFIDENCE_THRESHOLD",
    "Summary",
    "least_likely",
    "low_confidence_spans",
    "probability",
    "printable",
    "summarize",
]

LOW_CONFIDENCE_THRESHOLD = 0.5
"""Tokens with a probability below this are low-confidence (as the OTel handler's default)."""


def probability(logprob: float) -> float:
    """exp(logprob), NaN for NaN."""
    try:
        return math.exp(logprob)
    except OverflowError:
        return math.inf


@dataclass(frozen=True)
class Summary:
    """Figures of one answer's tokens; None where there are no tokens."""

    token_count: int
    sum_logprob: float
    mean_logprob: float | None
    perplexity: float | None
    min_logprob: float | None
    min_index: int | None
    low_confidence_count: int
    threshold: float


def summarize(logprobs: Sequence[float], threshold: float = LOW_CONFIDENCE_THRESHOLD) -> Summary:
    """Sum, mean, perplexity exp(−mean), the minimum and the low-confidence count."""
    n = len(logprobs)
    if n == 0:
        return Summary(0, 0.0, None, None, None, None, 0, threshold)
    total = math.fsum(logprobs)
    mean = total / n
    min_index = min(range(n), key=lambda i: (logprobs[i], i))
    low = sum(1 for lp in logprobs if probability(lp) < threshold)
    return Summary(
        n, total, mean, probability(-mean), logprobs[min_index], min_index, low, threshold
    )


def least_likely(logprobs: Sequence[float], count: int) -> list[int]:
    """Indexes of the `count` least likely tokens, least likely first (ties: earlier first)."""
    order = sorted(range(len(logprobs)), key=lambda i: (logprobs[i], i))
    return order[: max(0, count)]


def low_confidence_spans(
    logprobs: Sequence[float], threshold: float = LOW_CONFIDENCE_THRESHOLD
) -> list[tuple[int, int]]:
    """Runs of consecutive tokens with probability below `threshold`, as [start, stop)."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for i, lp in enumerate(logprobs):
        if probability(lp) < threshold:
            if start is None:
                start = i
        elif start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(logprobs)))
    return spans


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff]")


def printable(text: str) -> str:
    """The text with control characters (ANSI escapes, NUL...) shown as ``\\x1b`` escapes.

    Newlines and tabs are kept; lone surrogates become U+FFFD.
    """
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return _CONTROL.sub(_escape_control, text)


def _escape_control(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"
