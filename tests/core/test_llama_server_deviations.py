"""llama.cpp's own `llama-server` as the replay server's `Deviations.LLAMA_SERVER` reproduces it.

One test per deviation: the replay server shows it on the wire (and only under its switch), and
our model reads the answer as it reads OpenAI's. `tests/e2e/test_llama_wire.py` pins each
deviation to the real `llama-server`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from logprobscope import AIMessage, AIMessageChunk, TokenLogprob
from logprobscope.testing import (
    SEED_INVOKE,
    SEED_STREAM,
    SEED_TOP_LOGPROBS,
    Completion,
    Deviations,
    ReplayServer,
)
from tests.support.factories import ModelFactory, ServerFactory

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def _post(server: ReplayServer, **body: Any) -> Any:
    """The decoded JSON of a non-streamed answer, or the list of a stream's chunks."""
    request = {"model": "gpt-4o", "messages": MESSAGES, **body}
    response = httpx2.post(f"{server.base_url}/chat/completions", json=request, timeout=10)
    assert response.status_code == 200
    if not body.get("stream"):
        return response.json()
    lines = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def _agg(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    agg = chunks[0]
    for chunk in chunks[1:]:
        agg = agg + chunk
    return agg


def _tokens(message: AIMessage) -> list[TokenLogprob]:
    logprobs = message.response_metadata.logprobs
    assert logprobs is not None and logprobs.content is not None
    return list(logprobs.content)


def _entries(answer: Any) -> list[Any]:
    entries: list[Any] = answer["choices"][0]["logprobs"]["content"]
    return entries


def test_preset() -> None:
    assert Deviations.LLAMA_SERVER == Deviations(
        omit_logprobs_key=True,
        token_ids=True,
        timings=True,
        default_top_logprobs=20,
        no_logprobs_for_top_zero=True,
        usage_per_choice=True,
        empty_responses_logprobs=True,  # its /v1/responses: "logprobs": [] however asked
    )
    # Closer to OpenAI than llama-cpp-python: real bytes, the usage chunk when asked.
    assert not Deviations.LLAMA_SERVER.bytes_null
    assert not Deviations.LLAMA_SERVER.ignore_include_usage
    with pytest.raises(ValueError, match="default_top_logprobs"):
        Deviations(default_top_logprobs=-1)


# -- omit_logprobs_key -------------------------------------------------------------------------


@pytest.mark.parametrize("omit", [False, True], ids=["openai", "omit_logprobs_key"])
def test_omit_logprobs_key_on_the_wire(make_server: ServerFactory, omit: bool) -> None:
    server = make_server([SEED_STREAM], deviations=Deviations(omit_logprobs_key=omit))
    role, *content, finish = _post(server, logprobs=True, top_logprobs=2, stream=True)
    plain = _post(server, logprobs=False)["choices"][0]
    answer = _post(server, logprobs=True)["choices"][0]
    if omit:
        assert role["choices"][0]["delta"] == {"role": "assistant", "content": None}
        assert "logprobs" not in role["choices"][0]
        assert "logprobs" not in finish["choices"][0]
        assert "logprobs" not in plain
        assert answer["logprobs"].keys() == {"content"}  # no "refusal"
    else:
        assert role["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
        assert role["choices"][0]["logprobs"] == {"content": [], "refusal": None}
        assert finish["choices"][0]["logprobs"] is None
        assert plain["logprobs"] is None
        assert answer["logprobs"].keys() == {"content", "refusal"}
    # The tokens are there either way.
    assert len(content) == len(SEED_STREAM["choices"][0]["logprobs"]["content"])  # type: ignore[index]
    assert all(c["choices"][0]["logprobs"]["content"] for c in content)


async def test_omit_logprobs_key_through_the_model(
    make_server: ServerFactory, make_model: ModelFactory
) -> None:
    plain = make_server([SEED_STREAM])
    server = make_server([SEED_STREAM], deviations=Deviations(omit_logprobs_key=True))
    model = make_model(server, logprobs=True, top_logprobs=2)
    expected = make_model(plain, logprobs=True, top_logprobs=2).invoke("hi")
    chunks = list(model.stream("hi"))
    assert chunks[0].content == "" and chunks[0].response_metadata.logprobs is None
    for message in (model.invoke("hi"), _agg(chunks), _agg([c async for c in model.astream("hi")])):
        assert message.content == expected.content
        assert _tokens(message) == _tokens(expected)
    assert make_model(server).invoke("hi").response_metadata.logprobs is None


# -- token_ids ---------------------------------------------------------------------------------


def test_token_ids_on_the_wire(make_server: ServerFactory) -> None:
    server = make_server([SEED_TOP_LOGPROBS], deviations=Deviations(token_ids=True))
    entries = _entries(_post(server, logprobs=True, top_logprobs=3))
    streamed = [
        entry
        for chunk in _post(server, logprobs=True, top_logprobs=3, stream=True)
        for entry in (chunk["choices"][0].get("logprobs") or {}).get("content") or ()
    ]
    assert streamed == entries  # the same ids in both modes
    ids: dict[str, int] = {}
    for entry in entries:
        assert next(iter(entry)) == "id"  # first, as llama-server sends it
        for item in (entry, *entry["top_logprobs"]):
            assert isinstance(item["id"], int)
            # One token text, one id, wherever it appears.
            assert ids.setdefault(item["token"], item["id"]) == item["id"]
    assert len(set(ids.values())) == len(ids)
    assert entries[0]["top_logprobs"][0]["id"] == ids[entries[0]["top_logprobs"][0]["token"]]
    plain = make_server([SEED_TOP_LOGPROBS])
    assert all("id" not in entry for entry in _entries(_post(plain, logprobs=True, top_logprobs=3)))


def test_recorded_token_ids_are_kept(make_server: ServerFactory) -> None:
    recorded: Completion = json.loads(json.dumps(SEED_INVOKE))
    recorded["choices"][0]["logprobs"]["content"][0]["id"] = 4242  # type: ignore[index]
    server = make_server([recorded], deviations=Deviations(token_ids=True))
    assert _entries(_post(server, logprobs=True))[0]["id"] == 4242


def test_token_ids_through_the_model(make_server: ServerFactory, make_model: ModelFactory) -> None:
    plain = make_server([SEED_TOP_LOGPROBS])
    server = make_server([SEED_TOP_LOGPROBS], deviations=Deviations(token_ids=True))
    expected = _tokens(make_model(plain, logprobs=True, top_logprobs=3).invoke("hi"))
    model = make_model(server, logprobs=True, top_logprobs=3)
    # The extra key is ignored: the same typed tokens as from OpenAI.
    assert _tokens(model.invoke("hi")) == expected
    assert _tokens(_agg(list(model.stream("hi")))) == expected


# -- timings -----------------------------------------------------------------------------------


def test_timings_on_the_wire(make_server: ServerFactory) -> None:
    server = make_server([SEED_STREAM], deviations=Deviations(timings=True))
    answer = _post(server, logprobs=True)
    timings = answer["timings"]
    assert timings["prompt_n"] == answer["usage"]["prompt_tokens"] == 13
    assert timings["predicted_n"] == answer["usage"]["completion_tokens"] == 19
    assert timings["predicted_ms"] == 19.0 and timings["predicted_per_second"] == 1000.0
    # A stream: on the finish chunk, or on the usage chunk when there is one.
    chunks = _post(server, logprobs=True, stream=True)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert [i for i, c in enumerate(chunks) if "timings" in c] == [len(chunks) - 1]
    chunks = _post(server, logprobs=True, stream=True, stream_options={"include_usage": True})
    assert chunks[-1]["choices"] == [] and chunks[-1]["timings"] == timings
    assert [i for i, c in enumerate(chunks) if "timings" in c] == [len(chunks) - 1]
    # n=2: still only on the last chunk.
    chunks = _post(server, logprobs=True, stream=True, n=2)
    assert [i for i, c in enumerate(chunks) if "timings" in c] == [len(chunks) - 1]
    plain = make_server([SEED_STREAM])
    assert "timings" not in _post(plain, logprobs=True)
    assert all("timings" not in c for c in _post(plain, stream=True))


async def test_timings_through_the_model(
    make_server: ServerFactory, make_model: ModelFactory
) -> None:
    plain = make_server([SEED_STREAM])
    server = make_server([SEED_STREAM], deviations=Deviations(timings=True))
    expected = make_model(plain, logprobs=True).invoke("hi")
    model = make_model(server, logprobs=True)
    for message in (model.invoke("hi"), _agg(list(model.stream("hi")))):
        assert message.content == expected.content
        assert _tokens(message) == _tokens(expected)
        assert message.usage_metadata == expected.usage_metadata
    agg = _agg([c async for c in model.astream("hi")])
    assert agg.usage_metadata == expected.usage_metadata


# -- default_top_logprobs ----------------------------------------------------------------------


def test_default_top_logprobs_on_the_wire(make_server: ServerFactory) -> None:
    server = make_server(deviations=Deviations(default_top_logprobs=20))
    # `logprobs` alone: as many alternatives as the answer has, up to 20 (the seeds: 3).
    entries = _entries(_post(server, logprobs=True))
    assert len(entries) == len(SEED_TOP_LOGPROBS["choices"][0]["logprobs"]["content"])  # type: ignore[index]
    assert all(len(entry["top_logprobs"]) == 3 for entry in entries)
    # An explicit value wins; without logprobs there is nothing.
    assert all(
        len(e["top_logprobs"]) == 1 for e in _entries(_post(server, logprobs=True, top_logprobs=1))
    )
    assert _post(server)["choices"][0]["logprobs"] is None
    two = make_server([SEED_TOP_LOGPROBS], deviations=Deviations(default_top_logprobs=2))
    assert all(len(e["top_logprobs"]) == 2 for e in _entries(_post(two, logprobs=True)))
    plain = make_server([SEED_TOP_LOGPROBS])
    assert all(e["top_logprobs"] == [] for e in _entries(_post(plain, logprobs=True)))


def test_default_top_logprobs_through_the_model(
    make_server: ServerFactory, make_model: ModelFactory
) -> None:
    server = make_server([SEED_TOP_LOGPROBS], deviations=Deviations(default_top_logprobs=20))
    model = make_model(server, logprobs=True)
    for message in (model.invoke("hi"), _agg(list(model.stream("hi")))):
        tokens = _tokens(message)
        assert tokens and all(len(t.top_logprobs) == 3 for t in tokens)


# -- no_logprobs_for_top_zero ------------------------------------------------------------------


def test_no_logprobs_for_top_zero_on_the_wire(make_server: ServerFactory) -> None:
    server = make_server([SEED_TOP_LOGPROBS], deviations=Deviations(no_logprobs_for_top_zero=True))
    assert _post(server, logprobs=True, top_logprobs=0)["choices"][0]["logprobs"] is None
    chunks = _post(server, logprobs=True, top_logprobs=0, stream=True)
    assert all(c["choices"][0]["logprobs"] is None for c in chunks)
    assert _entries(_post(server, logprobs=True, top_logprobs=1))  # 1 and more: as OpenAI
    plain = make_server([SEED_TOP_LOGPROBS])
    entries = _entries(_post(plain, logprobs=True, top_logprobs=0))
    assert entries and all(entry["top_logprobs"] == [] for entry in entries)


async def test_no_logprobs_for_top_zero_through_the_model(
    make_server: ServerFactory, make_model: ModelFactory
) -> None:
    server = make_server([SEED_TOP_LOGPROBS], deviations=Deviations(no_logprobs_for_top_zero=True))
    model = make_model(server, logprobs=True, top_logprobs=0)
    expected = SEED_TOP_LOGPROBS["choices"][0]["message"]["content"]  # type: ignore[index]
    for message in (
        model.invoke("hi"),
        _agg(list(model.stream("hi"))),
        await model.ainvoke("hi"),
    ):
        assert message.response_metadata.logprobs is None
        assert message.content == expected


# -- the whole preset --------------------------------------------------------------------------


async def test_llama_server_preset_through_the_model(
    make_server: ServerFactory, make_model: ModelFactory
) -> None:
    plain = make_server([SEED_TOP_LOGPROBS])
    server = make_server([SEED_TOP_LOGPROBS], deviations=Deviations.LLAMA_SERVER)
    expected = make_model(plain, logprobs=True, top_logprobs=3).invoke("hi")
    model = make_model(server, logprobs=True, top_logprobs=3)
    for message in (
        model.invoke("hi"),
        _agg(list(model.stream("hi"))),
        _agg([c async for c in model.astream("hi")]),
    ):
        assert message.content == expected.content
        assert _tokens(message) == _tokens(expected)  # real bytes, ids ignored
        assert message.usage_metadata == expected.usage_metadata  # the usage chunk is honoured
    # Its two other answers to `top_logprobs`: 20 alternatives for none, no logprobs for 0.
    alone = _tokens(make_model(server, logprobs=True).invoke("hi"))
    assert all(len(t.top_logprobs) == 3 for t in alone)
    zero = make_model(server, logprobs=True, top_logprobs=0).invoke("hi")
    assert zero.response_metadata.logprobs is None


# -- usage_per_choice --------------------------------------------------------------------------


def test_usage_per_choice_on_the_wire(make_server: ServerFactory) -> None:
    per_choice = make_server([SEED_STREAM], deviations=Deviations(usage_per_choice=True))
    plain = make_server([SEED_STREAM])
    one = {"prompt_tokens": 13, "completion_tokens": 19, "total_tokens": 32}
    # n=2, not streamed: OpenAI counts both choices' tokens, llama-server one choice's.
    assert _post(per_choice, n=2)["usage"] == one
    assert _post(plain, n=2)["usage"] == {**one, "completion_tokens": 38, "total_tokens": 51}
    # Streamed: every choice's finish chunk is followed by its own usage chunk.
    usage = {"stream": True, "n": 2, "stream_options": {"include_usage": True}}
    kinds = [
        "usage" if not c["choices"] else c["choices"][0]["finish_reason"] or "content"
        for c in _post(per_choice, **usage)
    ]
    assert kinds[-4:] == ["stop", "usage", "stop", "usage"]
    assert [c["usage"] for c in _post(per_choice, **usage) if not c["choices"]] == [one, one]
    assert _post(plain, **usage)[-3:][0]["choices"][0]["finish_reason"] == "stop"
    assert [c for c in _post(plain, **usage) if not c["choices"]][0]["usage"]["total_tokens"] == 51
    # n=1 is as OpenAI's; timings ride on each choice's last chunk.
    assert (
        _post(per_choice, stream=True, stream_options={"include_usage": True})[-1]["usage"] == one
    )
    both = make_server([SEED_STREAM], deviations=Deviations(usage_per_choice=True, timings=True))
    chunks = _post(both, stream=True, n=2)
    assert [bool(c["choices"][0]["finish_reason"]) for c in chunks if "timings" in c] == [
        True,
        True,
    ]
    chunks = _post(both, **usage)
    assert [c["choices"] for c in chunks if "timings" in c] == [[], []]


def test_usage_per_choice_through_the_raw_client(make_server: ServerFactory) -> None:
    server = make_server([SEED_STREAM], deviations=Deviations(usage_per_choice=True))
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, n=2)
        with client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            n=2,
            stream=True,
            stream_options={"include_usage": True},
        ) as stream:
            chunks = list(stream)
    assert [c.index for c in reply.choices] == [0, 1]
    assert reply.usage is not None and reply.usage.completion_tokens == 19
    usages = [c.usage.completion_tokens for c in chunks if c.usage is not None]
    assert usages == [19, 19]
