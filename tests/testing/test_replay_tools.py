"""The replay server answers tool calls, refusals and structured output as OpenAI does.

Streamed tool calls as OpenAI splits them (the call's head with its id and name and empty
arguments, then the argument text in pieces; in the role chunk when the answer has no
text), refusals in `delta.refusal` with `logprobs.refusal`, chosen by the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

from logprobscope.testing import (
    SEED_STRUCTURED,
    SEED_TOOL_ANSWER,
    SEED_TOOL_CALL,
    ReplayServer,
    make_completion,
)

TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ASK: Any = [{"role": "user", "content": "what's the weather in NYC?"}]


@pytest.fixture
def client() -> Iterator[tuple[ReplayServer, openai.OpenAI]]:
    with (
        ReplayServer() as server,
        openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk,
    ):
        yield server, sdk


def _deltas(chunks: list[Any]) -> list[Any]:
    return [c.choices[0].delta for c in chunks if c.choices]


def test_a_tool_call_streams_as_openai_splits_it(
    client: tuple[ReplayServer, openai.OpenAI],
) -> None:
    _, sdk = client
    chunks = list(sdk.chat.completions.create(model="m", messages=ASK, tools=TOOLS, stream=True))
    deltas = _deltas(chunks)
    first = deltas[0]
    assert first.role == "assistant" and first.content is None
    [head] = first.tool_calls
    assert (head.index, head.id, head.type) == (0, "call_seed-tool-call_0", "function")
    assert head.function.name == "get_weather" and head.function.arguments == ""
    pieces = [d.tool_calls[0].function.arguments for d in deltas[1:] if d.tool_calls]
    assert pieces == ['{"', "city", '":"', "New", " York", " City", '"}']
    assert all(d.tool_calls[0].id is None for d in deltas[1:] if d.tool_calls)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    streamed = state.current_completion_snapshot.choices[0].message.tool_calls
    whole = sdk.chat.completions.create(model="m", messages=ASK, tools=TOOLS)
    assert whole.choices[0].message.content is None
    assert whole.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, c.function.arguments) for c in streamed or []] == [
        (c.id, c.function.name, c.function.arguments)  # type: ignore[union-attr]
        for c in whole.choices[0].message.tool_calls or []
    ]


def test_the_default_server_chooses_by_request(
    client: tuple[ReplayServer, openai.OpenAI],
) -> None:
    _, sdk = client
    call = sdk.chat.completions.create(model="m", messages=ASK, tools=TOOLS)
    assert call.id == SEED_TOOL_CALL["id"]
    result = [
        *ASK,
        call.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "call_seed-tool-call_0", "content": "sunny, 22 °C"},
    ]
    answer = sdk.chat.completions.create(model="m", messages=result, tools=TOOLS, logprobs=True)
    assert answer.id == SEED_TOOL_ANSWER["id"]
    assert answer.choices[0].message.content == "It's sunny and 22°C in New York City."
    assert answer.choices[0].logprobs is not None
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "Location", "schema": {}}}
    structured = sdk.chat.completions.create(model="m", messages=ASK, response_format=fmt)
    assert structured.id == SEED_STRUCTURED["id"]
    assert structured.choices[0].message.content == (
        '{"city":"San Francisco","temperature":65,"units":"f"}'
    )
    plain = sdk.chat.completions.create(model="m", messages=ASK)
    assert plain.id == "chatcmpl-seed-invoke"


def test_text_then_parallel_calls_with_logprobs() -> None:
    completion = make_completion(
        ["Let", "'s", " check", "."],
        tool_calls=[("get_weather", {"city": "Paris"}), ("get_time", '{"tz": "CET"}')],
        id="chatcmpl-two",
    )
    with (
        ReplayServer([completion], chunk_tokens=2) as server,
        openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk,
    ):
        chunks = list(
            sdk.chat.completions.create(
                model="m", messages=ASK, tools=TOOLS, logprobs=True, stream=True
            )
        )
    deltas = _deltas(chunks)
    assert deltas[0].content == "" and deltas[0].tool_calls is None  # text first: no head
    calls = [d.tool_calls[0] for d in deltas if d.tool_calls]
    heads = [(c.index, c.id, c.function.name) for c in calls if c.id]
    assert heads == [(0, "call_two_0", "get_weather"), (1, "call_two_1", "get_time")]
    # chunk_tokens=2: two argument pieces ('{"', 'tz', '":', ' ', '"', 'CET', '"}') per chunk
    assert [c.function.arguments for c in calls if c.index == 1 and not c.id] == [
        '{"tz',
        '": ',
        '"CET',
        '"}',
    ]
    for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.tool_calls:
            assert chunk.choices[0].logprobs is not None
            assert chunk.choices[0].logprobs.content == []


def test_a_refusal_streams_in_delta_refusal_with_its_logprobs() -> None:
    completion = make_completion(
        [("I'm", -0.0012), (" sorry", -0.84), (".", -0.5)], refusal=True, id="chatcmpl-no"
    )
    with (
        ReplayServer([completion]) as server,
        openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk,
    ):
        whole = sdk.chat.completions.create(model="m", messages=ASK, logprobs=True)
        chunks = list(
            sdk.chat.completions.create(model="m", messages=ASK, logprobs=True, stream=True)
        )
    message = whole.choices[0].message
    assert message.content is None and message.refusal == "I'm sorry."
    assert whole.choices[0].logprobs is not None
    assert whole.choices[0].logprobs.content is None
    assert [t.logprob for t in whole.choices[0].logprobs.refusal or []] == [-0.0012, -0.84, -0.5]
    deltas = _deltas(chunks)
    assert deltas[0].refusal == "" and deltas[0].content is None
    assert [d.refusal for d in deltas[1:4]] == ["I'm", " sorry", "."]
    lps = [c.choices[0].logprobs for c in chunks if c.choices and c.choices[0].delta.refusal]
    assert [[t.token for t in lp.refusal or []] for lp in lps if lp] == [["I'm"], [" sorry"], ["."]]
    assert all(lp is not None and lp.content is None for lp in lps)


def test_make_completion_tool_calls_and_refusal_shapes() -> None:
    completion: Any = make_completion([], tool_calls=[("f", {"a": [1, "é"]})], id="chatcmpl-x")
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_x_0",
            "type": "function",
            "function": {"name": "f", "arguments": '{"a":[1,"é"]}'},
        }
    ]
    with pytest.raises(ValueError, match="a refusal makes no tool calls"):
        make_completion(["no"], refusal=True, tool_calls=[("f", {})])
