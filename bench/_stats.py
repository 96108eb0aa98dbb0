"""The run's CPU numbers and what is read from them: medians, mins, added cost, ratios.

Every measured call of every process is kept, per (configuration, N). The median and the min
are over all of them (pooled); each process's own median is kept too, so that a process that
ran slow throughout (a busy neighbour, a bad CPU) shows instead of being averaged away.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

__all__ = ["SLOW", "Cell", "Pair", "Results", "fmt_ms"]

SLOW = 1.3  # a process whose median is this much above the median of the others' is flagged


@dataclass(frozen=True)
class Cell:
    """One configuration at one N: seconds per call."""

    median: float
    min: float
    per_process: tuple[float, ...]  # each process's median, in the order the rounds ran

    @property
    def slow(self) -> tuple[int, ...]:
        """Indices of the processes whose median is > SLOW x the median of the others'."""
        p = self.per_process
        if len(p) < 2:
            return ()
        return tuple(
            i
            for i, m in enumerate(p)
            if m > SLOW * statistics.median([x for j, x in enumerate(p) if j != i])
        )


@dataclass(frozen=True)
class Pair:
    """A figure read from the medians and, separately, from the mins."""

    median: float
    min: float


class Results:
    """CPU seconds of every measured call: `add(name, n, times)` once per process."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, int], list[list[float]]] = {}

    def add(self, name: str, n: int, times: list[float]) -> None:
        if times:
            self._calls.setdefault((name, n), []).append(list(times))

    def cell(self, name: str, n: int) -> Cell | None:
        processes = self._calls.get((name, n))
        if not processes:
            return None
        pooled = [t for p in processes for t in p]
        return Cell(
            statistics.median(pooled),
            min(pooled),
            tuple(statistics.median(p) for p in processes),
        )

    def added(self, name: str, base: str | None, n: int) -> Pair | None:
        """Seconds added per chunk/token over `base` at the same N: (config - base) / N."""
        c, b = self.cell(name, n), self.cell(base, n) if base else None
        if c is None or b is None:
            return None
        return Pair((c.median - b.median) / n, (c.min - b.min) / n)

    def ratio(self, name: str, base: str, n: int) -> Pair | None:
        c, b = self.cell(name, n), self.cell(base, n)
        if c is None or b is None or b.median <= 0 or b.min <= 0:
            return None
        return Pair(c.median / b.median, c.min / b.min)

    def per_chunk_growth(self, name: str, small: int, large: int) -> Pair | None:
        """Per-chunk cost at `large` over per-chunk cost at `small` (1.0: linear)."""
        a, b = self.cell(name, small), self.cell(name, large)
        if a is None or b is None or a.median <= 0 or a.min <= 0:
            return None
        return Pair((b.median / large) / (a.median / small), (b.min / large) / (a.min / small))


def fmt_ms(seconds: float) -> str:
    """Milliseconds with about three significant digits."""
    ms = seconds * 1e3
    if abs(ms) >= 100:
        return f"{ms:,.0f}"
    if abs(ms) >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"
