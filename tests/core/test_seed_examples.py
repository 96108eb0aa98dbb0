"""The seed's three examples (LangChain.js "how to get log probabilities"), value for value.

Every test talks to the real replay server over loopback HTTP, synchronously and
asynchronously.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from logprobscope import (
    AIMessage,
    AIMessageChunk,
    ChatOpenAI,
    ChoiceLogprobs,
    HumanMessage,
    TokenLogprob,
    TopLogprob,
    UsageMetadata,
)
from logprobscope.testing import SEED_STREAM, SEED_TOP_LOGPROBS, ReplayServer
from tests.support.factories import ModelFactory, ServerFactory


def _tl(token: str, logprob: float, raw: list[int] | None = None) -> TokenLogprob:
    return TokenLogprob(
        token=token,
        logprob=logprob,
        bytes=list(token.encode()) if raw is None else raw,
        top_logprobs=[],
    )


# What the guide prints, written out by hand (not derived from the server's data).
INVOKE_FIRST_FIVE = [
    TokenLogprob(
        token="Thank", logprob=-0.70174205, bytes=[84, 104, 97, 110, 107], top_logprobs=[]
    ),
    TokenLogprob(token=" you", logprob=0, bytes=[32, 121, 111, 117], top_logprobs=[]),
    TokenLogprob(token=" for", logprob=-0.000004723352, bytes=[32, 102, 111, 114], top_logprobs=[]),
    TokenLogprob(
        token=" asking",
        logprob=-0.0000013856493,
        bytes=[32, 97, 115, 107, 105, 110, 103],
        top_logprobs=[],
    ),
    TokenLogprob(token="!", logprob=-0.00030102333, bytes=[33], top_logprobs=[]),
]

# The guide's stream: shown values for "Thank", " you", " for"; the guide's output is cut
# off after that, so the next two come from the seed recording.
_STREAM_ENTRIES: list[Any] = SEED_STREAM["choices"][0]["logprobs"]["content"]  # type: ignore[index]
STREAM_TOKENS = [
    TokenLogprob(
        token="Thank", logprob=-0.23375113, bytes=[84, 104, 97, 110, 107], top_logprobs=[]
    ),
    TokenLogprob(token=" you", logprob=0, bytes=[32, 121, 111, 117], top_logprobs=[]),
    TokenLogprob(token=" for", logprob=-0.000004723352, bytes=[32, 102, 111, 114], top_logprobs=[]),
    TokenLogprob.model_validate(_STREAM_ENTRIES[3]),
    TokenLogprob.model_validate(_STREAM_ENTRIES[4]),
]
# The guide prints the aggregate after each of the first six chunks.
STREAM_AGGREGATES: list[list[TokenLogprob]] = [STREAM_TOKENS[:i] for i in range(6)]

TOP_FIRST = TokenLogprob(
    token="I'm",
    logprob=-2.2864406,
    bytes=[73, 39, 109],
    top_logprobs=[
        TopLogprob(token="Thank", logprob=-0.28644064, bytes=[84, 104, 97, 110, 107]),
        TopLogprob(token="Hello", logprob=-2.0364406, bytes=[72, 101, 108, 108, 111]),
        TopLogprob(token="I'm", logprob=-2.2864406, bytes=[73, 39, 109]),
    ],
)
TOP_SECOND_FIRST_ALT = TopLogprob(
    token=" just", logprob=-0.14442946, bytes=[32, 106, 117, 115, 116]
)


def _content(message: AIMessage) -> list[TokenLogprob]:
    logprobs = message.response_metadata.logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    return list(logprobs.content)


# -- example 1: invoke ---------------------------------------------------------------------


def _check_invoke(message: AIMessage) -> None:
    assert type(message) is AIMessage
    first = _content(message)[:5]
    assert first == INVOKE_FIRST_FIVE
    for got, want in zip(first, INVOKE_FIRST_FIVE, strict=True):
        assert got.token == want.token
        assert got.logprob == want.logprob
        assert got.bytes == want.bytes
        assert got.top_logprobs == []
    assert message.content.startswith("Thank you for asking!")
    assert message.response_metadata.finish_reason == "stop"
    assert message.response_metadata.model_name == "gpt-4o-2024-08-06"
    assert message.response_metadata.id == "chatcmpl-seed-invoke"
    assert message.response_metadata.incomplete is False
    assert message.usage_metadata == UsageMetadata(
        input_tokens=13, output_tokens=37, total_tokens=50
    )


def test_invoke_first_five_tokens(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(seed_server, logprobs=True)
    _check_invoke(model.invoke("how are you today?"))


async def test_ainvoke_first_five_tokens(
    seed_server: ReplayServer, make_model: ModelFactory
) -> None:
    model = make_model(seed_server, logprobs=True)
    _check_invoke(await model.ainvoke("how are you today?"))


def test_invoke_with_message_list(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(seed_server, logprobs=True)
    message = model.invoke(
        [{"role": "system", "content": "be brief"}, HumanMessage(content="how are you today?")]
    )
    assert _content(message)[:5] == INVOKE_FIRST_FIVE


def test_invoke_sends_logprobs_request(server: ReplayServer, make_model: ModelFactory) -> None:
    make_model(server, logprobs=True).invoke("how are you today?")
    (body,) = server.requests
    assert body["model"] == "gpt-4o"
    assert body["logprobs"] is True
    assert "top_logprobs" not in body
    assert "stream" not in body
    assert body["messages"] == [{"role": "user", "content": "how are you today?"}]


def test_token_logprob_model_dump_is_openai_json(
    seed_server: ReplayServer, make_model: ModelFactory
) -> None:
    message = make_model(seed_server, logprobs=True).invoke("how are you today?")
    entries: list[Any] = message.model_dump()["response_metadata"]["logprobs"]["content"]
    first = _content(message)[0]
    assert first.model_dump() == {
        "token": "Thank",
        "logprob": -0.70174205,
        "bytes": [84, 104, 97, 110, 107],
        "top_logprobs": [],
    }
    assert list(first.model_dump()) == ["token", "logprob", "bytes", "top_logprobs"]
    assert entries[0] == first.model_dump()
    top = make_model(seed_server, logprobs=True, top_logprobs=3).invoke("x")
    dumped = _content(top)[0].model_dump()
    assert dumped == {
        "token": "I'm",
        "logprob": -2.2864406,
        "bytes": [73, 39, 109],
        "top_logprobs": [
            {"token": "Thank", "logprob": -0.28644064, "bytes": [84, 104, 97, 110, 107]},
            {"token": "Hello", "logprob": -2.0364406, "bytes": [72, 101, 108, 108, 111]},
            {"token": "I'm", "logprob": -2.2864406, "bytes": [73, 39, 109]},
        ],
    }
    # the whole list dumps as the server sent it
    wire: list[Any] = SEED_TOP_LOGPROBS["choices"][0]["logprobs"]["content"]  # type: ignore[index]
    assert top.model_dump()["response_metadata"]["logprobs"]["content"] == wire


# -- example 2: stream with agg = agg + chunk ----------------------------------------------


def _aggregate_printouts(chunks: list[AIMessageChunk]) -> list[list[TokenLogprob]]:
    printed: list[list[TokenLogprob]] = []
    agg: AIMessageChunk | None = None
    for chunk in chunks:
        assert type(chunk) is AIMessageChunk
        agg = chunk if agg is None else agg + chunk
        logprobs = agg.response_metadata.logprobs
        assert logprobs is not None and logprobs.content is not None
        printed.append(list(logprobs.content))
    return printed


def _check_stream(chunks: list[AIMessageChunk]) -> None:
    printed = _aggregate_printouts(chunks)
    assert printed[:6] == STREAM_AGGREGATES
    assert printed[0] == []  # the role-only chunk
    assert chunks[0].content == ""
    for i in range(1, 6):
        assert len(printed[i]) == i
        assert printed[i][-1].token == chunks[i].content
    agg = chunks[0]
    for chunk in chunks[1:]:
        agg = agg + chunk
    assert (
        agg.content
        == "Thank you for asking! I'm here and ready to help. How can I assist you today?"
    )
    assert agg.response_metadata.finish_reason == "stop"
    assert agg.usage_metadata == UsageMetadata(input_tokens=13, output_tokens=19, total_tokens=32)
    assert agg.response_metadata.id == "chatcmpl-seed-stream"


def test_stream_aggregates(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(seed_server, logprobs=True)
    _check_stream(list(model.stream("How are you today?")))


async def test_astream_aggregates(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(seed_server, logprobs=True)
    _check_stream([chunk async for chunk in model.astream("How are you today?")])


def test_stream_like_the_guide_breaks_after_six(
    seed_server: ReplayServer, make_model: ModelFactory
) -> None:
    # The guide's own loop: stop after six chunks.
    model = make_model(seed_server, logprobs=True)
    printed: list[list[TokenLogprob]] = []
    agg: AIMessageChunk | None = None
    stream = model.stream("How are you today?")
    for count, chunk in enumerate(stream):
        if count > 5:
            break
        agg = chunk if agg is None else agg + chunk
        assert agg.response_metadata.logprobs is not None
        printed.append(list(agg.response_metadata.logprobs.content or []))
    stream.close()
    assert printed == STREAM_AGGREGATES


def test_stream_chunk_shapes(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    chunks = list(make_model(seed_server, logprobs=True).stream("How are you today?"))
    role, *content, finish, usage = chunks
    assert role.response_metadata.logprobs == ChoiceLogprobs(content=[], refusal=None)
    assert role.usage_metadata is None
    for chunk in content:
        assert chunk.response_metadata.logprobs is not None
        assert chunk.response_metadata.logprobs.content is not None
        assert len(chunk.response_metadata.logprobs.content) == 1
        assert chunk.response_metadata.finish_reason is None
    assert finish.response_metadata.finish_reason == "stop"
    assert finish.response_metadata.logprobs is None
    assert usage.content == ""
    assert usage.usage_metadata == UsageMetadata(input_tokens=13, output_tokens=19, total_tokens=32)


def test_stream_request_asks_for_usage(server: ReplayServer, make_model: ModelFactory) -> None:
    list(make_model(server, logprobs=True).stream("How are you today?"))
    (body,) = server.requests
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["logprobs"] is True


def test_stream_usage_off(server: ReplayServer, make_model: ModelFactory) -> None:
    chunks = list(make_model(server, logprobs=True, stream_usage=False).stream("x"))
    assert "stream_options" not in server.requests[0]
    assert all(c.usage_metadata is None for c in chunks)


# -- example 3: top_logprobs=3 --------------------------------------------------------------


def _check_top(message: AIMessage) -> None:
    content = _content(message)
    assert content[0] == TOP_FIRST
    assert content[0].top_logprobs == TOP_FIRST.top_logprobs
    assert [t.token for t in content[0].top_logprobs] == ["Thank", "Hello", "I'm"]
    assert content[1].token == " just"
    assert content[1].logprob == -0.14442946
    assert content[1].bytes == [32, 106, 117, 115, 116]
    assert content[1].top_logprobs[0] == TOP_SECOND_FIRST_ALT
    assert all(len(t.top_logprobs) == 3 for t in content)


def test_top_logprobs_invoke(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(seed_server, logprobs=True, top_logprobs=3)
    _check_top(model.invoke("how are you today?"))


async def test_top_logprobs_ainvoke(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(seed_server, logprobs=True, top_logprobs=3)
    _check_top(await model.ainvoke("how are you today?"))


def test_top_logprobs_per_call(server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(server, logprobs=True)
    _check_top(model.invoke("how are you today?", top_logprobs=3))
    assert server.requests[0]["top_logprobs"] == 3


def test_top_logprobs_stream(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(seed_server, logprobs=True, top_logprobs=3)
    agg: AIMessageChunk | None = None
    for chunk in model.stream("how are you today?"):
        agg = chunk if agg is None else agg + chunk
    assert agg is not None
    _check_top(agg)


async def test_top_logprobs_astream(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(seed_server, logprobs=True, top_logprobs=3)
    agg: AIMessageChunk | None = None
    async for chunk in model.astream("how are you today?"):
        agg = chunk if agg is None else agg + chunk
    assert agg is not None
    _check_top(agg)


# -- the same through batch / abatch ----------------------------------------------------------


def test_batch(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(seed_server, logprobs=True)
    results = model.batch(["how are you today?"] * 3)
    assert len(results) == 3
    for message in results:
        _check_invoke(message)


async def test_abatch(seed_server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(seed_server, logprobs=True)
    results = await model.abatch(["how are you today?"] * 3, max_concurrency=2)
    assert len(results) == 3
    for message in results:
        _check_invoke(message)


def test_without_logprobs(server: ReplayServer, make_model: ModelFactory) -> None:
    model = make_model(server)
    message = model.invoke("how are you today?")
    assert message.response_metadata.logprobs is None
    assert "logprobs" not in server.requests[0]
    assert message.content.startswith("Thank you")
    chunks = list(model.stream("x"))
    assert all(c.response_metadata.logprobs is None for c in chunks)


# -- a stream's aggregate equals the non-streamed message ------------------------------------


@pytest.mark.parametrize("top", [None, 3])
def test_stream_aggregate_equals_invoke(
    make_server: ServerFactory, make_model: ModelFactory, top: int | None
) -> None:
    server = make_server([SEED_TOP_LOGPROBS])
    model = make_model(server, logprobs=True, top_logprobs=top)
    message = model.invoke("how are you today?")
    agg: AIMessageChunk | None = None
    for chunk in model.stream("how are you today?"):
        agg = chunk if agg is None else agg + chunk
    assert agg is not None
    _assert_same_answer(agg, message)
    assert agg.to_message() == message


async def test_astream_aggregate_equals_ainvoke(
    make_server: ServerFactory, make_model: ModelFactory
) -> None:
    server = make_server([SEED_STREAM])
    model = make_model(server, logprobs=True)
    message = await model.ainvoke("how are you today?")
    agg: AIMessageChunk | None = None
    async for chunk in model.astream("how are you today?"):
        agg = chunk if agg is None else agg + chunk
    assert agg is not None
    _assert_same_answer(agg, message)


def _assert_same_answer(agg: AIMessage, message: AIMessage) -> None:
    assert agg.content == message.content
    assert agg.response_metadata.logprobs == message.response_metadata.logprobs
    assert agg.response_metadata.finish_reason == message.response_metadata.finish_reason
    assert agg.usage_metadata == message.usage_metadata
    assert agg.response_metadata.model_name == message.response_metadata.model_name
    assert agg.response_metadata.id == message.response_metadata.id


def test_default_model_kwargs_unaffected(seed_server: ReplayServer) -> None:
    # ChatOpenAI made from base_url/api_key (its own clients) also works.
    model = ChatOpenAI(
        model="gpt-4o", logprobs=True, base_url=seed_server.base_url, api_key="k", max_retries=0
    )
    assert _content(model.invoke("how are you today?"))[:5] == INVOKE_FIRST_FIVE


# -- ready SDK clients --------------------------------------------------------------------------


async def test_given_async_client_serves_sync_calls_with_its_settings(
    server: ReplayServer,
) -> None:
    client = openai.AsyncOpenAI(
        base_url=server.base_url,
        api_key="user-key",
        organization="org-x",
        project="proj-y",
        default_headers={"X-Team": "a"},
        max_retries=0,
    )
    model = ChatOpenAI(model="gpt-4o", logprobs=True, async_client=client)
    try:
        assert _content(await model.ainvoke("how are you today?"))[:5] == INVOKE_FIRST_FIVE
        assert _content(model.invoke("how are you today?"))[:5] == INVOKE_FIRST_FIVE
    finally:
        model.close()  # the sync twin the model made
        await client.close()
    for headers in server.request_headers:  # both the given client and the sync twin
        assert headers["authorization"] == "Bearer user-key"
        assert headers["openai-organization"] == "org-x"
        assert headers["openai-project"] == "proj-y"
        assert headers["x-team"] == "a"


async def test_given_sync_client_serves_async_calls_with_its_settings(
    server: ReplayServer,
) -> None:
    with openai.OpenAI(
        base_url=server.base_url, api_key="user-key", default_headers={"X-Team": "b"}
    ) as client:
        model = ChatOpenAI(model="gpt-4o", logprobs=True, client=client)
        try:
            assert _content(await model.ainvoke("how are you today?"))[:5] == INVOKE_FIRST_FIVE
        finally:
            await model.aclose()
    (headers,) = server.request_headers
    assert headers["authorization"] == "Bearer user-key"
    assert headers["x-team"] == "b"
