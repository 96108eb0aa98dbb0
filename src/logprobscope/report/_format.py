"""How the page writes values: escaped text, numbers, probability colours, token names."""

from __future__ import annotations

import html
import math

from .._printable import printable
from ._records import TokenRecord

__all__ = [
    "BUCKETS",
    "bucket",
    "escape",
    "fmt",
    "fmt_lp",
    "fmt_p",
    "json_number",
    "literal",
    "token_label",
    "token_name",
]

# Probability buckets: (lower bound, css class, fill colour, legend label).
BUCKETS: tuple[tuple[float, str, str, str], ...] = (
    (0.99, "b0", "#d7efdd", "≥ 0.99"),
    (0.9, "b1", "#b9e4c4", "0.9–0.99"),
    (0.7, "b2", "#f4ec9c", "0.7–0.9"),
    (0.5, "b3", "#fbd38b", "0.5–0.7"),
    (0.3, "b4", "#f9a870", "0.3–0.5"),
    (0.1, "b5", "#f07a62", "0.1–0.3"),
    (-1.0, "b6", "#c9302c", "< 0.1"),
)


def escape(value: object) -> str:
    """HTML-escape any value (quotes included) after making hidden characters visible."""
    return html.escape(printable(str(value)), quote=True)


def bucket(p: float) -> tuple[str, str]:
    """The css class and fill colour of probability `p` (NaN: the lowest bucket)."""
    for low, cls, colour, _ in BUCKETS:
        if p >= low:
            return cls, colour
    return BUCKETS[-1][1], BUCKETS[-1][2]


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for people: fixed digits, NaN, ±∞, or a dash for None."""
    if value is None:
        return "—"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}f}"


def fmt_lp(value: float | None) -> str:
    """A logprob: `fmt`, or scientific when tiny."""
    if value is not None and value != 0 and abs(value) < 0.0001:
        return f"{value:.2e}"
    return fmt(value)


def fmt_p(p: float | None) -> str:
    """A probability: `fmt`, or scientific when tiny."""
    if p is None:
        return "—"
    if p != 0 and p < 0.001:
        return f"{p:.2e}"
    return fmt(p)


def json_number(value: float) -> float | str:
    """A float for the page's JSON, which has no NaN or infinities ("nan", "inf", "-inf")."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def literal(text: str | None) -> str | None:
    """A token as a quoted literal (how tables, titles and the tooltip name a token)."""
    return None if text is None else printable(text, quoted=True)


def token_name(token: TokenRecord) -> str:
    """A token as a quoted literal, or its position without content capture."""
    name = literal(token.text)
    return f"#{token.index}" if name is None else name


def token_label(token: TokenRecord) -> str:
    """A token as running text, in the token line."""
    if token.text is None:
        return f"#{token.index}"
    if token.text == "":
        return "∅"
    return printable(token.text).replace("\n", "↵\n")
