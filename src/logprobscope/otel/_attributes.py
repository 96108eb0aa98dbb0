"""Span and metric attributes of a call: the request, the response, the summary, messages.

Pure functions from primitive data to attribute dicts, in the order the span receives them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import cast

from opentelemetry.util.types import AttributeValue

from .. import _contract as n
from .._text import valid_text
from ._input import ResponseFacts

__all__ = [
    "error_type",
    "input_messages_json",
    "metric_attributes",
    "output_messages_json",
    "request_attributes",
    "response_attributes",
]

Attributes = dict[str, AttributeValue]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _integer(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def error_type(error: BaseException) -> str:
    """`error.type`: the SDK's spelling of `exception.type` (module-qualified but builtins)."""
    cls = type(error)
    module = cls.__module__
    return f"{module}.{cls.__qualname__}" if module and module != "builtins" else cls.__qualname__


def request_attributes(
    *,
    model: str,
    stream: bool,
    params: Mapping[str, object],
    provider: str,
    server_address: str | None,
    server_port: int | None,
    threshold: float,
    input_messages: Sequence[Mapping[str, object]] | None,
    api: str = n.API_CHAT_COMPLETIONS,
) -> Attributes:
    """The attributes a call's span starts with.

    From `params` (the request body without messages, OpenAI names) only well-typed values
    are taken; `input_messages` (OpenAI-format dicts) become `gen_ai.input.messages` when
    given (that is, when content is captured), and then a Responses API call's
    `instructions` become `gen_ai.system_instructions`. For `api="responses"` the body's
    names are the Responses API's (`include`, `max_output_tokens`) and the span says so
    (`openai.api.type`).
    """
    attributes: Attributes = {
        n.GEN_AI_OPERATION_NAME: n.OPERATION_CHAT,
        n.GEN_AI_PROVIDER_NAME: provider,
        n.GEN_AI_REQUEST_MODEL: model,
        n.GEN_AI_REQUEST_STREAM: stream,
    }
    responses = api == n.API_RESPONSES
    if responses:
        attributes[n.OPENAI_API_TYPE] = n.API_RESPONSES
    if server_address:
        attributes[n.SERVER_ADDRESS] = server_address
        if server_port is not None:
            attributes[n.SERVER_PORT] = server_port
    for key, name in (
        ("temperature", n.GEN_AI_REQUEST_TEMPERATURE),
        ("top_p", n.GEN_AI_REQUEST_TOP_P),
    ):
        number = _number(params.get(key))
        if number is not None:
            attributes[name] = number
    max_tokens = _integer(params.get("max_output_tokens" if responses else "max_tokens"))
    if max_tokens is None and not responses:
        max_tokens = _integer(params.get("max_completion_tokens"))
    if max_tokens is not None:
        attributes[n.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    seed = _integer(params.get("seed"))
    if seed is not None:
        attributes[n.GEN_AI_REQUEST_SEED] = seed
    choices = _integer(params.get("n"))
    if choices is not None and choices != 1:
        attributes[n.GEN_AI_REQUEST_CHOICE_COUNT] = choices
    enabled = params.get("logprobs") is True
    if responses and not enabled:
        include = params.get("include")
        enabled = isinstance(include, Sequence) and n.RESPONSES_LOGPROBS_INCLUDE in include
    attributes[n.LOGPROBS_ENABLED] = enabled
    attributes[n.LOGPROBS_TOP_LOGPROBS] = _integer(params.get("top_logprobs")) or 0
    attributes[n.LOGPROBS_LOW_CONFIDENCE_THRESHOLD] = threshold
    if input_messages is not None:
        attributes[n.GEN_AI_INPUT_MESSAGES] = input_messages_json(input_messages)
        instructions = params.get("instructions")
        if responses and isinstance(instructions, str) and instructions:
            attributes[n.GEN_AI_SYSTEM_INSTRUCTIONS] = valid_text(
                json.dumps([{"type": "text", "content": instructions}], ensure_ascii=False)
            )
    return attributes


def metric_attributes(*, model: str, provider: str, server_address: str | None) -> Attributes:
    """The attributes of every metric observation of a call (the response model aside)."""
    attributes: Attributes = {
        n.GEN_AI_OPERATION_NAME: n.OPERATION_CHAT,
        n.GEN_AI_PROVIDER_NAME: provider,
        n.GEN_AI_REQUEST_MODEL: model,
    }
    if server_address:
        attributes[n.SERVER_ADDRESS] = server_address
    return attributes


def response_attributes(attributes: Attributes, response: ResponseFacts) -> None:
    """Add the response's id, model, finish reasons and token usage, those known."""
    if response.id is not None:
        attributes[n.GEN_AI_RESPONSE_ID] = response.id
    if response.model is not None:
        attributes[n.GEN_AI_RESPONSE_MODEL] = response.model
    if response.finish_reasons is not None:
        attributes[n.GEN_AI_RESPONSE_FINISH_REASONS] = list(response.finish_reasons)
    if response.input_tokens is not None:
        attributes[n.GEN_AI_USAGE_INPUT_TOKENS] = response.input_tokens
    if response.output_tokens is not None:
        attributes[n.GEN_AI_USAGE_OUTPUT_TOKENS] = response.output_tokens


# -- GenAI messages ------------------------------------------------------------------------


def _genai_parts(message: Mapping[str, object]) -> list[dict[str, object]]:
    role = message.get("role")
    content = message.get("content")
    parts: list[dict[str, object]] = []
    if role == "tool":
        parts.append(
            {"type": "tool_call_response", "id": message.get("tool_call_id"), "response": content}
        )
        return parts
    if isinstance(content, str):
        if content:
            parts.append({"type": "text", "content": content})
    elif isinstance(content, Sequence):
        for item in content:
            if not isinstance(item, Mapping):
                continue
            kind = item.get("type")
            if kind == "text":
                parts.append({"type": "text", "content": item.get("text")})
            elif kind == "image_url" and isinstance(item.get("image_url"), Mapping):
                url = cast("Mapping[str, object]", item["image_url"]).get("url")
                parts.append({"type": "uri", "modality": "image", "uri": url})
            else:
                parts.append({str(k): v for k, v in item.items()})
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, Sequence) and not isinstance(tool_calls, str):
        for call in tool_calls:
            if not isinstance(call, Mapping):
                continue
            function = call.get("function")
            function = function if isinstance(function, Mapping) else {}
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments"),
                }
            )
    return parts


def input_messages_json(messages: Sequence[Mapping[str, object]]) -> str:
    """OpenAI-format messages in the GenAI conventions' `gen_ai.input.messages` shape."""
    out = [
        {"role": str(m.get("role", "user")), "parts": _genai_parts(m)}
        for m in messages
        if isinstance(m, Mapping)
    ]
    return valid_text(json.dumps(out, ensure_ascii=False, default=str))


def output_messages_json(
    text: str | None,
    finish_reason: str | None,
    *,
    refusal: str | None = None,
    tool_calls: Sequence[Mapping[str, object]] | None = None,
) -> str:
    """The answer in the `gen_ai.output.messages` shape: one assistant message.

    Its parts: the text, the refusal (`{"type": "refusal", "content": ...}`) and the tool
    calls (`tool_call` parts: id, name, arguments as the model wrote them), those present.
    """
    assistant: dict[str, object] = {"role": "assistant", "content": text}
    if tool_calls:
        assistant["tool_calls"] = list(tool_calls)
    parts = _genai_parts(assistant)
    if refusal is not None:
        parts.insert(1 if text else 0, {"type": n.PART_REFUSAL, "content": refusal})
    message = {"role": "assistant", "parts": parts, "finish_reason": finish_reason or ""}
    return valid_text(json.dumps([message], ensure_ascii=False, default=str))
