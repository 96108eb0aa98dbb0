"""The Responses API request (`POST /v1/responses`): our call options and messages mapped.

The same options as a chat call, sent as the Responses API names them: `logprobs` is
`include=["message.output_text.logprobs"]`, `max_tokens` is `max_output_tokens`, tools are
flat function tools, `response_format` is `text.format`; messages become `input` items
(tool calls `function_call` items, tool results `function_call_output` items);
`instructions` and `previous_response_id` are the API's own. What the API has no field
for (`seed`, `stop`, a message's `name`, audio) is refused before any request.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from ._contract import RESPONSES_LOGPROBS_INCLUDE
from ._messages import AIMessage, BaseMessage, ToolMessage

if TYPE_CHECKING:
    from ._params import CallOptions

__all__ = [
    "LOGPROBS_INCLUDE",
    "build_responses_request",
    "check_responses_options",
    "input_items",
]

LOGPROBS_INCLUDE: Final = RESPONSES_LOGPROBS_INCLUDE

# Set here from our options: never also in model_kwargs.
_OWN_FIELDS: Final = frozenset({"input", "stream", "messages"})
_NOT_IN_RESPONSES: Final = (
    ("seed", "seed"),
    ("stop", "stop sequences"),
)


def check_responses_options(options: CallOptions) -> None:
    """What a Responses call cannot send, refused with a clear message.

    Raises:
        ValueError: `seed` or `stop` (the Responses API has neither), a field we set in
            `model_kwargs`, or `response_format` given beside a `text.format`.
    """
    for name, what in _NOT_IN_RESPONSES:
        if options.get(name) is not None:
            raise ValueError(
                f"{name}: the Responses API takes no {what}; leave it out or call the Chat "
                "Completions API (use_responses_api=False)"
            )
    extra = options.get("model_kwargs", {})
    clash = _OWN_FIELDS & set(extra)
    if clash:
        raise ValueError(
            f"model_kwargs may not set {', '.join(sorted(clash))}: pass messages as the "
            "input and use stream() to stream"
        )
    text = extra.get("text")
    if text is not None and not isinstance(text, Mapping):
        raise TypeError("model_kwargs['text'] must be a dict (the Responses API's text config)")
    if options.get("response_format") is not None and isinstance(text, Mapping):
        if "format" in text:
            raise ValueError("response_format given both as a parameter and in text.format")
    include = extra.get("include")
    if include is not None and (
        isinstance(include, str)
        or not isinstance(include, Sequence)
        or not all(isinstance(item, str) for item in include)
    ):
        raise TypeError("model_kwargs['include'] must be a list of strings")


# -- tools and formats ---------------------------------------------------------------------


def _tool(tool: Mapping[str, object]) -> dict[str, object]:
    """A chat-shaped function tool flattened; any other tool (or one already flat) as it is."""
    function = tool.get("function")
    if tool.get("type") != "function" or not isinstance(function, Mapping):
        return dict(tool)
    out: dict[str, object] = {"type": "function", "name": function.get("name")}
    if function.get("description") is not None:
        out["description"] = function["description"]
    out["parameters"] = function.get("parameters")
    # The Chat Completions API's default is not strict; the Responses API's is strict.
    out["strict"] = function.get("strict", False)
    return out


def _tool_choice(choice: object) -> object:
    if isinstance(choice, Mapping):
        function = choice.get("function")
        if choice.get("type") == "function" and isinstance(function, Mapping):
            return {"type": "function", "name": function.get("name")}
        return dict(choice)
    return choice


def _text_format(response_format: Mapping[str, object]) -> dict[str, object]:
    schema = response_format.get("json_schema")
    if response_format.get("type") != "json_schema" or not isinstance(schema, Mapping):
        return dict(response_format)
    out: dict[str, object] = {"type": "json_schema"}
    out.update(schema)
    return out


# -- messages --------------------------------------------------------------------------------


def _part(part: Mapping[str, object]) -> dict[str, object]:
    kind = part.get("type")
    if kind == "text":
        return {"type": "input_text", "text": part.get("text")}
    if kind == "image_url":
        image = part.get("image_url")
        image = image if isinstance(image, Mapping) else {}
        return {
            "type": "input_image",
            "image_url": image.get("url"),
            "detail": image.get("detail") or "auto",
        }
    if kind == "file":
        file = part.get("file")
        out: dict[str, object] = {"type": "input_file"}
        if isinstance(file, Mapping):
            out.update({k: v for k, v in file.items() if v is not None})
        return out
    return dict(part)  # input_audio has the same shape; unknown parts pass through


def _content(content: str | list[dict[str, object]]) -> object:
    return content if isinstance(content, str) else [_part(p) for p in content]


def _assistant(message: AIMessage, position: int) -> list[dict[str, object]]:
    fields = message.__dict__
    for name, what in (("audio", "audio"), ("function_call", "a function_call")):
        if fields[name] is not None:
            raise ValueError(
                f"message {position} (assistant) carries {what}, which the Responses API "
                "cannot take back"
            )
    items: list[dict[str, object]] = []
    text = fields["content"] or fields["refusal"]  # a refusal goes back as the answer's text
    calls = message.to_openai().get("tool_calls")  # raises on a call without id or name
    if text or not calls:
        items.append({"role": "assistant", "content": text or ""})
    for call in calls if isinstance(calls, list) else ():
        function = call["function"]
        items.append(
            {
                "type": "function_call",
                "call_id": call["id"],
                "name": function["name"],
                "arguments": function["arguments"],
            }
        )
    return items


def input_items(messages: Sequence[BaseMessage]) -> list[dict[str, object]]:
    """The messages as the Responses API's `input` items.

    Raises:
        ValueError: a message field the Responses API has no place for (a `name`, an
            assistant's `audio` or `function_call`), or a tool call without id or name.
    """
    items: list[dict[str, object]] = []
    for position, message in enumerate(messages):
        if getattr(message, "name", None) is not None:
            raise ValueError(
                f"message {position} ({message.role}) has a name, which the Responses API "
                "does not take"
            )
        if isinstance(message, ToolMessage):
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.tool_call_id,
                    "output": _content(message.content),
                }
            )
        elif isinstance(message, AIMessage):
            items.extend(_assistant(message, position))
        else:
            items.append({"role": message.role, "content": _content(message.content)})
    return items


# -- the request -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _sdk_arguments() -> frozenset[str]:
    from openai.resources.responses import Responses

    return frozenset(inspect.signature(Responses.create).parameters) - {"self"}


def build_responses_request(
    options: CallOptions, messages: Sequence[BaseMessage], *, stream: bool
) -> tuple[dict[str, object], dict[str, object]]:
    """The SDK's keyword arguments and the invocation parameters (body without `input`).

    Fields the SDK's `responses.create` does not name go in `extra_body`.
    """
    extra = dict(options.get("model_kwargs", {}))
    params: dict[str, object] = {"model": options["model"]}
    include = list(extra.pop("include", None) or ())  # type: ignore[call-overload]
    if options.get("logprobs"):
        if LOGPROBS_INCLUDE not in include:
            include.append(LOGPROBS_INCLUDE)
        top = options.get("top_logprobs")
        if top is not None:
            params["top_logprobs"] = top
    if include:
        params["include"] = include
    for name in ("instructions", "previous_response_id", "temperature", "top_p"):
        value = options.get(name)
        if value is not None:
            params[name] = value
    if options.get("max_tokens") is not None:
        params["max_output_tokens"] = options["max_tokens"]
    tools = options.get("tools")
    if tools is not None:
        params["tools"] = [_tool(tool) for tool in tools]  # type: ignore[arg-type]
    if options.get("tool_choice") is not None:
        params["tool_choice"] = _tool_choice(options["tool_choice"])
    if options.get("parallel_tool_calls") is not None:
        params["parallel_tool_calls"] = options["parallel_tool_calls"]
    text = extra.pop("text", None)
    response_format = options.get("response_format")
    if response_format is not None or text is not None:
        text_config = dict(text) if isinstance(text, Mapping) else {}
        if isinstance(response_format, Mapping):
            text_config["format"] = _text_format(response_format)
        params["text"] = text_config
    params.update(extra)
    if stream:
        params["stream"] = True
    known = _sdk_arguments()
    kwargs: dict[str, object] = {}
    extra_body: dict[str, object] = {}
    for key, value in params.items():
        (kwargs if key in known else extra_body)[key] = value
    if extra_body:
        kwargs["extra_body"] = extra_body
    kwargs["input"] = input_items(messages)
    return kwargs, params
