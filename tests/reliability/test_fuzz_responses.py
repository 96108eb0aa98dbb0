"""Fuzzing the Responses API's decoding: strange events and bodies never crash it.

Whatever a server sends on `/v1/responses`, streamed or not, the decoders give typed
results that dump to JSON, and chunks whose sum is the stream's answer; the one exception
is `ResponseError`, for a failed response or an `error` event (turned into the SDK's
`openai.APIError` by the caller).
"""

from __future__ import annotations

import json
from functools import reduce

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logprobscope import AIMessage, AIMessageChunk
from logprobscope._responses_wire import (
    ResponseError,
    ResponsesAccumulator,
    message_from_response,
)
from logprobscope._wire import loads

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from(["", "\x00", "\ud800", "response.completed"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
token = st.fixed_dictionaries(
    {"token": st.one_of(st.text(max_size=4), scalars), "logprob": st.one_of(scalars)},
    optional={
        "bytes": st.one_of(st.none(), st.lists(st.integers(-5, 300), max_size=4), scalars),
        "top_logprobs": st.one_of(
            st.lists(st.fixed_dictionaries({"token": scalars, "logprob": scalars}), max_size=3),
            scalars,
        ),
    },
)
logprobs = st.one_of(st.lists(token, max_size=4), scalars)
item = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("function_call")},
        optional={"call_id": scalars, "name": scalars, "arguments": st.one_of(st.text(), scalars)},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("message"),
            "content": st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["output_text", "refusal", "x"])},
                    optional={"text": scalars, "refusal": scalars, "logprobs": logprobs},
                ),
                max_size=3,
            ),
        }
    ),
    values,
)
response = st.fixed_dictionaries(
    {},
    optional={
        "id": scalars,
        "model": scalars,
        "status": st.one_of(
            st.sampled_from(["completed", "incomplete", "in_progress", "cancelled"]), scalars
        ),
        "incomplete_details": st.one_of(st.fixed_dictionaries({"reason": scalars}), scalars),
        "output": st.one_of(st.lists(item, max_size=3), scalars),
        "usage": st.one_of(
            st.fixed_dictionaries({}, optional={"input_tokens": scalars, "output_tokens": scalars}),
            scalars,
        ),
    },
)
KINDS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.output_item.done",
    "response.output_text.delta",
    "response.output_text.done",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "error",
    "something.new",
]
event = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(KINDS)},
        optional={
            "response": st.one_of(response, scalars),
            "item": st.one_of(item, scalars),
            "output_index": st.one_of(st.integers(-2, 3), scalars),
            "delta": st.one_of(st.text(max_size=6), scalars),
            "logprobs": logprobs,
            "message": scalars,
        },
    ),
    values,
)


def _wire(body: object) -> object:
    # What the decoders get: the server's JSON as the stream and the model decode it.
    return loads(json.dumps(body).encode())


def _usable(message: AIMessage) -> None:
    # Results must always dump to JSON (NaN and infinities as constants).
    json.loads(message.model_dump_json())
    for call in message.tool_calls:
        assert isinstance(call.args, dict)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, max_size=12), st.booleans())
def test_any_event_sequence(events: list[object], asked: bool) -> None:
    accumulator = ResponsesAccumulator(logprobs=asked)
    chunks: list[AIMessageChunk] = []
    for body in events:
        try:
            chunk = accumulator.feed(_wire(body))
        except ResponseError as failed:
            assert isinstance(failed.message, str) and failed.message
            break
        if chunk is not None:
            chunks.append(chunk)
    message = accumulator.message(incomplete=False)
    _usable(message)
    if not asked:
        assert message.response_metadata.logprobs is None
    if chunks:
        agg = reduce(lambda a, b: a + b, chunks)
        _usable(agg)
        assert agg.content == message.content
        # as JSON: a NaN logprob (a server's null) is equal to itself there
        assert agg.response_metadata.model_dump_json(include={"logprobs"}) == (
            message.response_metadata.model_dump_json(include={"logprobs"})
        )
        assert agg.tool_calls == message.tool_calls


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(response, st.booleans())
def test_any_response_body(body: dict[str, object], asked: bool) -> None:
    try:
        decoded = _wire(body)
        assert isinstance(decoded, dict)
        message = message_from_response(decoded, logprobs=asked)
    except ResponseError:
        assert body.get("status") == "failed"
        return
    _usable(message)
