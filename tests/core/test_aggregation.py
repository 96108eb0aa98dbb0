"""`chunk + chunk`: any split of a completion aggregates to the non-streamed message.

Property tests in two tiers: through the replay server (real SSE over loopback, split by
`chunk_tokens`), and in-process by feeding `_wire.StreamAccumulator` synthetic chunk JSON
(any partition, including empty chunks). Plus associativity, forks, user-built chunks,
copies of lazily joined aggregates, and the shared-buffer structure of a long stream.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import reduce
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logprobscope import (
    AIMessage,
    AIMessageChunk,
    ChatOpenAI,
    ChoiceLogprobs,
    ResponseMetadata,
    TokenLogprob,
    TokenLogprobList,
    TopLogprob,
    UsageMetadata,
)
from logprobscope._wire import StreamAccumulator, message_from_completion
from logprobscope.testing import Completion, ReplayServer, make_completion
from tests.support.factories import ModelFactory, ServerFactory
from tests.support.recording import RecordingHandler

Entry = dict[str, Any]

# -- building completions and their chunk JSON ------------------------------------------------

finite_logprobs = st.one_of(
    st.floats(min_value=-30.0, max_value=0.0, allow_nan=False),
    st.sampled_from([0.0, -9999.0, -1e-12, -math.inf]),
)
token_texts = st.text(max_size=6)


@st.composite
def entries(draw: st.DrawFn, *, max_tokens: int = 12) -> list[Entry]:
    """OpenAI-shaped `logprobs.content` entries, with odd bytes now and then."""
    out: list[Entry] = []
    for _ in range(draw(st.integers(0, max_tokens))):
        token = draw(token_texts)
        raw: list[int] | None = draw(
            st.one_of(
                st.just(list(token.encode("utf-8"))),
                st.none(),
                st.lists(st.integers(0, 255), max_size=4),
            )
        )
        tops = [
            {"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))}
            for t, lp in draw(st.lists(st.tuples(token_texts, finite_logprobs), max_size=3))
        ]
        out.append(
            {"token": token, "logprob": draw(finite_logprobs), "bytes": raw, "top_logprobs": tops}
        )
    return out


def completion_of(items: Sequence[Entry], *, finish_reason: str = "stop") -> Completion:
    return {
        "id": "chatcmpl-prop",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-prop",
        "system_fingerprint": "fp_prop",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(e["token"] for e in items)},
                "logprobs": {"content": list(items), "refusal": None},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": 7,
            "completion_tokens": len(items),
            "total_tokens": 7 + len(items),
        },
    }


def chunk_jsons(completion: Completion, groups: Sequence[Sequence[Entry]]) -> list[dict[str, Any]]:
    """The `chat.completion.chunk` objects of a stream that splits the tokens into groups."""
    base = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": 1,
        "model": completion["model"],
        "system_fingerprint": completion["system_fingerprint"],
    }
    choice: Any = completion["choices"][0]  # type: ignore[index]

    def chunk(delta: dict[str, Any], logprobs: object, finish: str | None) -> dict[str, Any]:
        c = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {**base, "choices": [c], "usage": None}

    out = [chunk({"role": "assistant", "content": ""}, {"content": [], "refusal": None}, None)]
    for group in groups:
        text = "".join(e["token"] for e in group)
        out.append(chunk({"content": text}, {"content": list(group), "refusal": None}, None))
    out.append(chunk({}, None, choice["finish_reason"]))
    out.append({**base, "choices": [], "usage": completion["usage"]})
    return out


def wire(value: object) -> Any:
    """What a client decodes after the value crossed the wire (-inf as -Infinity)."""
    return json.loads(json.dumps(value))


def feed_all(bodies: Sequence[object]) -> tuple[list[AIMessageChunk], StreamAccumulator]:
    acc = StreamAccumulator()
    chunks = [c for c in (acc.feed(wire(b)) for b in bodies) if c is not None]
    return chunks, acc


def add_all(chunks: Sequence[AIMessageChunk]) -> AIMessageChunk:
    return reduce(lambda a, b: a + b, chunks)


@st.composite
def partitions(draw: st.DrawFn, items: Sequence[Entry]) -> list[list[Entry]]:
    """Any split of items into consecutive groups, empty groups allowed."""
    cuts = sorted(draw(st.lists(st.integers(0, len(items)), max_size=len(items) + 3)))
    bounds = [0, *cuts, len(items)]
    return [list(items[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


def assert_same_answer(agg: AIMessage, message: AIMessage) -> None:
    assert agg.content == message.content
    assert agg.response_metadata.logprobs == message.response_metadata.logprobs
    assert agg.response_metadata.finish_reason == message.response_metadata.finish_reason
    assert agg.usage_metadata == message.usage_metadata
    assert agg.response_metadata.id == message.response_metadata.id
    assert agg.response_metadata.model_name == message.response_metadata.model_name


def logprob_dump(message: AIMessage) -> list[dict[str, object]] | None:
    lp = message.response_metadata.logprobs
    if lp is None or lp.content is None:
        return None
    return lp.content.dump()


# -- in-process: StreamAccumulator fed synthetic chunk JSON ------------------------------------


@st.composite
def split_completions(draw: st.DrawFn) -> tuple[Completion, list[list[Entry]]]:
    items = draw(entries())
    return completion_of(items), draw(partitions(items))


@settings(max_examples=80, deadline=None)
@given(split_completions())
def test_any_split_aggregates_to_the_message(case: tuple[Completion, list[list[Entry]]]) -> None:
    completion, groups = case
    message = message_from_completion(wire(completion))
    chunks, acc = feed_all(chunk_jsons(completion, groups))
    assert len(chunks) == len(groups) + 3
    agg = add_all(chunks)
    assert_same_answer(agg, message)
    assert agg.to_message() == message
    assert acc.message(incomplete=False) == message
    # -inf survives, as a float
    for got, sent in zip(logprob_dump(agg) or [], completion_entries(completion), strict=True):
        assert got["logprob"] == sent["logprob"]
        assert isinstance(got["logprob"], float)


def completion_entries(completion: Completion) -> list[Entry]:
    return completion["choices"][0]["logprobs"]["content"]  # type: ignore[index,no-any-return]


@st.composite
def trees(draw: st.DrawFn, n: int) -> Any:
    """A random bracketing of range(n): an int leaf or a (left, right) pair."""

    def build(lo: int, hi: int) -> Any:
        if hi - lo == 1:
            return lo
        mid = draw(st.integers(lo + 1, hi - 1))
        return (build(lo, mid), build(mid, hi))

    return build(0, n)


def evaluate(tree: Any, chunks: Sequence[AIMessageChunk]) -> AIMessageChunk:
    if isinstance(tree, int):
        return chunks[tree]
    return evaluate(tree[0], chunks) + evaluate(tree[1], chunks)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_bracketing_gives_the_same_aggregate(data: st.DataObject) -> None:
    completion, groups = data.draw(split_completions())
    message = message_from_completion(wire(completion))
    chunks, _ = feed_all(chunk_jsons(completion, groups))
    tree = data.draw(trees(len(chunks)))
    assert_same_answer(evaluate(tree, chunks), message)


@settings(max_examples=60, deadline=None)
@given(split_completions(), st.data())
def test_associativity(case: tuple[Completion, list[list[Entry]]], data: st.DataObject) -> None:
    completion, groups = case
    chunks, _ = feed_all(chunk_jsons(completion, groups))
    n = len(chunks)
    i = data.draw(st.integers(1, n - 2))
    j = data.draw(st.integers(i + 1, n - 1))
    a, b, c = add_all(chunks[:i]), add_all(chunks[i:j]), add_all(chunks[j:])
    left = (a + b) + c
    right = a + (b + c)
    assert left.content == right.content
    assert left.response_metadata.logprobs == right.response_metadata.logprobs
    assert logprob_dump(left) == logprob_dump(right)
    assert left.usage_metadata == right.usage_metadata


@settings(max_examples=60, deadline=None)
@given(split_completions(), st.data())
def test_forks_are_independent(
    case: tuple[Completion, list[list[Entry]]], data: st.DataObject
) -> None:
    completion, groups = case
    chunks, _ = feed_all(chunk_jsons(completion, groups))
    n = len(chunks)
    k = data.draw(st.integers(1, n - 1))
    others = data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=5))
    base = add_all(chunks[:k])
    base_text, base_lp = base.content, logprob_dump(base)
    forks = [base + chunks[o] for o in others]
    for o, fork in zip(others, forks, strict=True):
        want_text = base_text + chunks[o].content
        want_lp = (base_lp or []) + (logprob_dump(chunks[o]) or [])
        assert fork.content == want_text
        assert (logprob_dump(fork) or []) == want_lp
    # the older aggregate itself never changes
    assert base.content == base_text
    assert logprob_dump(base) == base_lp
    # continuing one fork does not disturb the others
    if len(forks) >= 2:
        longer = forks[0] + chunks[others[1]]
        assert longer.content == base_text + chunks[others[0]].content + chunks[others[1]].content
        assert forks[1].content == base_text + chunks[others[1]].content


@settings(max_examples=60, deadline=None)
@given(split_completions(), st.data())
def test_foreign_adds_never_change_the_streams_answer(
    case: tuple[Completion, list[list[Entry]]], data: st.DataObject
) -> None:
    # While a stream is read, its chunks are added to other things (themselves, older chunks,
    # user-built chunks): the stream's own whole answer must not see any of it.
    completion, groups = case
    message = message_from_completion(wire(completion))
    acc = StreamAccumulator()
    seen: list[AIMessageChunk] = []
    user = AIMessageChunk(
        content="<user>",
        response_metadata=ResponseMetadata(
            logprobs=ChoiceLogprobs(content=[TokenLogprob(token="<user>", logprob=-1.0)])
        ),
    )
    for body in chunk_jsons(completion, groups):
        chunk = acc.feed(wire(body))
        assert chunk is not None
        seen.append(chunk)
        other = data.draw(st.sampled_from([*seen, user]))
        junk = chunk + other
        assert junk.content == chunk.content + other.content
    assert acc.message(incomplete=False) == message
    assert_same_answer(add_all(seen), message)


# -- user-built chunks ------------------------------------------------------------------------


def user_chunk(tokens: Sequence[tuple[str, float]], *, tops: int = 0) -> AIMessageChunk:
    return AIMessageChunk(
        content="".join(t for t, _ in tokens),
        response_metadata=ResponseMetadata(
            logprobs=ChoiceLogprobs(
                content=[
                    TokenLogprob(
                        token=t,
                        logprob=lp,
                        bytes=list(t.encode()),
                        top_logprobs=[TopLogprob(token=t, logprob=lp)] * tops,
                    )
                    for t, lp in tokens
                ]
            )
        ),
    )


user_tokens = st.lists(st.tuples(token_texts, finite_logprobs), max_size=4)


@settings(max_examples=60, deadline=None)
@given(st.lists(user_tokens, min_size=1, max_size=8), st.integers(0, 2))
def test_user_built_chunks_add(groups: list[list[tuple[str, float]]], tops: int) -> None:
    chunks = [user_chunk(g, tops=tops) for g in groups]
    agg = add_all(chunks)
    flat = [pair for g in groups for pair in g]
    assert agg.content == "".join(t for t, _ in flat)
    assert agg.response_metadata.logprobs is not None
    content = agg.response_metadata.logprobs.content
    assert content is not None
    assert [(t.token, t.logprob) for t in content] == flat
    assert all(len(t.top_logprobs) == tops for t in content)
    assert agg == user_chunk(flat, tops=tops)
    # the parts are unchanged
    for chunk, g in zip(chunks, groups, strict=True):
        assert chunk.content == "".join(t for t, _ in g)
        assert chunk.response_metadata.logprobs is not None
        assert len(chunk.response_metadata.logprobs.content or []) == len(g)


def test_user_chunk_validates_plain_lists() -> None:
    chunk = AIMessageChunk(
        content="Hi",
        response_metadata={  # type: ignore[arg-type]
            "logprobs": {"content": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}]}
        },
    )
    assert chunk.response_metadata.logprobs is not None
    content = chunk.response_metadata.logprobs.content
    assert isinstance(content, TokenLogprobList)
    assert content == [TokenLogprob(token="Hi", logprob=-0.5, bytes=[72, 105], top_logprobs=[])]
    assert content[0].model_dump() == {
        "token": "Hi",
        "logprob": -0.5,
        "bytes": [72, 105],
        "top_logprobs": [],
    }


def test_user_chunks_mix_with_stream_chunks() -> None:
    items = [
        {"token": "a", "logprob": -1.0, "bytes": [97], "top_logprobs": []},
        {"token": "b", "logprob": -2.0, "bytes": [98], "top_logprobs": []},
    ]
    completion = completion_of(items)
    chunks, acc = feed_all(chunk_jsons(completion, [items[:1], items[1:]]))
    prefix = user_chunk([("<", -0.1)])
    suffix = user_chunk([(">", -0.2)])
    agg = prefix + add_all(chunks) + suffix
    assert agg.content == "<ab>"
    assert [t.token for t in agg.response_metadata.logprobs.content] == ["<", "a", "b", ">"]  # type: ignore[union-attr]
    assert agg.usage_metadata == UsageMetadata(input_tokens=7, output_tokens=2, total_tokens=9)
    assert acc.message(incomplete=False).content == "ab"


def test_metadata_rules() -> None:
    # latest non-empty metadata wins; usage: the latest that is set
    a = AIMessageChunk(content="x", response_metadata=ResponseMetadata(id="1", model_name="m"))
    b = AIMessageChunk(
        content="y",
        response_metadata=ResponseMetadata(finish_reason="stop"),
        usage_metadata=UsageMetadata(input_tokens=1, output_tokens=2, total_tokens=3),
    )
    c = AIMessageChunk(content="z", response_metadata=ResponseMetadata(id="2"))
    agg = a + b + c
    assert agg.content == "xyz"
    assert agg.response_metadata.id == "2"
    assert agg.response_metadata.model_name == "m"
    assert agg.response_metadata.finish_reason == "stop"
    assert agg.usage_metadata == UsageMetadata(input_tokens=1, output_tokens=2, total_tokens=3)
    assert agg.response_metadata.logprobs is None
    assert type(agg) is AIMessageChunk


def test_adding_a_non_chunk_is_a_type_error() -> None:
    chunk = AIMessageChunk(content="x")
    with pytest.raises(TypeError):
        chunk + AIMessage(content="y")  # type: ignore[operator]
    with pytest.raises(TypeError):
        chunk + "y"  # type: ignore[operator]


# -- copies, dumps and equality of lazily joined aggregates ------------------------------------


def _fresh_aggregate() -> tuple[AIMessageChunk, AIMessage]:
    completion = make_completion(["Hé", "llo", " wor", "ld", "!"], k=2)
    message = message_from_completion(wire(completion))
    items = completion_entries(completion)
    chunks, _ = feed_all(chunk_jsons(completion, [[e] for e in items]))
    return add_all(chunks), message


def _expected_dump(message: AIMessage) -> dict[str, Any]:
    dump = message.model_dump()
    return dump


FIRST_READS: dict[str, Callable[[AIMessageChunk, AIMessage], None]] = {
    "pickle": lambda agg, msg: _check_copy(pickle.loads(pickle.dumps(agg)), msg),
    "copy": lambda agg, msg: _check_copy(copy.copy(agg), msg),
    "deepcopy": lambda agg, msg: _check_copy(copy.deepcopy(agg), msg),
    "model_copy": lambda agg, msg: _check_copy(agg.model_copy(), msg),
    "model_dump": lambda agg, msg: _check_dump(agg.model_dump(), msg),
    "model_dump_json": lambda agg, msg: _check_dump(json.loads(agg.model_dump_json()), msg),
    "eq": lambda agg, msg: _check_eq(agg, msg),
    "repr": lambda agg, msg: _check_repr(agg, msg),
    "content": lambda agg, msg: _check_copy(agg, msg),
}


def _check_copy(value: AIMessageChunk, msg: AIMessage) -> None:
    assert type(value) is AIMessageChunk
    assert value.content == msg.content
    assert value.response_metadata.logprobs == msg.response_metadata.logprobs
    assert value.to_message() == msg
    # a copy still adds up
    more = value + AIMessageChunk(content="?")
    assert more.content == msg.content + "?"


def _check_dump(dump: dict[str, Any], msg: AIMessage) -> None:
    assert dump == wire(msg.model_dump())
    assert dump["content"] == msg.content


def _check_eq(agg: AIMessageChunk, msg: AIMessage) -> None:
    twin, _ = _fresh_aggregate()
    assert agg == twin
    assert agg.to_message() == msg
    assert agg != AIMessageChunk(content=msg.content)


def _check_repr(agg: AIMessageChunk, msg: AIMessage) -> None:
    text = repr(agg)
    assert repr(msg.content) in text
    assert "TokenLogprob(token='Hé'" in text


@pytest.mark.parametrize("first", sorted(FIRST_READS))
def test_lazily_joined_aggregate_first_read(first: str) -> None:
    agg, message = _fresh_aggregate()
    FIRST_READS[first](agg, message)
    # and everything else still agrees afterwards
    for name in sorted(FIRST_READS):
        FIRST_READS[name](agg, message)


def test_pickle_of_a_chunk_carries_only_its_own_tokens() -> None:
    completion = make_completion([f"t{i}" for i in range(2000)])
    chunks, _ = feed_all(chunk_jsons(completion, [[e] for e in completion_entries(completion)]))
    one = chunks[1000]
    restored = pickle.loads(pickle.dumps(one))
    assert restored == one
    assert len(pickle.dumps(one)) < 2000


def test_frozen() -> None:
    agg, _ = _fresh_aggregate()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's ValidationError for frozen
        agg.content = "x"


# -- structure: one shared buffer for a long stream -------------------------------------------


def _buffer(message: AIMessage) -> object:
    lp = message.response_metadata.logprobs
    assert lp is not None and lp.content is not None
    return lp.content._columns()[0]


def _pieces(chunk: AIMessageChunk) -> object:
    return object.__getattribute__(chunk, "_text").pieces


def test_32000_chunks_share_one_buffer() -> None:
    n = 32_000
    acc = StreamAccumulator()
    first = acc.feed(
        {
            "id": "x",
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": {"content": [], "refusal": None},
                }
            ],
        }
    )
    assert first is not None
    agg = first
    for i in range(n):
        token = f" w{i}"
        chunk = acc.feed(
            {
                "id": "x",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": token},
                        "logprobs": {
                            "content": [
                                {
                                    "token": token,
                                    "logprob": -0.5,
                                    "bytes": list(token.encode()),
                                    "top_logprobs": [],
                                }
                            ]
                        },
                    }
                ],
            }
        )
        assert chunk is not None
        agg = agg + chunk
    assert _buffer(agg) is _buffer(first)
    assert _pieces(agg) is _pieces(first)
    logprobs = agg.response_metadata.logprobs
    assert logprobs is not None and logprobs.content is not None
    buf, start, stop = logprobs.content._columns()
    assert (start, stop) == (0, n)
    assert len(buf) == n  # nothing copied into it
    assert len(agg.content) == sum(len(f" w{i}") for i in range(n))
    assert logprobs.content[-1].token == f" w{n - 1}"


def test_long_stream_over_http_shares_one_buffer(
    make_server: ServerFactory, make_model: ModelFactory
) -> None:
    n = 4_000  # the 32,000-chunk case is above, without the HTTP time
    completion = make_completion([(f" w{i}", -0.25) for i in range(n)])
    server = make_server([completion])
    model = make_model(server, logprobs=True)
    stream = model.stream("go")
    first = next(stream)
    agg = first
    count = 0
    for chunk in stream:
        agg = agg + chunk
        count += 1
    assert count == n + 2  # n tokens, finish, usage
    assert _buffer(agg) is _buffer(first)
    assert _pieces(agg) is _pieces(first)
    assert len(agg.response_metadata.logprobs.content) == n  # type: ignore[union-attr, arg-type]
    assert agg.usage_metadata == UsageMetadata(
        input_tokens=10, output_tokens=n, total_tokens=n + 10
    )


# -- through the server: chunk_tokens splits ------------------------------------------------


UNICODE_TOKENS = ["Hé", "llo", " 世界", " 🙂", "!", "\n", " ok", "\u00a0", " «q»", "."]


@pytest.mark.parametrize("chunk_tokens", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("top", [None, 2])
def test_server_splits_aggregate_to_invoke(
    make_server: ServerFactory, make_model: ModelFactory, chunk_tokens: int, top: int | None
) -> None:
    completion = make_completion(UNICODE_TOKENS, k=3)
    server = make_server([completion], chunk_tokens=chunk_tokens)
    model = make_model(server, logprobs=True, top_logprobs=top)
    message = model.invoke("x")
    chunks = list(model.stream("x"))
    content_chunks = [c for c in chunks if c.content]
    assert len(content_chunks) == -(-len(UNICODE_TOKENS) // chunk_tokens)
    agg = add_all(chunks)
    assert_same_answer(agg, message)
    assert agg.content == "".join(UNICODE_TOKENS)
    if top:
        assert all(len(t.top_logprobs) == top for t in agg.response_metadata.logprobs.content)  # type: ignore[union-attr]


async def test_server_splits_async(make_server: ServerFactory, make_model: ModelFactory) -> None:
    completion = make_completion(UNICODE_TOKENS, k=3)
    server = make_server([completion], chunk_tokens=3)
    model = make_model(server, logprobs=True, top_logprobs=3)
    message = await model.ainvoke("x")
    agg: AIMessageChunk | None = None
    async for chunk in model.astream("x"):
        agg = chunk if agg is None else agg + chunk
    assert agg is not None
    assert_same_answer(agg, message)


class _Current:
    """The completion a module-scoped server answers with, set per hypothesis example."""

    def __init__(self) -> None:
        self.completion: Completion = completion_of([])

    def __call__(self, body: Mapping[str, object]) -> Completion:
        return self.completion


@pytest.fixture(scope="module")
def split_servers() -> Iterator[tuple[_Current, dict[int, ChatOpenAI]]]:
    current = _Current()
    servers = [ReplayServer(current, chunk_tokens=k).start() for k in (1, 2, 3, 5)]
    clients = [
        openai.OpenAI(base_url=s.base_url, api_key="k", max_retries=0, timeout=10.0)
        for s in servers
    ]
    models = {
        k: ChatOpenAI(model="gpt-4o", logprobs=True, top_logprobs=3, client=c)
        for k, c in zip((1, 2, 3, 5), clients, strict=True)
    }
    try:
        yield current, models
    finally:
        for c in clients:
            c.close()
        for s in servers:
            s.stop()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(items=entries(max_tokens=20), chunk_tokens=st.sampled_from([1, 2, 3, 5]))
def test_server_property_stream_equals_invoke(
    split_servers: tuple[_Current, dict[int, ChatOpenAI]], items: list[Entry], chunk_tokens: int
) -> None:
    current, models = split_servers
    # The server makes its deltas from the tokens (content is their join).
    current.completion = completion_of(items)
    model = models[chunk_tokens]
    message = model.invoke("x")
    recorder = RecordingHandler()
    chunks = list(model.stream("x", callbacks=[recorder]))
    agg = add_all(chunks)
    assert_same_answer(agg, message)
    assert recorder.message() == message
    recorder.assert_exactly_one_end_per_run()
    if items:
        assert message.response_metadata.logprobs is not None
        assert len(message.response_metadata.logprobs.content or []) == len(items)
    else:  # no tokens: the server sends no logprobs at all
        assert message.response_metadata.logprobs is None
