"""Tools and response formats as the request carries them, and structured output parsed.

Pydantic models and typed functions become strict function tools (the SDK's own strict
schema); dicts go unchanged; bad tools, tool choices and formats fail before any request.
"""

from __future__ import annotations

from functools import reduce
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel, Field

from logprobscope import AIMessage, ChatOpenAI, StructuredOutput
from logprobscope.testing import ReplayServer, make_completion
from tests.support.factories import ModelFactory


class Location(BaseModel):
    """Where and how warm."""

    city: str
    temperature: float = Field(description="degrees")
    units: Literal["c", "f"]


def get_weather(city: str, days: int = 1) -> str:
    """Get the weather.

    Longer text.

    Args:
        city: The city's name,
            e.g. Paris.
        days (int): How many days.

    Returns:
        The forecast.
    """
    return city


def _tools(model: ChatOpenAI) -> Any:
    return model._options["tools"]  # what every request carries


def test_pydantic_tools_are_the_sdks_strict_function_tools() -> None:
    model = ChatOpenAI("m", api_key="k").bind_tools([Location])
    assert _tools(model) == [dict(openai.pydantic_function_tool(Location))]
    [tool] = _tools(model)
    parameters = tool["function"]["parameters"]
    assert parameters["additionalProperties"] is False
    assert parameters["required"] == ["city", "temperature", "units"]
    assert tool["function"]["strict"] is True


def test_typed_functions_become_strict_tools() -> None:
    [tool] = _tools(ChatOpenAI("m", api_key="k", tools=[get_weather]))
    function = tool["function"]
    assert function["name"] == "get_weather"
    assert function["description"] == "Get the weather. Longer text."
    assert function["strict"] is True
    parameters = function["parameters"]
    assert parameters["additionalProperties"] is False
    assert parameters["required"] == ["city", "days"]
    assert parameters["properties"]["city"] == {
        "description": "The city's name, e.g. Paris.",
        "title": "City",
        "type": "string",
    }
    assert parameters["properties"]["days"]["type"] == "integer"
    assert parameters["properties"]["days"]["description"] == "How many days."


def test_dict_tools_go_unchanged_and_bare_functions_are_wrapped() -> None:
    tool = {"type": "function", "function": {"name": "x", "parameters": {"type": "object"}}}
    bare = {"name": "y", "parameters": {"type": "object"}}
    assert _tools(ChatOpenAI("m", api_key="k", tools=[tool, bare])) == [
        tool,
        {"type": "function", "function": bare},
    ]


def _untyped(x):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    return x


def _star(*args: int) -> None:
    pass


BAD: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"tools": "get_weather"}, TypeError, "tools must be a list"),
    ({"tools": [42]}, TypeError, "tool 0 must be a tool dict"),
    ({"tools": [{"parameters": {}}]}, TypeError, "tool 0: a tool dict needs a 'type'"),
    ({"tools": [_untyped]}, TypeError, "parameter 'x' has no type annotation"),
    ({"tools": [_star]}, TypeError, r"\*args and \*\*kwargs have no JSON schema"),
    ({"tools": [lambda x: x]}, TypeError, "needs a named function"),
    ({"tools": [get_weather], "tool_choice": "nope"}, ValueError, "'nope' is not one of the"),
    ({"tool_choice": 3}, TypeError, "tool_choice must be"),
    ({"parallel_tool_calls": "yes"}, TypeError, "parallel_tool_calls must be True or False"),
    ({"response_format": "json"}, TypeError, "response_format must be"),
    ({"response_format": int}, TypeError, "response_format must be"),
    (
        {"tools": [get_weather], "model_kwargs": {"tools": []}},
        ValueError,
        "tools given both as a parameter and in model_kwargs",
    ),
]


@pytest.mark.parametrize(("options", "error", "text"), BAD)
def test_bad_tools_and_formats_fail_before_the_request(
    options: dict[str, Any],
    error: type[Exception],
    text: str,
    server: ReplayServer,
    make_model: ModelFactory,
) -> None:
    with pytest.raises(error, match=text):
        ChatOpenAI("m", api_key="k", **options)
    model = make_model(server)
    with pytest.raises(error, match=text):
        model.invoke("x", **options)
    with pytest.raises(error, match=text):
        model.stream("x", **options)
    with pytest.raises(error, match=text):
        model.batch(["x"], **options)
    assert server.requests == []


def test_per_call_tools_and_choice_are_sent(server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(server).bind_tools([Location], parallel_tool_calls=False)
    model.invoke("x")
    model.invoke("x", tools=[get_weather], tool_choice="required")
    first, second = server.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["Location"]  # type: ignore[attr-defined]
    assert first["parallel_tool_calls"] is False and "tool_choice" not in first
    assert [t["function"]["name"] for t in second["tools"]] == ["get_weather"]  # type: ignore[attr-defined]
    assert second["tool_choice"] == "required"


# -- structured output --------------------------------------------------------------------------


def test_structured_output_parses_and_keeps_the_message(
    server: ReplayServer, make_model: ModelFactory
) -> None:
    structured = make_model(server, logprobs=True).with_structured_output(Location)
    result = structured.invoke("What's the weather like in SF?")
    assert isinstance(result, StructuredOutput)
    assert result.parsed == Location(city="San Francisco", temperature=65, units="f")
    assert result.refusal is None and result.parsing_error is None
    assert result.message.content == '{"city":"San Francisco","temperature":65,"units":"f"}'
    logprobs = result.message.response_metadata.logprobs
    assert logprobs is not None and [t.token for t in logprobs.content or []][:3] == [
        '{"',
        "city",
        '":"',
    ]
    sent = server.requests[0]["response_format"]
    assert sent == {
        "type": "json_schema",
        "json_schema": {
            "name": "Location",
            "strict": True,
            "schema": openai.pydantic_function_tool(Location)["function"].get("parameters"),
        },
    }
    streamed = structured.parse(reduce(lambda a, b: a + b, structured.stream("x")).to_message())
    assert streamed == StructuredOutput(result.message, result.parsed)
    [batched] = structured.batch(["x"])
    assert batched.parsed == result.parsed


async def test_structured_output_async(server: ReplayServer, make_model: ModelFactory) -> None:
    structured = make_model(server).with_structured_output(
        {"title": "Location", "type": "object"}, strict=False
    )
    result = await structured.ainvoke("x")
    assert result.parsed == {"city": "San Francisco", "temperature": 65, "units": "f"}
    [again] = await structured.abatch(["x"])
    assert again.parsed == result.parsed
    chunks = [c async for c in structured.astream("x")]
    assert structured.parse(reduce(lambda a, b: a + b, chunks)).parsed == result.parsed
    assert server.requests[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "Location",
            "schema": {"title": "Location", "type": "object"},
            "strict": False,
        },
    }


def test_a_refusal_is_a_result_not_an_exception(make_server: Any, make_model: ModelFactory) -> None:
    refusal = make_completion([("I'm", -0.1), (" sorry", -0.2), (".", -0.3)], refusal=True)
    server = make_server([refusal])
    result = make_model(server, logprobs=True).with_structured_output(Location).invoke("x")
    assert result.parsed is None and result.parsing_error is None
    assert result.refusal == "I'm sorry."
    logprobs = result.message.response_metadata.logprobs
    assert logprobs is not None and logprobs.content is None
    assert [t.logprob for t in logprobs.refusal or []] == [-0.1, -0.2, -0.3]


def test_an_unparseable_answer_keeps_the_error(make_server: Any, make_model: ModelFactory) -> None:
    cut = make_completion(['{"', "city"], finish_reason="length")
    wrong = make_completion(['{"city": 1}'])
    server = make_server([cut, wrong])
    structured = make_model(server).with_structured_output(Location)
    first = structured.invoke("x")
    assert first.parsed is None and isinstance(first.parsing_error, ValueError)
    assert "cut at its token limit" in str(first.parsing_error)
    second = structured.invoke("x")
    assert second.parsed is None and "city" in str(second.parsing_error)
    assert second.message.content == '{"city": 1}'


def test_structured_output_rules(server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(server)
    with pytest.raises(ValueError, match="needs a 'title'"):
        model.with_structured_output({"type": "object"})
    with pytest.raises(TypeError, match="schema must be"):
        model.with_structured_output(42)  # type: ignore[call-overload]
    structured = model.with_structured_output(Location)
    with pytest.raises(TypeError, match="response_format is set by with_structured_output"):
        structured.invoke("x", response_format={"type": "json_object"})
    assert isinstance(structured.model, ChatOpenAI)
    assert server.requests == []
    plain = model.invoke("x", response_format=Location)  # no parsing, the schema is sent
    assert isinstance(plain, AIMessage)
    assert plain.content.startswith('{"city"')
