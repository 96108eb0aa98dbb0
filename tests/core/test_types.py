"""The typed results: OpenAI's JSON shapes, frozen models, the columnar TokenLogprobList."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from pydantic import ValidationError

import logprobscope
from logprobscope import (
    AIMessage,
    AIMessageChunk,
    ChoiceLogprobs,
    DeveloperMessage,
    HumanMessage,
    ResponseMetadata,
    Run,
    SystemMessage,
    TokenLogprob,
    TokenLogprobList,
    ToolMessage,
    TopLogprob,
    UsageMetadata,
)

OPENAI_ENTRY: dict[str, Any] = {
    "token": "Thank",
    "logprob": -0.28644064,
    "bytes": [84, 104, 97, 110, 107],
    "top_logprobs": [
        {"token": "Thank", "logprob": -0.28644064, "bytes": [84, 104, 97, 110, 107]},
        {"token": "Hello", "logprob": -2.0364406, "bytes": [72, 101, 108, 108, 111]},
    ],
}


def test_token_logprob_is_openais_shape() -> None:
    token = TokenLogprob.model_validate(OPENAI_ENTRY)
    assert token.model_dump() == OPENAI_ENTRY
    assert list(token.model_dump()) == ["token", "logprob", "bytes", "top_logprobs"]
    assert json.loads(token.model_dump_json()) == OPENAI_ENTRY
    assert TokenLogprob.model_validate_json(token.model_dump_json()) == token
    assert token.top_logprobs[1] == TopLogprob(
        token="Hello", logprob=-2.0364406, bytes=[72, 101, 108, 108, 111]
    )
    assert list(token.top_logprobs[0].model_dump()) == ["token", "logprob", "bytes"]


def test_token_logprob_defaults() -> None:
    token = TokenLogprob(token="a", logprob=-1)
    assert token.model_dump() == {"token": "a", "logprob": -1.0, "bytes": None, "top_logprobs": []}
    assert type(token.logprob) is float


def test_models_are_frozen() -> None:
    token = TokenLogprob.model_validate(OPENAI_ENTRY)
    with pytest.raises(ValidationError):
        token.logprob = 0.0
    with pytest.raises(ValidationError):
        token.top_logprobs[0].token = "x"
    for model in (
        AIMessage(content="x"),
        ResponseMetadata(),
        UsageMetadata(),
        ChoiceLogprobs(),
        HumanMessage(content="x"),
    ):
        field = next(iter(type(model).model_fields))
        with pytest.raises(ValidationError):
            setattr(model, field, None)


def test_token_logprob_validation() -> None:
    with pytest.raises(ValidationError):
        TokenLogprob.model_validate({"token": "a"})
    with pytest.raises(ValidationError):
        TokenLogprob.model_validate({"token": "a", "logprob": "not a number"})


# -- TokenLogprobList ------------------------------------------------------------------------


def _entries(n: int) -> list[dict[str, Any]]:
    return [
        {
            "token": f"t{i}",
            "logprob": -float(i),
            "bytes": list(f"t{i}".encode()),
            "top_logprobs": [{"token": f"t{i}", "logprob": -float(i), "bytes": None}] * (i % 3),
        }
        for i in range(n)
    ]


def test_list_behaves_like_a_read_only_list() -> None:
    items = [TokenLogprob.model_validate(e) for e in _entries(5)]
    lst = TokenLogprobList.from_json(_entries(5))
    assert len(lst) == 5
    assert lst == items and items == lst
    assert lst[0] == items[0] and lst[-1] == items[-1]
    assert lst[1:3] == items[1:3] and isinstance(lst[1:3], list)
    assert lst[::-1] == items[::-1]
    assert list(lst) == items
    assert [t.token for t in reversed(lst)] == [t.token for t in reversed(items)]
    assert items[2] in lst
    assert lst.index(items[3]) == 3
    assert lst.count(items[1]) == 1
    with pytest.raises(IndexError):
        lst[5]
    with pytest.raises(IndexError):
        lst[-6]
    with pytest.raises(TypeError):
        hash(lst)
    assert repr(lst) == repr(items)
    assert lst[2] is lst[2]  # built once, then shared
    assert lst != items[:4]
    assert lst != "not a list"
    assert TokenLogprobList() == []
    assert lst.dump() == [TokenLogprob.model_validate(e).model_dump() for e in _entries(5)]


def test_list_from_models_equals_from_json() -> None:
    items = [TokenLogprob.model_validate(e) for e in _entries(4)]
    assert TokenLogprobList(items) == TokenLogprobList.from_json(_entries(4))


def test_list_concatenation() -> None:
    a = TokenLogprobList.from_json(_entries(3))
    b = TokenLogprobList.from_json(_entries(5)[3:])
    joined = a + b
    assert joined == TokenLogprobList.from_json(_entries(5))
    assert len(a) == 3 and len(b) == 2  # operands unchanged
    again = a + b  # a is no longer at its buffer's tip: a copy, still right
    assert again == joined
    with pytest.raises(TypeError):
        a + [TokenLogprob(token="x", logprob=0.0)]  # type: ignore[operator]


def test_bytes_that_are_not_the_tokens_utf8() -> None:
    entries = [
        {"token": "\\xe4", "logprob": -1.0, "bytes": [228], "top_logprobs": []},  # byte fallback
        {"token": "\ud83d", "logprob": -1.0, "bytes": [240, 159], "top_logprobs": []},  # surrogate
        {"token": "ok", "logprob": -1.0, "bytes": [111, 107], "top_logprobs": []},
        {"token": "x", "logprob": -1.0, "bytes": [999], "top_logprobs": []},  # not bytes
        {"token": "y", "logprob": -1.0, "bytes": "y", "top_logprobs": []},
    ]
    lst = TokenLogprobList.from_json(entries)
    assert [t.bytes for t in lst] == [[228], [240, 159], [111, 107], None, None]
    assert lst.dump()[0] == entries[0]
    assert pickle.loads(pickle.dumps(lst)) == lst
    assert copy.deepcopy(lst) == lst


def test_choice_logprobs_validates_lists_into_token_lists() -> None:
    choice = ChoiceLogprobs.model_validate({"content": [OPENAI_ENTRY], "refusal": None})
    assert isinstance(choice.content, TokenLogprobList)
    assert choice.content[0].top_logprobs[1].token == "Hello"
    assert choice.model_dump() == {"content": [OPENAI_ENTRY], "refusal": None}
    assert ChoiceLogprobs.model_validate_json(choice.model_dump_json()) == choice
    lst = TokenLogprobList.from_json([OPENAI_ENTRY])
    assert ChoiceLogprobs(content=lst).content is lst  # no copy
    assert ChoiceLogprobs.model_json_schema()["properties"]["content"]


def test_choice_logprobs_add() -> None:
    a = ChoiceLogprobs.model_validate({"content": _entries(2)})
    b = ChoiceLogprobs.model_validate({"content": _entries(4)[2:], "refusal": _entries(1)})
    both = a + b
    assert both.content == TokenLogprobList.from_json(_entries(4))
    assert both.refusal == TokenLogprobList.from_json(_entries(1))
    assert (ChoiceLogprobs() + ChoiceLogprobs()).content is None


# -- messages ----------------------------------------------------------------------------------


def test_ai_message_dump_shape() -> None:
    message = AIMessage(
        content="Thank",
        response_metadata=ResponseMetadata(
            logprobs=ChoiceLogprobs.model_validate({"content": [OPENAI_ENTRY]}),
            finish_reason="stop",
            model_name="gpt-4o",
            id="chatcmpl-1",
            system_fingerprint="fp",
        ),
        usage_metadata=UsageMetadata(input_tokens=1, output_tokens=1, total_tokens=2),
    )
    assert message.model_dump() == {
        "role": "assistant",
        "content": "Thank",
        "name": None,
        "refusal": None,
        "tool_calls": [],
        "invalid_tool_calls": [],
        "audio": None,
        "function_call": None,
        "response_metadata": {
            "logprobs": {"content": [OPENAI_ENTRY], "refusal": None},
            "finish_reason": "stop",
            "model_name": "gpt-4o",
            "id": "chatcmpl-1",
            "system_fingerprint": "fp",
            "incomplete": False,
        },
        "usage_metadata": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
    }
    assert AIMessage.model_validate_json(message.model_dump_json()) == message
    assert pickle.loads(pickle.dumps(message)) == message
    assert copy.deepcopy(message) == message


def test_chunk_and_message() -> None:
    chunk = AIMessageChunk(content="hi", usage_metadata=UsageMetadata(total_tokens=1))
    assert isinstance(chunk, AIMessage)
    message = chunk.to_message()
    assert type(message) is AIMessage
    assert message.content == "hi" and message.usage_metadata == chunk.usage_metadata
    assert chunk.role == "assistant"
    assert AIMessageChunk.model_validate(chunk.model_dump()) == chunk


def test_input_messages() -> None:
    assert HumanMessage(content="u").to_openai() == {"role": "user", "content": "u"}
    assert SystemMessage(content="s").to_openai() == {"role": "system", "content": "s"}
    assert DeveloperMessage(content="d").to_openai() == {"role": "developer", "content": "d"}
    assert AIMessage(content="a").to_openai() == {"role": "assistant", "content": "a"}
    assert ToolMessage(content="t", tool_call_id="c1").to_openai() == {
        "role": "tool",
        "content": "t",
        "tool_call_id": "c1",
    }
    parts: list[dict[str, object]] = [{"type": "text", "text": "hi"}]
    assert HumanMessage(content=parts).to_openai() == {"role": "user", "content": parts}
    with pytest.raises(ValidationError):
        HumanMessage(content="x", role="system")  # type: ignore[arg-type]


def test_run_record() -> None:
    from uuid import uuid4

    run = Run(run_id=uuid4(), model="m", stream=False)
    assert run.tags == () and run.metadata == {} and run.invocation_params == {}
    assert run.provider == "openai"
    with pytest.raises(ValidationError):
        run.stream = True


def test_public_api() -> None:
    for name in logprobscope.__all__:
        assert hasattr(logprobscope, name), name
    assert isinstance(logprobscope.__version__, str)
