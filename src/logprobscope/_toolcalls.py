"""Tool calls in answers: the public models, their wire shape, and streamed deltas merged.

A non-streamed answer carries whole calls; a stream carries deltas (an `index`, then the
id, name and argument text in pieces). Both become the same `ToolCall`s: arguments that
parse to a JSON object give a `ToolCall`, anything else an `InvalidToolCall` that keeps
the raw text (never an exception on the user's call).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._construct import construct
from ._text import valid_json

__all__ = [
    "Delta",
    "InvalidToolCall",
    "ToolCall",
    "ToolCallChunk",
    "deltas_from_json",
    "deltas_of",
    "merge",
    "parse_arguments",
    "parse_calls",
    "tool_calls_from_json",
    "tool_calls_to_openai",
]

_CONFIG = ConfigDict(frozen=True, extra="forbid")

Delta = tuple[int | None, str | None, str | None, str]
"""One streamed tool-call delta: (index, id, name, argument text)."""


def _dump_args(args: Mapping[str, object]) -> str:
    return json.dumps(args, ensure_ascii=False, separators=(",", ":"))


def parse_arguments(text: str) -> dict[str, object] | str:
    """The arguments as a JSON object, or why they are not one. "" is `{}` (no arguments)."""
    if text == "":
        return {}
    try:
        value = valid_json(json.loads(text))
    except ValueError as exc:
        return f"arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        return f"arguments are JSON but not an object: {type(value).__name__}"
    return value


class ToolCall(BaseModel):
    """A call of a function tool by the model, with its arguments parsed.

    `arguments` is the JSON text exactly as the model wrote it (sent back unchanged in a
    later request); `args` is that text parsed. `index` is the call's position in the
    answer (OpenAI's `index` in streamed deltas); None for a call built by hand.

    Built by hand from `args` alone, `arguments` is `args` as compact JSON. The OpenAI wire
    shape (`{"id", "type": "function", "function": {"name", "arguments"}}`) is accepted too.
    """

    model_config = _CONFIG

    id: str | None = None
    name: str
    args: dict[str, object] = Field(default_factory=dict)
    arguments: str = ""
    type: Literal["function"] = "function"
    index: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_wire_or_args(cls, data: object) -> object:
        if not isinstance(data, Mapping):
            return data
        fields = dict(data)
        function = fields.pop("function", None)
        if isinstance(function, Mapping):
            fields.setdefault("name", function.get("name"))
            fields.setdefault("arguments", function.get("arguments"))
        if fields.get("type") == "tool_call":  # LangChain's spelling of the same thing
            fields["type"] = "function"
        arguments = fields.get("arguments")
        if "args" not in fields and isinstance(arguments, str):
            parsed = parse_arguments(arguments)
            if isinstance(parsed, str):
                raise ValueError(f"{parsed}; keep such a call as an InvalidToolCall")
            fields["args"] = parsed
        elif arguments is None and isinstance(fields.get("args"), Mapping):
            fields["arguments"] = _dump_args(fields["args"])
        elif isinstance(arguments, str) and isinstance(fields.get("args"), Mapping):
            if parse_arguments(arguments) != dict(fields["args"]):
                raise ValueError("args and arguments disagree: give one of them")
        return fields


class InvalidToolCall(BaseModel):
    """A tool call whose arguments are not a JSON object (or that lacks its name).

    Kept, not raised: `arguments` holds the raw text, `error` says what is wrong with it.
    A streamed chunk's partial call is one of these until its arguments are complete.
    """

    model_config = _CONFIG

    id: str | None = None
    name: str | None = None
    arguments: str | None = None
    error: str | None = None
    type: Literal["function"] = "function"
    index: int | None = None


class ToolCallChunk(BaseModel):
    """One streamed tool-call delta: the call's `index`, and what this piece adds to it."""

    model_config = _CONFIG

    index: int | None = None
    id: str | None = None
    name: str | None = None
    arguments: str = ""


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _wire_call(item: Mapping[str, object], position: int) -> Delta:
    function = item.get("function")
    if not isinstance(function, Mapping):
        function = {}
    raw_index = item.get("index")
    index = raw_index if type(raw_index) is int else position
    arguments = function.get("arguments")
    return (
        index,
        _str_or_none(item.get("id")),
        _str_or_none(function.get("name")),
        arguments if isinstance(arguments, str) else "",
    )


def deltas_from_json(value: object) -> list[Delta]:
    """The deltas of a decoded `tool_calls` list (a delta's or a whole message's)."""
    if not isinstance(value, list):
        return []
    return [_wire_call(item, i) for i, item in enumerate(value) if isinstance(item, dict)]


def merge(deltas: Iterable[Delta]) -> list[Delta]:
    """Deltas of the same index joined, in order of first appearance; linear time.

    The first id and name given win (servers send them once, some repeat them whole);
    argument pieces are concatenated. A delta without an index is a call of its own.
    """
    calls: list[tuple[int | None, list[str | None], list[str]]] = []
    by_index: dict[int, int] = {}
    for index, call_id, name, piece in deltas:
        position = by_index.get(index) if index is not None else None
        if position is None:
            if index is not None:
                by_index[index] = len(calls)
            calls.append((index, [call_id, name], [piece]))
            continue
        _, head, pieces = calls[position]
        if head[0] is None:
            head[0] = call_id
        if head[1] is None:
            head[1] = name
        pieces.append(piece)
    return [(index, head[0], head[1], "".join(pieces)) for index, head, pieces in calls]


def parse_calls(deltas: Iterable[Delta]) -> tuple[list[ToolCall], list[InvalidToolCall]]:
    """Merge the deltas, then split the calls into valid and invalid ones."""
    valid: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for index, call_id, name, arguments in merge(deltas):
        parsed = parse_arguments(arguments)
        if isinstance(parsed, dict) and name is not None:
            valid.append(
                construct(
                    ToolCall,
                    {
                        "id": call_id,
                        "name": name,
                        "args": parsed,
                        "arguments": arguments,
                        "type": "function",
                        "index": index,
                    },
                )
            )
        else:
            error = parsed if isinstance(parsed, str) else "the call has no function name"
            invalid.append(
                construct(
                    InvalidToolCall,
                    {
                        "id": call_id,
                        "name": name,
                        "arguments": arguments,
                        "error": error,
                        "type": "function",
                        "index": index,
                    },
                )
            )
    return valid, invalid


def tool_calls_from_json(value: object) -> tuple[list[ToolCall], list[InvalidToolCall]]:
    """A completion message's `tool_calls` (decoded JSON), tolerating malformed entries."""
    return parse_calls(deltas_from_json(value))


def _ordered(
    valid: Sequence[ToolCall], invalid: Sequence[InvalidToolCall]
) -> list[ToolCall | InvalidToolCall]:
    calls: list[ToolCall | InvalidToolCall] = [*valid, *invalid]
    if invalid and all(call.index is not None for call in calls):
        calls.sort(key=lambda call: call.index or 0)  # back in the model's order
    return calls


def deltas_of(valid: Sequence[ToolCall], invalid: Sequence[InvalidToolCall]) -> list[Delta]:
    """The calls as deltas again (for `+` on chunks that hold parsed calls)."""
    return [
        (call.index, call.id, call.name, call.arguments or "") for call in _ordered(valid, invalid)
    ]


def tool_calls_to_openai(
    valid: Sequence[ToolCall], invalid: Sequence[InvalidToolCall]
) -> list[dict[str, object]]:
    """The calls in the wire shape of an assistant message, in the model's order.

    Raises:
        ValueError: a call without an id or a name (the API needs both to match the
            tool messages that answer it).
    """
    out: list[dict[str, object]] = []
    for i, call in enumerate(_ordered(valid, invalid)):
        if call.id is None or call.name is None:
            missing = "id" if call.id is None else "function name"
            raise ValueError(f"tool call {i} has no {missing}, which the API needs to send it")
        out.append(
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments or ""},
            }
        )
    return out
