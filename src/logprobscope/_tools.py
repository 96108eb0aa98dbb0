"""Tools for a request: dicts, pydantic models and typed functions as function tools.

A dict is sent unchanged. A pydantic model or a typed function becomes a strict function
tool (`additionalProperties: false`, every property required), its schema made by
pydantic and made strict by the `openai` SDK's own `pydantic_function_tool`.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable, Mapping, Sequence

import openai
from pydantic import BaseModel, Field, create_model

__all__ = ["ToolChoice", "ToolLike", "convert_tool_choice", "convert_tools", "tool_names"]

ToolLike = Mapping[str, object] | type[BaseModel] | Callable[..., object]
"""A tool: an OpenAI tool dict, a pydantic model (its fields are the arguments) or a typed
function (its parameters are the arguments, its docstring the description)."""

ToolChoice = str | Mapping[str, object]
"""`"auto"`, `"none"`, `"required"`, a tool's name, or an OpenAI tool_choice dict."""

_CHOICES = frozenset({"auto", "none", "required"})


def _plain(value: object) -> dict[str, object]:
    # The SDK's helper returns dict subclasses that carry the model: plain JSON data here.
    plain: dict[str, object] = json.loads(json.dumps(value))
    return plain


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params)\s*:\s*$")
_OTHER_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, argument descriptions) of a Google-style docstring."""
    if not doc:
        return "", {}
    lines = doc.splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    current: str | None = None
    in_args = False
    seen_section = False
    for line in lines:
        stripped = line.strip()
        if _SECTION.match(stripped) and not line.startswith((" ", "\t")):
            in_args = seen_section = True
            continue
        if _OTHER_SECTION.match(stripped) and not line.startswith((" ", "\t")):
            in_args = False
            seen_section = True
            continue
        if in_args:
            match = _ARG_LINE.match(stripped)
            indent = len(line) - len(line.lstrip())
            if match and indent <= 4:
                current = match.group(1).lstrip("*")
                args[current] = match.group(2).strip()
            elif stripped and current is not None:
                args[current] = f"{args[current]} {stripped}".strip()
        elif not seen_section:
            summary.append(stripped)
    return " ".join(" ".join(summary).split()), args


def _function_tool(function: Callable[..., object]) -> dict[str, object]:
    name = getattr(function, "__name__", "")
    if not name.isidentifier():
        raise TypeError(f"a function tool needs a named function, not {function!r}")
    try:
        signature = inspect.signature(function)
        hints = typing.get_type_hints(function, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise TypeError(f"tool {name}: its signature cannot be read: {exc}") from exc
    description, arg_docs = _docstring(inspect.getdoc(function))
    fields: dict[str, object] = {}
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"tool {name}: *args and **kwargs have no JSON schema")
        if parameter.name not in hints:
            raise TypeError(f"tool {name}: parameter {parameter.name!r} has no type annotation")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (
            hints[parameter.name],
            Field(default, description=arg_docs.get(parameter.name)),
        )
    model = create_model(name, **fields)  # type: ignore[call-overload]
    tool = openai.pydantic_function_tool(model, name=name, description=description or None)
    return _plain(tool)


def _convert(tool: object, position: int) -> dict[str, object]:
    if isinstance(tool, Mapping):
        if "type" in tool:
            return dict(tool)
        if isinstance(tool.get("name"), str):  # a bare function definition
            return {"type": "function", "function": dict(tool)}
        raise TypeError(
            f"tool {position}: a tool dict needs a 'type' (e.g. {{'type': 'function', "
            "'function': {...}}) or a function's 'name' and 'parameters'"
        )
    if isinstance(tool, type) and issubclass(tool, BaseModel):
        return _plain(openai.pydantic_function_tool(tool))
    if callable(tool) and not isinstance(tool, type):
        return _function_tool(tool)
    raise TypeError(
        f"tool {position} must be a tool dict, a pydantic model class or a typed function, "
        f"not {type(tool).__name__}"
    )


def convert_tools(tools: object) -> list[dict[str, object]]:
    """The request's `tools`: each tool as the API takes it.

    Raises:
        TypeError: not a list of tools, or a tool that cannot be described.
    """
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise TypeError("tools must be a list of tools (dicts, pydantic models or functions)")
    return [_convert(tool, i) for i, tool in enumerate(tools)]


def tool_names(tools: Sequence[Mapping[str, object]]) -> list[str]:
    """The names of the function tools among converted tools."""
    names: list[str] = []
    for tool in tools:
        function = tool.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


def convert_tool_choice(
    choice: object, tools: Sequence[Mapping[str, object]] | None
) -> str | dict[str, object]:
    """The request's `tool_choice`; a tool's name becomes the API's named choice.

    Raises:
        TypeError: not a string or a dict.
        ValueError: a name that is none of the tools' names.
    """
    if isinstance(choice, Mapping):
        return dict(choice)
    if not isinstance(choice, str):
        raise TypeError("tool_choice must be 'auto', 'none', 'required', a tool's name or a dict")
    if choice in _CHOICES:
        return choice
    if tools is not None and choice not in tool_names(tools):
        known = ", ".join(map(repr, tool_names(tools))) or "none"
        raise ValueError(f"tool_choice {choice!r} is not one of the tools (they are: {known})")
    return {"type": "function", "function": {"name": choice}}
