"""Fuzzing the stream path's decoding: random bytes, truncations, and strange payloads.

Whatever the server sends, the decoder either yields typed chunks whose aggregate dumps
cleanly, or raises one of the documented exceptions: `ValueError` (a chunk that is not
JSON, or not UTF-8: `json.JSONDecodeError` / `UnicodeDecodeError`) or `openai.APIError`
(an in-stream error object). Nothing else.
"""

from __future__ import annotations

import json
import math

import openai
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from logprobscope import AIMessage, AIMessageChunk
from logprobscope._sse import DONE, SSEParser
from logprobscope._text import valid_text
from logprobscope._wire import StreamAccumulator, loads, message_from_completion

DOCUMENTED = (ValueError, openai.APIError)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
# Tokens that are control characters, lone surrogates, markup, or empty.
strange_text = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", "\x00", "\x1b[31m", "\ud800", "\udfff", "<img src=x onerror=alert(1)>"]),
)
top_entry = st.fixed_dictionaries(
    {"token": strange_text, "logprob": st.floats(allow_nan=True, allow_infinity=True)},
    optional={"bytes": st.one_of(st.none(), st.lists(st.integers(-5, 300), max_size=5))},
)
token_entry = st.fixed_dictionaries(
    {
        "token": st.one_of(strange_text, json_scalars),
        "logprob": st.one_of(st.floats(allow_nan=True, allow_infinity=True), json_scalars),
    },
    optional={
        "bytes": st.one_of(st.none(), st.lists(st.integers(-5, 300), max_size=5), json_scalars),
        "top_logprobs": st.one_of(st.none(), st.lists(top_entry, max_size=25), json_scalars),
        "extra_field": json_values,
    },
)
choice_logprobs = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "content": st.one_of(st.none(), st.lists(token_entry, max_size=4)),
            "refusal": st.one_of(st.none(), st.lists(token_entry, max_size=2)),
        },
    ),
    json_scalars,
)
# Choice 0 with text and tokens: left to chance alone, no example of 300 had any (every
# answer was empty), and the token and text paths went unfuzzed.
plausible_choice = st.fixed_dictionaries(
    {
        "index": st.just(0),
        "delta": st.fixed_dictionaries({"content": strange_text}),
        "logprobs": st.fixed_dictionaries(
            {"content": st.lists(token_entry, min_size=1, max_size=4)}
        ),
    },
    optional={"finish_reason": st.one_of(st.none(), st.text(max_size=6), json_scalars)},
)
choice = st.one_of(
    plausible_choice,
    st.fixed_dictionaries(
        {},
        optional={
            "index": st.one_of(st.integers(0, 3), json_scalars),
            "delta": st.one_of(
                st.fixed_dictionaries(
                    {}, optional={"content": st.one_of(strange_text, json_scalars)}
                ),
                json_scalars,
            ),
            "logprobs": choice_logprobs,
            "finish_reason": st.one_of(st.none(), st.text(max_size=6), json_scalars),
        },
    ),
)
# A non-streamed answer's choice: a "message" where a chunk has its "delta".
completion_choice = st.fixed_dictionaries(
    {
        "message": st.one_of(
            st.fixed_dictionaries(
                {"content": st.one_of(strange_text, json_scalars)},
                optional={
                    "role": st.one_of(st.just("assistant"), json_scalars),
                    "refusal": st.one_of(st.none(), strange_text),
                },
            ),
            json_scalars,
        ),
    },
    optional={
        "index": st.one_of(st.just(0), st.integers(0, 3), json_scalars),
        "logprobs": choice_logprobs,
        "finish_reason": st.one_of(st.none(), st.text(max_size=6), json_scalars),
    },
)
usage_body = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "prompt_tokens": json_scalars,
            "completion_tokens": json_scalars,
            "total_tokens": json_scalars,
        },
    ),
    json_scalars,
)
chunk_body = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.one_of(st.text(max_size=5), json_scalars),
            "model": st.one_of(st.text(max_size=5), json_scalars),
            "choices": st.one_of(st.lists(choice, max_size=3), json_scalars),
            "usage": usage_body,
            "unknown": json_values,
        },
    ),
    json_values,
    st.fixed_dictionaries(
        {"choices": st.lists(plausible_choice, min_size=1, max_size=2)},
        optional={"id": st.text(max_size=5), "model": st.text(max_size=5)},
    ),
)
completion_body = st.fixed_dictionaries(
    {"choices": st.one_of(st.lists(completion_choice, min_size=1, max_size=3), json_scalars)},
    optional={
        "id": st.one_of(st.text(max_size=5), json_scalars),
        "model": st.one_of(st.text(max_size=5), json_scalars),
        "usage": usage_body,
        "unknown": json_values,
    },
)


def _loads_object(raw: bytes) -> dict[str, object]:
    body = loads(raw)  # as the invoke path decodes a completion
    assert isinstance(body, dict)
    return body


def _check_usable(message: AIMessage) -> None:
    # Everything a user or a handler does with the result must work.
    message.model_dump()
    message.model_dump_json().encode("utf-8")  # no lone surrogate survives decoding
    repr(message)
    logprobs = message.response_metadata.logprobs
    if logprobs is not None and logprobs.content is not None:
        for token in logprobs.content:
            assert isinstance(token.token, str)
            assert isinstance(token.logprob, float)
            token.model_dump()


def _decode(stream: bytes, cuts: list[int]) -> tuple[list[AIMessageChunk], AIMessage]:
    parser = SSEParser()
    acc = StreamAccumulator()
    chunks: list[AIMessageChunk] = []
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    payloads = [p for piece in pieces for p in parser.feed(piece)] + parser.flush()
    for payload in payloads:
        if payload == DONE:
            break
        body = loads(payload)  # as the stream path decodes each event
        if isinstance(body, dict) and body.get("error"):
            raise openai.APIError("in-stream error", None, body=body)  # type: ignore[arg-type]
        chunk = acc.feed(body)
        if chunk is not None:
            chunks.append(chunk)
    return chunks, acc.message(incomplete=False)


def _cuts(data: st.DataObject, size: int) -> list[int]:
    return sorted(data.draw(st.sets(st.integers(0, size), max_size=6)))


def _flip(body: object, flips: list[tuple[int, int]]) -> bytes:
    """A chunk's JSON with some bytes overwritten: often still JSON, often not."""
    raw = bytearray(json.dumps(body).encode())
    for at, value in flips:
        if raw:
            raw[at % len(raw)] = value
    return bytes(raw)


# Bare random bytes almost never hold a `data:` line (1 example in 300 had one, none reached
# the JSON decoder), so random bytes also come framed as events, alone or as damaged JSON.
damaged_json = st.builds(
    _flip, chunk_body, st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3)
)
framed_bytes = st.lists(
    st.tuples(st.one_of(st.binary(max_size=60), damaged_json), st.sampled_from([b"\n", b"\r\n"])),
    min_size=1,
    max_size=5,
).map(lambda events: b"".join(b"data: " + data + eol + eol for data, eol in events))
random_streams = st.one_of(st.binary(max_size=400), framed_bytes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_streams, st.data())
def test_random_bytes(blob: bytes, data: st.DataObject) -> None:
    try:
        chunks, message = _decode(blob, _cuts(data, len(blob)))
    except DOCUMENTED:
        return
    _check_usable(message)
    for chunk in chunks:
        chunk.model_dump()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(chunk_body, min_size=1, max_size=6), st.data())
def test_strange_but_valid_payloads(bodies: list[object], data: st.DataObject) -> None:
    stream = _events(bodies)
    _check_stream(stream, _cuts(data, len(stream)))


def test_nan_logprobs_are_compared_too() -> None:
    # NaN != NaN: the aggregate and the message are compared as JSON text, not skipped.
    nan_token = {"token": "a", "logprob": math.nan, "top_logprobs": [{"token": "a", "logprob": 0}]}
    other = {"token": "b", "logprob": -1.0, "top_logprobs": [{"token": "c", "logprob": math.nan}]}
    bodies: list[object] = [
        {
            "choices": [
                {"index": 0, "delta": {"content": "a"}, "logprobs": {"content": [nan_token]}}
            ]
        },
        {"choices": [{"index": 0, "delta": {"content": "b"}, "logprobs": {"content": [other]}}]},
    ]
    _check_stream(_events(bodies), [])


def _events(bodies: list[object]) -> bytes:
    stream = b"".join(
        b"data: " + json.dumps(body, allow_nan=True).encode() + b"\n\n" for body in bodies
    )
    return stream + b"data: [DONE]\n\n"


def _check_stream(stream: bytes, cuts: list[int]) -> None:
    """The stream decodes to a usable message that its chunks add up to."""
    try:
        chunks, message = _decode(stream, cuts)
    except openai.APIError:
        return  # a body with a truthy "error" key is an in-stream error, as in the SDK
    _check_usable(message)
    agg: AIMessageChunk | None = None
    for chunk in chunks:
        agg = chunk if agg is None else agg + chunk
    if agg is not None:
        assert agg.content == message.content
        assert _tokens_json(agg) == _tokens_json(message)


def _tokens_json(message: AIMessage) -> str | None:
    """The tokens as JSON text, where NaN equals NaN (a NaN logprob is data, not a hole)."""
    logprobs = message.response_metadata.logprobs
    if logprobs is None or logprobs.content is None:
        return None
    return json.dumps(logprobs.content.dump())


@settings(max_examples=200, deadline=None)
@given(st.lists(chunk_body, min_size=1, max_size=4), st.integers(0, 2000))
def test_truncated_streams(bodies: list[object], cut: int) -> None:
    stream = b"".join(b"data: " + json.dumps(body).encode() + b"\n\n" for body in bodies)
    try:
        _chunks, message = _decode(stream[:cut], [])
    except DOCUMENTED:
        return
    _check_usable(message)


def _choice_zero(body: dict[str, object]) -> object:
    choices = body.get("choices")
    if isinstance(choices, list):
        for item in choices:
            if isinstance(item, dict) and item.get("index", 0) == 0:
                return item
    return None


@settings(max_examples=300, deadline=None)
@given(completion_body)
@example({"choices": [{"message": {"content": 5}}]})  # not a string: no text, not 5
@example({"choices": [{"index": 1, "message": {"content": "no"}}, {"message": {"content": "a"}}]})
@example({"choices": [{"message": {"content": "x"}, "logprobs": {"content": [{"token": 1}]}}]})
def test_whole_completion_bodies(body: dict[str, object]) -> None:
    # Non-streamed bodies: choices with a "message" (chunk bodies have none, and would leave
    # the message's decoding unfuzzed).
    message = message_from_completion(_loads_object(json.dumps(body, allow_nan=True).encode()))
    _check_usable(message)
    assert isinstance(message.content, str)
    first = _choice_zero(body)
    sent = first.get("message") if isinstance(first, dict) else None
    text = sent.get("content") if isinstance(sent, dict) else None
    # JSON may carry lone surrogates; the decoder gives each as U+FFFD (see valid_text).
    assert message.content == (valid_text(text) if isinstance(text, str) else "")


def test_huge_top_logprobs_list() -> None:
    entry = {
        "token": "a",
        "logprob": -0.1,
        "top_logprobs": [{"token": str(i), "logprob": -i / 10} for i in range(5000)],
    }
    body = {"choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": {"content": [entry]}}]}
    chunks, message = _decode(b"data: " + json.dumps(body).encode() + b"\n\n", [])
    assert len(chunks) == 1
    logprobs = message.response_metadata.logprobs
    assert logprobs is not None and logprobs.content is not None
    assert len(logprobs.content[0].top_logprobs) == 5000


def test_non_standard_json_numbers_are_kept() -> None:
    # vLLM-style floors and infinities; Python's json reads -Infinity and NaN tokens.
    payload = (
        b'data: {"choices": [{"index": 0, "delta": {"content": "x"}, "logprobs": {"content": ['
        b'{"token": "x", "logprob": -Infinity, "bytes": null, "top_logprobs": ['
        b'{"token": "y", "logprob": -9999.0, "bytes": null}, {"token": "z", "logprob": NaN}]}]}}]}'
        b"\n\n"
    )
    _chunks, message = _decode(payload, [])
    logprobs = message.response_metadata.logprobs
    assert logprobs is not None and logprobs.content is not None
    token = logprobs.content[0]
    assert token.logprob == -math.inf
    assert token.top_logprobs[0].logprob == -9999.0
    assert math.isnan(token.top_logprobs[1].logprob)
    message.model_dump_json()


def test_lone_surrogates_survive_a_json_dump() -> None:
    # JSON may escape a lone surrogate and json.loads accepts it; as text it is U+FFFD (the
    # server's bytes are kept), so every result dumps. A valid pair stays one character.
    entry = b'{"token": "\\ud800", "logprob": -0.5, "bytes": [237, 160, 128]}'
    completion = b'{"choices": [{"index": 0, "message": {"content": "a\\ud800"}, '
    completion += b'"logprobs": {"content": [' + entry + b"]}}]}"
    message = message_from_completion(_loads_object(completion))
    chunk = b'{"choices": [{"index": 0, "delta": {"content": "a\\ud800\\ud83d\\ude00"}, '
    chunk += b'"logprobs": {"content": [' + entry + b"]}}]}"
    _chunks, streamed = _decode(b"data: " + chunk + b"\n\ndata: [DONE]\n\n", [])
    assert message.content == "a\ufffd"
    assert streamed.content == "a\ufffd\U0001f600"
    for decoded in (message, streamed):
        dumped = json.loads(decoded.model_dump_json())  # every result dumps
        assert dumped["content"] == decoded.content
        logprobs = decoded.response_metadata.logprobs
        assert logprobs is not None and logprobs.content is not None
        token = logprobs.content[0]
        assert (token.token, token.bytes) == ("\ufffd", [237, 160, 128])
