"""Tests of logprobscope.testing: the loopback OpenAI-compatible replay server.

Every test talks real HTTP to 127.0.0.1, through the official openai SDK or plain
httpx2 / urllib / sockets, and is bounded in time (short timeouts and stalls).
"""

from __future__ import annotations

import copy
import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import logprobscope
from logprobscope.testing import (
    SEED_INVOKE,
    SEED_STREAM,
    SEED_TOP_LOGPROBS,
    Completion,
    Deviations,
    Faults,
    ReplayServer,
    make_completion,
    seed_completions,
)

MESSAGES: list[Any] = [{"role": "user", "content": "how are you today?"}]
MODEL = "gpt-4o"

# The LangChain.js logprobs guide, value for value.
DOC_INVOKE = [
    ("Thank", -0.70174205, [84, 104, 97, 110, 107]),
    (" you", 0.0, [32, 121, 111, 117]),
    (" for", -0.000004723352, [32, 102, 111, 114]),
    (" asking", -0.0000013856493, [32, 97, 115, 107, 105, 110, 103]),
    ("!", -0.00030102333, [33]),
]
DOC_STREAM = [
    ("Thank", -0.23375113, [84, 104, 97, 110, 107]),
    (" you", 0.0, [32, 121, 111, 117]),
    (" for", -0.000004723352, [32, 102, 111, 114]),
]


# ---------------------------------------------------------------------------
# helpers and fixtures
# ---------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as replay:
        yield replay


@pytest.fixture
def client(server: ReplayServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=server.base_url, api_key="test", max_retries=0, timeout=10.0
    ) as sdk:
        yield sdk


def sdk_for(server: ReplayServer, *, max_retries: int = 0, timeout: float = 10.0) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.base_url, api_key="test", max_retries=max_retries, timeout=timeout
    )


def post(server: ReplayServer, body: object) -> httpx2.Response:
    with httpx2.Client(timeout=10.0) as http:
        response: httpx2.Response = http.post(f"{server.base_url}/chat/completions", json=body)
        return response


def sse_payloads(text: str) -> list[str]:
    """Split an SSE body into the data of its events."""
    out = []
    for block in text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            out.append(block[len("data: ") :])
    return out


def raw_stream(server: ReplayServer, **body: object) -> list[Any]:
    """POST a streaming request; return its parsed chunks (the [DONE] as the string)."""
    response = post(server, {"model": MODEL, "messages": MESSAGES, "stream": True, **body})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    data = sse_payloads(response.text)
    assert data[-1] == "[DONE]"
    return [json.loads(item) for item in data[:-1]] + ["[DONE]"]


def stream_chunks(sdk: openai.OpenAI, **kwargs: Any) -> list[ChatCompletionChunk]:
    with sdk.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, **kwargs
    ) as stream:
        return list(stream)


def chunk_logprobs(chunks: list[ChatCompletionChunk], index: int = 0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.index == index and choice.logprobs and choice.logprobs.content:
                out.extend(entry.model_dump() for entry in choice.logprobs.content)
    return out


def chunk_text(chunks: list[ChatCompletionChunk], index: int = 0) -> str:
    return "".join(
        choice.delta.content or ""
        for chunk in chunks
        for choice in chunk.choices
        if choice.index == index
    )


def seed_entries(completion: Completion) -> list[dict[str, Any]]:
    choices: Any = completion["choices"]
    return list(choices[0]["logprobs"]["content"])


# ---------------------------------------------------------------------------
# seeds and make_completion
# ---------------------------------------------------------------------------


def test_seed_values_are_the_guides() -> None:
    invoke = seed_entries(SEED_INVOKE)
    assert [(e["token"], e["logprob"], e["bytes"]) for e in invoke[:5]] == DOC_INVOKE
    assert all(e["top_logprobs"] == [] for e in invoke)
    stream = seed_entries(SEED_STREAM)
    assert [(e["token"], e["logprob"], e["bytes"]) for e in stream[:3]] == DOC_STREAM
    top = seed_entries(SEED_TOP_LOGPROBS)
    assert (top[0]["token"], top[0]["logprob"], top[0]["bytes"]) == (
        "I'm",
        -2.2864406,
        [73, 39, 109],
    )
    assert top[0]["top_logprobs"] == [
        {"token": "Thank", "logprob": -0.28644064, "bytes": [84, 104, 97, 110, 107]},
        {"token": "Hello", "logprob": -2.0364406, "bytes": [72, 101, 108, 108, 111]},
        {"token": "I'm", "logprob": -2.2864406, "bytes": [73, 39, 109]},
    ]
    assert (top[1]["token"], top[1]["logprob"]) == (" just", -0.14442946)
    assert top[1]["top_logprobs"][0] == {
        "token": " just",
        "logprob": -0.14442946,
        "bytes": [32, 106, 117, 115, 116],
    }
    for completion in (SEED_INVOKE, SEED_STREAM, SEED_TOP_LOGPROBS):
        assert completion["model"] == "gpt-4o-2024-08-06"
        ChatCompletion.model_validate(completion)
        choices: Any = completion["choices"]
        entries = choices[0]["logprobs"]["content"]
        assert choices[0]["message"]["content"] == "".join(e["token"] for e in entries)
        assert choices[0]["finish_reason"] == "stop"


def test_seed_top_logprobs_are_sorted_and_consistent() -> None:
    for entry in seed_entries(SEED_TOP_LOGPROBS):
        alternatives = entry["top_logprobs"]
        assert len(alternatives) == 3
        values = [alt["logprob"] for alt in alternatives]
        assert values == sorted(values, reverse=True)
        assert entry["token"] in [alt["token"] for alt in alternatives]
        assert all(alt["bytes"] == list(alt["token"].encode()) for alt in alternatives)
        assert sum(math.exp(v) for v in values) <= 1.0 + 1e-6


def test_seed_completions_are_copies() -> None:
    seeds = seed_completions()
    assert seeds == [SEED_INVOKE, SEED_STREAM, SEED_TOP_LOGPROBS]
    choices: Any = seeds[0]["choices"]
    choices[0]["logprobs"]["content"][0]["logprob"] = 1.0
    assert seed_entries(SEED_INVOKE)[0]["logprob"] == -0.70174205


def test_make_completion_with_pairs() -> None:
    completion = make_completion([("Hi", -0.5), ("!", 0.0)], prompt_tokens=3, id="x")
    parsed = ChatCompletion.model_validate(completion)
    assert parsed.id == "x"
    assert parsed.model == "gpt-4o-2024-08-06"
    assert parsed.choices[0].message.content == "Hi!"
    assert parsed.usage is not None and parsed.usage.total_tokens == 5
    assert parsed.choices[0].logprobs is not None
    entries = parsed.choices[0].logprobs.content or []
    assert [(e.token, e.logprob, e.bytes, e.top_logprobs) for e in entries] == [
        ("Hi", -0.5, [72, 105], []),
        ("!", 0.0, [33], []),
    ]


def test_make_completion_generated_is_deterministic() -> None:
    a = make_completion(["a", "b", "c"], seed=7, k=4)
    b = make_completion(["a", "b", "c"], seed=7, k=4)
    assert a == b
    assert make_completion(["a", "b"]) == make_completion(["a", "b"])
    assert make_completion(["a", "b"], seed=1) != make_completion(["a", "b"], seed=2)


def test_make_completion_explicit_top_logprobs_sorted() -> None:
    completion = make_completion(
        [("x", -1.0)], top_logprobs=[[("y", -3.0), ("x", -1.0), ("z", -0.5)]]
    )
    alternatives = seed_entries(completion)[0]["top_logprobs"]
    assert [a["token"] for a in alternatives] == ["z", "x", "y"]


def test_make_completion_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        make_completion([("x", 0.5)])
    with pytest.raises(ValueError):
        make_completion([("x", -1.0)], top_logprobs=[])
    with pytest.raises(ValueError):
        make_completion(["x"], top_logprobs=[[("x", -1.0)]], k=2)
    with pytest.raises(ValueError):
        make_completion(["x"], k=-1)


@settings(max_examples=60, deadline=None)
@given(
    tokens=st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=12),
    k=st.integers(min_value=0, max_value=20),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_make_completion_generated_properties(tokens: list[str], k: int, seed: int) -> None:
    completion = make_completion(tokens, k=k, seed=seed)
    entries = seed_entries(completion)
    assert [e["token"] for e in entries] == tokens
    for entry in entries:
        assert -5.0 < entry["logprob"] <= 0.0
        assert entry["bytes"] == list(entry["token"].encode())
        alternatives = entry["top_logprobs"]
        assert len(alternatives) == k
        if k:
            values = [alt["logprob"] for alt in alternatives]
            assert values == sorted(values, reverse=True)
            assert [alt["token"] for alt in alternatives].count(entry["token"]) == 1
            assert len({alt["token"] for alt in alternatives}) == k
            assert sum(math.exp(v) for v in values) <= 1.0 + 1e-6


# ---------------------------------------------------------------------------
# non-streamed answers
# ---------------------------------------------------------------------------


def test_invoke_parses_with_the_seed_values(server: ReplayServer, client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, logprobs=True)
    assert isinstance(reply, ChatCompletion)
    assert reply.model == "gpt-4o-2024-08-06"
    assert reply.id == "chatcmpl-seed-invoke"
    assert reply.choices[0].logprobs is not None
    entries = reply.choices[0].logprobs.content or []
    assert [(e.token, e.logprob, e.bytes) for e in entries[:5]] == DOC_INVOKE
    assert all(e.top_logprobs == [] for e in entries)
    assert reply.choices[0].message.content == SEED_INVOKE["choices"][0]["message"]["content"]  # type: ignore[index]
    assert reply.usage is not None and reply.usage.prompt_tokens == 13


def test_invoke_without_logprobs_strips_them(server: ReplayServer, client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert reply.choices[0].logprobs is None
    assert reply.choices[0].message.content and reply.choices[0].message.content.startswith("Thank")
    response = post(server, {"model": MODEL, "messages": MESSAGES, "logprobs": False})
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.json()["choices"][0]["logprobs"] is None


@pytest.mark.parametrize(("asked", "expected"), [(None, 0), (0, 0), (1, 1), (2, 2), (3, 3), (5, 3)])
def test_top_logprobs_are_truncated(asked: int | None, expected: int) -> None:
    with ReplayServer([SEED_TOP_LOGPROBS]) as server, sdk_for(server) as sdk:
        kwargs: dict[str, Any] = {} if asked is None else {"top_logprobs": asked}
        reply = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, logprobs=True, **kwargs)
        assert reply.choices[0].logprobs is not None
        entries = reply.choices[0].logprobs.content or []
        assert len(entries) == len(seed_entries(SEED_TOP_LOGPROBS))
        assert all(len(e.top_logprobs) == expected for e in entries)
        first = [alt.token for alt in entries[0].top_logprobs]
        assert first == ["Thank", "Hello", "I'm"][:expected]
        chunks = stream_chunks(sdk, logprobs=True, **kwargs)
        assert all(len(e["top_logprobs"]) == expected for e in chunk_logprobs(chunks))


def test_default_chooser(server: ReplayServer, client: openai.OpenAI) -> None:
    top = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, logprobs=True, top_logprobs=3
    )
    assert top.id == "chatcmpl-seed-top-logprobs"
    invoke = client.chat.completions.create(model=MODEL, messages=MESSAGES, logprobs=True)
    assert invoke.id == "chatcmpl-seed-invoke"
    chunks = stream_chunks(client, logprobs=True)
    assert {chunk.id for chunk in chunks} == {"chatcmpl-seed-stream"}
    chunks = stream_chunks(client, logprobs=True, top_logprobs=2)
    assert {chunk.id for chunk in chunks} == {"chatcmpl-seed-top-logprobs"}


def test_n_choices_non_stream() -> None:
    with ReplayServer([SEED_INVOKE]) as server, sdk_for(server) as sdk:
        reply = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, logprobs=True, n=2)
        assert [choice.index for choice in reply.choices] == [0, 1]
        first, second = reply.choices
        assert first.message.content == second.message.content
        assert first.logprobs == second.logprobs
        assert reply.usage is not None and reply.usage.completion_tokens == 2 * 37


# ---------------------------------------------------------------------------
# streams
# ---------------------------------------------------------------------------


def test_stream_matches_the_guide(server: ReplayServer, client: openai.OpenAI) -> None:
    chunks = stream_chunks(client, logprobs=True)
    assert all(isinstance(chunk, ChatCompletionChunk) for chunk in chunks)
    role = chunks[0].choices[0]
    assert role.delta.role == "assistant" and role.delta.content == ""
    assert role.logprobs is not None and role.logprobs.content == []
    entries = chunk_logprobs(chunks)
    assert [(e["token"], e["logprob"], e["bytes"]) for e in entries[:3]] == DOC_STREAM
    assert entries == seed_entries(SEED_STREAM)
    finish = chunks[-1].choices[0]
    assert finish.finish_reason == "stop" and finish.logprobs is None
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.model == "gpt-4o-2024-08-06" for chunk in chunks)


@pytest.mark.parametrize("chunk_tokens", [1, 3, 100])
def test_stream_equals_non_stream(chunk_tokens: int) -> None:
    with ReplayServer([SEED_INVOKE], chunk_tokens=chunk_tokens) as server, sdk_for(server) as sdk:
        reply = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, logprobs=True)
        chunks = stream_chunks(sdk, logprobs=True)
        assert reply.choices[0].logprobs is not None
        expected = [e.model_dump() for e in reply.choices[0].logprobs.content or []]
        assert chunk_logprobs(chunks) == expected
        assert chunk_text(chunks) == reply.choices[0].message.content
        content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
        assert len(content_chunks) == math.ceil(37 / chunk_tokens)


def test_stream_without_logprobs_has_null_logprobs_and_no_usage_key(server: ReplayServer) -> None:
    chunks = raw_stream(server)
    for chunk in chunks[:-1]:
        assert "usage" not in chunk
        for choice in chunk["choices"]:
            assert choice["logprobs"] is None


def test_include_usage_adds_the_usage_chunk(server: ReplayServer, client: openai.OpenAI) -> None:
    chunks = stream_chunks(client, logprobs=True, stream_options={"include_usage": True})
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.model_dump(exclude_none=True) == SEED_STREAM["usage"]
    assert all(chunk.usage is None for chunk in chunks[:-1])
    raw = raw_stream(server, logprobs=True, stream_options={"include_usage": True})
    assert all("usage" in chunk and chunk["usage"] is None for chunk in raw[:-2])
    assert raw[-2]["choices"] == [] and raw[-2]["usage"] == SEED_STREAM["usage"]


def test_stream_raw_shape(server: ReplayServer) -> None:
    chunks = raw_stream(server, logprobs=True)
    role = chunks[0]
    assert role["object"] == "chat.completion.chunk"
    assert role["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "", "refusal": None},
            "logprobs": {"content": [], "refusal": None},
            "finish_reason": None,
        }
    ]
    assert set(role) == {"id", "object", "created", "model", "system_fingerprint", "choices"}
    token = chunks[1]["choices"][0]
    assert token["delta"] == {"content": "Thank"}
    assert token["logprobs"]["refusal"] is None
    finish = chunks[-2]["choices"][0]
    assert finish == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}


def test_n_choices_stream_interleaves() -> None:
    with ReplayServer([SEED_STREAM]) as server, sdk_for(server) as sdk:
        raw = raw_stream(server, logprobs=True, n=2)
        indexes = [chunk["choices"][0]["index"] for chunk in raw[:-1]]
        assert indexes == [0, 1] * (len(indexes) // 2)
        chunks = stream_chunks(sdk, logprobs=True, n=2)
        for index in (0, 1):
            assert chunk_text(chunks, index) == SEED_STREAM["choices"][0]["message"]["content"]  # type: ignore[index]
            assert chunk_logprobs(chunks, index) == seed_entries(SEED_STREAM)


def test_llama_cpp_deviations() -> None:
    with ReplayServer(deviations=Deviations.LLAMA_CPP) as server, sdk_for(server) as sdk:
        raw = raw_stream(server, logprobs=True, stream_options={"include_usage": True})
        assert raw[0]["choices"][0]["logprobs"] is None  # role chunk
        assert raw[-2]["choices"][0]["logprobs"] is None  # finish chunk
        assert raw[-2]["choices"][0]["finish_reason"] == "stop"
        assert all("usage" not in chunk for chunk in raw[:-1])  # no usage chunk
        entries = [
            entry for chunk in raw[1:-2] for entry in chunk["choices"][0]["logprobs"]["content"]
        ]
        assert [e["token"] for e in entries] == [e["token"] for e in seed_entries(SEED_STREAM)]
        assert all(e["bytes"] is None for e in entries)
        chunks = stream_chunks(sdk, logprobs=True, stream_options={"include_usage": True})
        assert chunk_logprobs(chunks)[0]["bytes"] is None
        assert all(chunk.usage is None for chunk in chunks)
        reply = sdk.chat.completions.create(
            model=MODEL, messages=MESSAGES, logprobs=True, top_logprobs=2
        )
        assert reply.choices[0].logprobs is not None
        answered = reply.choices[0].logprobs.content or []
        assert len(answered) == len(seed_entries(SEED_TOP_LOGPROBS))  # the loop checks them all
        for entry in answered:
            assert entry.bytes is None
            assert [alt.bytes for alt in entry.top_logprobs] == [None, None]


def test_no_logprobs_deviation() -> None:
    with ReplayServer(deviations=Deviations(no_logprobs=True)) as server, sdk_for(server) as sdk:
        reply = sdk.chat.completions.create(
            model=MODEL, messages=MESSAGES, logprobs=True, top_logprobs=3
        )
        assert reply.choices[0].logprobs is None
        chunks = stream_chunks(sdk, logprobs=True)
        assert all(c.choices[0].logprobs is None for c in chunks if c.choices)
        assert chunk_text(chunks).startswith("Thank you")


def test_byte_fallback_tokens_decode_from_bytes() -> None:
    completion = make_completion(["h", "x", "y", "llo"])
    choice: Any = completion["choices"]
    entries = choice[0]["logprobs"]["content"]
    entries[1].update(token="\\xc3", bytes=[0xC3])
    entries[2].update(token="\\xa9", bytes=[0xA9])
    choice[0]["message"]["content"] = "h\u00e9llo"
    with ReplayServer([completion]) as server, sdk_for(server) as sdk:
        reply = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, logprobs=True)
        assert reply.choices[0].message.content == "h\u00e9llo"
        chunks = stream_chunks(sdk, logprobs=True)
        assert chunk_text(chunks) == "h\u00e9llo"
        assert [e["token"] for e in chunk_logprobs(chunks)] == ["h", "\\xc3", "\\xa9", "llo"]


def test_tokens_win_over_disagreeing_content() -> None:
    completion = make_completion(["A", "B"])
    choices: Any = completion["choices"]
    choices[0]["message"]["content"] = "something else"
    with ReplayServer([completion]) as server, sdk_for(server) as sdk:
        reply = sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert reply.choices[0].message.content == "AB"
        assert chunk_text(stream_chunks(sdk)) == "AB"


def test_completion_without_logprobs_streams_its_content() -> None:
    completion = make_completion(["A", "B"])
    choices: Any = completion["choices"]
    choices[0]["logprobs"] = None
    choices[0]["message"]["content"] = "plain text"
    with ReplayServer([completion]) as server, sdk_for(server) as sdk:
        chunks = stream_chunks(sdk, logprobs=True)
        assert chunk_text(chunks) == "plain text"
        assert all(c.choices[0].logprobs is None for c in chunks if c.choices)


async def test_async_sdk_stream(server: ReplayServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="test", max_retries=0, timeout=10.0
    ) as sdk:
        for _ in range(3):  # the kept-alive connection serves several streams
            stream = await sdk.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True, logprobs=True
            )
            chunks = [chunk async for chunk in stream]
            assert chunk_logprobs(chunks) == seed_entries(SEED_STREAM)
        reply = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, logprobs=True)
        assert reply.id == "chatcmpl-seed-invoke"


def test_sequential_streams_on_one_client(server: ReplayServer, client: openai.OpenAI) -> None:
    whole = SEED_STREAM["choices"][0]["message"]["content"]  # type: ignore[index]
    for _ in range(5):  # each stream whole (two empty streams would also be equal)
        assert chunk_text(stream_chunks(client)) == chunk_text(stream_chunks(client)) == whole
    assert len(server.requests) == 10


@pytest.mark.skipif(not Path("/usr/bin/curl").exists(), reason="no curl")
def test_curl_streams(server: ReplayServer) -> None:
    body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": True, "logprobs": True})
    result = subprocess.run(
        [
            "/usr/bin/curl",
            "-sS",
            "-N",
            "--max-time",
            "10",
            "-d",
            body,
            f"{server.base_url}/chat/completions",
        ],
        capture_output=True,
        timeout=20,
        check=True,
    )
    data = sse_payloads(result.stdout.decode())
    assert data[-1] == "[DONE]"
    assert json.loads(data[1])["choices"][0]["delta"]["content"] == "Thank"


def test_http_1_0_stream_ends_with_the_connection(server: ReplayServer) -> None:
    body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": True}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")  # a server answers with its own version
    assert b"connection: close" in head.lower()
    assert b"chunked" not in head.lower()
    assert sse_payloads(payload.decode())[-1] == "[DONE]"


# ---------------------------------------------------------------------------
# other endpoints, recording, choosers
# ---------------------------------------------------------------------------


def test_other_endpoints(server: ReplayServer) -> None:
    root = server.base_url.removesuffix("/v1")
    with httpx2.Client(timeout=10.0) as http:
        assert http.get(f"{root}/health").json() == {"status": "ok"}
        models = http.get(f"{server.base_url}/models").json()
        assert [m["id"] for m in models["data"]] == ["gpt-4o-2024-08-06"]
        missing = http.get(f"{server.base_url}/nothing")
        assert missing.status_code == 404
        assert set(missing.json()["error"]) == {"message", "type", "param", "code"}
        wrong_method = http.get(f"{server.base_url}/chat/completions")
        assert wrong_method.status_code == 405
        bad = http.post(f"{server.base_url}/chat/completions", content=b"{not json")
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error"
        not_object = http.post(f"{server.base_url}/chat/completions", json=[1, 2])
        assert not_object.status_code == 400
        short = http.post(f"{root}/chat/completions", json={"model": MODEL, "messages": []})
        assert short.status_code == 200
    assert server.requests == [{"model": MODEL, "messages": []}]


def test_unknown_path_with_urllib(server: ReplayServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.base_url}/engines", timeout=10)
    with info.value as error:
        assert error.code == 404
        assert "error" in json.loads(error.read())


def test_requests_and_headers_are_recorded(server: ReplayServer, client: openai.OpenAI) -> None:
    client.chat.completions.create(model=MODEL, messages=MESSAGES, logprobs=True, top_logprobs=1)
    stream_chunks(client)
    assert len(server.requests) == len(server.request_headers) == 2
    assert server.requests[0]["logprobs"] is True and server.requests[0]["top_logprobs"] == 1
    assert server.requests[1]["stream"] is True
    assert server.request_headers[0]["authorization"] == "Bearer test"
    assert server.request_headers[0]["content-type"] == "application/json"


def test_round_robin_and_deep_copy() -> None:
    first = make_completion(["one"], id="c1", model="m-1")
    second = make_completion(["two"], id="c2", model="m-2")
    with ReplayServer([first, second]) as server, sdk_for(server) as sdk:
        first["id"] = "mutated"
        ids = [sdk.chat.completions.create(model=MODEL, messages=MESSAGES).id for _ in range(4)]
        assert ids == ["c1", "c2", "c1", "c2"]
        models = [m.id for m in sdk.models.list()]
        assert models == ["m-1", "m-2"]


def test_callable_chooser() -> None:
    seen: list[Mapping[str, object]] = []

    def choose(body: Mapping[str, object]) -> Completion:
        seen.append(body)
        return make_completion([str(body["model"]), "!"], model="chosen-model")

    with ReplayServer(choose) as server, sdk_for(server) as sdk:
        reply = sdk.chat.completions.create(model="abc", messages=MESSAGES)
        assert reply.choices[0].message.content == "abc!"
        assert reply.model == "chosen-model"
        assert chunk_text(stream_chunks(sdk)) == "gpt-4o!"
        assert [body["model"] for body in seen] == ["abc", "gpt-4o"]


def test_callable_results_are_cached_by_identity() -> None:
    shared = make_completion(["same"])
    current = {"completion": shared}
    with ReplayServer(lambda body: current["completion"]) as server, sdk_for(server) as sdk:
        for _ in range(3):
            assert chunk_text(stream_chunks(sdk)) == "same"
        current["completion"] = make_completion(["new"])
        assert chunk_text(stream_chunks(sdk)) == "new"
        assert (
            sdk.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0].message.content
            == "new"
        )


def test_broken_chooser_gives_500() -> None:
    def choose(body: Mapping[str, object]) -> Completion:
        return {"choices": []}

    with ReplayServer(choose) as server, sdk_for(server) as sdk:
        with pytest.raises(openai.InternalServerError):
            sdk.chat.completions.create(model=MODEL, messages=MESSAGES)


def test_lifecycle() -> None:
    with pytest.raises(ValueError):
        ReplayServer(host="0.0.0.0")
    with pytest.raises(ValueError):
        ReplayServer([])
    server = ReplayServer()
    with pytest.raises(RuntimeError):
        _ = server.port
    assert server.start() is server
    port = server.port
    assert server.start() is server and server.port == port  # idempotent
    assert server.base_url == f"http://127.0.0.1:{port}/v1"
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


# ---------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------


def test_cut_stream_raises_api_connection_error() -> None:
    with ReplayServer(faults=Faults(cut_after=3)) as server, sdk_for(server) as sdk:
        received: list[ChatCompletionChunk] = []
        with pytest.raises(openai.APIConnectionError) as info:
            with sdk.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True, logprobs=True
            ) as stream:
                received.extend(stream)
        assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)
        assert len(received) == 3


def test_cut_stream_raw_httpx2_error() -> None:
    with ReplayServer(faults=Faults(cut_after=2)) as server:
        with pytest.raises(httpx2.RemoteProtocolError):
            post(server, {"model": MODEL, "messages": MESSAGES, "stream": True})


def test_cut_non_stream_raises_api_connection_error() -> None:
    with ReplayServer(faults=Faults(cut_after=0)) as server, sdk_for(server) as sdk:
        with pytest.raises(openai.APIConnectionError) as info:
            sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)


def test_status_429_raises_rate_limit_error() -> None:
    faults = Faults(status=429, retry_after=7)
    with ReplayServer(faults=faults) as server, sdk_for(server) as sdk:
        with pytest.raises(openai.RateLimitError) as info:
            sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
        error = info.value
        assert error.status_code == 429
        assert error.response.headers["retry-after"] == "7"
        assert error.body == {
            "message": "Rate limit reached (replay fault).",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
        with pytest.raises(openai.RateLimitError):  # streams too
            stream_chunks(sdk)


def test_fail_first_then_the_sdk_retries() -> None:
    faults = Faults(status=503, fail_first=1, retry_after=0.01)
    with ReplayServer(faults=faults) as server, sdk_for(server, max_retries=2) as sdk:
        reply = sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert reply.id == "chatcmpl-seed-invoke"
        assert len(server.requests) == 2
        server.set_faults(Faults(status=500, fail_first=2, retry_after=0.01))
        chunks = stream_chunks(sdk)
        assert chunk_text(chunks).startswith("Thank you")
        assert len(server.requests) == 5


def test_set_faults_at_runtime(server: ReplayServer, client: openai.OpenAI) -> None:
    server.set_faults(Faults(status=401))
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert server.faults.status == 401
    server.set_faults(Faults())
    assert client.chat.completions.create(model=MODEL, messages=MESSAGES).choices


def test_malformed_event_raises_json_decode_error() -> None:
    with ReplayServer(faults=Faults(malformed_at=2)) as server, sdk_for(server) as sdk:
        received: list[ChatCompletionChunk] = []
        with pytest.raises(json.JSONDecodeError):
            with sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
                received.extend(stream)
        assert len(received) == 2


def test_invalid_utf8_raises_unicode_decode_error() -> None:
    with ReplayServer(faults=Faults(invalid_utf8_at=1)) as server, sdk_for(server) as sdk:
        with pytest.raises(UnicodeDecodeError):
            stream_chunks(sdk, logprobs=True)
        response = post(server, {"model": MODEL, "messages": MESSAGES, "stream": True})
        assert b'"content":"\xff\xfeThank"' in response.content


def test_error_event_raises_api_error() -> None:
    with ReplayServer(faults=Faults(error_event_at=2)) as server, sdk_for(server) as sdk:
        with pytest.raises(openai.APIError) as info:
            stream_chunks(sdk)
        assert "replay fault" in info.value.message
        raw = sse_payloads(
            post(server, {"model": MODEL, "messages": MESSAGES, "stream": True}).text
        )
        assert len(raw) == 3 and "[DONE]" not in raw
        assert json.loads(raw[2])["error"]["type"] == "server_error"


def test_stall_raises_api_timeout_error() -> None:
    faults = Faults(stall_after=2, stall_seconds=5.0)
    with ReplayServer(faults=faults) as server, sdk_for(server, timeout=0.3) as sdk:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            stream_chunks(sdk)
        assert time.monotonic() - started < 3.0
        with pytest.raises(openai.APITimeoutError):  # a non-stream answer stalls before it starts
            sdk.chat.completions.create(model=MODEL, messages=MESSAGES)


def test_chunk_delay_paces_the_stream() -> None:
    with ReplayServer(faults=Faults(chunk_delay=0.02)) as server, sdk_for(server) as sdk:
        started = time.monotonic()
        chunks = stream_chunks(sdk, logprobs=True)
        elapsed = time.monotonic() - started
        assert chunk_logprobs(chunks) == seed_entries(SEED_STREAM)
        assert elapsed >= 0.02 * (len(chunks) + 1) * 0.9


def test_stop_is_quick_with_a_stalled_stream_in_flight() -> None:
    server = ReplayServer(faults=Faults(stall_after=1, stall_seconds=60.0)).start()
    try:
        with httpx2.Client(timeout=10.0) as http:
            body = {"model": MODEL, "messages": MESSAGES, "stream": True}
            with http.stream("POST", f"{server.base_url}/chat/completions", json=body) as response:
                chunks = response.iter_bytes()
                assert next(chunks).startswith(b"data: ")
                started = time.monotonic()
                server.stop()
                assert time.monotonic() - started < 2.0
                with pytest.raises(httpx2.TransportError):
                    for _ in chunks:
                        pass
    finally:
        server.stop()


# ---------------------------------------------------------------------------
# stream/non-stream agreement over random completions
# ---------------------------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tokens=st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=10),
    k=st.integers(min_value=0, max_value=4),
    top=st.integers(min_value=0, max_value=6),
    n=st.integers(min_value=1, max_value=3),
)
def test_stream_and_non_stream_agree(tokens: list[str], k: int, top: int, n: int) -> None:
    completion = make_completion(tokens, k=k, seed=1)
    with ReplayServer([completion], chunk_tokens=2) as server, sdk_for(server) as sdk:
        kwargs: dict[str, Any] = {"logprobs": True, "top_logprobs": top, "n": n}
        reply = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, **kwargs)
        chunks = stream_chunks(sdk, **kwargs)
        for index in range(n):
            choice = reply.choices[index]
            assert choice.message.content == "".join(tokens)
            assert chunk_text(chunks, index) == "".join(tokens)
            assert choice.logprobs is not None
            expected = [e.model_dump() for e in choice.logprobs.content or []]
            assert chunk_logprobs(chunks, index) == expected
            assert all(len(e["top_logprobs"]) == min(k, top) for e in expected)


# ---------------------------------------------------------------------------
# python -m logprobscope.testing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [(), ("--llama-server",)], ids=["openai", "llama-server"])
def test_module_main_in_a_subprocess(flags: tuple[str, ...]) -> None:
    package_root = Path(logprobscope.__file__).parent.parent  # the dir holding logprobscope/
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(package_root), *filter(None, [env.get("PYTHONPATH")])])
    with subprocess.Popen(
        [sys.executable, "-m", "logprobscope.testing", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as process:
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], 20.0)
            assert ready, "no base URL printed in time"
            base_url = process.stdout.readline().decode().strip()
            assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
            with urllib.request.urlopen(base_url.removesuffix("/v1") + "/health", timeout=10) as r:
                assert json.loads(r.read()) == {"status": "ok"}
            with openai.OpenAI(base_url=base_url, api_key="test", max_retries=0) as sdk:
                reply = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, logprobs=True)
                # The llama-server preset is on exactly when asked for: its `logprobs` alone
                # asks for 20 alternatives, so the seed with alternatives answers.
                assert reply.id == (
                    "chatcmpl-seed-top-logprobs" if flags else "chatcmpl-seed-invoke"
                )
                assert ("timings" in (reply.model_extra or {})) is bool(flags)
            os.kill(process.pid, signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def test_faults_validation() -> None:
    with pytest.raises(ValueError):
        Faults(chunk_delay=-1)
    with pytest.raises(ValueError):
        Faults(status=42)
    with pytest.raises(ValueError):
        Faults(cut_after=-1)
    assert Deviations.LLAMA_CPP == Deviations(
        bytes_null=True, null_logprobs_on_edges=True, ignore_include_usage=True
    )
    assert copy.deepcopy(Faults()) == Faults()
