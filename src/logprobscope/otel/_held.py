"""One stream's tokens held back to the end of a call, and the least likely of them.

The event writer holds the tokens past its token events' share (`_events`): ranges of the
buffers (`Segment`, no copy) and when each run of them arrived, so that at the end they
become token events at their own arrival times, or even batches stamped with their first
token's arrival. While the batches are built, the least likely tokens of a stream are kept
(`Held.keep_least_likely`) to be written once more as token events.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_right
from collections.abc import Iterator

from .._figures import counted
from .._logprobs import TokenBuffer
from ._batch import Segment

__all__ = ["Held", "Least", "StreamKey", "cut", "shares"]

StreamKey = tuple[str, int]
"""A stream of tokens: (channel, choice index)."""

Least = tuple[float, int, int, int, TokenBuffer, int]
"""A least likely held token: logprob, index, arrival time, arrival order, buffer, row."""


class Held:
    """The tokens of stream `key` held back, from index `first` on, with their arrivals.

    An arrival is a run of tokens added at one time, with no other stream's tokens added in
    between; `order` numbers the writer's `add` calls, so arrivals of different streams at
    the same time keep the order they came in.
    """

    __slots__ = (
        "key",
        "segments",
        "count",
        "first",
        "last_add",
        "arrival_index",
        "arrival_time",
        "arrival_order",
        "least",
        "least_low",
    )

    def __init__(self, key: StreamKey, first: int) -> None:
        self.key = key
        self.segments: list[Segment] = []
        self.count = 0
        self.first = first
        self.last_add = -2
        self.arrival_index = array("q")
        self.arrival_time = array("q")
        self.arrival_order = array("q")
        self.least: list[Least] = []
        self.least_low = False  # whether `least` holds low-confidence tokens

    def hold(
        self, buf: TokenBuffer, start: int, stop: int, index: int, time_ns: int, order: int
    ) -> None:
        """Tokens [start, stop) of `buf` (indexes from `index` on), added by call `order`."""
        segments = self.segments
        last = segments[-1] if segments else None
        if last is not None and last.buf is buf and last.stop == start:
            last.stop = stop
        else:
            segments.append(Segment(buf, start, stop))
        self.count += stop - start
        times = self.arrival_time
        if not times or times[-1] != time_ns or self.last_add != order - 1:
            self.arrival_index.append(index)
            times.append(time_ns)
            self.arrival_order.append(order)
        self.last_add = order

    def arrival(self, index: int) -> tuple[int, int]:
        """When the held token `index` arrived, and the order of its arrival."""
        k = bisect_right(self.arrival_index, index) - 1
        return self.arrival_time[k], self.arrival_order[k]

    def runs(self) -> Iterator[tuple[int, int, TokenBuffer, int, int, int]]:
        """(time, order, buffer, start, stop, first index) of every run of held tokens that
        arrived together, in index order."""
        arrivals = self.arrival_index
        end = self.first + self.count
        index = self.first
        for seg in self.segments:
            i = seg.start
            while i < seg.stop:
                k = bisect_right(arrivals, index) - 1
                upto = arrivals[k + 1] if k + 1 < len(arrivals) else end
                j = min(seg.stop, i + upto - index)
                yield self.arrival_time[k], self.arrival_order[k], seg.buf, i, j, index
                index += j - i
                i = j

    def keep_least_likely(
        self,
        segments: list[Segment],
        first: int,
        logprobs: list[float],
        probabilities: list[float],
        *,
        threshold: float,
        spare: int,
    ) -> None:
        """Keep a batch's least likely tokens among the stream's: the low-confidence ones,
        lowest first, up to `spare`; while there is no low-confidence token, the lowest
        (`logprobs.min_index` is always one of them)."""
        # p < threshold leaves out NaN and overflowing logprobs, as the statistics do.
        found = [(logprobs[j], first + j) for j, p in enumerate(probabilities) if p < threshold]
        if found:
            if not self.least_low:  # a low-confidence token is lower than any other
                self.least_low = True
                self.least = []
        elif self.least_low:
            return
        else:
            valid = [lp for lp in logprobs if counted(lp)]
            if not valid:
                return
            lowest = min(valid)
            found = [(lowest, first + logprobs.index(lowest))]  # the first if tied
        keep = spare if self.least_low else 1
        # Both lists are sorted by (logprob, index): merge the `keep` lowest, and locate
        # (arrival, buffer row) only the batch's tokens that make it.
        candidates = heapq.nsmallest(keep, found)
        old = self.least
        merged: list[Least] = []
        i = j = 0
        while len(merged) < keep and (i < len(old) or j < len(candidates)):
            if j >= len(candidates) or (i < len(old) and old[i][:2] <= candidates[j]):
                merged.append(old[i])
                i += 1
            else:
                lp, index = candidates[j]
                merged.append((lp, index, *self.arrival(index), *_locate(segments, index - first)))
                j += 1
        self.least = merged


def cut(held: Held, size: int) -> Iterator[tuple[int, list[Segment]]]:
    """The held tokens in batches of `size` (the last takes the rest): (first index, ranges)."""
    segments = held.segments
    s = 0  # the segment being cut, and where in it
    at = segments[0].start
    first, count = held.first, held.count
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
        yield batch_first, parts


def shares(counts: list[int], slots: int) -> list[int]:
    """`slots` batch events split among streams of `counts` tokens: one each, the rest in
    proportion (largest remainders first). Needs len(counts) <= slots."""
    spare = slots - len(counts)
    total = sum(counts)
    exact = [spare * c / total for c in counts]
    out = [1 + int(e) for e in exact]
    rest = slots - sum(out)
    by_remainder = sorted(range(len(counts)), key=lambda k: int(exact[k]) - exact[k])
    for k in by_remainder[:rest]:
        out[k] += 1
    return out


def _locate(segments: list[Segment], offset: int) -> tuple[TokenBuffer, int]:
    """The buffer and row of the token `offset` places into `segments`."""
    for seg in segments:
        size = seg.stop - seg.start
        if offset < size:
            return seg.buf, seg.start + offset
        offset -= size
    raise IndexError(offset)
