"""The event writer on its own, without a span: which events, with which attributes, within
which budget, for every mode, limit and way of adding tokens."""

from __future__ import annotations

import math
from typing import Any

import pytest
from opentelemetry.util.types import AttributeValue

from logprobscope._logprobs import TokenBuffer
from logprobscope.otel._events import EventsMode, EventWriter

TOKEN = "logprobs.token"
TOKENS = "logprobs.tokens"
T0 = 1_800_000_000_000_000_000


class Recorder:
    """Stands in for `Span.add_event`: every event, as it was handed over."""

    def __init__(self) -> None:
        # Any: AttributeValue is a union too wide to index in a test.
        self.events: list[tuple[str, dict[str, Any], int]] = []

    def __call__(self, name: str, attributes: dict[str, AttributeValue], timestamp: int) -> None:
        self.events.append((name, dict(attributes), timestamp))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.events]

    def batches(self) -> list[tuple[int, int]]:
        """(start index, token count) of every batch event."""
        return [
            (a["logprobs.tokens.start_index"], len(a["logprobs.tokens.logprobs"]))
            for name, a, _ in self.events
            if name == TOKENS
        ]


def make(
    mode: EventsMode = "tokens",
    limit: int | None = None,
    *,
    capture: bool = False,
    threshold: float = 0.5,
) -> tuple[EventWriter, Recorder]:
    recorder = Recorder()
    writer = EventWriter(recorder, mode=mode, limit=limit, capture=capture, threshold=threshold)
    return writer, recorder


def entry(token: str, logprob: float, *tops: tuple[str, float]) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode("utf-8", "surrogatepass")),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in tops],
    }


def buffer(entries: list[dict[str, Any]]) -> TokenBuffer:
    buf = TokenBuffer()
    buf.append_json(entries)
    return buf


def plain(n: int) -> TokenBuffer:
    """n tokens without alternatives; token i has logprob -i/1000."""
    return buffer([{"token": f"t{i}", "logprob": -i / 1000} for i in range(n)])


def one_by_one(writer: EventWriter, buf: TokenBuffer) -> None:
    for i in range(len(buf)):
        writer.add(buf, i, i + 1, T0 + i)


def check_covered(recorder: Recorder, n: int) -> None:
    """Every token index 0..n-1 in exactly one event, in order."""
    seen: list[int] = []
    for name, attributes, _ in recorder.events:
        if name == TOKEN:
            seen.append(attributes["logprobs.token.index"])
        else:
            start = attributes["logprobs.tokens.start_index"]
            count = len(attributes["logprobs.tokens.logprobs"])
            seen.extend(range(start, start + count))
    assert seen == list(range(n))


# -- one event per token ---------------------------------------------------------------------


def test_tokens_without_capture_carry_numbers_only() -> None:
    writer, recorder = make()
    buf = buffer([entry("Hi", -0.25, ("Hi", -0.25), ("Yo", -1.5)), entry("!", -0.5)])
    writer.add(buf, 0, 2, T0)
    writer.close()
    assert recorder.events == [
        (
            TOKEN,
            {
                "logprobs.token.index": 0,
                "logprobs.token.logprob": -0.25,
                "logprobs.token.top_logprobs": [-0.25, -1.5],
            },
            T0,
        ),
        (TOKEN, {"logprobs.token.index": 1, "logprobs.token.logprob": -0.5}, T0),
    ]
    assert (writer.mode, writer.dropped, writer.events_used) == ("tokens", 0, 2)


def test_tokens_with_capture_carry_texts_and_bytes() -> None:
    writer, recorder = make(capture=True)
    odd = {"token": "x\ud800", "logprob": -1.0, "bytes": [120, 237], "top_logprobs": []}
    bare = {"token": "é", "logprob": -2.0}  # no bytes sent: none invented
    buf = buffer([entry("é", -0.1, ("é", -0.1), ("e", -2.5)), odd, bare])
    writer.add(buf, 0, 3, T0)
    assert [a for _, a, _ in recorder.events] == [
        {
            "logprobs.token.index": 0,
            "logprobs.token.logprob": -0.1,
            "logprobs.token.top_logprobs": [-0.1, -2.5],
            "logprobs.token.text": "é",
            "logprobs.token.bytes": [195, 169],
            "logprobs.token.top_tokens": ["é", "e"],
        },
        {
            "logprobs.token.index": 1,
            "logprobs.token.logprob": -1.0,
            "logprobs.token.text": "x\ufffd",  # a lone surrogate never reaches the exporter
            "logprobs.token.bytes": [120, 237],  # what the server sent
        },
        {"logprobs.token.index": 2, "logprobs.token.logprob": -2.0, "logprobs.token.text": "é"},
    ]


def test_nan_and_infinite_logprobs_are_written_as_they_are() -> None:
    writer, recorder = make()
    buf = buffer([entry("a", math.nan, ("a", math.nan)), entry("b", -math.inf, ("b", -math.inf))])
    writer.add(buf, 0, 2, T0)
    [(_, first, _), (_, second, _)] = recorder.events
    assert math.isnan(first["logprobs.token.logprob"])
    assert math.isnan(first["logprobs.token.top_logprobs"][0])
    assert second["logprobs.token.logprob"] == -math.inf
    assert second["logprobs.token.top_logprobs"] == [-math.inf]


def test_timestamps_never_go_back_and_empty_adds_do_nothing() -> None:
    writer, recorder = make()
    buf = plain(4)
    writer.add(buf, 0, 1, T0 + 50)
    writer.add(buf, 1, 1, T0 + 90)  # nothing: no event, no time
    writer.add(buf, 1, 2, T0 + 20)  # the wall clock stepped back
    writer.add(buf, 2, 4, T0 + 80)
    assert [(a["logprobs.token.index"], ts) for _, a, ts in recorder.events] == [
        (0, T0 + 50),
        (1, T0 + 50),
        (2, T0 + 80),
        (3, T0 + 80),
    ]
    assert writer.events_used == 4


# -- the budget: limits 0, 1, 2, 128 and none -----------------------------------------------


@pytest.mark.parametrize("limit", [0, 1])
@pytest.mark.parametrize("mode", ["tokens", "batched"])
def test_no_room_drops_and_counts_everything(limit: int, mode: EventsMode) -> None:
    writer, recorder = make(mode, limit)
    one_by_one(writer, plain(50))
    writer.close()
    assert recorder.events == []
    assert writer.dropped == 50
    assert writer.mode == "batched"  # tokens mode switched at once: there was no share
    # With limit 1 the one slot is the exception's; with 0 there is none.
    assert writer.room_for_exception is (limit == 1)


def test_limit_two_puts_everything_in_one_final_batch() -> None:
    writer, recorder = make("tokens", 2)
    one_by_one(writer, plain(1000))
    assert recorder.events == []  # the only slot is the last one: it waits for the end
    writer.close()
    assert recorder.names() == [TOKENS]
    assert recorder.batches() == [(0, 1000)]
    assert recorder.events[0][2] == T0 + 999  # stamped with the last tokens' arrival
    assert (writer.mode, writer.dropped, writer.events_used) == ("batched", 0, 1)
    assert writer.room_for_exception


def test_limit_128_switches_after_115_tokens_and_batches_grow() -> None:
    writer, recorder = make("tokens", 128)
    one_by_one(writer, plain(1000))
    writer.close()
    names = recorder.names()
    # 127 slots: 12 kept for batches, 115 for token events.
    assert names[:115] == [TOKEN] * 115 and set(names[115:]) == {TOKENS}
    # Each batch closes at max(64, 2 * tokens covered // batch slots left); the last
    # slot takes what remains at the end.
    assert recorder.batches() == [
        (115, 64),
        (179, 64),
        (243, 64),
        (307, 68),
        (375, 93),
        (468, 133),
        (601, 200),
        (801, 199),
    ]
    check_covered(recorder, 1000)
    assert (writer.mode, writer.dropped, writer.events_used) == ("batched", 0, 123)
    assert writer.room_for_exception


def test_limit_128_in_one_piece_writes_the_rest_as_one_batch_at_once() -> None:
    writer, recorder = make("tokens", 128)
    writer.add(plain(1000), 0, 1000, T0)
    assert recorder.names() == [TOKEN] * 115 + [TOKENS]
    assert recorder.batches() == [(115, 885)]
    writer.close()  # nothing left to write
    assert writer.events_used == 116
    check_covered(recorder, 1000)


@pytest.mark.parametrize(("n", "events"), [(115, [TOKEN] * 115), (116, [TOKEN] * 115 + [TOKENS])])
def test_the_switch_point_is_exact(n: int, events: list[str]) -> None:
    writer, recorder = make("tokens", 128)
    one_by_one(writer, plain(n))
    writer.close()
    assert recorder.names() == events
    assert writer.mode == ("tokens" if n == 115 else "batched")
    check_covered(recorder, n)


def test_a_chunk_across_the_switch_point_is_split_there() -> None:
    writer, recorder = make("tokens", 128)
    buf = plain(120)
    writer.add(buf, 0, 110, T0)
    writer.add(buf, 110, 120, T0 + 1)  # 5 more token events, then 5 tokens pending
    assert recorder.names() == [TOKEN] * 115
    assert recorder.events[-1][2] == T0 + 1
    writer.close()
    assert recorder.batches() == [(115, 5)]
    check_covered(recorder, 120)


def test_unlimited_tokens_stay_tokens() -> None:
    writer, recorder = make("tokens", None)
    one_by_one(writer, plain(1000))
    writer.close()
    assert recorder.names() == [TOKEN] * 1000
    check_covered(recorder, 1000)
    assert (writer.mode, writer.dropped, writer.room_for_exception) == ("tokens", 0, True)


@pytest.mark.parametrize("limit", [2, 3, 5, 16, 128])
@pytest.mark.parametrize("mode", ["tokens", "batched"])
def test_one_slot_is_always_left_for_the_exception(limit: int, mode: EventsMode) -> None:
    writer, recorder = make(mode, limit)
    one_by_one(writer, plain(3000))
    writer.close()
    assert 1 <= len(recorder.events) == writer.events_used <= limit - 1
    assert writer.room_for_exception
    check_covered(recorder, 3000)
    assert writer.dropped == 0


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 16, 128])
def test_low_confidence_leaves_the_exception_slot_too(limit: int) -> None:
    writer, recorder = make("low_confidence", limit, threshold=0.9)
    one_by_one(writer, buffer([{"token": "t", "logprob": -1.0}] * 3000))  # all low
    writer.close()
    assert recorder.names() == [TOKEN] * (limit - 1)
    assert writer.events_used == limit - 1 and writer.room_for_exception
    assert writer.dropped == 3000 - (limit - 1)


# -- batches ---------------------------------------------------------------------------------


def test_unlimited_batches_hold_64_tokens_each() -> None:
    writer, recorder = make("batched", None)
    one_by_one(writer, plain(100_000))
    writer.close()
    assert recorder.batches() == [(64 * i, 64) for i in range(1562)] + [(99_968, 32)]
    assert writer.dropped == 0


@pytest.mark.parametrize("mode", ["tokens", "batched"])
def test_100k_tokens_fit_in_the_default_limit(mode: EventsMode) -> None:
    writer, recorder = make(mode, 128)
    one_by_one(writer, plain(100_000))
    writer.close()
    assert len(recorder.events) <= 127
    assert set(recorder.names()[115 if mode == "tokens" else 0 :]) == {TOKENS}
    check_covered(recorder, 100_000)
    assert writer.dropped == 0 and writer.room_for_exception


def test_one_piece_and_chunk_by_chunk_batches() -> None:
    whole, whole_events = make("batched", None)
    whole.add(plain(100), 0, 100, T0)
    assert whole_events.batches() == [(0, 100)]  # a closed batch goes out at once
    chunked, chunked_events = make("batched", None)
    one_by_one(chunked, plain(100))
    assert chunked_events.batches() == [(0, 64)]
    chunked.close()
    assert chunked_events.batches() == [(0, 64), (64, 36)]
    assert [ts for _, _, ts in chunked_events.events] == [T0 + 63, T0 + 99]
    merged = [lp for _, a, _ in chunked_events.events for lp in a["logprobs.tokens.logprobs"]]
    assert merged == whole_events.events[0][1]["logprobs.tokens.logprobs"]


def test_batch_without_capture() -> None:
    writer, recorder = make("batched", None)
    buf = buffer([entry("a", -0.1, ("a", -0.1), ("b", -2.0)), entry("c", -0.2, ("c", -0.2))])
    writer.add(buf, 0, 2, T0)
    writer.close()
    [(name, attributes, timestamp)] = recorder.events
    assert (name, timestamp) == (TOKENS, T0)
    assert sorted(attributes) == [
        "logprobs.tokens.logprobs",
        "logprobs.tokens.start_index",
        "logprobs.tokens.top_logprobs",
    ]
    assert attributes["logprobs.tokens.start_index"] == 0
    assert attributes["logprobs.tokens.logprobs"] == [-0.1, -0.2]
    flat = attributes["logprobs.tokens.top_logprobs"]
    assert isinstance(flat, list) and flat[:3] == [-0.1, -2.0, -0.2] and len(flat) == 4
    assert math.isnan(flat[3])  # k = 2: the second token's missing alternative


def test_batch_pads_fewer_alternatives_with_nan_and_empty_texts() -> None:
    writer, recorder = make("batched", None, capture=True)
    buf = buffer(
        [
            entry("a", -0.1, ("a", -0.1)),
            entry("b", -0.2, ("b", -0.2), ("c", -2.0)),
            entry("d\ud800", -0.3),
        ]
    )
    writer.add(buf, 0, 3, T0)
    writer.close()
    [(name, attributes, timestamp)] = recorder.events
    assert (name, timestamp) == (TOKENS, T0)
    assert sorted(attributes) == [
        "logprobs.tokens.logprobs",
        "logprobs.tokens.start_index",
        "logprobs.tokens.texts",
        "logprobs.tokens.top_logprobs",
        "logprobs.tokens.top_tokens",
    ]
    assert attributes["logprobs.tokens.start_index"] == 0
    assert attributes["logprobs.tokens.logprobs"] == [-0.1, -0.2, -0.3]
    flat = attributes["logprobs.tokens.top_logprobs"]
    assert isinstance(flat, list) and len(flat) == 6
    assert flat[0] == -0.1 and flat[2:4] == [-0.2, -2.0]
    assert all(math.isnan(flat[i]) for i in (1, 4, 5))
    assert attributes["logprobs.tokens.texts"] == ["a", "b", "d\ufffd"]
    assert attributes["logprobs.tokens.top_tokens"] == ["a", "", "b", "c", "", ""]


def test_batch_of_tokens_without_alternatives_has_no_top_arrays() -> None:
    writer, recorder = make("batched", None, capture=True)
    writer.add(buffer([entry("a", math.nan), entry("b", -math.inf)]), 0, 2, T0)
    writer.close()
    [(_, attributes, _)] = recorder.events
    assert sorted(attributes) == [
        "logprobs.tokens.logprobs",
        "logprobs.tokens.start_index",
        "logprobs.tokens.texts",
    ]
    logprobs = attributes["logprobs.tokens.logprobs"]
    assert isinstance(logprobs, list)
    assert math.isnan(logprobs[0]) and logprobs[1] == -math.inf


def test_a_batch_reads_each_range_from_its_own_buffer() -> None:
    writer, recorder = make("batched", None)
    first, second = plain(3), buffer([{"token": "z", "logprob": -9.0}])
    writer.add(first, 0, 2, T0)
    writer.add(second, 0, 1, T0 + 1)
    writer.add(first, 2, 3, T0 + 2)
    writer.close()
    assert recorder.events == [
        (
            TOKENS,
            {
                "logprobs.tokens.start_index": 0,
                "logprobs.tokens.logprobs": [-0.0, -0.001, -9.0, -0.002],
            },
            T0 + 2,
        )
    ]


# -- low confidence and none -----------------------------------------------------------------


def test_low_confidence_writes_only_tokens_below_the_threshold() -> None:
    writer, recorder = make("low_confidence", None, threshold=0.5)
    buf = buffer(
        [
            entry("sure", -0.1),
            entry("unsure", -2.0),
            entry("nan", math.nan),  # no probability: not low
            entry("never", -math.inf),  # probability 0: low
            entry("edge", math.log(0.5)),  # not below the threshold
        ]
    )
    writer.add(buf, 0, 5, T0)
    writer.close()
    assert [
        (a["logprobs.token.index"], a["logprobs.token.logprob"]) for _, a, _ in recorder.events
    ] == [
        (1, -2.0),
        (3, -math.inf),
    ]
    assert (writer.mode, writer.dropped) == ("low_confidence", 0)


def test_low_confidence_over_the_budget_counts_the_dropped() -> None:
    writer, recorder = make("low_confidence", 4, threshold=0.9)
    one_by_one(writer, buffer([{"token": str(i), "logprob": -1.0} for i in range(10)]))
    writer.close()
    assert [a["logprobs.token.index"] for _, a, _ in recorder.events] == [0, 1, 2]
    assert (writer.dropped, writer.events_used, writer.room_for_exception) == (7, 3, True)


@pytest.mark.parametrize("limit", [0, 2, 128, None])
def test_none_writes_nothing_and_drops_nothing(limit: int | None) -> None:
    writer, recorder = make("none", limit)
    one_by_one(writer, plain(500))
    writer.close()
    assert recorder.events == []
    assert (writer.mode, writer.dropped, writer.events_used) == ("none", 0, 0)
