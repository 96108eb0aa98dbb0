"""Pieces of a stream's answer not joined yet: what makes `agg + chunk` O(1).

A stream appends every piece (content text, refusal text, tool-call deltas) to lists it
owns; a chunk holds a `_Slice` of such a list, and `agg + chunk` over one stream only
widens the slice. Joining (text) or merging (tool calls) happens once, when read.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

from ._toolcalls import Delta, parse_calls

__all__ = [
    "NO_TOOLS",
    "ChunkContent",
    "ChunkDict",
    "ChunkLazy",
    "Extras",
    "Slice",
    "StreamDeltas",
    "StreamText",
    "concat",
    "get_dict",
    "joined",
]

_P = TypeVar("_P")


class StreamText(list[str]):
    """A stream's text pieces: appended to by that stream only, never by `+`."""

    __slots__ = ()


class StreamDeltas(list[Delta]):
    """A stream's tool-call deltas: appended to by that stream only, never by `+`."""

    __slots__ = ()


_OWNED = (StreamText, StreamDeltas)


class Slice(Generic[_P]):
    """Pieces not joined yet: pieces[start:stop] of a shared, append-only list."""

    __slots__ = ("pieces", "start", "stop")

    def __init__(self, pieces: list[_P], start: int, stop: int) -> None:
        self.pieces = pieces
        self.start = start
        self.stop = stop

    def items(self) -> list[_P]:
        return self.pieces[self.start : self.stop]


def concat(left: Slice[_P] | None, right: Slice[_P] | None) -> Slice[_P] | None:
    """`left + right` as a slice; O(1) for neighbours, O(len(right)) at a list's tip.

    A list a stream owns is never extended here (the stream reads its own answer back
    from it); any other list is, but only by the slice that ends at its tip, so older
    aggregates of it never change. Otherwise the pieces are copied once into a new list,
    whose tip the result then is.
    """
    if left is None:
        return right
    if right is None:
        return left
    pieces = left.pieces
    if right.pieces is pieces and left.stop == right.start:
        return Slice(pieces, left.start, right.stop)
    if left.stop == len(pieces) and type(pieces) not in _OWNED:
        pieces.extend(right.pieces[right.start : right.stop])
        return Slice(pieces, left.start, len(pieces))
    fresh = left.items() + right.items()
    return Slice(fresh, 0, len(fresh))


class Extras:
    """A chunk's refusal text and tool-call deltas, when it has any (rare: not content)."""

    __slots__ = ("refusal", "tools")

    def __init__(self, refusal: Slice[str] | None, tools: Slice[Delta] | None) -> None:
        self.refusal = refusal
        self.tools = tools

    def __add__(self, other: Extras) -> Extras:
        return Extras(concat(self.refusal, other.refusal), concat(self.tools, other.tools))


class _NoTools:
    """Marker in a chunk's fields: no tool calls, the empty lists not built yet."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "NO_TOOLS"


NO_TOOLS = _NoTools()


# -- a chunk's fields, joined when read ------------------------------------------------------

_instance_dict = BaseModel.__dict__["__dict__"]  # the slot descriptor of every model's dict
get_dict = _instance_dict.__get__
_set_dict = _instance_dict.__set__


def joined(fields: dict[str, object]) -> dict[str, object]:
    value = fields["content"]
    if type(value) is Slice:
        fields["content"] = "".join(value.pieces[value.start : value.stop])
    value = fields["refusal"]
    if type(value) is Slice:
        fields["refusal"] = "".join(value.pieces[value.start : value.stop])
    value = fields["tool_calls"]
    if value is NO_TOOLS:
        fields["tool_calls"] = []
        fields["invalid_tool_calls"] = []
    elif type(value) is Slice:
        fields["tool_calls"], fields["invalid_tool_calls"] = parse_calls(value.items())
    return fields


class ChunkDict:
    """`chunk.__dict__`, with pending text and tool calls joined first."""

    __slots__ = ()

    def __get__(self, obj: object, owner: type | None = None) -> dict[str, object]:
        if obj is None:
            raise AttributeError("__dict__")
        return joined(get_dict(obj))

    def __set__(self, obj: object, value: dict[str, object]) -> None:
        _set_dict(obj, value)  # copy, deepcopy and unpickling set it


class ChunkContent:
    """`chunk.content`, the text joined on first read (a chunk of a stream holds a slice)."""

    __slots__ = ()

    def __get__(self, obj: object, owner: type | None = None) -> object:
        if obj is None:
            raise AttributeError("content")  # like any pydantic field on the class
        fields = get_dict(obj)
        value = fields["content"]
        if type(value) is Slice:
            value = fields["content"] = "".join(value.pieces[value.start : value.stop])
        return value

    def __set__(self, obj: object, value: object) -> None:
        # Only `object.__setattr__` gets here (pydantic's __setattr__ refuses frozen
        # models first): it wrote into the instance dict, and still does.
        get_dict(obj)["content"] = value


class ChunkLazy:
    """`chunk.refusal`, `chunk.tool_calls`, `chunk.invalid_tool_calls`: built on first read."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> object:
        if obj is None:
            raise AttributeError(self.name)
        return joined(get_dict(obj))[self.name]

    def __set__(self, obj: object, value: object) -> None:
        get_dict(obj)[self.name] = value  # see ChunkContent.__set__
