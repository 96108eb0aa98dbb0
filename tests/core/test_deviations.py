"""Servers that are not OpenAI: llama.cpp's nulls, missing logprobs, vLLM's floors, odd JSON.

Through the replay server wherever it can produce the case; an in-process httpx2
transport only for JSON the server normalises away (`"top_logprobs": null`, entries that
are not objects, bodies that are not objects).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest

from logprobscope import (
    AIMessage,
    AIMessageChunk,
    ChatOpenAI,
    TokenLogprob,
    TopLogprob,
    UsageMetadata,
)
from logprobscope.testing import SEED_STREAM, Completion, Deviations, ReplayServer
from tests.support.factories import ModelFactory, ServerFactory
from tests.support.recording import RecordingHandler

SEED_TEXT = "Thank you for asking! I'm here and ready to help. How can I assist you today?"
_SEED_STREAM_ENTRIES: list[Any] = SEED_STREAM["choices"][0]["logprobs"]["content"]  # type: ignore[index]


def _agg(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    agg = chunks[0]
    for chunk in chunks[1:]:
        agg = agg + chunk
    return agg


def _tokens(message: AIMessage) -> list[TokenLogprob]:
    lp = message.response_metadata.logprobs
    assert lp is not None and lp.content is not None
    return list(lp.content)


def _same_floats(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# -- llama.cpp -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama() -> Iterator[ReplayServer]:
    with ReplayServer(deviations=Deviations.LLAMA_CPP) as server:
        yield server


def test_llama_cpp_invoke_bytes_null(llama: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(llama, logprobs=True, top_logprobs=2)
    message = model.invoke("hi")
    tokens = _tokens(message)
    assert tokens[0] == TokenLogprob(
        token="I'm",
        logprob=-2.2864406,
        bytes=None,
        top_logprobs=[
            TopLogprob(token="Thank", logprob=-0.28644064, bytes=None),
            TopLogprob(token="Hello", logprob=-2.0364406, bytes=None),
        ],
    )
    assert all(t.bytes is None for t in tokens)
    assert all(top.bytes is None for t in tokens for top in t.top_logprobs)
    assert tokens[0].model_dump() == {
        "token": "I'm",
        "logprob": -2.2864406,
        "bytes": None,
        "top_logprobs": [
            {"token": "Thank", "logprob": -0.28644064, "bytes": None},
            {"token": "Hello", "logprob": -2.0364406, "bytes": None},
        ],
    }


def _check_llama_stream(chunks: list[AIMessageChunk]) -> None:
    role, *content, finish = chunks  # no usage chunk
    assert role.content == ""
    assert role.response_metadata.logprobs is None  # "logprobs": null on the role chunk
    assert finish.response_metadata.logprobs is None
    assert finish.response_metadata.finish_reason == "stop"
    assert all(c.usage_metadata is None for c in chunks)
    assert len(content) == len(_SEED_STREAM_ENTRIES)
    # the aggregate: no logprobs after the role chunk, then one more token each time
    agg = role
    assert agg.response_metadata.logprobs is None
    for i, chunk in enumerate(content, start=1):
        agg = agg + chunk
        tokens = _tokens(agg)
        assert len(tokens) == i
        assert tokens[-1].token == _SEED_STREAM_ENTRIES[i - 1]["token"]
        assert tokens[-1].logprob == _SEED_STREAM_ENTRIES[i - 1]["logprob"]
        assert tokens[-1].bytes is None
    agg = agg + finish
    assert agg.content == SEED_TEXT
    assert agg.usage_metadata is None
    assert agg.response_metadata.finish_reason == "stop"
    assert len(_tokens(agg)) == len(_SEED_STREAM_ENTRIES)


def test_llama_cpp_stream(llama: ReplayServer, make_model: ModelFactory) -> None:
    rec = RecordingHandler()
    chunks = list(make_model(llama, logprobs=True).stream("hi", callbacks=[rec]))
    _check_llama_stream(chunks)
    end = rec.message()
    assert end.usage_metadata is None
    assert end.response_metadata.logprobs is not None
    assert len(_tokens(end)) == len(_SEED_STREAM_ENTRIES)
    rec.assert_exactly_one_end_per_run()


async def test_llama_cpp_astream(llama: ReplayServer, make_model: ModelFactory) -> None:
    chunks = [c async for c in make_model(llama, logprobs=True).astream("hi")]
    _check_llama_stream(chunks)


def test_llama_cpp_stream_equals_invoke_but_usage(
    make_server: ServerFactory, make_model: ModelFactory
) -> None:
    server = make_server([SEED_STREAM], deviations=Deviations.LLAMA_CPP)
    model = make_model(server, logprobs=True)
    message = model.invoke("hi")
    agg = _agg(list(model.stream("hi")))
    assert agg.content == message.content
    assert agg.response_metadata.logprobs == message.response_metadata.logprobs
    assert agg.response_metadata.finish_reason == message.response_metadata.finish_reason
    assert agg.usage_metadata is None  # llama.cpp ignores include_usage


@pytest.mark.parametrize(
    "deviations",
    [
        Deviations(bytes_null=True),
        Deviations(null_logprobs_on_edges=True),
        Deviations(ignore_include_usage=True),
    ],
    ids=["bytes_null", "null_logprobs_on_edges", "ignore_include_usage"],
)
def test_each_llama_deviation_alone(
    make_server: ServerFactory, make_model: ModelFactory, deviations: Deviations
) -> None:
    server = make_server([SEED_STREAM], deviations=deviations)
    model = make_model(server, logprobs=True)
    message = model.invoke("hi")
    chunks = list(model.stream("hi"))
    agg = _agg(chunks)
    assert agg.content == message.content == SEED_TEXT
    assert agg.response_metadata.logprobs == message.response_metadata.logprobs
    # The deviation is there, and only it (else this test would check an OpenAI server).
    assert all(t.bytes is None for t in _tokens(message)) is deviations.bytes_null
    assert all(t.bytes is None for t in _tokens(agg)) is deviations.bytes_null
    assert (chunks[0].response_metadata.logprobs is None) is deviations.null_logprobs_on_edges
    assert (agg.usage_metadata is None) is deviations.ignore_include_usage
    assert message.usage_metadata is not None  # a non-streamed answer keeps its usage
    if not deviations.ignore_include_usage:
        assert agg.usage_metadata == message.usage_metadata


# -- no logprobs at all ----------------------------------------------------------------------


def test_no_logprobs_deviation(make_server: ServerFactory, make_model: ModelFactory) -> None:
    server = make_server(deviations=Deviations(no_logprobs=True))
    model = make_model(server, logprobs=True, top_logprobs=3)
    message = model.invoke("hi")
    assert message.response_metadata.logprobs is None
    assert message.content.startswith("I'm just")  # the top_logprobs seed, without them
    chunks = list(model.stream("hi"))
    assert all(c.response_metadata.logprobs is None for c in chunks)
    agg = _agg(chunks)
    assert agg.response_metadata.logprobs is None
    assert agg.content == message.content
    assert server.requests[0]["logprobs"] is True  # asked for, not given


async def test_no_logprobs_deviation_async(
    make_server: ServerFactory, make_model: ModelFactory
) -> None:
    server = make_server(deviations=Deviations(no_logprobs=True))
    model = make_model(server, logprobs=True)
    assert (await model.ainvoke("hi")).response_metadata.logprobs is None
    chunks = [c async for c in model.astream("hi")]
    assert _agg(chunks).response_metadata.logprobs is None
    assert _agg(chunks).content == SEED_TEXT


# -- vLLM-style floors: -9999.0, -inf, NaN ---------------------------------------------------


def _floor_completion() -> Completion:
    def entry(token: str, logprob: float, tops: list[tuple[str, float]]) -> dict[str, Any]:
        return {
            "token": token,
            "logprob": logprob,
            "bytes": list(token.encode()),
            "top_logprobs": [
                {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in tops
            ],
        }

    entries = [
        entry("A", -0.5, [("A", -0.5), ("B", -9999.0)]),
        entry(" floor", -9999.0, [(" x", -1.0), (" floor", -9999.0)]),
        entry(" inf", -math.inf, [(" y", -0.1), (" inf", -math.inf)]),
        entry(" nan", math.nan, [(" nan", math.nan)]),
        entry(".", 0.0, [(".", 0.0)]),
    ]
    return {
        "id": "chatcmpl-vllm",
        "object": "chat.completion",
        "created": 1,
        "model": "vllm-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A floor inf nan."},
                "logprobs": {"content": entries},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
    }


FLOOR_LOGPROBS = [-0.5, -9999.0, -math.inf, math.nan, 0.0]


def _check_floors(message: AIMessage) -> None:
    tokens = _tokens(message)
    assert [t.token for t in tokens] == ["A", " floor", " inf", " nan", "."]
    for token, want in zip(tokens, FLOOR_LOGPROBS, strict=True):
        assert type(token.logprob) is float
        assert _same_floats(token.logprob, want)
    assert tokens[1].top_logprobs[1].logprob == -9999.0
    assert tokens[2].top_logprobs[1].logprob == -math.inf
    assert math.isnan(tokens[3].top_logprobs[0].logprob)
    assert tokens[2].model_dump()["logprob"] == -math.inf


@pytest.fixture
def floors(make_server: ServerFactory) -> ReplayServer:
    return make_server([_floor_completion()])


def test_server_sends_nonstandard_json_tokens(floors: ReplayServer) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": True}
    raw = httpx2.post(floors.base_url + "/chat/completions", json=body, timeout=5).content
    assert b"-Infinity" in raw and b"NaN" in raw and b"-9999.0" in raw


def test_floors_invoke_and_stream(floors: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(floors, logprobs=True, top_logprobs=2)
    message = model.invoke("x")
    _check_floors(message)
    agg = _agg(list(model.stream("x")))
    _check_floors(agg)
    assert agg.content == message.content == "A floor inf nan."
    assert agg.response_metadata.finish_reason == "length"


async def test_floors_async(floors: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(floors, logprobs=True, top_logprobs=2)
    _check_floors(await model.ainvoke("x"))
    _check_floors(_agg([c async for c in model.astream("x")]))


def test_floors_survive_a_json_dump(floors: ReplayServer, make_model: ModelFactory) -> None:
    message = make_model(floors, logprobs=True, top_logprobs=2).invoke("x")
    text = message.model_dump_json()
    assert "-Infinity" in text and "NaN" in text
    _check_floors(AIMessage.model_validate_json(text))
    _check_floors(AIMessage.model_validate(json.loads(text)))


# -- null and odd fields ----------------------------------------------------------------------


def _nulls_completion() -> Completion:
    return {
        "id": "chatcmpl-nulls",
        "object": "chat.completion",
        "created": 1,
        "model": "odd",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ab"},
                "logprobs": {
                    "content": [
                        {"token": None, "logprob": -1.0, "bytes": None, "top_logprobs": []},
                        {"token": "b", "logprob": None, "bytes": None, "top_logprobs": []},
                        {"token": "c", "logprob": "-2.5", "bytes": [1, 2, 300]},
                    ]
                },
                "finish_reason": None,
            }
        ],
        "usage": {"prompt_tokens": None, "completion_tokens": 2},
    }


def test_null_fields_through_the_server(
    make_server: ServerFactory, make_model: ModelFactory
) -> None:
    server = make_server([_nulls_completion()])
    model = make_model(server, logprobs=True)
    for message in (model.invoke("x"), _agg(list(model.stream("x")))):
        tokens = _tokens(message)
        assert tokens[0].token == ""  # "token": null
        assert tokens[0].logprob == -1.0
        assert math.isnan(tokens[1].logprob)  # "logprob": null
        assert tokens[2].logprob == -2.5  # a numeric string
        assert tokens[2].bytes is None  # not a list of bytes: dropped, token kept
        assert tokens[2].top_logprobs == []  # absent
        assert message.response_metadata.finish_reason is None
    assert model.invoke("x").usage_metadata == UsageMetadata(
        input_tokens=0, output_tokens=2, total_tokens=2
    )


Handler = Callable[[httpx2.Request], httpx2.Response]


@pytest.fixture
def transport_model() -> Iterator[Callable[[Handler], ChatOpenAI]]:
    """A model whose SDK client talks to an in-process handler (for JSON no server sends)."""
    clients: list[openai.OpenAI] = []

    def factory(handler: Handler) -> ChatOpenAI:
        client = openai.OpenAI(
            base_url="http://odd.test/v1",
            api_key="k",
            max_retries=0,
            http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        )
        clients.append(client)
        return ChatOpenAI(model="odd", logprobs=True, client=client)

    yield factory
    for client in clients:
        client.close()


def _sse(*events: object) -> bytes:
    return b"".join(
        b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n"
        for e in events
    )


def _respond(json_body: bytes, stream_body: bytes) -> Handler:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if json.loads(request.content).get("stream"):
            return httpx2.Response(
                200, headers={"content-type": "text/event-stream"}, content=stream_body
            )
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=json_body)

    return handler


def test_decoder_accepts_infinity_and_nan_tokens(
    transport_model: Callable[[Handler], ChatOpenAI],
) -> None:
    entry = (
        b'{"token":"a","logprob":-Infinity,"bytes":[97],'
        b'"top_logprobs":[{"token":"b","logprob":NaN,"bytes":[98]},'
        b'{"token":"c","logprob":Infinity,"bytes":null}]}'
    )
    json_body = (
        b'{"id":"i","choices":[{"index":0,"message":{"content":"a"},"logprobs":{"content":['
        + entry
        + b"]}}]}"
    )
    chunk = (
        b'{"id":"i","choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":['
        + entry
        + b"]}}]}"
    )
    model = transport_model(_respond(json_body, _sse(chunk, b"[DONE]")))
    for message in (model.invoke("x"), _agg(list(model.stream("x")))):
        (token,) = _tokens(message)
        assert token.logprob == -math.inf and type(token.logprob) is float
        assert math.isnan(token.top_logprobs[0].logprob)
        assert token.top_logprobs[1].logprob == math.inf


def test_null_and_malformed_fields_never_crash(
    transport_model: Callable[[Handler], ChatOpenAI],
) -> None:
    json_body = json.dumps(
        {
            "id": None,
            "model": 5,
            "choices": [
                {
                    "index": 0,
                    "message": {"content": None},
                    "logprobs": {
                        "content": [
                            {"token": "a", "logprob": -1.0, "bytes": None, "top_logprobs": None},
                            7,
                            None,
                            {"token": None, "logprob": None, "bytes": "zz", "top_logprobs": [1]},
                            {},
                        ],
                        "refusal": None,
                    },
                    "finish_reason": 3,
                }
            ],
            "usage": {"prompt_tokens": "x", "completion_tokens": None, "total_tokens": None},
        }
    ).encode()
    stream = _sse(
        {"id": "s", "choices": [{"index": 0, "delta": {"role": "assistant"}, "logprobs": None}]},
        {"id": "s", "choices": None},
        {"id": "s", "choices": [{"index": 0, "delta": None, "logprobs": "weird"}]},
        {
            "id": "s",
            "choices": [{"index": 0, "delta": {"content": None}, "logprobs": {"content": None}}],
        },
        {
            "id": "s",
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": "a"},
                    "logprobs": {
                        "content": [
                            {"token": "a", "logprob": None, "bytes": None, "top_logprobs": None},
                            "junk",
                        ]
                    },
                }
            ],
        },
        {"id": "s", "choices": [{"index": 1, "delta": {"content": "OTHER CHOICE"}}]},
        {"id": "s", "choices": [{"index": 0, "delta": {"content": 5}, "finish_reason": 9}]},
        [1, 2],
        "just a string",
        {"id": "s", "choices": [], "usage": None},
        {"id": "s", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
        b"[DONE]",
    )
    model = transport_model(_respond(json_body, stream))
    message = model.invoke("x")
    assert message.content == ""
    assert message.response_metadata.id is None
    assert message.response_metadata.model_name is None
    assert message.response_metadata.finish_reason is None
    tokens = _tokens(message)
    assert [t.token for t in tokens] == ["a", "", ""]
    assert tokens[0].top_logprobs == []
    assert math.isnan(tokens[1].logprob) and tokens[1].bytes is None
    assert tokens[1].top_logprobs == []
    assert message.usage_metadata == UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0)

    rec = RecordingHandler()
    chunks = list(model.stream("x", callbacks=[rec]))
    agg = _agg(chunks)
    assert agg.content == "a"  # choice 1 and non-string content ignored
    (token,) = _tokens(agg)
    assert token.token == "a" and math.isnan(token.logprob) and token.top_logprobs == []
    assert agg.usage_metadata == UsageMetadata(input_tokens=1, output_tokens=1, total_tokens=2)
    assert rec.message().content == "a"
    rec.assert_exactly_one_end_per_run()


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"'], ids=["text", "list", "str"])
def test_invoke_body_that_is_not_an_object(
    transport_model: Callable[[Handler], ChatOpenAI], body: bytes
) -> None:
    model = transport_model(_respond(body, b""))
    rec = RecordingHandler()
    with pytest.raises(openai.APIResponseValidationError) as caught:
        model.invoke("x", callbacks=[rec])
    assert rec.error() is caught.value


def test_empty_stream_body(transport_model: Callable[[Handler], ChatOpenAI]) -> None:
    # a server that closes at once: an empty, complete answer
    model = transport_model(_respond(b"{}", b""))
    rec = RecordingHandler()
    assert list(model.stream("x", callbacks=[rec])) == []
    message = rec.message()
    assert message.content == "" and message.response_metadata.incomplete is False


@pytest.mark.parametrize(
    "tail", [b"", b"\n", b"\n\n"], ids=["no-line-end", "line-end", "blank-line"]
)
def test_stream_that_ends_without_done(
    transport_model: Callable[[Handler], ChatOpenAI], tail: bytes
) -> None:
    # Some servers close the body after the last event, without [DONE] (and sometimes
    # without the last blank line): a complete answer, not an error.
    first = {"id": "s", "choices": [{"index": 0, "delta": {"content": "a"}}]}
    last = {
        "id": "s",
        "choices": [{"index": 0, "delta": {"content": "b"}, "finish_reason": "stop"}],
    }
    body = _sse(first) + b"data: " + json.dumps(last).encode() + tail
    model = transport_model(_respond(b"{}", body))
    rec = RecordingHandler()
    chunks = list(model.stream("x", callbacks=[rec]))
    assert [c.content for c in chunks] == ["a", "b"]
    message = rec.message()
    assert message.content == "ab"
    assert message.response_metadata.finish_reason == "stop"
    assert message.response_metadata.incomplete is False
    rec.assert_exactly_one_end_per_run()


async def test_async_stream_that_ends_without_done() -> None:
    first = {"id": "s", "choices": [{"index": 0, "delta": {"content": "a"}}]}
    body = _sse(first) + b'data: {"id":"s","choices":[{"index":0,"delta":{"content":"b"}}]}'
    client = openai.AsyncOpenAI(
        base_url="http://odd.test/v1",
        api_key="k",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(_respond(b"{}", body))),
    )
    rec = RecordingHandler()
    try:
        model = ChatOpenAI(model="odd", async_client=client)
        chunks = [c async for c in model.astream("x", callbacks=[rec])]
    finally:
        await client.close()
    assert [c.content for c in chunks] == ["a", "b"]
    assert rec.message().content == "ab"
    assert rec.message().response_metadata.incomplete is False
    rec.assert_exactly_one_end_per_run()
