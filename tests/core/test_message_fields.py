"""Every field the API takes on a message is kept and sent; any other is an error first.

Errors name the field and come before any request (the replay server receives nothing).
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from pydantic import ValidationError

from logprobscope import (
    AIMessage,
    AIMessageChunk,
    DeveloperMessage,
    HumanMessage,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolCallChunk,
    ToolMessage,
)
from logprobscope._messages import coerce_messages
from logprobscope.testing import ReplayServer
from tests.support.factories import ModelFactory

WIRE_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def test_openai_message_params_are_all_accepted() -> None:
    # Every field of the SDK's message TypedDicts is a field of ours (role aside).
    from openai.types.chat import (
        ChatCompletionAssistantMessageParam,
        ChatCompletionDeveloperMessageParam,
        ChatCompletionSystemMessageParam,
        ChatCompletionToolMessageParam,
        ChatCompletionUserMessageParam,
    )

    pairs: list[tuple[Any, type[Any]]] = [
        (ChatCompletionSystemMessageParam, SystemMessage),
        (ChatCompletionDeveloperMessageParam, DeveloperMessage),
        (ChatCompletionUserMessageParam, HumanMessage),
        (ChatCompletionAssistantMessageParam, AIMessage),
        (ChatCompletionToolMessageParam, ToolMessage),
    ]
    for params, ours in pairs:
        assert set(params.__annotations__) <= set(ours.model_fields), ours


def test_wire_dicts_round_trip_unchanged() -> None:
    history: list[dict[str, Any]] = [
        {"role": "system", "name": "init", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "developer", "content": "d", "name": "dev"},
        {
            "role": "user",
            "name": "ann",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"file_id": "file-1"}},
                {"type": "video_url", "video_url": {"url": "https://x/v.mp4"}},  # a server's own
            ],
        },
        {"role": "assistant", "tool_calls": [WIRE_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rainy"},
        {"role": "assistant", "refusal": "I can't."},
        {"role": "assistant", "content": "Hi", "name": "bot"},
        {"role": "assistant", "audio": {"id": "audio_1"}},
        {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}, "content": None},
    ]
    sent = [m.to_openai() for m in coerce_messages(history)]
    expected = [dict(m) for m in history]
    expected[-1] = {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}
    assert sent == expected


def test_typed_assistant_message() -> None:
    call = ToolCall(id="call_1", name="get_weather", args={"city": "Paris"})
    assert call.arguments == '{"city":"Paris"}'
    message = AIMessage(tool_calls=[call], name="bot")
    assert message.to_openai() == {
        "role": "assistant",
        "name": "bot",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    assert ToolCall.model_validate(WIRE_CALL).args == {"city": "Paris"}
    assert AIMessage(content="x", refusal="no").to_openai() == {
        "role": "assistant",
        "content": "x",
        "refusal": "no",
    }
    assert pickle.loads(pickle.dumps(message)) == message
    assert AIMessage.model_validate_json(message.model_dump_json()) == message


def test_unparseable_arguments_are_kept_and_sent_back_unchanged() -> None:
    broken = {**WIRE_CALL, "function": {"name": "f", "arguments": '{"city": "Par'}}
    message = AIMessage.model_validate({"tool_calls": [WIRE_CALL, broken]})
    [valid] = message.tool_calls
    [invalid] = message.invalid_tool_calls
    assert valid.args == {"city": "Paris"}
    assert invalid.arguments == '{"city": "Par' and invalid.error
    assert "not valid JSON" in invalid.error
    assert invalid.index == 1
    calls: Any = message.to_openai()["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == ['{"city": "Paris"}', '{"city": "Par']
    with pytest.raises(ValidationError, match="keep such a call as an InvalidToolCall"):
        ToolCall.model_validate(broken)
    with pytest.raises(ValidationError, match="disagree"):
        ToolCall(id="c", name="f", args={"a": 1}, arguments='{"a": 2}')
    not_an_object = AIMessage.model_validate(
        {"tool_calls": [{**WIRE_CALL, "function": {"name": "f", "arguments": "[1]"}}]}
    )
    assert "not an object" in (not_an_object.invalid_tool_calls[0].error or "")


def test_calls_without_an_id_cannot_be_sent() -> None:
    message = AIMessage(invalid_tool_calls=[InvalidToolCall(name="f", arguments="{")])
    with pytest.raises(ValueError, match="tool call 0 has no id, which the API needs"):
        message.to_openai()


BAD_MESSAGES: list[tuple[Any, str]] = [
    ({"role": "user", "content": "x", "nmae": "typo"}, "message 0 (user) has field 'nmae'"),
    ({"role": "tool", "tool_call_id": "c", "content": "x", "name": "f"}, "has field 'name'"),
    ({"role": "user", "content": "x", "refusal": "no"}, "has field 'refusal'"),
    ({"role": "system", "content": "x", "tool_calls": []}, "has field 'tool_calls'"),
    ({"role": "user", "content": [{"text": "no type"}]}, "needs a string 'type'"),
    (
        {"role": "user", "content": [{"type": "text"}]},
        "content part 0 (text) needs a string 'text'",
    ),
    (
        {"role": "user", "content": [{"type": "image_url", "url": "u"}]},
        "needs an object 'image_url'",
    ),
    (
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "d"}}]},
        "'input_audio' needs a string 'format'",
    ),
    ({"role": "user", "content": [{"type": "file", "file": {}}]}, "'file' needs one of"),
    ({"role": "assistant", "content": [{"type": "text", "text": "x"}]}, "must be a string"),
    ({"role": "function", "name": "f", "content": "x"}, "has role 'function'"),
    ({"role": "tool", "content": "x"}, "tool_call_id"),
]


@pytest.mark.parametrize(("message", "error"), BAD_MESSAGES)
def test_a_field_that_cannot_be_sent_fails_before_the_request(
    message: Any, error: str, server: ReplayServer, make_model: ModelFactory
) -> None:
    model = make_model(server)
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        model.invoke([message])
    with pytest.raises(ValueError):
        model.stream([message])
    assert server.requests == []


def test_typed_constructors_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="name"):
        ToolMessage(content="x", tool_call_id="c", name="f")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="refusal"):
        HumanMessage(content="x", refusal="no")  # type: ignore[call-arg]


def test_user_built_chunks_with_tool_call_chunks() -> None:
    a = AIMessageChunk(tool_call_chunks=[ToolCallChunk(index=0, id="c1", name="f")])  # type: ignore[call-arg]
    b = AIMessageChunk(tool_call_chunks=[{"index": 0, "arguments": '{"x": '}])  # type: ignore[call-arg]
    c = AIMessageChunk(tool_call_chunks=[{"index": 0, "arguments": "1}"}])  # type: ignore[call-arg]
    assert a.tool_calls[0].args == {}  # no arguments yet: an empty object
    assert b.invalid_tool_calls[0].arguments == '{"x": '
    agg = a + b + c
    assert [(t.id, t.name, t.args) for t in agg.tool_calls] == [("c1", "f", {"x": 1})]
    assert agg.invalid_tool_calls == []
    assert agg.tool_call_chunks == [ToolCallChunk(index=0, id="c1", name="f", arguments='{"x": 1}')]
    refusals = AIMessageChunk(refusal="I ") + AIMessageChunk(refusal="can't.")
    assert refusals.refusal == "I can't."
    assert (AIMessageChunk(content="x") + AIMessageChunk(content="y")).refusal is None
