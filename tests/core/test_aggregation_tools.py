"""`chunk + chunk` with tool calls and refusals: any split aggregates to the whole answer.

Property tests feed `_wire.StreamAccumulator` the chunk JSON of random answers (text and
parallel tool calls, arguments cut at any character, several calls' deltas in one chunk,
arguments that do not parse; or a refusal with its logprobs) and compare the sum of the
chunks, bracketed any way, with the non-streamed message. Plus the replay server's
streams against its own non-streamed answers, and the shared-list structure of a long
tool-call stream.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import reduce
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logprobscope import AIMessage, AIMessageChunk, InvalidToolCall, ToolCall
from logprobscope._wire import StreamAccumulator, message_from_completion
from logprobscope.testing import make_completion
from tests.support.factories import ModelFactory, ServerFactory

Entry = dict[str, Any]

texts = st.text(max_size=5)
logprobs = st.floats(min_value=-30.0, max_value=0.0, allow_nan=False)


@st.composite
def entries(draw: st.DrawFn) -> list[Entry]:
    out = []
    for token in draw(st.lists(texts, max_size=6)):
        out.append(
            {
                "token": token,
                "logprob": draw(logprobs),
                "bytes": list(token.encode()),
                "top_logprobs": [],
            }
        )
    return out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def arguments(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 5)) == 0:  # now and then not a JSON object
        return draw(st.sampled_from(['{"city": "Pa', "[1, 2]", "", "not json", '"x"']))
    value = draw(st.dictionaries(texts, json_values, max_size=3))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    return json.dumps(value, separators=separators, ensure_ascii=draw(st.booleans()))


@st.composite
def answers(draw: st.DrawFn) -> dict[str, Any]:
    """A non-streamed completion: text and tool calls, or a refusal."""
    items = draw(entries())
    text = "".join(e["token"] for e in items)
    refusal = draw(st.booleans()) and draw(st.integers(0, 2)) == 0
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    lp: dict[str, Any] = {"content": items, "refusal": None}
    finish = "stop"
    if refusal:
        message = {"role": "assistant", "content": None, "refusal": text}
        lp = {"content": None, "refusal": items}
    else:
        names = draw(st.lists(st.sampled_from(["get_weather", "f", "é"]), max_size=3))
        if names:
            message["tool_calls"] = [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": draw(arguments())},
                }
                for i, name in enumerate(names)
            ]
            finish = "tool_calls"
            if not text:
                message["content"] = None
    return {
        "id": "chatcmpl-p",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "system_fingerprint": "fp",
        "choices": [{"index": 0, "message": message, "logprobs": lp, "finish_reason": finish}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }


def _cuts(draw: st.DrawFn, n: int) -> list[int]:
    cuts = sorted(set(draw(st.lists(st.integers(0, n), max_size=n + 2))))
    return [0, *cuts, n]


@st.composite
def streams(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An answer and the chunk JSON of one way of streaming it."""
    completion = draw(answers())
    choice = completion["choices"][0]
    message = choice["message"]
    refusal = message["content"] is None and message.get("refusal") is not None
    key = "refusal" if refusal else "content"
    items = choice["logprobs"][key]
    base = {k: completion[k] for k in ("id", "model", "system_fingerprint")}

    def chunk(delta: dict[str, Any], lp: object, finish: str | None = None) -> dict[str, Any]:
        c = {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}
        return {**base, "object": "chat.completion.chunk", "choices": [c]}

    def lp_of(group: list[Entry]) -> dict[str, Any]:
        return (
            {"content": None, "refusal": group} if refusal else {"content": group, "refusal": None}
        )

    first = {
        "role": "assistant",
        "content": None if refusal else "",
        "refusal": "" if refusal else None,
    }
    out = [chunk(first, lp_of([]))]
    bounds = _cuts(draw, len(items))
    for a, b in zip(bounds, bounds[1:], strict=False):
        group = items[a:b]
        out.append(chunk({key: "".join(e["token"] for e in group)}, lp_of(group)))
    deltas: list[dict[str, Any]] = []
    for i, call in enumerate(message.get("tool_calls", [])):
        deltas.append(
            {
                "index": i,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
        )
        text = call["function"]["arguments"]
        pieces = _cuts(draw, len(text))
        for a, b in zip(pieces, pieces[1:], strict=False):
            deltas.append({"index": i, "function": {"arguments": text[a:b]}})
    groups = _cuts(draw, len(deltas))
    for a, b in zip(groups, groups[1:], strict=False):
        if b > a:  # several deltas in one chunk, as a server may send them
            out.append(chunk({"tool_calls": deltas[a:b]}, {"content": [], "refusal": None}))
    out.append(chunk({}, None, choice["finish_reason"]))
    out.append(
        {**base, "object": "chat.completion.chunk", "choices": [], "usage": completion["usage"]}
    )
    return completion, out


def _wire(value: object) -> Any:
    return json.loads(json.dumps(value))


def _feed(bodies: Sequence[object]) -> tuple[list[AIMessageChunk], StreamAccumulator]:
    acc = StreamAccumulator()
    chunks = [c for c in (acc.feed(_wire(b)) for b in bodies) if c is not None]
    return chunks, acc


def _tree(draw: st.DrawFn, lo: int, hi: int) -> Any:
    if hi - lo == 1:
        return lo
    mid = draw(st.integers(lo + 1, hi - 1))
    return (_tree(draw, lo, mid), _tree(draw, mid, hi))


def _evaluate(tree: Any, chunks: Sequence[AIMessageChunk]) -> AIMessageChunk:
    if isinstance(tree, int):
        return chunks[tree]
    return _evaluate(tree[0], chunks) + _evaluate(tree[1], chunks)


@settings(max_examples=150, deadline=None)
@given(streams(), st.data())
def test_any_split_and_bracketing_aggregates_to_the_message(
    case: tuple[dict[str, Any], list[dict[str, Any]]], data: st.DataObject
) -> None:
    completion, bodies = case
    message = message_from_completion(_wire(completion))
    chunks, acc = _feed(bodies)
    left = reduce(lambda a, b: a + b, chunks)
    assert left.to_message() == message
    assert acc.message(incomplete=False) == message
    tree = data.draw(st.composite(lambda draw: _tree(draw, 0, len(chunks)))())
    assert _evaluate(tree, chunks).to_message() == message
    # what the aggregate sends back is what the non-streamed message sends
    try:
        sent = message.to_openai()
    except ValueError:  # a call the API could not take back: refused alike
        with pytest.raises(ValueError):
            left.to_openai()
    else:
        assert left.to_openai() == sent
    calls: list[ToolCall | InvalidToolCall] = [*message.tool_calls, *message.invalid_tool_calls]
    wire_calls = completion["choices"][0]["message"].get("tool_calls", [])
    assert sorted(c.arguments or "" for c in calls) == sorted(
        c["function"]["arguments"] for c in wire_calls
    )


@settings(max_examples=60, deadline=None)
@given(streams(), st.data())
def test_reading_midway_and_forking_change_nothing(
    case: tuple[dict[str, Any], list[dict[str, Any]]], data: st.DataObject
) -> None:
    completion, bodies = case
    message = message_from_completion(_wire(completion))
    chunks, _ = _feed(bodies)
    agg = chunks[0]
    forks = []
    for chunk in chunks[1:]:
        if data.draw(st.booleans()):
            _ = (agg.tool_calls, agg.invalid_tool_calls, agg.refusal, agg.tool_call_chunks)
        if data.draw(st.integers(0, 4)) == 0:
            before = agg.to_message()
            forks.append((agg + chunks[0], before))
        agg = agg + chunk
    assert agg.to_message() == message
    for fork, before in forks:
        assert fork.to_message().content == before.content + chunks[0].content


@pytest.mark.parametrize("chunk_tokens", [1, 2, 5])
@pytest.mark.parametrize(
    "completion",
    [
        make_completion(
            ["Let", "'s", " see", "."], tool_calls=[("f", {"a": [1, "é"]}), ("g", "{}")]
        ),
        make_completion([], tool_calls=[("get_weather", {"city": "New York City"})]),
        make_completion([("I", -0.5), (" can't", -0.01), (".", -1.5)], refusal=True, k=2),
        make_completion([], tool_calls=[("broken", '{"city": "Par')]),
    ],
    ids=["text-and-parallel-calls", "one-call", "refusal", "unparseable"],
)
async def test_server_streams_aggregate_to_invoke(
    completion: dict[str, object],
    chunk_tokens: int,
    make_server: ServerFactory,
    make_model: ModelFactory,
) -> None:
    server = make_server([completion], chunk_tokens=chunk_tokens)
    model = make_model(server, logprobs=True, top_logprobs=2)
    message = model.invoke("x")
    assert reduce(lambda a, b: a + b, model.stream("x")).to_message() == message
    chunks = [c async for c in model.astream("x")]
    assert reduce(lambda a, b: a + b, chunks).to_message() == await model.ainvoke("x")
    wire: Any = completion["choices"]
    calls = wire[0]["message"].get("tool_calls", [])
    assert len(message.tool_calls) + len(message.invalid_tool_calls) == len(calls)
    assert message.refusal == wire[0]["message"].get("refusal")


def test_32000_argument_deltas_share_one_list() -> None:
    n = 32_000
    acc = StreamAccumulator()
    head = {
        "index": 0,
        "id": "call_0",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }

    def event(delta: dict[str, Any]) -> dict[str, Any]:
        return {"id": "x", "choices": [{"index": 0, "delta": delta}]}

    first = acc.feed(event({"role": "assistant", "content": None, "tool_calls": [head]}))
    assert first is not None
    agg = first
    opening = acc.feed(event({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":"'}}]}))
    assert opening is not None
    agg = agg + opening
    for i in range(n):
        piece = {"index": 0, "function": {"arguments": f"w{i} "}}
        chunk = acc.feed(event({"tool_calls": [piece]}))
        assert chunk is not None
        agg = agg + chunk
        if i % 8000 == 0:  # reading midway joins once and keeps the slice
            assert agg.invalid_tool_calls and not agg.tool_calls
    closing = acc.feed(event({"tool_calls": [{"index": 0, "function": {"arguments": '"}'}}]}))
    assert closing is not None
    agg = agg + closing
    more = object.__getattribute__(agg, "_more")
    assert more.tools.pieces is acc.deltas  # nothing copied: one list for the stream
    assert (more.tools.start, more.tools.stop) == (0, n + 3)
    [call] = agg.tool_calls
    assert call.args == {"a": "".join(f"w{i} " for i in range(n))}
    assert agg.to_message() == acc.message(incomplete=False)
    assert isinstance(agg.to_message(), AIMessage)
