"""A position-tracking JSON scanner: every leaf value's path, value and byte span.

The stdlib's `json` gives values, not where they are; field confidence needs the bytes each
value occupies in the model's answer. `scan` reads UTF-8 bytes (the answer exactly as the
tokens spell it) without recursion (any nesting depth) and never raises on malformed input.

- A leaf is a string, number, `true`, `false`, `null`, or an empty array or object. Its span
  `[begin, end)` is its whole lexeme: a string's span includes both quotes (the closing
  quote is where the model decided the value ends; an empty string has nothing else), an
  empty container's span runs from its bracket to its closing bracket.
- Paths: `$` is the top-level value, `$.label` a key that is an identifier
  (`[A-Za-z_][A-Za-z0-9_]*`), `$["odd key"]` any other key (JSON-quoted), `$.items[2]` an
  array item. A key repeated in one object gives two leaves with the same path.
- Leading whitespace is skipped, and so is one opening code fence (a line starting with
  three backticks, such as a json fence): the value starts on the next line. Whatever
  follows the top-level value (a closing fence, prose) is ignored.
- Invalid or truncated input: the leaves that were read completely before the problem are
  returned, and `complete` is False. A number that runs to the end of the input inside an
  unclosed container is not complete (more digits may have been cut off); a top-level number
  at the end of the input is taken as it is. A number or literal must be followed by
  whitespace, `,`, `]`, `}` or the end (`01`, `truex` are invalid).
- Lenient where models are: raw control characters inside strings are accepted; bytes that
  are not UTF-8 decode to U+FFFD, and so do escaped lone surrogates (`_text.valid_text`).
  An integer too long for `int()` (more than 4,300 digits) becomes a float.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple, TypeAlias

from ._schema_walk import SchemaNode
from ._text import valid_text

__all__ = ["Leaf", "LeafValue", "scan"]

LeafValue: TypeAlias = str | int | float | bool | None | list[object] | dict[str, object]

_SKIP_WS = re.compile(rb"[ \t\n\r]*")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_AFTER_SCALAR = frozenset(b" \t\n\r,]}")
_LITERALS: dict[int, tuple[bytes, bool | None]] = {
    ord("t"): (b"true", True),
    ord("f"): (b"false", False),
    ord("n"): (b"null", None),
}
_FENCE = b"```"

# Parser states: what may come next.
_VALUE = 0  # a value
_FIRST_ITEM = 1  # after "[": a value or "]"
_FIRST_KEY = 2  # after "{": a key or "}"
_KEY = 3  # after "," in an object: a key
_COLON = 4  # after a key
_NEXT = 5  # after a member: "," or the container's end

_OPEN_OBJECT, _OPEN_ARRAY, _CLOSE_OBJECT, _CLOSE_ARRAY = b"{[}]"
_QUOTE, _COMMA, _COLON_BYTE, _MINUS = b'",:-'


class Leaf(NamedTuple):
    """One leaf value: where it is in the document and in the bytes."""

    path: str
    value: LeafValue
    begin: int
    end: int
    # Where the value's own characters start: after the opening quote of a string (at its
    # closing quote for ""), at `begin` for anything else. The first token overlapping
    # [content_begin, end) is the one whose alternatives are the classification confidence.
    content_begin: int
    # A choice among fixed options: the schema says enum/const here, or a boolean.
    choice: bool


class _Frame:
    __slots__ = ("is_object", "path", "node", "begin", "count", "key")

    def __init__(self, is_object: bool, path: str, node: SchemaNode | None, begin: int):
        self.is_object = is_object
        self.path = path
        self.node = node
        self.begin = begin
        self.count = 0
        self.key = ""


def member_path(parent: str, key: str | int) -> str:
    """The path of `parent`'s member `key` (see the module docstring for the syntax)."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if _IDENTIFIER.fullmatch(key):
        return f"{parent}.{key}"
    return f"{parent}[{json.dumps(key, ensure_ascii=False)}]"


def _string(lexeme: bytes) -> str | None:
    """The value of a string lexeme (quotes included); None for an invalid escape."""
    text = lexeme.decode("utf-8", "replace")
    if "\\" not in text:
        return valid_text(text[1:-1])
    try:
        value = json.loads(text, strict=False)
    except ValueError:
        return None
    return valid_text(value) if isinstance(value, str) else None


def _number(lexeme: bytes, is_float: bool) -> int | float:
    if not is_float:
        try:
            return int(lexeme)
        except ValueError:  # beyond int()'s digit limit
            pass
    return float(lexeme)


def _start(data: bytes) -> int:
    """Where the value starts: after leading whitespace and one opening code fence."""
    pos = _SKIP_WS.match(data).end()  # type: ignore[union-attr]  # always matches
    if data.startswith(_FENCE, pos):
        newline = data.find(b"\n", pos)
        return len(data) if newline < 0 else newline + 1
    return pos


def scan(data: bytes, root: SchemaNode | None = None) -> tuple[list[Leaf], bool]:
    """Every leaf of the JSON value in `data`, in document order, and whether it is complete.

    `root` is the schema node of the top-level value (`_schema_walk.schema_root`): it marks
    enum leaves as choices. Booleans are choices with or without it.
    """
    leaves: list[Leaf] = []
    append = leaves.append
    stack: list[_Frame] = []
    skip_ws = _SKIP_WS.match
    n = len(data)
    pos = _start(data)
    state = _VALUE
    path = "$"  # the path and schema node of the value expected next
    node = root
    while True:
        pos = skip_ws(data, pos).end()  # type: ignore[union-attr]
        if pos >= n:
            return leaves, False
        c = data[pos]
        if state == _NEXT:
            frame = stack[-1]
            if c == _COMMA:
                pos += 1
                frame.count += 1
                if frame.is_object:
                    state = _KEY
                    continue
                path = member_path(frame.path, frame.count)
                node = None if frame.node is None else frame.node.child(frame.count)
                state = _VALUE
                continue
            if c != (_CLOSE_OBJECT if frame.is_object else _CLOSE_ARRAY):
                return leaves, False
            stack.pop()
            pos += 1
        elif state == _FIRST_KEY or state == _KEY:
            frame = stack[-1]
            if c == _CLOSE_OBJECT and state == _FIRST_KEY:
                stack.pop()
                pos += 1
                append(Leaf(frame.path, {}, frame.begin, pos, frame.begin, False))
            else:
                match = _STRING.match(data, pos) if c == _QUOTE else None
                key = None if match is None else _string(match.group())
                if match is None or key is None:
                    return leaves, False
                frame.key = key
                pos = match.end()
                state = _COLON
                continue
        elif state == _COLON:
            if c != _COLON_BYTE:
                return leaves, False
            frame = stack[-1]
            path = member_path(frame.path, frame.key)
            node = None if frame.node is None else frame.node.child(frame.key)
            pos += 1
            state = _VALUE
            continue
        elif c == _CLOSE_ARRAY and state == _FIRST_ITEM:
            frame = stack.pop()
            pos += 1
            append(Leaf(frame.path, [], frame.begin, pos, frame.begin, False))
        elif c == _OPEN_OBJECT or c == _OPEN_ARRAY:
            is_object = c == _OPEN_OBJECT
            stack.append(_Frame(is_object, path, node, pos))
            pos += 1
            if is_object:
                state = _FIRST_KEY
            else:
                state = _FIRST_ITEM
                path = member_path(path, 0)
                node = None if node is None else node.child(0)
            continue
        else:
            value: LeafValue
            content_begin = pos
            if c == _QUOTE:
                match = _STRING.match(data, pos)
                string = None if match is None else _string(match.group())
                if match is None or string is None:
                    return leaves, False
                value = string
                end = match.end()
                content_begin = pos + 1
            elif c in _LITERALS:
                word, value = _LITERALS[c]
                if not data.startswith(word, pos):
                    return leaves, False
                end = pos + len(word)
            else:
                match = _NUMBER.match(data, pos) if c == _MINUS or 48 <= c <= 57 else None
                if match is None:
                    return leaves, False
                end = match.end()
                if end == n and stack:
                    return leaves, False  # more digits may have been cut off
                value = _number(match.group(), match.lastindex is not None)
            if c != _QUOTE and end < n and data[end] not in _AFTER_SCALAR:
                return leaves, False
            choice = type(value) is bool or (node is not None and node.enum)
            append(Leaf(path, value, pos, end, content_begin, choice))
            pos = end
        # A value has ended: the document, or a member of the innermost container.
        if not stack:
            return leaves, True
        state = _NEXT
