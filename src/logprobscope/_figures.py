"""Online logprob statistics of one call, O(1) memory whatever the number of tokens.

Conventions (they are the contract of the `logprobs.*` summary attributes):

- Every token counts in `token_count` and takes an index, whatever its logprob.
- A NaN logprob (the server sent no number) is data, not a statistic: it is counted in
  `nan_count` and left out of sum, mean, min, low-confidence and the probability histogram.
  So is a logprob of +inf or above ~709 (no probability has it; exp() would overflow).
  Slightly positive logprobs (rounding) are kept: their p is a hair above 1.
- -inf means probability 0: the sum and the mean become -inf, the perplexity +inf, and the
  token is a low-confidence token with p = 0. Floors such as -9999 are ordinary values
  (their probability underflows to 0.0 without any error).
- Entropy is -Σ p·ln p over the alternatives the server returned (a lower bound of the true
  entropy), with 0·ln 0 = 0; tokens without alternatives are left out of its mean. The
  margin p(top1) - p(top2) needs two alternatives. NaN alternatives are skipped.
- The sum is compensated (Neumaier), so long streams keep full precision.

`summarize` gives the same figures for a whole answer at once (the reader and the CLI use it);
`least_likely` and `low_confidence_spans` pick tokens by the same rules: a token without a
probability (NaN) is neither least likely nor low-confidence.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import NamedTuple, cast

from . import _contract as n

__all__ = [
    "LogprobStats",
    "LogprobSummary",
    "counted",
    "least_likely",
    "low_confidence_spans",
    "probability",
    "summarize",
    "summary_attributes",
]

_INF = math.inf
_NEG_INF = -math.inf
_EXP_MAX = 709.0  # exp() overflows above ~709.78; positive logprobs are malformed anyway


def probability(logprob: float) -> float:
    """exp(logprob) that never raises: NaN stays NaN, large positive values give +inf."""
    if logprob <= _EXP_MAX:
        return math.exp(logprob)
    return logprob if logprob != logprob else _INF


def counted(logprob: float) -> bool:
    """Whether a logprob enters the figures: not NaN, not +inf or above ~709 (see above)."""
    return logprob <= _EXP_MAX  # NaN compares False


class LogprobSummary(NamedTuple):
    """The summary of the tokens seen; None where a statistic is undefined."""

    token_count: int
    nan_count: int
    sum: float | None
    mean: float | None
    perplexity: float | None
    min: float | None
    min_index: int | None
    entropy_mean: float | None
    margin_mean: float | None
    low_confidence_count: int


class LogprobStats:
    """Running statistics over token logprobs and their top alternatives."""

    __slots__ = (
        "threshold",
        "count",
        "nan_count",
        "valid",
        "neg_inf",
        "_sum",
        "_comp",
        "min",
        "min_index",
        "low_count",
        "entropy_sum",
        "entropy_n",
        "margin_sum",
        "margin_n",
    )

    def __init__(
        self, low_confidence_threshold: float = n.DEFAULT_LOW_CONFIDENCE_THRESHOLD
    ) -> None:
        self.threshold = low_confidence_threshold
        self.count = 0
        self.nan_count = 0
        self.valid = 0
        self.neg_inf = 0
        self._sum = 0.0
        self._comp = 0.0
        self.min = _INF
        self.min_index = -1
        self.low_count = 0
        self.entropy_sum = 0.0
        self.entropy_n = 0
        self.margin_sum = 0.0
        self.margin_n = 0

    def add(self, logprob: float, top_logprobs: Sequence[float] = ()) -> float:
        """Add one token; return its probability (NaN for a NaN logprob)."""
        probs = array("d")
        tops = array("d", top_logprobs)
        self.add_columns(array("d", (logprob,)), tops, array("q", (0, len(tops))), 0, 1, probs)
        return probs[0] if probs else math.nan

    def add_columns(
        self,
        logprobs: Sequence[float],
        top_logprobs: Sequence[float],
        top_offsets: Sequence[int],
        start: int,
        stop: int,
        probabilities: array[float],
    ) -> None:
        """Add tokens [start, stop) of columnar data (see `TokenBuffer`).

        The probability of every token that has one is appended to `probabilities`
        (the observations of the `logprobs.token.probability` histogram).
        """
        # The hot path: one call per chunk, locals instead of attribute lookups.
        exp = math.exp
        threshold = self.threshold
        index = self.count
        s = self._sum
        comp = self._comp
        low = self.low_count
        valid = self.valid
        mn = self.min
        mn_index = self.min_index
        ent_sum = self.entropy_sum
        ent_n = self.entropy_n
        mar_sum = self.margin_sum
        mar_n = self.margin_n
        append = probabilities.append
        for i in range(start, stop):
            lp = logprobs[i]
            if lp <= 0.0:
                p = exp(lp)  # -inf gives 0.0, floors underflow to 0.0
            elif lp != lp or lp > _EXP_MAX:
                self.nan_count += 1
                index += 1
                continue
            else:
                p = exp(lp)  # slightly positive (rounding): p a hair above 1, kept
            if lp == _NEG_INF:
                self.neg_inf += 1
            else:
                t = s + lp
                if abs(s) >= abs(lp):
                    comp += (s - t) + lp
                else:
                    comp += (lp - t) + s
                s = t
            valid += 1
            if lp < mn:
                mn = lp
                mn_index = index
            if p < threshold:
                low += 1
            append(p)
            o0 = top_offsets[i]
            o1 = top_offsets[i + 1]
            if o1 > o0:
                h = 0.0
                q1 = q2 = -1.0
                k = 0
                for j in range(o0, o1):
                    a = top_logprobs[j]
                    if a <= 0.0:
                        q = exp(a)
                        if q > 0.0:
                            h -= q * a
                    elif a != a or a > _EXP_MAX:
                        continue
                    else:
                        q = exp(a)
                        h -= q * a
                    k += 1
                    if q > q1:
                        q2 = q1
                        q1 = q
                    elif q > q2:
                        q2 = q
                if k:
                    ent_sum += h
                    ent_n += 1
                    if k >= 2:
                        mar_sum += q1 - q2
                        mar_n += 1
            index += 1
        self.count = index
        self._sum = s
        self._comp = comp
        self.low_count = low
        self.valid = valid
        self.min = mn
        self.min_index = mn_index
        self.entropy_sum = ent_sum
        self.entropy_n = ent_n
        self.margin_sum = mar_sum
        self.margin_n = mar_n

    def skip(self, n: int) -> None:
        """Count n tokens that carried no usable data at all (keeps indexes aligned)."""
        self.count += n
        self.nan_count += n

    @property
    def sum(self) -> float:
        """Σ logprob over the valid tokens (-inf if any was -inf)."""
        return _NEG_INF if self.neg_inf else self._sum + self._comp

    def summary(self) -> LogprobSummary:
        """The statistics so far."""
        if not self.valid:
            return LogprobSummary(
                self.count, self.nan_count, None, None, None, None, None, None, None, 0
            )
        total = self.sum
        mean = total / self.valid
        try:
            perplexity = math.exp(-mean)
        except OverflowError:
            perplexity = _INF
        return LogprobSummary(
            token_count=self.count,
            nan_count=self.nan_count,
            sum=total,
            mean=mean,
            perplexity=perplexity,
            min=self.min,
            min_index=self.min_index,
            entropy_mean=self.entropy_sum / self.entropy_n if self.entropy_n else None,
            margin_mean=self.margin_sum / self.margin_n if self.margin_n else None,
            low_confidence_count=self.low_count,
        )


def summarize(
    logprobs: Sequence[float],
    *,
    top_logprobs: Sequence[Sequence[float]] = (),
    low_confidence_threshold: float = n.DEFAULT_LOW_CONFIDENCE_THRESHOLD,
) -> LogprobSummary:
    """The figures of a whole answer: what `LogprobStats` says after all of its tokens.

    `top_logprobs[i]` are token i's alternatives (missing rows: none).
    """
    flat = array("d")
    offsets = array("q", (0,))
    for i in range(len(logprobs)):
        if i < len(top_logprobs):
            flat.extend(top_logprobs[i])
        offsets.append(len(flat))
    stats = LogprobStats(low_confidence_threshold)
    stats.add_columns(array("d", logprobs), flat, offsets, 0, len(logprobs), array("d"))
    return stats.summary()


def summary_attributes(summary: LogprobSummary) -> dict[str, float | int]:
    """The span's summary attributes for these figures (docs/telemetry.md).

    `logprobs.token_count` always; the others only when at least one token has a
    probability; entropy and margin only when the alternatives define them.
    """
    attributes: dict[str, float | int] = {n.LOGPROBS_TOKEN_COUNT: summary.token_count}
    if summary.sum is None:
        return attributes
    attributes[n.LOGPROBS_SUM] = summary.sum
    attributes[n.LOGPROBS_MEAN] = cast(float, summary.mean)
    attributes[n.LOGPROBS_PERPLEXITY] = cast(float, summary.perplexity)
    attributes[n.LOGPROBS_MIN] = cast(float, summary.min)
    attributes[n.LOGPROBS_MIN_INDEX] = cast(int, summary.min_index)
    attributes[n.LOGPROBS_LOW_CONFIDENCE_COUNT] = summary.low_confidence_count
    if summary.entropy_mean is not None:
        attributes[n.LOGPROBS_ENTROPY_MEAN] = summary.entropy_mean
    if summary.margin_mean is not None:
        attributes[n.LOGPROBS_MARGIN_MEAN] = summary.margin_mean
    return attributes


def least_likely(logprobs: Sequence[float], *, count: int) -> list[int]:
    """Indexes of the `count` least likely counted tokens, least likely first (ties: earlier)."""
    order = sorted((i for i, lp in enumerate(logprobs) if counted(lp)), key=lambda i: logprobs[i])
    return order[: max(0, count)]


def low_confidence_spans(
    logprobs: Sequence[float], *, threshold: float = n.DEFAULT_LOW_CONFIDENCE_THRESHOLD
) -> list[tuple[int, int]]:
    """Runs of consecutive low-confidence tokens (p < `threshold`), as [start, stop).

    A token without a probability (NaN) is not low-confidence: it ends a run.
    """
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for i, lp in enumerate(logprobs):
        if counted(lp) and probability(lp) < threshold:
            if start is None:
                start = i
        elif start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(logprobs)))
    return spans
