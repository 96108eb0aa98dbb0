"""Several token streams in one span (choice 0's content, its refusal, other choices): each
with its own indexes, marked on its events, never mixed in a batch, none lost in any mode."""

from __future__ import annotations

import random
from typing import Any

import pytest

from logprobscope.otel._events import EventsMode, StreamKey

from .test_event_writer import T0, TOKEN, TOKENS, Recorder, make, plain

CONTENT: StreamKey = ("content", 0)
REFUSAL: StreamKey = ("refusal", 0)
OTHER: StreamKey = ("content", 1)


def stream_of(name: str, attributes: dict[str, Any]) -> StreamKey:
    prefix = "logprobs.token." if name == TOKEN else "logprobs.tokens."
    return (
        attributes.get(prefix + "channel", "content"),
        attributes.get(prefix + "choice_index", 0),
    )


def covered(recorder: Recorder) -> dict[StreamKey, list[int]]:
    """Every stream's token indexes, in the order of the events; a token event that repeats
    a token of a batch before it (the least likely of a batched call, at most 8 in all) is
    not counted again."""
    seen: dict[StreamKey, list[int]] = {}
    batched: set[tuple[StreamKey, int]] = set()
    repeats = 0
    for name, attributes, _ in recorder.events:
        key = stream_of(name, attributes)
        if name == TOKEN:
            index = attributes["logprobs.token.index"]
            if (key, index) in batched:
                repeats += 1
                continue
            seen.setdefault(key, []).append(index)
        else:
            start = attributes["logprobs.tokens.start_index"]
            count = len(attributes["logprobs.tokens.logprobs"])
            seen.setdefault(key, []).extend(range(start, start + count))
            batched.update((key, i) for i in range(start, start + count))
    assert repeats <= 8
    return seen


def test_choice_0_content_events_carry_no_stream_attributes() -> None:
    writer, recorder = make("tokens", None)
    buf = plain(3)
    writer.add(buf, 0, 2, T0)
    writer.add(buf, 2, 3, T0 + 1, REFUSAL)
    writer.add(buf, 0, 1, T0 + 2, ("refusal", 2))
    writer.add(buf, 1, 2, T0 + 3, OTHER)
    assert [set(a) for _, a, _ in recorder.events[:2]] == [
        {
            "logprobs.token.index",
            "logprobs.token.line",
            "logprobs.token.logprob",
            "logprobs.token.probability",
        }
    ] * 2
    assert [
        (
            a["logprobs.token.index"],
            a.get("logprobs.token.channel"),
            a.get("logprobs.token.choice_index"),
        )
        for _, a, _ in recorder.events
    ] == [(0, None, None), (1, None, None), (0, "refusal", None), (0, "refusal", 2), (0, None, 1)]


def test_each_stream_has_its_own_indexes_in_batches_too() -> None:
    writer, recorder = make("batched", None)
    buf = plain(200)
    writer.add(buf, 0, 10, T0)
    writer.add(buf, 10, 20, T0 + 1, REFUSAL)
    writer.add(buf, 20, 100, T0 + 2)
    writer.add(buf, 100, 105, T0 + 3, REFUSAL)
    writer.close()
    events = [
        (name, stream_of(name, a), ts, a.get("logprobs.tokens.start_index"))
        for name, a, ts in recorder.events
    ]
    # Held to the end, 64 tokens a batch, each stamped with its first token's arrival; then
    # each stream's least likely token (the lowest: none is below p = 0.5) at its arrival.
    assert events == [
        (TOKENS, CONTENT, T0, 0),
        (TOKENS, REFUSAL, T0 + 1, 0),
        (TOKENS, CONTENT, T0 + 2, 64),
        (TOKEN, CONTENT, T0 + 2, None),
        (TOKEN, REFUSAL, T0 + 3, None),
    ]
    assert [a["logprobs.token.index"] for name, a, _ in recorder.events if name == TOKEN] == [
        89,
        14,
    ]
    assert recorder.events[1][1]["logprobs.tokens.logprobs"] == tuple(
        -i / 1000 for i in (*range(10, 20), *range(100, 105))
    )
    assert covered(recorder) == {CONTENT: list(range(90)), REFUSAL: list(range(15))}
    assert writer.dropped == 0


@pytest.mark.parametrize("mode", ["tokens", "batched"])
@pytest.mark.parametrize("limit", [2, 3, 5, 16, 128])
def test_interleaved_choices_are_never_mixed_and_never_lost(mode: EventsMode, limit: int) -> None:
    # An n=3 stream: chunks of the choices interleave, one to four tokens each.
    writer, recorder = make(mode, limit)
    rng = random.Random(limit)
    buf = plain(30_000)
    position = 0
    sent: dict[StreamKey, int] = {}
    while position < len(buf) - 4:
        key = ("content", rng.randrange(3))
        size = rng.randint(1, 4)
        writer.add(buf, position, position + size, T0 + position, key)
        sent[key] = sent.get(key, 0) + size
        position += size
    writer.close()
    assert len(recorder.events) <= limit - 1  # the exception's slot is still free
    seen = covered(recorder)
    recorded = sum(len(v) for v in seen.values())
    assert recorded + writer.dropped == sum(sent.values())
    for indexes in seen.values():
        assert indexes == sorted(set(indexes))  # in order, each once
    budget = limit - 1
    batch_slots = budget if mode == "batched" else min(12, max(1, budget // 4))
    if batch_slots >= 3:  # room for the three streams' final batches: nothing dropped
        assert writer.dropped == 0
        assert {k: len(v) for k, v in seen.items()} == sent
        for key, indexes in seen.items():
            assert indexes == list(range(sent[key]))


def test_a_new_stream_without_a_final_slot_is_dropped_and_counted() -> None:
    writer, recorder = make("batched", 2)  # one batch event in all
    buf = plain(10)
    writer.add(buf, 0, 5, T0)
    writer.add(buf, 5, 8, T0 + 1, REFUSAL)  # no slot left for a second batch
    writer.add(buf, 8, 10, T0 + 2)
    writer.close()
    assert covered(recorder) == {CONTENT: list(range(7))}
    assert writer.dropped == 3


def test_low_confidence_keeps_each_streams_indexes() -> None:
    writer, recorder = make("low_confidence", None, threshold=0.9999)
    buf = plain(6)  # token 0 has p = 1; the others are below 0.9999
    writer.add(buf, 0, 3, T0)
    writer.add(buf, 3, 6, T0 + 1, REFUSAL)
    assert covered(recorder) == {CONTENT: [1, 2], REFUSAL: [0, 1, 2]}


def test_extra_events_only_take_the_room_left() -> None:
    writer, recorder = make("tokens", 5)
    buf = plain(3)
    writer.add(buf, 0, 3, T0)
    writer.close()
    assert writer.events_used == 3
    assert writer.extra("x", {"k": 1}, T0 - 5)  # never before the tokens on the timeline
    assert writer.extra("x", {"k": 2}, T0)
    assert not writer.extra("x", {"k": 3}, T0)
    assert recorder.names() == [TOKEN] * 3 + ["x", "x"]
    assert [ts for _, _, ts in recorder.events[3:]] == [T0, T0]
    unlimited, _ = make("tokens", None)
    assert all(unlimited.extra("x", {}, T0) for _ in range(1000))


def test_tokens_mode_switch_splits_a_stream_at_the_budget() -> None:
    writer, recorder = make("tokens", 128)
    buf = plain(300)
    writer.add(buf, 0, 100, T0)
    writer.add(buf, 100, 300, T0 + 1, REFUSAL)  # 7 more token events, then held
    writer.close()
    names = [(name, stream_of(name, a)) for name, a, _ in recorder.events]
    assert names[:107] == [(TOKEN, CONTENT)] * 100 + [(TOKEN, REFUSAL)] * 7
    # 193 refusal tokens held: 12 even batches, then its least likely token once more.
    assert names[107:] == [(TOKENS, REFUSAL)] * 12 + [(TOKEN, REFUSAL)]
    assert covered(recorder) == {CONTENT: list(range(100)), REFUSAL: list(range(200))}
    assert writer.mode == "batched"


def test_held_tokens_of_several_streams_that_fit_are_token_events_in_arrival_order() -> None:
    writer, recorder = make("tokens", 128)
    buf = plain(120)
    writer.add(buf, 0, 100, T0)
    writer.add(buf, 100, 110, T0 + 1, REFUSAL)  # 7 token events, 3 held
    writer.add(buf, 110, 120, T0 + 2)  # held
    writer.close()
    tail = [
        (stream_of(name, a), a["logprobs.token.index"], ts) for name, a, ts in recorder.events[107:]
    ]
    assert tail == [
        *((REFUSAL, i, T0 + 1) for i in range(7, 10)),
        *((CONTENT, i, T0 + 2) for i in range(100, 110)),
    ]
    assert recorder.names() == [TOKEN] * 120
    assert writer.mode == "tokens"


def test_the_batch_slots_are_shared_in_proportion_to_each_streams_tokens() -> None:
    writer, recorder = make("tokens", 128)
    buf = plain(1007)
    writer.add(buf, 0, 107, T0)  # the token events' share
    writer.add(buf, 107, 707, T0 + 1)  # 600 content tokens held
    writer.add(buf, 707, 1007, T0 + 2, OTHER)  # 300 of choice 1
    writer.close()
    batches = [
        (stream_of(name, a), a["logprobs.tokens.start_index"], len(a["logprobs.tokens.logprobs"]))
        for name, a, _ in recorder.events
        if name == TOKENS
    ]
    # 12 slots: one each, the other 10 as 600 : 300 (6.67 and 3.33, the larger remainder
    # first): 8 batches of 75 and 4 of 75.
    assert batches == [(CONTENT, 107 + 75 * b, 75) for b in range(8)] + [
        (OTHER, 75 * b, 75) for b in range(4)
    ]
    # The least likely repeated are choice 0's content's (tokens 694.. are below p = 0.5).
    repeats = [
        (stream_of(name, a), a["logprobs.token.index"])
        for name, a, _ in recorder.events[107:]
        if name == TOKEN
    ]
    assert repeats == [(CONTENT, i) for i in range(699, 707)]
    assert len(recorder.events) == 127
    assert covered(recorder) == {CONTENT: list(range(707)), OTHER: list(range(300))}
