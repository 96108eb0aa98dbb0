"""Both llama.cpp servers, through the three entry points, on the requests where they differ.

`top_logprobs` 0 and absent, a `stop` string, `n=2` (raw client) and 16 concurrent streams:
every span must still carry exactly what the server returned to its caller, whatever the server
made of the request. What each server makes of it is pinned here too (and, for `llama-server`,
in its `Deviations.LLAMA_SERVER` preset).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.llama_calls import (
    ENTRIES,
    MAX_TOKENS,
    MODES,
    TOP_K,
    Entry,
    Mode,
    Request,
    acall,
    as_exported,
    call,
    check_span,
    event_tokens,
)
from tests.e2e.llama_servers import LlamaServer
from tests.e2e.tiny_gguf import WORDS
from tests.support.otel import InMemoryOtel

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CONCURRENT_STREAMS = 16


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("entry", ENTRIES)
def test_top_logprobs_zero(entry: Entry, mode: Mode, llama: LlamaServer) -> None:
    request = Request(top_logprobs=0)
    outcome = call(entry, llama, mode, request)
    check_span(outcome, llama, request, mode)
    got = outcome.got
    if llama.kind == "llama-cpp-python":
        # OpenAI returns no alternatives for 0; llama-cpp-python returns the chosen token.
        assert len(got.tokens) == MAX_TOKENS
        assert all(t.top == ((t.token, t.logprob),) for t in got.tokens)
    else:
        # llama-server returns no logprobs at all for 0.
        assert got.logprobs_null and got.tokens == []
    assert got.text


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("entry", ENTRIES)
def test_top_logprobs_absent(entry: Entry, mode: Mode, llama: LlamaServer) -> None:
    request = Request(top_logprobs=None)
    outcome = call(entry, llama, mode, request)
    check_span(outcome, llama, request, mode)
    got = outcome.got
    if llama.kind == "llama-cpp-python":
        # `logprobs=True` alone returns `logprobs: null`.
        assert got.logprobs_null and got.tokens == []
    else:
        # `logprobs=True` alone returns 20 alternatives per token.
        assert len(got.tokens) == MAX_TOKENS
        assert all(len(t.top) == 20 for t in got.tokens)
    assert got.text


def _stop_inside_token(tokens: list[str]) -> tuple[int, str]:
    """Find a token whose last character appears nowhere before it, to use as a stop string."""
    for index, token in enumerate(tokens):
        before = "".join(tokens[:index]) + token[:-1]
        if len(token) >= 2 and token[-1] not in before:
            return index, token[-1]
    raise AssertionError(f"no multi-character token with a fresh last character in {tokens}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("entry", ENTRIES)
def test_stop_inside_a_token(entry: Entry, mode: Mode, llama: LlamaServer) -> None:
    # A stop string that ends inside a token: the content is cut before the stop string.
    tokens = [t.token for t in call("raw", llama, "invoke").got.tokens]
    index, stop = _stop_inside_token(tokens)
    request = Request(stop=(stop,))
    outcome = call(entry, llama, mode, request)
    check_span(outcome, llama, request, mode)
    got = outcome.got
    cut = tokens[index][:-1]
    assert got.finish_reasons == ("stop",)
    assert got.text == "".join(tokens[:index]) + cut
    got_tokens = [t.token for t in got.tokens]
    if llama.kind == "llama-cpp-python":
        # The logprobs keep the whole token with the stop string: joined tokens != content.
        assert got_tokens == tokens[: index + 1]
    elif mode.endswith("stream"):
        # llama-server's stream cuts that token's text (and bytes) as the content is cut, but
        # keeps the whole token's logprob and alternatives.
        assert got_tokens == [*tokens[:index], cut]
        last = got.tokens[-1]
        assert last.bytes == list(cut.encode())
        assert last.top[0][0] == tokens[index]
        assert last.top[0][1] == pytest.approx(last.logprob, abs=1e-6)
    else:
        # Not streamed, llama-server leaves the entry of the token with the stop string out:
        # one entry fewer than its stream.
        assert got_tokens == tokens[:index]


@pytest.mark.parametrize("mode", MODES)
def test_n_2_through_the_raw_client(mode: Mode, llama: LlamaServer) -> None:
    request = Request(n=2)
    outcome = call("raw", llama, mode, request)
    check_span(outcome, llama, request, mode)
    got = outcome.got
    assert len(got.tokens) == MAX_TOKENS
    if llama.kind == "llama-cpp-python":
        assert got.choice_count == 1  # n=2 is silently ignored
        assert got.finish_reasons == ("length",)
    else:
        assert got.choice_count == 2
        assert got.finish_reasons == ("length", "length")


def _prompt(index: int) -> str:
    # The random model hardly reads its prompt: two words repeated 4 times steer it enough
    # that the 16 answers all differ, on both servers (at temperature 0, deterministically).
    return " ".join([WORDS[index], WORDS[index + 1]] * 4)


@pytest.mark.parametrize("entry", ENTRIES)
async def test_concurrent_streams_each_get_their_own_tokens(
    entry: Entry, llama: LlamaServer
) -> None:
    requests = [Request(prompt=_prompt(i)) for i in range(CONCURRENT_STREAMS)]
    otel = InMemoryOtel()
    try:
        gots = await asyncio.gather(*(acall(entry, llama, otel, r, stream=True) for r in requests))
        spans = otel.spans()
    finally:
        otel.close()
    assert len(spans) == CONCURRENT_STREAMS
    by_prompt = {}
    for span in spans:
        messages = str(dict(span.attributes or {})["gen_ai.input.messages"])
        (prompt,) = [r.prompt for r in requests if r.prompt in messages]
        by_prompt[prompt] = span
    for request, got in zip(requests, gots, strict=True):
        assert len(got.tokens) == MAX_TOKENS
        assert all(len(t.top) == TOP_K for t in got.tokens)
        assert event_tokens(by_prompt[request.prompt]) == as_exported(got.tokens)
    # Different prompts, different answers, and each stream's is the one its prompt gets
    # alone: no stream got another's tokens.
    assert len({got.text for got in gots}) == CONCURRENT_STREAMS
    for request, got in zip(requests, gots, strict=True):
        assert [t.token for t in got.tokens] == _alone(llama, request)


_alone_cache: dict[tuple[str, str], list[str]] = {}


def _alone(server: LlamaServer, request: Request) -> list[str]:
    """The tokens a prompt gets when it is the only request (once per server and prompt)."""
    key = (server.kind, request.prompt)
    if key not in _alone_cache:
        _alone_cache[key] = [t.token for t in call("raw", server, "invoke", request).got.tokens]
    return _alone_cache[key]
