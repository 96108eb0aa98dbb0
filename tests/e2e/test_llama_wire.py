"""What the two llama.cpp servers really put on the wire for logprobs, through the bare openai SDK.

llama-cpp-python's server and llama.cpp's own `llama-server`, both on the tiny random model (its
text is nonsense, its logprobs are real, and at temperature 0 it is deterministic). The rest of
the project builds on these facts, and the replay server's presets copy them
(`Deviations.LLAMA_CPP`, `Deviations.LLAMA_SERVER`): a failure here means a server changed, so
update the preset, `examples/local_servers.md` and the tests that rely on the fact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
import pytest
from openai import Omit, omit
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionStreamOptionsParam,
    ChatCompletionTokenLogprob,
)

from logprobscope.testing import Deviations
from tests.e2e.llama_servers import LlamaServer

pytestmark = pytest.mark.e2e

SEED = 1234
MAX_TOKENS = 24
TOP_K = 3
PROMPT = "Say hello to the world."
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]


@dataclass(frozen=True)
class Api:
    """The official SDK pointed at one llama.cpp server, and that server."""

    sdk: openai.OpenAI
    server: LlamaServer

    @property
    def native(self) -> bool:
        """llama.cpp's own llama-server (else llama-cpp-python's server)."""
        return self.server.kind == "llama-server"

    @property
    def deviations(self) -> Deviations:
        """The server's preset in the replay server, which these tests pin."""
        return self.server.deviations


@pytest.fixture
def api(llama: LlamaServer) -> Iterator[Api]:
    # No retries: a flaky server must show up as a failure, not as a slow pass.
    with openai.OpenAI(base_url=llama.base_url, api_key="none", max_retries=0, timeout=60) as sdk:
        yield Api(sdk=sdk, server=llama)


def _non_stream(
    api: Api,
    *,
    top_logprobs: int | Omit = TOP_K,
    temperature: float = 0.0,
    seed: int = SEED,
    max_tokens: int = MAX_TOKENS,
    n: int | Omit = omit,
) -> ChatCompletion:
    return api.sdk.chat.completions.create(
        model=api.server.model,
        messages=MESSAGES,
        logprobs=True,
        top_logprobs=top_logprobs,
        temperature=temperature,
        seed=seed,
        max_tokens=max_tokens,
        n=n,
    )


def _stream(
    api: Api, *, stream_options: ChatCompletionStreamOptionsParam | Omit = omit
) -> list[ChatCompletionChunk]:
    with api.sdk.chat.completions.create(
        model=api.server.model,
        messages=MESSAGES,
        logprobs=True,
        top_logprobs=TOP_K,
        temperature=0,
        seed=SEED,
        max_tokens=MAX_TOKENS,
        stream_options=stream_options,
        stream=True,
    ) as stream:
        return list(stream)


def _raw(api: Api, **body: Any) -> Any:
    """The decoded JSON of a non-streamed answer, or the list of a stream's events."""
    request = {
        "model": api.server.model,
        "messages": MESSAGES,
        "temperature": 0,
        "seed": SEED,
        "max_tokens": 4,
        **body,
    }
    response = httpx2.post(f"{api.server.base_url}/chat/completions", json=request, timeout=60)
    response.raise_for_status()
    if not body.get("stream"):
        return response.json()
    lines = response.text.splitlines()
    assert lines[-2:] == ["data: [DONE]", ""]
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]


def _entries(completion: ChatCompletion) -> list[ChatCompletionTokenLogprob]:
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    return logprobs.content


def _stream_entries(chunks: list[ChatCompletionChunk]) -> list[ChatCompletionTokenLogprob]:
    entries: list[ChatCompletionTokenLogprob] = []
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.logprobs is not None and choice.logprobs.content is not None:
                entries.extend(choice.logprobs.content)
    return entries


def _assert_greedy_entry(api: Api, entry: ChatCompletionTokenLogprob) -> None:
    alternatives = entry.top_logprobs
    assert len(alternatives) == TOP_K
    values = [alt.logprob for alt in alternatives]
    assert values == sorted(values, reverse=True)
    assert all(math.isfinite(v) and v <= 0.0 for v in values)
    # Temperature 0 picks the most likely token, so it heads its own top list.
    assert alternatives[0].token == entry.token
    assert alternatives[0].logprob == pytest.approx(entry.logprob)
    if api.deviations.bytes_null:  # llama-cpp-python never fills `bytes`
        assert entry.bytes is None and all(alt.bytes is None for alt in alternatives)
    else:  # the token's UTF-8 bytes, as OpenAI sends them
        assert entry.bytes == list(entry.token.encode())
        assert all(alt.bytes == list(alt.token.encode()) for alt in alternatives)
    if api.deviations.token_ids:  # llama-server adds the token's id
        assert isinstance((entry.model_extra or {})["id"], int)
        assert (alternatives[0].model_extra or {})["id"] == (entry.model_extra or {})["id"]
    else:
        assert "id" not in (entry.model_extra or {})


def test_non_stream_logprobs(api: Api) -> None:
    completion = _non_stream(api)
    entries = _entries(completion)
    # The bias in the tiny model keeps <|im_end|> away: generation always runs to max_tokens.
    assert completion.choices[0].finish_reason == "length"
    assert len(entries) == MAX_TOKENS
    assert completion.usage is not None
    assert completion.usage.completion_tokens == MAX_TOKENS
    for entry in entries:
        _assert_greedy_entry(api, entry)
    assert "".join(e.token for e in entries) == completion.choices[0].message.content


def test_stream_logprobs(api: Api) -> None:
    chunks = _stream(api)
    first, content, last = chunks[0], chunks[1:-1], chunks[-1]
    # The role-only first chunk and the finish chunk have no logprobs (OpenAI sends
    # {"content": [], "refusal": null} on the first).
    assert first.choices[0].delta.role == "assistant"
    assert not first.choices[0].delta.content  # absent or null (OpenAI sends "")
    assert first.choices[0].logprobs is None
    assert last.choices[0].finish_reason == "length"
    assert last.choices[0].logprobs is None
    # In between: one token per chunk, as OpenAI does.
    assert len(content) == MAX_TOKENS
    for chunk in content:
        logprobs = chunk.choices[0].logprobs
        assert logprobs is not None and logprobs.content is not None
        assert len(logprobs.content) == 1
        assert logprobs.content[0].token == chunk.choices[0].delta.content
        _assert_greedy_entry(api, logprobs.content[0])


def test_edge_chunks_on_the_wire(api: Api) -> None:
    events = _raw(api, logprobs=True, top_logprobs=1, stream=True)
    role, finish = events[0]["choices"][0], events[-1]["choices"][0]
    assert finish["finish_reason"] == "length"
    if api.deviations.omit_logprobs_key:
        # llama-server leaves the `logprobs` key out of both, and its role chunk's content
        # is null.
        assert role["delta"] == {"role": "assistant", "content": None}
        assert "logprobs" not in role and "logprobs" not in finish
    else:
        # llama-cpp-python sends `"logprobs": null` on both, no content key on the first
        # (its preset sends `"content": ""`, as OpenAI does).
        assert api.deviations.null_logprobs_on_edges
        assert role["delta"] == {"role": "assistant"}
        assert role["logprobs"] is None and finish["logprobs"] is None
    # Without logprobs the key is left out, or null.
    plain = _raw(api)["choices"][0]
    assert ("logprobs" not in plain) is api.deviations.omit_logprobs_key
    assert plain.get("logprobs") is None


def test_stream_equals_non_stream(api: Api) -> None:
    expected = _entries(_non_stream(api))
    streamed = _stream_entries(_stream(api))
    assert [e.token for e in streamed] == [e.token for e in expected]
    # Equal tokens, but not bit-equal logprobs: they differ by about 1e-6 between the two paths.
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in expected], abs=1e-4)


def test_include_usage(api: Api) -> None:
    chunks = _stream(api, stream_options={"include_usage": True})
    if not api.deviations.ignore_include_usage:
        # As OpenAI: a last chunk with `choices: []` and the usage.
        *answer, usage_chunk = chunks
        assert usage_chunk.choices == []
        assert usage_chunk.usage is not None
        assert usage_chunk.usage.completion_tokens == MAX_TOKENS
        assert all(chunk.choices and chunk.usage is None for chunk in answer)
    else:
        # llama-cpp-python ignores it: no usage chunk, no usage anywhere in the stream.
        assert all(chunk.choices and chunk.usage is None for chunk in chunks)


def test_timings(api: Api) -> None:
    answer = _raw(api, logprobs=True, top_logprobs=1)
    events = _raw(api, logprobs=True, top_logprobs=1, stream=True)
    with_usage = _raw(
        api, logprobs=True, top_logprobs=1, stream=True, stream_options={"include_usage": True}
    )
    if api.deviations.timings:
        # llama-server adds a `timings` object (not OpenAI's): at the top of an answer, and
        # on a stream's last chunk (the finish chunk, or the usage chunk when asked for).
        assert answer["timings"]["predicted_n"] == 4
        assert events[-1]["timings"]["predicted_n"] == 4
        assert with_usage[-1]["choices"] == []
        assert with_usage[-1]["timings"]["predicted_n"] == 4
        assert "timings" not in with_usage[-2]
    else:
        assert "timings" not in answer
        assert all("timings" not in event for event in events + with_usage)


def test_logprobs_without_top_logprobs(api: Api) -> None:
    completion = _non_stream(api, top_logprobs=omit)
    if api.native:
        # llama-server returns 20 alternatives per token (OpenAI: none).
        assert api.deviations.default_top_logprobs == 20
        entries = _entries(completion)
        assert len(entries) == MAX_TOKENS
        assert all(len(e.top_logprobs) == 20 for e in entries)
    else:
        # llama-cpp-python returns `logprobs: null`: always pass top_logprobs.
        assert completion.choices[0].logprobs is None


def test_top_logprobs_zero(api: Api) -> None:
    completion = _non_stream(api, top_logprobs=0)
    if api.deviations.no_logprobs_for_top_zero:
        # llama-server returns no logprobs at all (OpenAI: the tokens, with no alternatives);
        # on the wire the `logprobs` key is left out.
        assert completion.choices[0].logprobs is None
        choice = _raw(api, logprobs=True, top_logprobs=0)["choices"][0]
        assert "logprobs" not in choice
    else:
        # llama-cpp-python returns one alternative: the chosen token.
        entries = _entries(completion)
        assert len(entries) == MAX_TOKENS  # every token is checked below
        for entry in entries:
            assert [alt.token for alt in entry.top_logprobs] == [entry.token]


def test_top_logprobs_above_openai_limit_is_accepted(api: Api) -> None:
    # OpenAI rejects top_logprobs > 20 with HTTP 400; both servers return them all.
    entries = _entries(_non_stream(api, top_logprobs=25))
    assert len(entries) == MAX_TOKENS
    for entry in entries:
        assert len(entry.top_logprobs) == 25


def test_sampled_token_outside_top_k(api: Api) -> None:
    completion = _non_stream(api, temperature=2.0, seed=7, max_tokens=60)
    outside = 0
    for entry in _entries(completion):
        top = entry.top_logprobs[:TOP_K]
        values = [alt.logprob for alt in top]
        assert values == sorted(values, reverse=True)
        if entry.token in [alt.token for alt in top]:
            assert len(entry.top_logprobs) == TOP_K
            continue
        outside += 1
        if api.native:
            # As OpenAI: k alternatives, the sampled token is not among them.
            assert len(entry.top_logprobs) == TOP_K
            assert entry.logprob <= values[-1]
        else:
            # llama-cpp-python appends the sampled token as alternative k+1.
            assert len(entry.top_logprobs) == TOP_K + 1
            extra = entry.top_logprobs[TOP_K]
            assert extra.token == entry.token and extra.logprob == pytest.approx(entry.logprob)
            assert extra.logprob <= values[-1]
    # Temperature 2 on the flat random model leaves the top 3 about half the time (seeded).
    assert outside > 0


def test_n(api: Api) -> None:
    completion = _non_stream(api, n=2)
    if not api.native:
        # llama-cpp-python silently returns a single choice.
        assert len(completion.choices) == 1
        return
    assert [c.index for c in completion.choices] == [0, 1]
    # Its usage counts one choice's tokens (OpenAI: both).
    assert api.deviations.usage_per_choice
    assert completion.usage is not None and completion.usage.completion_tokens == MAX_TOKENS
    # Temperature 0: both choices are the greedy answer.
    first, second = (c.logprobs.content for c in completion.choices if c.logprobs)
    assert first is not None and second is not None
    assert [e.token for e in first] == [e.token for e in second]
    # Streamed, the two choices' chunks interleave, each with its own role and finish chunk.
    events = _raw(api, logprobs=True, top_logprobs=1, n=2, stream=True)
    for index in (0, 1):
        mine = [e["choices"][0] for e in events if e["choices"][0]["index"] == index]
        assert mine[0]["delta"]["role"] == "assistant"
        assert mine[-1]["finish_reason"] == "length"
        tokens = [lp["token"] for c in mine for lp in (c.get("logprobs") or {}).get("content", [])]
        assert tokens == [e.token for e in first[:4]]
    # With the usage asked for, each choice ends with its own usage chunk (and timings).
    events = _raw(api, n=2, stream=True, stream_options={"include_usage": True})
    usage = [i for i, e in enumerate(events) if not e["choices"]]
    assert len(usage) == 2
    for i in usage:
        assert events[i - 1]["choices"][0]["finish_reason"] == "length"
        assert events[i]["usage"]["completion_tokens"] == 4
        assert "timings" in events[i]


def test_max_completion_tokens(api: Api) -> None:
    answer = _raw(api, max_tokens=6, max_completion_tokens=3)
    # llama-server honours it; llama-cpp-python ignores it (and langchain-openai sends
    # max_tokens under that name).
    assert answer["usage"]["completion_tokens"] == (3 if api.native else 6)


def test_logprobs_do_not_depend_on_temperature(api: Api) -> None:
    # The logprobs are the model's raw distribution, not the temperature-scaled one sampled from.
    def first_alternatives(temperature: float) -> list[tuple[str, float]]:
        completion = _non_stream(api, temperature=temperature, max_tokens=1)
        return [(alt.token, alt.logprob) for alt in _entries(completion)[0].top_logprobs]

    cold = first_alternatives(0.0)
    for temperature in (0.7, 2.0):
        hot = first_alternatives(temperature)
        assert [token for token, _ in hot] == [token for token, _ in cold]
        assert [lp for _, lp in hot] == pytest.approx([lp for _, lp in cold], abs=1e-4)


def _responses(api: Api, **body: Any) -> httpx2.Response:
    request = {
        "model": api.server.model,
        "input": PROMPT,
        "max_output_tokens": 3,
        "temperature": 0,
        "include": ["message.output_text.logprobs"],
        **body,
    }
    return httpx2.post(f"{api.server.base_url}/responses", json=request, timeout=60)


def test_responses_api(api: Api) -> None:
    response = _responses(api, logprobs=True, top_logprobs=2)
    if not api.native:
        assert response.status_code == 404  # llama-cpp-python has no /v1/responses
        return
    # llama-server serves it, but with no logprobs: every text part has `"logprobs": []`.
    response.raise_for_status()
    body = response.json()
    assert body["object"] == "response" and body["status"] == "completed"
    (message,) = body["output"]
    (part,) = message["content"]
    assert part["type"] == "output_text" and part["text"]
    assert part["logprobs"] == []
    assert body["usage"]["output_tokens"] == 3
    # `top_logprobs` without the (non-standard) `logprobs: true` is a 400.
    assert _responses(api, top_logprobs=2).status_code == 400


def test_responses_api_stream(api: Api) -> None:
    response = _responses(api, stream=True, logprobs=True, top_logprobs=2)
    if not api.native:
        assert response.status_code == 404  # llama-cpp-python has no /v1/responses
        return
    response.raise_for_status()
    names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line[:6] == "data: "]
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert all("logprobs" not in e for e in deltas)  # OpenAI puts the logprobs here
    done_part = next(e for e in events if e["type"] == "response.content_part.done")["part"]
    assert done_part["logprobs"] == []
    completed = events[-1]["response"]
    assert completed["output"][0]["content"][0]["logprobs"] == []
    assert completed["usage"]["output_tokens"] == 3
