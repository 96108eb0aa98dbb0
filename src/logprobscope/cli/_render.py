"""Terminal output: tokens coloured by probability with rich, or plain text.

Colour is used when the stream is a terminal and ``NO_COLOR`` is not set (``FORCE_COLOR``
forces it, e.g. in CI logs); otherwise the same text is written plain, so it pipes cleanly.
Token texts from the model are printed with control, bidi and invisible characters made
visible (`logprobscope._printable`, the HTML report's rule too): an answer cannot move the
cursor, recolour the terminal or reverse the text after it. The figures are the span's
(`logprobscope._figures`).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from logprobscope import TokenLogprob
from logprobscope import _contract as n
from logprobscope._figures import (
    counted,
    least_likely,
    low_confidence_spans,
    probability,
    summarize,
)
from logprobscope._printable import printable

if TYPE_CHECKING:
    from rich.console import Console

    from logprobscope._figures import LogprobSummary

# (lower probability bound, rich style, legend label); keep in step with the HTML report.
_STYLES: tuple[tuple[float, str, str], ...] = (
    (0.99, "", "≥0.99"),
    (0.9, "green", "≥0.9"),
    (0.7, "yellow", "≥0.7"),
    (0.5, "dark_orange", "≥0.5"),
    (0.3, "orange_red1", "≥0.3"),
    (0.1, "bold red", "≥0.1"),
    (-1.0, "bold white on red3", "<0.1"),
)


def style_for(p: float) -> str:
    """The rich style of a token with probability `p` (NaN: the lowest bucket)."""
    for low, style, _ in _STYLES:
        if p >= low:
            return style
    return _STYLES[-1][1]


def wants_color(stream: TextIO) -> bool:
    """Whether to colour output to `stream` (NO_COLOR off, FORCE_COLOR on, else a TTY)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def fmt_p(p: float) -> str:
    """A probability for people: 4 decimals, or scientific when tiny."""
    if p != p:
        return "n/a"
    if p != 0 and p < 0.001:
        return f"{p:.1e}"
    return f"{p:.4f}"


class Output:
    """Where answers and summaries go; coloured with rich or plain."""

    def __init__(self, stream: TextIO | None = None, *, color: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.color = wants_color(self.stream) if color is None else color
        self._console: Console | None = None
        if self.color:
            from rich.console import Console

            self._console = Console(
                file=self.stream,
                force_terminal=True,
                highlight=False,
                markup=False,
                emoji=False,
                soft_wrap=True,
            )
            if self._console.color_system is None:  # e.g. TERM=dumb
                self._console = None
                self.color = False

    def write(self, text: str, style: str = "") -> None:
        """Write text (made printable), in `style` when colouring."""
        text = printable(text)
        if self._console is not None:
            from rich.text import Text

            self._console.print(Text(text, style=style), end="")
        else:
            self.stream.write(text)
        self.stream.flush()

    def line(self, text: str = "", style: str = "") -> None:
        """Write text and a newline."""
        self.write(text + "\n", style)

    def token(self, text: str, logprob: float | None) -> None:
        """Write one token coloured by its probability (uncoloured without a logprob)."""
        self.write(text, "" if logprob is None else style_for(probability(logprob)))

    def legend(self) -> None:
        """One line explaining the colours (only when colouring)."""
        if self._console is None:
            return
        self.write("token probability: ", "dim")
        for _, style, label in _STYLES:
            self.write(f" {label} ", style or "default")
        self.line()


def print_answer(out: Output, content: str, tokens: Sequence[TokenLogprob]) -> None:
    """Print an answer coloured token by token (plain if the tokens do not spell it)."""
    if tokens and "".join(t.token for t in tokens) == content:
        for t in tokens:
            out.token(t.token, t.logprob)
    elif tokens:
        # Byte-level tokens that do not decode one by one: colour by the weakest token.
        weakest = min((t.logprob for t in tokens if counted(t.logprob)), default=math.nan)
        out.token(content, weakest)
    else:
        out.write(content)


def answer_figures(
    tokens: Sequence[TokenLogprob], *, threshold: float = n.DEFAULT_LOW_CONFIDENCE_THRESHOLD
) -> LogprobSummary:
    """The answer's figures, as the telemetry computes them for the span."""
    return summarize(
        [t.logprob for t in tokens],
        top_logprobs=[[a.logprob for a in t.top_logprobs] for t in tokens],
        low_confidence_threshold=threshold,
    )


def print_summary(
    out: Output,
    tokens: Sequence[TokenLogprob],
    *,
    threshold: float = n.DEFAULT_LOW_CONFIDENCE_THRESHOLD,
    top: int = 5,
) -> None:
    """Perplexity, mean logprob, the least likely tokens with alternatives, low spans.

    The figures are the span's (`logprobscope._figures`): a token without a logprob (NaN)
    counts as a token but not in the figures, and is never least likely nor low.
    """
    logprobs = [t.logprob for t in tokens]
    s = answer_figures(tokens, threshold=threshold)
    if s.mean is None or s.perplexity is None or s.min is None or s.min_index is None:
        out.line("no tokens with logprobs", "dim")
        return
    without = f" · {s.nan_count} without a logprob" if s.nan_count else ""
    out.line(
        f"── {s.token_count} tokens · perplexity {s.perplexity:.4f} · mean logprob "
        f"{s.mean:.4f} · min p {fmt_p(probability(s.min))} at "
        f"#{s.min_index} {printable(tokens[s.min_index].token, quoted=True)}{without}",
        "bold",
    )
    out.line("least likely tokens:", "bold")
    for i in least_likely(logprobs, count=top):
        t = tokens[i]
        out.write(f"  #{i:<4} ")
        out.token(f"{printable(t.token, quoted=True):<16}", t.logprob)
        out.write(f" p {fmt_p(probability(t.logprob))}")
        if t.top_logprobs:
            alternatives = ", ".join(
                f"{printable(a.token, quoted=True)} {fmt_p(probability(a.logprob))}"
                for a in t.top_logprobs
            )
            out.write("  alternatives: ", "dim")
            out.write(alternatives)
        out.line()
    spans = low_confidence_spans(logprobs, threshold=threshold)
    if not spans:
        out.line(f"low-confidence spans (p < {threshold:g}): none", "bold")
        return
    out.line(f"low-confidence spans (p < {threshold:g}): {len(spans)}", "bold")
    for start, stop in spans[:10]:
        text = "".join(t.token for t in tokens[start:stop])
        weakest = min(logprobs[start:stop])
        where = f"#{start}" if stop - start == 1 else f"#{start}–#{stop - 1}"
        out.write(f"  {where:<11} ")
        out.token(printable(text, quoted=True), weakest)
        out.line(f"  min p {fmt_p(probability(weakest))}")
    if len(spans) > 10:
        out.line(f"  … and {len(spans) - 10} more", "dim")
