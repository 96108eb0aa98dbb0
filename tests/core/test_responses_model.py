"""`ChatOpenAI(use_responses_api=True)`: the request as the Responses API takes it, the same
typed results as a chat call, and validation before any request.

Against the replay server, which answers both APIs from the same completion: what the two
APIs both carry (text, token logprobs and alternatives, usage, tool calls, finish reason)
must be equal through both.
"""

from __future__ import annotations

import json
from functools import reduce
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from logprobscope import (
    AIMessage,
    AIMessageChunk,
    ChatOpenAI,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UsageMetadata,
)
from logprobscope._responses_wire import (
    ResponseError,
    ResponsesAccumulator,
    message_from_response,
)
from logprobscope.testing import (
    SEED_STREAM,
    SEED_TOP_LOGPROBS,
    Deviations,
    ReplayServer,
    make_completion,
)
from tests.realwire.loopback import Loopback
from tests.support.factories import ModelFactory, ServerFactory
from tests.support.recording import RecordingHandler

LOGPROBS = ["message.output_text.logprobs"]


def last_request(server: ReplayServer) -> Any:
    return server.requests[-1]


def add_all(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    return reduce(lambda a, b: a + b, chunks)


def tokens(message: AIMessage) -> list[tuple[str, float, list[int] | None, list[Any]]]:
    logprobs = message.response_metadata.logprobs
    assert logprobs is not None and logprobs.content is not None
    return [
        (t.token, t.logprob, t.bytes, [(a.token, a.logprob) for a in t.top_logprobs])
        for t in logprobs.content
    ]


def without_bytes(rows: list[tuple[str, float, list[int] | None, list[Any]]]) -> list[Any]:
    return [(token, logprob, None, tops) for token, logprob, _, tops in rows]


# -- the request -------------------------------------------------------------------------------


def test_the_request_names_everything_as_the_responses_api_does(
    server: ReplayServer, make_model: ModelFactory
) -> None:
    model = make_model(
        server,
        use_responses_api=True,
        logprobs=True,
        top_logprobs=2,
        temperature=0.5,
        top_p=0.9,
        max_tokens=50,
        instructions="Be brief.",
        model_kwargs={"store": False, "reasoning": {"effort": "low"}, "my_extension": 1},
    )
    model.invoke("hi", previous_response_id="resp_1")
    assert server.request_paths == ["/v1/responses"]
    assert server.requests == [
        {
            "model": "gpt-4o",
            "input": [{"role": "user", "content": "hi"}],
            "include": LOGPROBS,
            "top_logprobs": 2,
            "instructions": "Be brief.",
            "previous_response_id": "resp_1",
            "temperature": 0.5,
            "top_p": 0.9,
            "max_output_tokens": 50,
            "store": False,
            "reasoning": {"effort": "low"},
            "my_extension": 1,
        }
    ]
    list(model.stream("hi"))
    assert last_request(server)["stream"] is True
    assert "stream_options" not in last_request(server)  # usage always comes at the end


def test_per_call_choice_of_api(server: ReplayServer, make_model: ModelFactory) -> None:
    chat = make_model(server, logprobs=True)
    responses = make_model(server, logprobs=True, use_responses_api=True)
    chat.invoke("hi", use_responses_api=True)
    responses.invoke("hi", use_responses_api=False)
    list(chat.stream("hi", use_responses_api=True))
    assert server.request_paths == ["/v1/responses", "/v1/chat/completions", "/v1/responses"]


def test_an_include_of_the_users_own_is_kept(
    server: ReplayServer, make_model: ModelFactory
) -> None:
    model = make_model(
        server,
        use_responses_api=True,
        logprobs=True,
        model_kwargs={"include": ["reasoning.encrypted_content"]},
    )
    model.invoke("hi")
    assert last_request(server)["include"] == ["reasoning.encrypted_content", *LOGPROBS]
    model.invoke("hi", logprobs=False)
    assert last_request(server)["include"] == ["reasoning.encrypted_content"]


def test_messages_become_input_items(server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(server, use_responses_api=True)
    call = ToolCall(id="call_1", name="get_weather", args={"city": "Paris"})
    model.invoke(
        [
            SystemMessage(content="sys"),
            {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
            HumanMessage(
                content=[
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    {"type": "file", "file": {"file_id": "file_1"}},
                    {"type": "input_audio", "input_audio": {"data": "AAA=", "format": "wav"}},
                ]
            ),
            AIMessage(content="Checking.", tool_calls=[call]),
            ToolMessage(content="sunny", tool_call_id="call_1"),
            AIMessage(content="", refusal="I can't."),
        ]
    )
    assert last_request(server)["input"] == [
        {"role": "system", "content": "sys"},
        {"role": "developer", "content": [{"type": "input_text", "text": "dev"}]},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"},
                {"type": "input_file", "file_id": "file_1"},
                {"type": "input_audio", "input_audio": {"data": "AAA=", "format": "wav"}},
            ],
        },
        {"role": "assistant", "content": "Checking."},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"role": "assistant", "content": "I can't."},
    ]


class Weather(BaseModel):
    city: str


def get_weather(city: str) -> str:
    """Get the weather.

    Args:
        city: The city.
    """
    return city


def test_tools_choices_and_formats_are_flattened(
    server: ReplayServer, make_model: ModelFactory
) -> None:
    model = make_model(server)
    tools: list[Any] = [
        get_weather,
        {"type": "function", "function": {"name": "plain", "parameters": {"type": "object"}}},
        {"type": "web_search"},
    ]
    model.invoke("hi", tools=tools, tool_choice="get_weather", parallel_tool_calls=False)
    model.invoke(
        "hi",
        tools=tools,
        tool_choice="get_weather",
        parallel_tool_calls=False,
        use_responses_api=True,
    )
    chat, sent = server.requests[-2:]
    assert isinstance(chat["tools"], list) and isinstance(sent["tools"], list)
    function = chat["tools"][0]["function"]
    assert function["strict"] is True
    assert sent["tools"][0] == {"type": "function", **function}
    assert sent["tools"][1] == {
        "type": "function",
        "name": "plain",
        "parameters": {"type": "object"},
        "strict": False,  # the chat dict's own default, not the Responses API's
    }
    assert sent["tools"][2] == {"type": "web_search"}
    assert sent["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert sent["parallel_tool_calls"] is False
    model.invoke(
        "hi",
        response_format=Weather,
        model_kwargs={"text": {"verbosity": "low"}},
        use_responses_api=True,
    )
    text = last_request(server)["text"]
    assert text["verbosity"] == "low"
    assert text["format"]["type"] == "json_schema"
    assert text["format"]["name"] == "Weather" and text["format"]["strict"] is True
    assert text["format"]["schema"]["required"] == ["city"]


def test_structured_output(server: ReplayServer, make_model: ModelFactory) -> None:
    class Answer(BaseModel):
        city: str
        temperature: float
        units: str

    model = make_model(server, use_responses_api=True, logprobs=True)
    result = model.with_structured_output(Answer).invoke("weather?")
    assert result.parsed is not None and result.parsed.city
    assert last_request(server)["text"]["format"]["name"] == "Answer"
    assert result.message.response_metadata.logprobs is not None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seed": 1}, ValueError, "takes no seed"),
        ({"stop": ["x"]}, ValueError, "takes no stop"),
        ({"model_kwargs": {"input": "x"}}, ValueError, "may not set input"),
        ({"model_kwargs": {"stream": True}}, ValueError, "may not set stream"),
        ({"model_kwargs": {"instructions": "a"}, "instructions": "b"}, ValueError, "both"),
        ({"model_kwargs": {"max_output_tokens": 5}, "max_tokens": 5}, ValueError, "both"),
        (
            {"response_format": {"type": "json_object"}, "model_kwargs": {"text": {"format": {}}}},
            ValueError,
            "both",
        ),
        ({"model_kwargs": {"include": "x"}}, TypeError, "list of strings"),
        ({"use_responses_api": 1}, TypeError, "True or False"),
        ({"instructions": 3}, TypeError, "must be a string"),
    ],
)
def test_invalid_options_fail_before_any_request(
    server: ReplayServer,
    make_model: ModelFactory,
    kwargs: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    model = make_model(server, use_responses_api=True)
    with pytest.raises(error, match=match):
        model.invoke("hi", **kwargs)
    with pytest.raises(error, match=match):
        model.stream("hi", **kwargs)
    with pytest.raises(error, match=match):
        model.batch(["a", "b"], **kwargs)
    assert server.requests == []


def test_responses_options_need_the_responses_api(
    server: ReplayServer, make_model: ModelFactory
) -> None:
    model = make_model(server)
    with pytest.raises(ValueError, match="instructions is a Responses API parameter"):
        model.invoke("hi", instructions="x")
    with pytest.raises(ValueError, match="previous_response_id is a Responses API parameter"):
        model.invoke("hi", previous_response_id="x")
    with pytest.raises(ValueError, match="use_responses_api=True"):
        ChatOpenAI("gpt-4o", instructions="x", api_key="k")
    assert server.requests == []


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([{"role": "user", "content": "hi", "name": "ann"}], "has a name"),
        # dicts, not messages: a message made at import would outlive every test
        ([{"role": "assistant", "content": "x", "audio": {"id": "a"}}], "audio"),
        ([{"role": "assistant", "tool_calls": [{"name": "f", "args": {}}]}], "no id"),
    ],
)
async def test_messages_the_api_cannot_take_fail_before_any_request(
    server: ReplayServer, make_model: ModelFactory, messages: list[Any], match: str
) -> None:
    model = make_model(server, use_responses_api=True)
    with pytest.raises(ValueError, match=match):
        model.invoke(messages)
    with pytest.raises(ValueError, match=match):
        model.batch(["fine", messages])
    with pytest.raises(ValueError, match=match):
        await model.abatch(["fine", messages])
    assert server.requests == []


# -- the results -------------------------------------------------------------------------------


@pytest.mark.parametrize("top", [None, 2])
def test_invoke_equals_the_chat_answer(
    make_server: ServerFactory, make_model: ModelFactory, top: int | None
) -> None:
    server = make_server([SEED_TOP_LOGPROBS])
    model = make_model(server, logprobs=True, top_logprobs=top)
    chat = model.invoke("hi")
    message = model.invoke("hi", use_responses_api=True)
    assert isinstance(message, AIMessage)
    assert tokens(message) == tokens(chat)
    assert len(tokens(message)) == 25
    assert message.content == chat.content
    assert message.usage_metadata == chat.usage_metadata
    meta = message.response_metadata
    assert meta.finish_reason == "stop" == chat.response_metadata.finish_reason
    assert meta.id == "resp_seed-top-logprobs"
    assert meta.model_name == chat.response_metadata.model_name
    assert meta.system_fingerprint is None and meta.incomplete is False


@pytest.mark.parametrize("chunk_tokens", [1, 3, 100])
def test_stream_adds_up_to_the_chat_answer_without_bytes(
    make_server: ServerFactory, make_model: ModelFactory, chunk_tokens: int
) -> None:
    server = make_server([SEED_TOP_LOGPROBS], chunk_tokens=chunk_tokens)
    model = make_model(server, logprobs=True, top_logprobs=3, use_responses_api=True)
    invoked = model.invoke("hi")
    chunks = list(model.stream("hi"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert len(chunks) == 1 + -(-25 // chunk_tokens) + 1  # created, deltas, completed
    assert chunks[0].content == "" and chunks[0].response_metadata.id == "resp_seed-top-logprobs"
    agg = add_all(chunks)
    assert agg.content == invoked.content
    assert tokens(agg) == without_bytes(tokens(invoked))  # the stream's events carry no bytes
    assert agg.usage_metadata == invoked.usage_metadata
    assert agg.response_metadata.finish_reason == "stop"
    assert chunks[-1].response_metadata.finish_reason == "stop"
    assert chunks[-1].usage_metadata is not None


async def test_async_calls(make_server: ServerFactory, make_model: ModelFactory) -> None:
    server = make_server([SEED_STREAM])
    model = make_model(server, logprobs=True, use_responses_api=True)
    message = await model.ainvoke("hi")
    chunks = [c async for c in model.astream("hi")]
    [batched] = await model.abatch(["hi"])
    assert tokens(message) == tokens(batched)
    assert tokens(add_all(chunks)) == without_bytes(tokens(message))
    assert (
        add_all(chunks).content
        == message.content
        == "".join(
            e["token"]
            for e in SEED_STREAM["choices"][0]["logprobs"]["content"]  # type: ignore[index]
        )
    )


def test_no_logprobs_asked_gives_none(server: ReplayServer, make_model: ModelFactory) -> None:
    # The server sends `"logprobs": []` on every part either way, as OpenAI does.
    model = make_model(server, use_responses_api=True)
    assert model.invoke("hi").response_metadata.logprobs is None
    chunks = list(model.stream("hi"))
    assert all(c.response_metadata.logprobs is None for c in chunks)
    assert add_all(chunks).response_metadata.logprobs is None


def test_a_server_that_sends_empty_logprobs(
    make_server: ServerFactory, make_model: ModelFactory
) -> None:
    server = make_server(deviations=Deviations(empty_responses_logprobs=True))
    model = make_model(server, logprobs=True, use_responses_api=True)
    message = model.invoke("hi")
    assert message.content.startswith("Thank you")
    assert message.response_metadata.logprobs is not None
    assert message.response_metadata.logprobs.content == []
    agg = add_all(list(model.stream("hi")))
    assert agg.content.startswith("Thank you")
    assert agg.response_metadata.logprobs is None  # its deltas have no `logprobs` key at all


def test_tool_calls_and_the_loop(server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(server, logprobs=True, use_responses_api=True).bind_tools([get_weather])
    answer = model.invoke("weather in New York?")
    streamed = add_all(list(model.stream("weather in New York?")))
    for message in (answer, streamed):
        assert message.content == ""
        assert message.response_metadata.finish_reason == "tool_calls"
        [call] = message.tool_calls
        assert (call.id, call.name, call.args) == (
            "call_seed-tool-call_0",
            "get_weather",
            {"city": "New York City"},
        )
        assert message.invalid_tool_calls == []
    final = model.invoke(
        [
            HumanMessage(content="weather in New York?"),
            answer,
            ToolMessage(content="sunny", tool_call_id="call_seed-tool-call_0"),
        ]
    )
    assert final.content == "It's sunny and 22°C in New York City."
    assert last_request(server)["input"][1:] == [
        {
            "type": "function_call",
            "call_id": "call_seed-tool-call_0",
            "name": "get_weather",
            "arguments": '{"city":"New York City"}',
        },
        {"type": "function_call_output", "call_id": "call_seed-tool-call_0", "output": "sunny"},
    ]


def test_a_refusal(make_server: ServerFactory, make_model: ModelFactory) -> None:
    server = make_server([make_completion([("I", -0.1), (" can't", -0.2)], refusal=True)])
    model = make_model(server, logprobs=True, use_responses_api=True)
    for message in (model.invoke("x"), add_all(list(model.stream("x")))):
        assert message.content == ""
        assert message.refusal == "I can't"
        assert message.response_metadata.logprobs is None  # the API has no refusal tokens


def test_a_cut_answer_is_length(make_server: ServerFactory, make_model: ModelFactory) -> None:
    server = make_server([make_completion([("Hi", -0.5)], finish_reason="length")])
    model = make_model(server, use_responses_api=True)
    assert model.invoke("x").response_metadata.finish_reason == "length"
    chunks = list(model.stream("x"))
    assert add_all(chunks).response_metadata.finish_reason == "length"
    assert chunks[-1].usage_metadata == UsageMetadata(
        input_tokens=10, output_tokens=1, total_tokens=11
    )


def test_a_long_stream_shares_one_buffer(
    make_server: ServerFactory, make_model: ModelFactory
) -> None:
    n = 4_000
    server = make_server([make_completion([(f" w{i}", -0.25) for i in range(n)])])
    model = make_model(server, logprobs=True, use_responses_api=True)
    stream = model.stream("go")
    first = next(stream)
    agg = first
    for chunk in stream:
        agg = agg + chunk
    logprobs = agg.response_metadata.logprobs
    assert logprobs is not None and logprobs.content is not None
    buf, start, stop = logprobs.content._columns()
    assert (start, stop) == (0, n) and len(buf) == n  # the stream's own buffer, not a copy
    assert (
        object.__getattribute__(agg, "_text").pieces
        is object.__getattribute__(first, "_text").pieces
    )


# -- decoding, unit ----------------------------------------------------------------------------


_FAILED = {
    "id": "resp_x",
    "object": "response",
    "status": "failed",
    "error": {"code": "server_error", "message": "boom"},
    "output": [],
}


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_response_is_the_sdks_api_error(recorder: RecordingHandler, stream: bool) -> None:
    if stream:
        events = [
            {"type": "response.created", "response": {**_FAILED, "status": "in_progress"}},
            {"type": "response.failed", "response": _FAILED},
        ]
        body = b"".join(
            b"event: %s\ndata: %s\n\n" % (e["type"].encode(), json.dumps(e).encode())  # type: ignore[attr-defined]
            for e in events
        )
        server = Loopback(body, content_type="text/event-stream", sizes=[len(body)])
    else:
        server = Loopback(json.dumps(_FAILED).encode(), content_type="application/json")
    with server, openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        model = ChatOpenAI("gpt-4o", client=client, use_responses_api=True, callbacks=[recorder])
        with pytest.raises(openai.APIError, match="boom") as caught:
            if stream:
                list(model.stream("hi"))
            else:
                model.invoke("hi")
    assert type(caught.value) is openai.APIError
    assert caught.value.body == {"code": "server_error", "message": "boom"}
    assert recorder.error() is caught.value


def test_an_error_event_is_the_sdks_api_error() -> None:
    accumulator = ResponsesAccumulator(logprobs=True)
    with pytest.raises(ResponseError, match="nope") as caught:
        accumulator.feed({"type": "error", "code": "x", "message": "nope"})
    assert caught.value.body == {"type": "error", "code": "x", "message": "nope"}
    with pytest.raises(ResponseError, match="An error occurred during streaming"):
        accumulator.feed({"type": "error"})


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        "x",
        {"type": 3},
        {"type": "response.output_text.delta", "delta": 5, "logprobs": "no"},
        {"type": "response.output_text.delta", "delta": "a", "logprobs": [None, {"token": 1}]},
        {"type": "response.function_call_arguments.delta", "output_index": 9, "delta": "x"},
        {"type": "response.output_item.added", "item": {"type": "function_call", "name": 2}},
        {"type": "response.completed", "response": {"status": 7, "usage": "x"}},
        {"type": "response.created", "response": None},
        {"type": "response.refusal.delta", "delta": None},
    ],
)
def test_malformed_events_never_raise(event: object) -> None:
    accumulator = ResponsesAccumulator(logprobs=True)
    accumulator.feed(event)
    message = accumulator.message(incomplete=True)
    assert isinstance(message, AIMessage) and message.response_metadata.incomplete is True


def test_malformed_responses_never_raise() -> None:
    bodies: list[dict[str, Any]] = [
        {},
        {"output": "x"},
        {"output": [None, {"type": "message", "content": [{"type": "output_text"}]}]},
        {"status": "incomplete", "incomplete_details": None, "usage": {"input_tokens": "x"}},
    ]
    for body in bodies:
        message = message_from_response(body, logprobs=True)
        assert isinstance(message, AIMessage)
    incomplete = message_from_response(
        {"status": "incomplete", "incomplete_details": {"reason": "max_messages"}}, logprobs=False
    )
    assert incomplete.response_metadata.finish_reason == "max_messages"


def test_events_without_indexes_as_llama_server_sends_them() -> None:
    # llama-server's events have no output_index, content_index nor sequence_number.
    accumulator = ResponsesAccumulator(logprobs=True)
    events: list[dict[str, object]] = [
        {"type": "response.created", "response": {"id": "resp_1", "model": "tiny"}},
        {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Hi"},
        {
            "type": "response.output_item.added",
            "item": {"type": "function_call", "call_id": "c1", "name": "f", "arguments": ""},
        },
        {"type": "response.function_call_arguments.delta", "delta": '{"a":'},
        {"type": "response.function_call_arguments.delta", "delta": "1}"},
        {
            "type": "response.output_item.done",
            "item": {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
        },
        {
            "type": "response.output_item.added",
            "item": {"type": "function_call", "call_id": "c2", "name": "g", "arguments": ""},
        },
        {
            "type": "response.output_item.done",
            "item": {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
        },
        {
            "type": "response.completed",
            "response": {"status": "completed", "usage": {"input_tokens": 1, "output_tokens": 2}},
        },
    ]
    chunks = [c for c in map(accumulator.feed, events) if c is not None]
    message = accumulator.message(incomplete=False)
    assert add_all(chunks).tool_calls == message.tool_calls
    assert [(c.id, c.name, c.args) for c in message.tool_calls] == [
        ("c1", "f", {"a": 1}),
        ("c2", "g", {}),  # its arguments came with its done item only
    ]
    assert message.content == "Hi"
    assert message.response_metadata.logprobs is None  # no delta carried a logprobs key
    assert message.response_metadata.finish_reason == "tool_calls"
