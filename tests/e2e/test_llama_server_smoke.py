"""What llama-cpp-python's server really returns for logprobs, through the official openai SDK.

The rest of the project builds on these facts (see /work/shared/SERVERS.md); if an upgrade of
llama-cpp-python changes one, this module says which. The tiny random model's text is nonsense
but its logprobs are real, and at temperature 0 it is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

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

from tests.e2e.llama_server import LlamaServer, llama_python, llama_server, tiny_model  # noqa: F401

pytestmark = pytest.mark.e2e

SEED = 1234
MAX_TOKENS = 24
TOP_K = 3
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Say hello to the world."},
]


@dataclass(frozen=True)
class Api:
    """The official SDK pointed at the llama server, and the model name to ask for."""

    sdk: openai.OpenAI
    model: str


@pytest.fixture(scope="module")
def api(llama_server: LlamaServer) -> Iterator[Api]:  # noqa: F811
    # No retries: a flaky server must show up as a failure, not as a slow pass.
    with openai.OpenAI(
        base_url=llama_server.base_url, api_key="none", max_retries=0, timeout=60
    ) as sdk:
        yield Api(sdk=sdk, model=llama_server.model)


def _non_stream(
    api: Api,
    *,
    top_logprobs: int | Omit = TOP_K,
    temperature: float = 0.0,
    seed: int = SEED,
    max_tokens: int = MAX_TOKENS,
    n: int | Omit = omit,
    stop: list[str] | Omit = omit,
) -> ChatCompletion:
    return api.sdk.chat.completions.create(
        model=api.model,
        messages=MESSAGES,
        logprobs=True,
        top_logprobs=top_logprobs,
        temperature=temperature,
        seed=seed,
        max_tokens=max_tokens,
        n=n,
        stop=stop,
    )


def _stream(
    api: Api,
    *,
    stop: list[str] | Omit = omit,
    stream_options: ChatCompletionStreamOptionsParam | Omit = omit,
) -> list[ChatCompletionChunk]:
    with api.sdk.chat.completions.create(
        model=api.model,
        messages=MESSAGES,
        logprobs=True,
        top_logprobs=TOP_K,
        temperature=0,
        seed=SEED,
        max_tokens=MAX_TOKENS,
        stop=stop,
        stream_options=stream_options,
        stream=True,
    ) as stream:
        return list(stream)


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


def _assert_greedy_entry(entry: ChatCompletionTokenLogprob) -> None:
    alternatives = entry.top_logprobs
    assert len(alternatives) == TOP_K
    values = [alt.logprob for alt in alternatives]
    assert values == sorted(values, reverse=True)
    assert all(math.isfinite(v) and v <= 0.0 for v in values)
    # Temperature 0 picks the most likely token, so it heads its own top list.
    assert alternatives[0].token == entry.token
    assert alternatives[0].logprob == pytest.approx(entry.logprob)
    # Deviation 1: llama-cpp-python never fills `bytes` (OpenAI sends the UTF-8 bytes).
    assert entry.bytes is None
    assert all(alt.bytes is None for alt in alternatives)


def test_non_stream_logprobs(api: Api) -> None:
    completion = _non_stream(api)
    entries = _entries(completion)
    # The bias in the tiny model keeps <|im_end|> away: generation always runs to max_tokens.
    assert completion.choices[0].finish_reason == "length"
    assert len(entries) == MAX_TOKENS
    assert completion.usage is not None
    assert completion.usage.completion_tokens == MAX_TOKENS
    for entry in entries:
        _assert_greedy_entry(entry)
    assert "".join(e.token for e in entries) == completion.choices[0].message.content


def test_stream_logprobs(api: Api) -> None:
    chunks = _stream(api)
    first, content, last = chunks[0], chunks[1:-1], chunks[-1]
    # Deviation 2: the role-only first chunk and the finish chunk carry logprobs null
    # (OpenAI sends {"content": [], "refusal": null} on the first).
    assert first.choices[0].delta.role == "assistant"
    assert not first.choices[0].delta.content  # the key is absent (OpenAI sends "")
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
        _assert_greedy_entry(logprobs.content[0])


def test_stream_equals_non_stream(api: Api) -> None:
    expected = _entries(_non_stream(api))
    streamed = _stream_entries(_stream(api))
    assert [e.token for e in streamed] == [e.token for e in expected]
    # Equal tokens, but not bit-equal logprobs: they differ by about 1e-6 between the two paths.
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in expected], abs=1e-4)


# Documented deviations from OpenAI (SERVERS.md, llama-cpp-python 0.3.36) and a few more facts
# found while writing these tests. A failure here means the server changed: update SERVERS.md.


def test_include_usage_is_ignored(api: Api) -> None:
    # Deviation 3: no final usage chunk with `choices: []`, no usage anywhere in the stream.
    chunks = _stream(api, stream_options={"include_usage": True})
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)


def test_logprobs_without_top_logprobs_is_null(api: Api) -> None:
    # Deviation 4: `logprobs=True` alone returns `logprobs: null`; always pass top_logprobs.
    completion = _non_stream(api, top_logprobs=omit)
    assert completion.choices[0].logprobs is None


def test_top_logprobs_zero_returns_the_chosen_token(api: Api) -> None:
    # Deviation 5: OpenAI returns no alternatives for 0; llama-cpp-python returns one.
    entries = _entries(_non_stream(api, top_logprobs=0))
    assert len(entries) == MAX_TOKENS  # every token is checked below
    for entry in entries:
        assert [alt.token for alt in entry.top_logprobs] == [entry.token]


def test_top_logprobs_above_openai_limit_is_accepted(api: Api) -> None:
    # OpenAI rejects top_logprobs > 20 with HTTP 400; llama-cpp-python returns them all.
    entries = _entries(_non_stream(api, top_logprobs=25))
    assert len(entries) == MAX_TOKENS
    for entry in entries:
        assert len(entry.top_logprobs) == 25


def test_sampled_token_outside_top_k_is_appended(api: Api) -> None:
    # Deviation 6: when sampling picks a token outside the top k it is appended as entry k+1.
    completion = _non_stream(api, temperature=2.0, seed=7, max_tokens=60)
    appended = 0
    for entry in _entries(completion):
        top = entry.top_logprobs[:TOP_K]
        values = [alt.logprob for alt in top]
        assert values == sorted(values, reverse=True)
        if len(entry.top_logprobs) == TOP_K:
            assert entry.token in [alt.token for alt in top]
            continue
        assert len(entry.top_logprobs) == TOP_K + 1
        extra = entry.top_logprobs[TOP_K]
        assert extra.token == entry.token and extra.logprob == pytest.approx(entry.logprob)
        assert extra.token not in [alt.token for alt in top]
        assert extra.logprob <= values[-1]
        appended += 1
    # Temperature 2 on the flat random model leaves the top 3 about half the time (seeded).
    assert appended > 0


def test_n_is_ignored(api: Api) -> None:
    # Deviation 7: n=2 silently returns a single choice.
    assert len(_non_stream(api, n=2).choices) == 1


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


def test_stop_inside_a_token_keeps_the_whole_token_in_logprobs(api: Api) -> None:
    # With a stop string that ends inside a token, the content is cut before the stop string
    # but the logprobs keep that whole token: joined logprob tokens != content.
    tokens = [entry.token for entry in _entries(_non_stream(api))]
    index, stop = _stop_inside_token(tokens)
    completion = _non_stream(api, stop=[stop])
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content == "".join(tokens[:index]) + tokens[index][:-1]
    assert [entry.token for entry in _entries(completion)] == tokens[: index + 1]
    # The stream agrees: its last content chunk carries the cut text but the whole token.
    streamed = _stream(api, stop=[stop])
    assert [entry.token for entry in _stream_entries(streamed)] == tokens[: index + 1]
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == choice.message.content


def _stop_inside_token(tokens: list[str]) -> tuple[int, str]:
    """Find a token whose last character appears nowhere before it, to use as a stop string."""
    for index, token in enumerate(tokens):
        before = "".join(tokens[:index]) + token[:-1]
        if len(token) >= 2 and token[-1] not in before:
            return index, token[-1]
    raise AssertionError(f"no multi-character token with a fresh last character in {tokens}")
