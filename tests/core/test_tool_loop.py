"""An agent loop on our model: call → tool result → answer, against the replay server.

The default replay server answers a request with tools by calling `get_weather`, and the
same request with the tool's result by answering; with logprobs all along.
"""

from __future__ import annotations

from functools import reduce
from typing import Any, Literal

from logprobscope import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from logprobscope.testing import ReplayServer
from tests.support.factories import ModelFactory


def get_weather(city: str, units: Literal["c", "f"] = "c") -> str:
    """Get the current weather in a city.

    Args:
        city: The city's name, e.g. New York City.
        units: Celsius or Fahrenheit.
    """
    return f"sunny, 22 °{units.upper()} in {city}"


TOOLS = {"get_weather": get_weather}


def _run_tools(answer: AIMessage) -> list[ToolMessage]:
    out = []
    for call in answer.tool_calls:
        args: Any = call.args
        out.append(ToolMessage(content=TOOLS[call.name](**args), tool_call_id=call.id or ""))
    return out


def test_tool_loop_invoke(server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(server, logprobs=True, top_logprobs=2).bind_tools([get_weather])
    history: list[HumanMessage | AIMessage | ToolMessage] = [
        HumanMessage(content="What's the weather in New York?")
    ]
    answer = model.invoke(history)
    assert answer.content == ""
    assert answer.response_metadata.finish_reason == "tool_calls"
    [call] = answer.tool_calls
    assert (call.id, call.name, call.args) == (
        "call_seed-tool-call_0",
        "get_weather",
        {"city": "New York City"},
    )
    assert call.arguments == '{"city":"New York City"}'
    history += [answer, *_run_tools(answer)]
    final = model.invoke(history)
    assert final.content == "It's sunny and 22°C in New York City."
    assert final.tool_calls == []
    logprobs = final.response_metadata.logprobs
    assert logprobs is not None and logprobs.content is not None
    assert [t.token for t in logprobs.content][-3:] == [" York", " City", "."]
    assert all(len(t.top_logprobs) == 2 for t in logprobs.content)
    # what the server was sent: the tools both times, then the call and its result
    first, second = server.requests
    tools: Any = first["tools"]
    assert [t["function"]["name"] for t in tools] == ["get_weather"]
    messages: Any = second["messages"]
    assert messages[1:] == [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_seed-tool-call_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"New York City"}'},
                }
            ],
        },
        {
            "role": "tool",
            "content": "sunny, 22 °C in New York City",
            "tool_call_id": "call_seed-tool-call_0",
        },
    ]


async def test_tool_loop_astream(server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(server, logprobs=True).bind_tools([get_weather], tool_choice="get_weather")
    history: list[HumanMessage | AIMessage | ToolMessage] = [
        HumanMessage(content="What's the weather in New York?")
    ]
    chunks = [chunk async for chunk in model.astream(history)]
    heads = [c.tool_call_chunks for c in chunks if c.tool_call_chunks]
    assert heads[0][0].name == "get_weather" and heads[0][0].arguments == ""
    assert len(heads) == 8  # the head, then 7 argument pieces
    agg = reduce(lambda a, b: a + b, chunks)
    answer = agg.to_message()
    assert answer == await model.ainvoke(history)
    history += [answer, *_run_tools(answer)]
    final = reduce(lambda a, b: a + b, [c async for c in model.astream(history)])
    assert final.content == "It's sunny and 22°C in New York City."
    assert server.requests[0]["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_weather"},
    }


def test_a_streamed_call_is_invalid_until_its_arguments_are_complete(
    server: ReplayServer, make_model: ModelFactory
) -> None:
    model = make_model(server).bind_tools([get_weather])
    chunks = list(model.stream("weather?"))
    agg: AIMessageChunk = chunks[0]
    seen_invalid = False
    for chunk in chunks[1:]:
        agg = agg + chunk
        if agg.invalid_tool_calls:
            seen_invalid = True
            assert agg.tool_calls == []
            assert agg.invalid_tool_calls[0].error
    assert seen_invalid
    assert [c.args for c in agg.tool_calls] == [{"city": "New York City"}]
    assert agg.invalid_tool_calls == []
