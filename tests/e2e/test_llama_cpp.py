"""Both llama.cpp servers through the three entry points, sync and async, invoked and streamed.

Our `ChatOpenAI` with `OpenTelemetryCallbackHandler`, langchain-openai's `ChatOpenAI` with
`LogprobsCallbackHandler`, and a raw `openai` client with `instrument_openai`, each with
`logprobs=True, top_logprobs=3, temperature=0, seed=SEED` against llama-cpp-python's server and
llama.cpp's own `llama-server`. The spans must carry exactly what the server returned to the
caller, the top alternatives must be sorted and head with the chosen token (temperature 0 is
greedy), and the stream must add up to the answer.

Each server's deviations from OpenAI (its `Deviations` preset) are expected, not worked around:
with llama-cpp-python `bytes` is null and a stream has no usage; `llama-server` sends the real
bytes and the usage chunk.
"""

from __future__ import annotations

import math

import pytest

from tests.e2e.llama_calls import (
    ENTRIES,
    MAX_TOKENS,
    MODES,
    TOP_K,
    Entry,
    Mode,
    Outcome,
    Request,
    Token,
    call,
    check_span,
    event_tokens,
)
from tests.e2e.llama_servers import LlamaServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

_cache: dict[tuple[str, Entry, Mode], Outcome] = {}


def _outcome(entry: Entry, server: LlamaServer, mode: Mode) -> Outcome:
    # Each (server, entry point, mode) is called once per session; several tests read it.
    key = (server.kind, entry, mode)
    if key not in _cache:
        _cache[key] = call(entry, server, mode)
    return _cache[key]


def _assert_greedy(token: Token) -> None:
    """Top alternatives sorted, the chosen token first at temperature 0."""
    top = list(token.top)
    assert len(top) == TOP_K
    values = [lp for _, lp in top]
    assert values == sorted(values, reverse=True)
    assert all(math.isfinite(v) and v <= 0.0 for v in values)
    assert top[0][0] == token.token
    assert top[0][1] == pytest.approx(token.logprob, abs=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("entry", ENTRIES)
def test_span_carries_what_the_server_returned(
    entry: Entry, mode: Mode, llama: LlamaServer
) -> None:
    deviations = llama.deviations
    outcome = _outcome(entry, llama, mode)
    got = outcome.got
    # The tiny model never ends by itself: every call runs to max_tokens.
    assert got.finish_reasons == ("length",)
    assert len(got.tokens) == MAX_TOKENS
    assert "".join(t.token for t in got.tokens) == got.text
    for token in got.tokens:
        _assert_greedy(token)
        if deviations.bytes_null:
            assert token.bytes is None
        else:  # the token's UTF-8 bytes, as OpenAI sends them
            assert token.bytes == list(token.token.encode())
    check_span(outcome, llama, Request(), mode)
    assert got.response_model == llama.model
    stream = mode.endswith("stream")
    if not stream or (entry != "langchain" and not deviations.ignore_include_usage):
        # A non-streamed answer has usage; a stream asked for it has it unless ignored.
        assert got.output_tokens == MAX_TOKENS
    elif stream and deviations.ignore_include_usage:
        assert got.output_tokens is None
    if entry != "langchain" or not stream:  # langchain-openai drops a stream's response id
        assert str(got.response_id).startswith("chatcmpl-")


@pytest.mark.parametrize("entry", ENTRIES)
def test_stream_adds_up_to_the_non_streamed_answer(entry: Entry, llama: LlamaServer) -> None:
    invoked = _outcome(entry, llama, "invoke")
    for mode in ("stream", "ainvoke", "astream"):
        other = _outcome(entry, llama, mode)
        assert other.got.text == invoked.got.text
        assert [t.token for t in other.got.tokens] == [t.token for t in invoked.got.tokens]
        # The same tokens; the server's paths differ in the logprobs' last digits (~1e-6).
        assert [t.logprob for t in other.got.tokens] == pytest.approx(
            [t.logprob for t in invoked.got.tokens], abs=1e-4
        )
        assert [[a for a, _ in t.top] for t in other.got.tokens] == [
            [a for a, _ in t.top] for t in invoked.got.tokens
        ]
        span = dict(other.span.attributes or {})
        assert span["logprobs.sum"] == pytest.approx(
            dict(invoked.span.attributes or {})["logprobs.sum"], abs=1e-3
        )


@pytest.mark.parametrize("mode", MODES)
def test_three_entry_points_agree(mode: Mode, llama: LlamaServer) -> None:
    ours = _outcome("ours", llama, mode)
    for entry in ("langchain", "raw"):
        other = _outcome(entry, llama, mode)
        assert other.got.text == ours.got.text
        # Same tokens and alternatives; repeated calls differ in the last digits (~1e-6).
        got, want = event_tokens(other.span), event_tokens(ours.span)
        assert [(t.token, [a for a, _ in t.top]) for t in got] == [
            (t.token, [a for a, _ in t.top]) for t in want
        ]
        assert [lp for t in got for _, lp in t.top] == pytest.approx(
            [lp for t in want for _, lp in t.top], abs=1e-4
        )
