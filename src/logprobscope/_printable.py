"""Text from a model made safe to show, in a terminal or a page: one rule for both.

A token may hold characters that are invisible or that act on the text around them: ANSI
escapes that recolour a terminal, a right-to-left override (U+202E) that reverses every
token after it, zero-width spaces. Each of these is shown as a visible escape, in Python's
notation (``\\x1b``, ``\\u202e``, ``\\U000e0041``):

- control characters (Unicode category Cc), except newline and tab: C0, DEL, C1;
- format characters (Cf): bidi embeddings, overrides and isolates (U+202A–U+202E,
  U+2066–U+2069), the marks U+200E, U+200F, U+061C, zero-width and invisible characters
  (U+200B–U+200D, U+2060–U+2064, U+FEFF, U+00AD, U+180E), tag characters...;
- the line and paragraph separators U+2028, U+2029 (Zl, Zp);
- lone surrogates (Cs), which no UTF-8 encoder takes.

Everything else is kept as it is, spaces and letters of every script included.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["printable"]

_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Characters that are never escaped in running text (printable ASCII, newline, tab) are
# skipped by the regex; the others are looked up.
_RUNNING = re.compile(r"[^\t\n\x20-\x7e]")
_LITERAL = re.compile(r"[^\x20-\x21\x23-\x26\x28-\x5b\x5d-\x7e]")  # also \ ' " and \t \n
_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    return _escape(char) if unicodedata.category(char) in _HIDDEN else char


def printable(text: str, *, quoted: bool = False) -> str:
    """`text` with every hidden character (see the module docstring) as a visible escape.

    Running text (`quoted` False) keeps newlines, tabs and backslashes as they are. With
    `quoted`, the text becomes a literal in quotes, as Python's ``repr`` writes one (single
    quotes unless the text holds one and no double quote), where the backslash, the quote,
    newline, carriage return and tab are escaped too: one token, unambiguous.
    """
    if not quoted:
        return _RUNNING.sub(_visible, text)
    quote = '"' if "'" in text and '"' not in text else "'"

    def literal(match: re.Match[str]) -> str:
        char = match.group()
        if char == quote:
            return "\\" + char
        short = _SHORT.get(char)
        if short is not None:
            return short
        return _visible(match)

    return quote + _LITERAL.sub(literal, text) + quote
