"""Request parameters: validation before any request, and the request body."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TypedDict

from pydantic import BaseModel

from ._messages import BaseMessage
from ._tools import ToolChoice, ToolLike, convert_tool_choice, convert_tools

__all__ = ["CallOptions", "build_request", "merge_options", "validate_options"]


class CallOptions(TypedDict, total=False):
    """Request parameters; set on the model, overridable on each call.

    `tools` are dicts (sent unchanged), pydantic models or typed functions (sent as strict
    function tools); `tool_choice` is "auto", "none", "required", a tool's name or a dict;
    `response_format` a dict or a pydantic model (sent as a strict JSON schema).
    `model_kwargs` holds any other request field (`frequency_penalty`, a server's own
    extension, ...), passed through as given.

    `use_responses_api` sends the call to the Responses API (`POST /v1/responses`) instead
    of Chat Completions; `instructions` and `previous_response_id` are that API's own.
    """

    model: str
    logprobs: bool
    top_logprobs: int | None
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    seed: int | None
    stop: str | Sequence[str] | None
    n: int | None
    stream_usage: bool
    tools: Sequence[ToolLike] | None
    tool_choice: ToolChoice | None
    parallel_tool_calls: bool | None
    response_format: Mapping[str, object] | type[BaseModel] | None
    model_kwargs: Mapping[str, object]
    use_responses_api: bool
    instructions: str | None
    previous_response_id: str | None


_OPTION_NAMES = frozenset(CallOptions.__annotations__)


def merge_options(base: CallOptions, overrides: Mapping[str, object]) -> CallOptions:
    """`base` with `overrides` on top; unknown names are an error, not silently sent."""
    unknown = set(overrides) - _OPTION_NAMES
    if unknown:
        raise TypeError(
            f"unknown parameter(s) {', '.join(sorted(unknown))}; pass other request fields "
            "in model_kwargs={...}"
        )
    merged: dict[str, object] = dict(base)
    merged.update(overrides)
    return merged  # type: ignore[return-value]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_options(options: CallOptions) -> CallOptions:
    """`options` ready to send: tools, tool_choice and response_format as the API takes them.

    Raises `ValueError`/`TypeError` with a clear message for any invalid parameter.
    """
    model = options.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ValueError("model must be a non-empty string, e.g. model='gpt-4o'")
    logprobs = options.get("logprobs", False)
    if not isinstance(logprobs, bool):
        raise TypeError(f"logprobs must be True or False, not {logprobs!r}")
    top = options.get("top_logprobs")
    if top is not None:
        if not _is_int(top):
            raise TypeError(f"top_logprobs must be an integer from 0 to 20, not {top!r}")
        if not 0 <= top <= 20:
            raise ValueError(f"top_logprobs must be from 0 to 20, got {top}")
        if not logprobs:
            raise ValueError("top_logprobs needs logprobs=True")
    for name, low, high in (("temperature", 0.0, None), ("top_p", 0.0, 1.0)):
        value = options.get(name)
        if value is None:
            continue
        if not _is_number(value) or math.isnan(value):  # type: ignore[arg-type]
            raise TypeError(f"{name} must be a number, not {value!r}")
        if math.isinf(value):  # type: ignore[arg-type]
            raise ValueError(f"{name} must be finite, got {value}")  # JSON has no Infinity
        if value < low or (high is not None and value > high):  # type: ignore[operator]
            bound = f"from {low} to {high}" if high is not None else f">= {low}"
            raise ValueError(f"{name} must be {bound}, got {value}")
    max_tokens = options.get("max_tokens")
    if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    seed = options.get("seed")
    if seed is not None and not _is_int(seed):
        raise TypeError(f"seed must be an integer, not {seed!r}")
    stop = options.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not isinstance(stop, Sequence) or not all(isinstance(s, str) for s in stop):
            raise TypeError("stop must be a string or a list of strings")
    n = options.get("n")
    if n is not None:
        if not _is_int(n) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if n > 1:
            raise ValueError(
                "n > 1 is not supported: each result is one message with its own logprobs; "
                "call batch([prompt] * n) (with a temperature above 0) instead"
            )
    stream_usage = options.get("stream_usage", True)
    if not isinstance(stream_usage, bool):
        raise TypeError(f"stream_usage must be True or False, not {stream_usage!r}")
    extra = options.get("model_kwargs", {})
    if not isinstance(extra, Mapping):
        raise TypeError("model_kwargs must be a mapping of request fields")
    if _check_api(options, extra):
        from ._responses_request import check_responses_options

        check_responses_options(options)
    else:
        clash = {"messages", "stream", "stream_options"} & set(extra)
        if clash:
            raise ValueError(
                f"model_kwargs may not set {', '.join(sorted(clash))}: use stream()/stream_usage"
            )
    return _convert(options, extra)


def _check_api(options: CallOptions, extra: Mapping[str, object]) -> bool:
    """Whether the call goes to the Responses API; its own parameters checked."""
    responses = options.get("use_responses_api", False)
    if not isinstance(responses, bool):
        raise TypeError(f"use_responses_api must be True or False, not {responses!r}")
    for name in ("instructions", "previous_response_id"):
        value = options.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, not {value!r}")
        if not responses:
            raise ValueError(f"{name} is a Responses API parameter: set use_responses_api=True")
        if name in extra:
            raise ValueError(f"{name} given both as a parameter and in model_kwargs")
    if responses and options.get("max_tokens") is not None and "max_output_tokens" in extra:
        raise ValueError(
            "max_tokens given both as a parameter and as model_kwargs' max_output_tokens"
        )
    return responses


def _convert(options: CallOptions, extra: Mapping[str, object]) -> CallOptions:
    from ._structured import response_format_param  # it imports this module

    out: CallOptions = dict(options)  # type: ignore[assignment]
    twice = {"tools", "tool_choice", "parallel_tool_calls", "response_format"} & {
        name for name in extra if options.get(name) is not None
    }
    if twice:
        raise ValueError(
            f"{', '.join(sorted(twice))} given both as a parameter and in model_kwargs"
        )
    tools = options.get("tools")
    converted = None if tools is None else convert_tools(tools)
    out["tools"] = converted
    choice = options.get("tool_choice")
    if choice is not None:
        out["tool_choice"] = convert_tool_choice(choice, converted)
    parallel = options.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise TypeError(f"parallel_tool_calls must be True or False, not {parallel!r}")
    response_format = options.get("response_format")
    if response_format is not None:
        out["response_format"] = response_format_param(response_format)
    return out


@lru_cache(maxsize=1)
def _sdk_arguments() -> frozenset[str]:
    from openai.resources.chat.completions import Completions

    return frozenset(inspect.signature(Completions.create).parameters) - {"self"}


_BODY_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "stop",
    "n",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
)


def build_request(
    options: CallOptions, messages: Sequence[BaseMessage], *, stream: bool
) -> tuple[dict[str, object], dict[str, object]]:
    """The SDK's keyword arguments and the invocation parameters (body without messages).

    Fields the SDK's `create` does not name go in `extra_body`, so any server extension
    passes through unchanged. A Responses API call's are `build_responses_request`'s.
    """
    if options.get("use_responses_api"):
        from ._responses_request import build_responses_request

        return build_responses_request(options, messages, stream=stream)
    params: dict[str, object] = {"model": options["model"]}
    if options.get("logprobs"):
        params["logprobs"] = True
        top = options.get("top_logprobs")
        if top is not None:
            params["top_logprobs"] = top
    for name in _BODY_FIELDS:
        value = options.get(name)
        if isinstance(value, Sequence) and not isinstance(value, str):
            value = list(value)  # a stop tuple is sent as a JSON list
        if value is not None:
            params[name] = value
    params.update(options.get("model_kwargs", {}))
    if stream:
        params["stream"] = True
        if options.get("stream_usage", True):
            params["stream_options"] = {"include_usage": True}
    known = _sdk_arguments()
    kwargs: dict[str, object] = {}
    extra_body: dict[str, object] = {}
    for key, value in params.items():
        (kwargs if key in known else extra_body)[key] = value
    if extra_body:
        kwargs["extra_body"] = extra_body
    kwargs["messages"] = [m.to_openai() for m in messages]
    return kwargs, params
