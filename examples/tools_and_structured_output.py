"""A tool loop and structured output, each answer with its token logprobs.

With OPENAI_API_KEY or OPENAI_BASE_URL set this talks to that endpoint; otherwise it
starts the replay server from `logprobscope.testing` on 127.0.0.1 (which answers a request
with tools by calling `get_weather`, the tool's result with an answer, and a JSON schema
with a structured answer) and says so.

    python examples/tools_and_structured_output.py
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Any, Literal

from pydantic import BaseModel

from logprobscope import AIMessage, AIMessageChunk, ChatOpenAI, HumanMessage, ToolMessage
from logprobscope.testing import ReplayServer


def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
        city: The city's name, e.g. New York City.
    """
    return f"sunny, 22 °C in {city}"


class Location(BaseModel):
    city: str
    temperature: float
    units: Literal["c", "f"]


def _tokens(message: AIMessage) -> str:
    logprobs = message.response_metadata.logprobs
    tokens = (logprobs.content or []) if logprobs else []
    return " ".join(f"{t.token!r}:{t.logprob:.2f}" for t in tokens[:6])


def main() -> None:
    with ExitStack() as stack:
        base_url = None
        if not (os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")):
            server = stack.enter_context(ReplayServer())
            base_url = server.base_url
            print(f"No OPENAI_API_KEY or OPENAI_BASE_URL: replaying answers from {base_url}")
        name = os.environ.get("LOGPROBSCOPE_MODEL", "gpt-4o")
        model = ChatOpenAI(model=name, logprobs=True, base_url=base_url)

        print("\n1. a tool loop: call, tool result, answer")
        agent = model.bind_tools([get_weather])
        history: list[Any] = [HumanMessage(content="What's the weather in New York?")]
        answer = agent.invoke(history)
        for call in answer.tool_calls:
            print(f"   the model calls {call.name}({call.args})  [id {call.id}]")
        history += [answer]
        for call in answer.tool_calls:
            args: Any = call.args
            history.append(ToolMessage(content=get_weather(**args), tool_call_id=call.id or ""))
        final = agent.invoke(history)
        print(f"   answer: {final.content}")
        print(f"   its first tokens: {_tokens(final)}")

        print("\n2. the same loop streamed: tool-call deltas add up like text")
        agg: AIMessageChunk | None = None
        for chunk in agent.stream(history[:1]):
            for delta in chunk.tool_call_chunks:
                print(f"   delta of call {delta.index}: {delta.name or ''}{delta.arguments!r}")
            agg = chunk if agg is None else agg + chunk
        assert agg is not None
        print(f"   the sum: {[(c.name, c.args) for c in agg.tool_calls]}")

        print("\n3. structured output: the parsed object next to the message")
        result = model.with_structured_output(Location).invoke("What's the weather like in SF?")
        if result.refusal:
            print(f"   refused: {result.refusal}")
        else:
            print(f"   parsed: {result.parsed!r}")
        print(f"   its first tokens: {_tokens(result.message)}")


if __name__ == "__main__":
    main()
