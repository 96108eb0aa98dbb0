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


def batched(recorder: Recorder) -> set[int]:
    """The indexes of the tokens in batch events."""
    return {
        i
        for name, a, _ in recorder.events
        if name == TOKENS
        for i in range(
            a["logprobs.tokens.start_index"],
            a["logprobs.tokens.start_index"] + len(a["logprobs.tokens.logprobs"]),
        )
    }


def least_likely(recorder: Recorder) -> list[int]:
    """The indexes of the token events that repeat a batch's token (the least likely)."""
    inside = batched(recorder)
    return [
        a["logprobs.token.index"]
        for name, a, _ in recorder.events
        if name == TOKEN and a["logprobs.token.index"] in inside
    ]


def check_covered(recorder: Recorder, n: int) -> None:
    """Every token index 0..n-1 in exactly one event, in order, the events in time order;
    besides, up to 8 token events repeat tokens of a batch (the least likely), each after
    the batch that holds it."""
    seen: list[int] = []
    inside = batched(recorder)
    copies = 0
    for name, attributes, _ in recorder.events:
        if name == TOKENS:
            start = attributes["logprobs.tokens.start_index"]
            seen.extend(range(start, start + len(attributes["logprobs.tokens.logprobs"])))
        elif attributes["logprobs.token.index"] in inside:
            assert attributes["logprobs.token.index"] in seen, "a copy before its batch"
            copies += 1
        else:
            seen.append(attributes["logprobs.token.index"])
    assert seen == list(range(n))
    assert copies <= 8
    stamps = [ts for _, _, ts in recorder.events]
    assert stamps == sorted(stamps)


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
                "logprobs.token.line": "p=0.7788",
                "logprobs.token.logprob": -0.25,
                "logprobs.token.probability": 0.7788,
                "logprobs.token.top_logprobs": (-0.25, -1.5),
            },
            T0,
        ),
        (
            TOKEN,
            {
                "logprobs.token.index": 1,
                "logprobs.token.line": "p=0.6065",
                "logprobs.token.logprob": -0.5,
                "logprobs.token.probability": 0.6065,
            },
            T0,
        ),
    ]
    assert (writer.mode, writer.dropped, writer.events_used) == ("tokens", 0, 2)


def test_tokens_with_capture_carry_texts_and_bytes_that_say_more() -> None:
    writer, recorder = make(capture=True)
    odd = {"token": "x\ud800", "logprob": -1.0, "bytes": [120, 237], "top_logprobs": []}
    bare = {"token": "é", "logprob": -2.0}  # no bytes sent: none invented
    half = {"token": "\ufffd", "logprob": -3.0, "bytes": [240, 159]}  # half a character
    buf = buffer([entry("é", -0.1, ("é", -0.1), ("e", -2.5)), odd, bare, half])
    writer.add(buf, 0, 4, T0)
    assert [a for _, a, _ in recorder.events] == [
        {
            "logprobs.token.index": 0,
            "logprobs.token.line": "p=0.9048 'é'",  # what a person reads first
            "logprobs.token.logprob": -0.1,
            "logprobs.token.probability": 0.9048,
            "logprobs.token.top_logprobs": (-0.1, -2.5),
            "logprobs.token.text": "é",  # its bytes are its UTF-8: not repeated
            "logprobs.token.top_tokens": ("é", "e"),
        },
        {
            "logprobs.token.index": 1,
            "logprobs.token.line": "p=0.3679 'x\ufffd'",
            "logprobs.token.logprob": -1.0,
            "logprobs.token.probability": 0.3679,
            "logprobs.token.text": "x\ufffd",  # a lone surrogate never reaches the exporter
            "logprobs.token.bytes": (120, 237),  # what the server sent
        },
        {
            "logprobs.token.index": 2,
            "logprobs.token.line": "p=0.1353 'é'",
            "logprobs.token.logprob": -2.0,
            "logprobs.token.probability": 0.1353,
            "logprobs.token.text": "é",
        },
        {
            "logprobs.token.index": 3,
            "logprobs.token.line": "p=0.0498 '\ufffd'",
            "logprobs.token.logprob": -3.0,
            "logprobs.token.probability": 0.0498,
            "logprobs.token.text": "\ufffd",
            "logprobs.token.bytes": (240, 159),
        },
    ]


@pytest.mark.parametrize(
    ("logprob", "shown", "line"),
    [
        (-0.2329134, 0.7922, "p=0.7922"),  # four decimals
        (-0.00001, 1.0, "p=1.0000"),
        (0.0, 1.0, "p=1.0000"),
        (1e-9, 1.0, "p=1.0000"),  # a hair above 1 (rounding): as it is, rounded
        (-9.0, 0.0001, "p=0.0001"),
        (-12.0, 6.14e-06, "p=6.14e-06"),  # below 0.0001: three significant digits
        (-800.0, 0.0, "p=0"),  # underflows
        (-math.inf, 0.0, "p=0"),
        (800.0, math.inf, "p=inf"),  # malformed: no overflow error
    ],
)
def test_a_token_event_carries_its_probability_rounded_for_reading(
    logprob: float, shown: float, line: str
) -> None:
    writer, recorder = make()
    writer.add(buffer([{"token": "t", "logprob": logprob}]), 0, 1, T0)
    [(_, attributes, _)] = recorder.events
    assert attributes["logprobs.token.logprob"] == logprob  # the number itself, exact
    assert attributes["logprobs.token.probability"] == shown
    assert attributes["logprobs.token.line"] == line


def test_a_nan_logprob_has_a_nan_probability() -> None:
    writer, recorder = make()
    writer.add(buffer([{"token": "t", "logprob": math.nan}]), 0, 1, T0)
    [(_, attributes, _)] = recorder.events
    assert math.isnan(attributes["logprobs.token.probability"])
    assert attributes["logprobs.token.line"] == "p=nan"


def test_nan_and_infinite_logprobs_are_written_as_they_are() -> None:
    writer, recorder = make()
    buf = buffer([entry("a", math.nan, ("a", math.nan)), entry("b", -math.inf, ("b", -math.inf))])
    writer.add(buf, 0, 2, T0)
    [(_, first, _), (_, second, _)] = recorder.events
    assert math.isnan(first["logprobs.token.logprob"])
    assert math.isnan(first["logprobs.token.top_logprobs"][0])
    assert second["logprobs.token.logprob"] == -math.inf
    assert second["logprobs.token.top_logprobs"] == (-math.inf,)


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
    assert recorder.events[0][2] == T0  # stamped with its first token's arrival
    assert (writer.mode, writer.dropped, writer.events_used) == ("batched", 0, 1)
    assert writer.room_for_exception


def test_limit_128_writes_107_token_events_then_12_even_batches() -> None:
    writer, recorder = make("tokens", 128)
    one_by_one(writer, plain(1000))
    assert recorder.names() == [TOKEN] * 107  # the rest waits for the end
    writer.close()
    names = recorder.names()
    # 127 slots: 107 token events, 12 batches, 8 for the least likely tokens (in time
    # order: they are all in the last batch, which arrived first).
    assert names == [TOKEN] * 107 + [TOKENS] * 12 + [TOKEN] * 8
    # 893 tokens left: 12 batches of 75 (the last takes the 68 left over).
    assert recorder.batches() == [(107 + 75 * b, 75) for b in range(11)] + [(932, 68)]
    # Each batch is stamped with its first token's arrival (token i arrived at T0 + i):
    # on a timeline, one tick every 75 tokens, evenly spaced for an even stream.
    assert [ts for name, _, ts in recorder.events if name == TOKENS] == [
        T0 + first for first, _ in recorder.batches()
    ]
    # Token i's logprob is -i/1000: the least likely are the last, below p = 0.5 all.
    assert least_likely(recorder) == list(range(992, 1000))
    assert [ts for _, _, ts in recorder.events[-8:]] == [T0 + i for i in range(992, 1000)]
    check_covered(recorder, 1000)
    assert (writer.mode, writer.dropped, writer.events_used) == ("batched", 0, 127)
    assert writer.room_for_exception


def test_limit_128_in_one_piece_holds_the_rest_to_the_end() -> None:
    writer, recorder = make("tokens", 128)
    writer.add(plain(1000), 0, 1000, T0)
    assert recorder.names() == [TOKEN] * 107
    writer.close()
    assert recorder.names() == [TOKEN] * 107 + [TOKENS] * 12 + [TOKEN] * 8
    assert least_likely(recorder) == list(range(992, 1000))
    assert {ts for _, _, ts in recorder.events} == {T0}  # all arrived together
    assert writer.events_used == 127
    check_covered(recorder, 1000)


@pytest.mark.parametrize("n", [1, 106, 107, 108, 126, 127])
def test_up_to_127_tokens_are_all_token_events(n: int) -> None:
    writer, recorder = make("tokens", 128)
    one_by_one(writer, plain(n))
    writer.close()
    assert recorder.names() == [TOKEN] * n
    # Those held back keep their own arrival times.
    assert [(a["logprobs.token.index"], ts) for _, a, ts in recorder.events] == [
        (i, T0 + i) for i in range(n)
    ]
    assert writer.mode == "tokens"
    check_covered(recorder, n)


def test_128_tokens_are_the_first_that_need_batches() -> None:
    writer, recorder = make("tokens", 128)
    one_by_one(writer, plain(128))
    writer.close()
    # 21 held: batches of 2 (the last of 1), then the least likely of them: no token is
    # below the threshold, so the lowest only (the last, logprob -0.127).
    assert recorder.batches() == [(107 + 2 * b, 2) for b in range(10)] + [(127, 1)]
    assert least_likely(recorder) == [127]
    assert writer.mode == "batched"
    check_covered(recorder, 128)


def test_a_chunk_across_the_share_is_split_there_and_keeps_its_time() -> None:
    writer, recorder = make("tokens", 128)
    buf = plain(120)
    writer.add(buf, 0, 110, T0)
    writer.add(buf, 110, 120, T0 + 1)  # held: 3 tokens of T0, then these 10 of T0 + 1
    assert recorder.names() == [TOKEN] * 107
    writer.close()
    assert [(a["logprobs.token.index"], ts) for _, a, ts in recorder.events[105:]] == [
        (105, T0),
        (106, T0),
        (107, T0),
        (108, T0),
        (109, T0),
        *((i, T0 + 1) for i in range(110, 120)),
    ]
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
    names = recorder.names()
    shares = {"tokens": (107, 12), "batched": (0, 119)}[mode]
    assert names.count(TOKENS) == shares[1]
    assert names[: shares[0]] == [TOKEN] * shares[0] and names.count(TOKEN) == shares[0] + 8
    assert least_likely(recorder) == list(range(99_992, 100_000))
    check_covered(recorder, 100_000)
    assert writer.dropped == 0 and writer.room_for_exception


def test_one_piece_and_chunk_by_chunk_batches() -> None:
    whole, whole_events = make("batched", None)
    whole.add(plain(100), 0, 100, T0)
    assert whole_events.events == []  # held to the end
    whole.close()
    assert whole_events.batches() == [(0, 64), (64, 36)]
    chunked, chunked_events = make("batched", None)
    one_by_one(chunked, plain(100))
    chunked.close()
    assert chunked_events.batches() == [(0, 64), (64, 36)]
    # Each stamped with its first token's arrival; then the least likely token (none is
    # below the threshold: the lowest, the last) once more, at its own arrival.
    assert [(name, ts) for name, _, ts in chunked_events.events] == [
        (TOKENS, T0),
        (TOKENS, T0 + 64),
        (TOKEN, T0 + 99),
    ]
    assert [(name, ts) for name, _, ts in whole_events.events] == [
        (TOKENS, T0),
        (TOKENS, T0),
        (TOKEN, T0),
    ]
    for (_, chunk, _), (_, one, _) in zip(chunked_events.events, whole_events.events, strict=True):
        assert chunk == one


def test_batch_without_capture() -> None:
    writer, recorder = make("batched", None)
    buf = buffer([entry("a", -0.1, ("a", -0.1), ("b", -2.0)), entry("c", -0.2, ("c", -0.2))])
    writer.add(buf, 0, 2, T0)
    writer.close()
    [(name, attributes, timestamp), (copy_name, copy, _)] = recorder.events
    assert (name, timestamp) == (TOKENS, T0)
    assert list(attributes) == [
        "logprobs.tokens.first_index",
        "logprobs.tokens.last_index",
        "logprobs.tokens.lines",
        "logprobs.tokens.start_index",
        "logprobs.tokens.logprobs",
        "logprobs.tokens.top_logprobs",
    ]
    assert attributes["logprobs.tokens.first_index"] == 0
    assert attributes["logprobs.tokens.last_index"] == 1
    assert attributes["logprobs.tokens.start_index"] == 0
    assert attributes["logprobs.tokens.logprobs"] == (-0.1, -0.2)
    flat = attributes["logprobs.tokens.top_logprobs"]
    assert isinstance(flat, tuple) and flat[:3] == (-0.1, -2.0, -0.2) and len(flat) == 4
    assert math.isnan(flat[3])  # k = 2: the second token's missing alternative
    # One line per token: index, probability, alternatives (only those it has).
    assert attributes["logprobs.tokens.lines"] == (
        "0 p=0.9048 | top: 0.9048, 0.1353",
        "1 p=0.8187 | top: 0.8187",
    )
    assert (copy_name, copy["logprobs.token.index"]) == (TOKEN, 1)  # the lowest


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
    [(name, attributes, timestamp), _] = recorder.events
    assert (name, timestamp) == (TOKENS, T0)
    assert sorted(attributes) == [
        "logprobs.tokens.first_index",
        "logprobs.tokens.last_index",
        "logprobs.tokens.lines",
        "logprobs.tokens.logprobs",
        "logprobs.tokens.start_index",
        "logprobs.tokens.texts",
        "logprobs.tokens.top_logprobs",
        "logprobs.tokens.top_tokens",
    ]
    assert attributes["logprobs.tokens.start_index"] == 0
    assert attributes["logprobs.tokens.logprobs"] == (-0.1, -0.2, -0.3)
    flat = attributes["logprobs.tokens.top_logprobs"]
    assert isinstance(flat, tuple) and len(flat) == 6
    assert flat[0] == -0.1 and flat[2:4] == (-0.2, -2.0)
    assert all(math.isnan(flat[i]) for i in (1, 4, 5))
    assert attributes["logprobs.tokens.texts"] == ("a", "b", "d\ufffd")
    assert attributes["logprobs.tokens.top_tokens"] == ("a", "", "b", "c", "", "")
    # The lines line up without padding: each token's own alternatives.
    assert attributes["logprobs.tokens.lines"] == (
        "0 p=0.9048 'a' | top: 'a' 0.9048",
        "1 p=0.8187 'b' | top: 'b' 0.8187, 'c' 0.1353",
        "2 p=0.7408 'd\ufffd'",
    )


def test_batch_lines_quote_texts_and_show_small_probabilities() -> None:
    writer, recorder = make("batched", None, capture=True)
    rows = [entry(" ", -15.0, (" ", -15.0), ("\n", -0.01)), entry("\"x'", -1e-9), entry("", 0.0)]
    writer.add(buffer(rows), 0, 3, T0)
    writer.close()
    assert recorder.events[0][1]["logprobs.tokens.lines"] == (
        "0 p=3.06e-07 ' ' | top: ' ' 3.06e-07, '\\n' 0.9900",
        "1 p=1.0000 '\"x\\''",
        "2 p=1.0000 ''",
    )


def test_batch_of_tokens_without_alternatives_has_no_top_arrays() -> None:
    writer, recorder = make("batched", None, capture=True)
    writer.add(buffer([entry("a", math.nan), entry("b", -math.inf)]), 0, 2, T0)
    writer.close()
    [(_, attributes, _), (_, copy, _)] = recorder.events
    assert sorted(attributes) == [
        "logprobs.tokens.first_index",
        "logprobs.tokens.last_index",
        "logprobs.tokens.lines",
        "logprobs.tokens.logprobs",
        "logprobs.tokens.start_index",
        "logprobs.tokens.texts",
    ]
    logprobs = attributes["logprobs.tokens.logprobs"]
    assert isinstance(logprobs, tuple)
    assert math.isnan(logprobs[0]) and logprobs[1] == -math.inf
    assert attributes["logprobs.tokens.lines"] == ("0 p=nan 'a'", "1 p=0 'b'")
    assert copy["logprobs.token.index"] == 1  # p = 0 is low; NaN is never the least likely


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
                "logprobs.tokens.first_index": 0,
                "logprobs.tokens.last_index": 3,
                "logprobs.tokens.lines": (
                    "0 p=1.0000",
                    "1 p=0.9990",
                    "2 p=0.0001",
                    "3 p=0.9980",
                ),
                "logprobs.tokens.start_index": 0,
                "logprobs.tokens.logprobs": (-0.0, -0.001, -9.0, -0.002),
            },
            T0,
        ),
        # The least likely, from the second buffer, at its own arrival.
        (
            TOKEN,
            {
                "logprobs.token.index": 2,
                "logprobs.token.line": "p=0.0001",
                "logprobs.token.logprob": -9.0,
                "logprobs.token.probability": 0.0001,
            },
            T0 + 1,
        ),
    ]


# -- the least likely tokens of a batched call -------------------------------------------------


def logprobs_of(values: list[float]) -> TokenBuffer:
    return buffer([{"token": f"t{i}", "logprob": lp} for i, lp in enumerate(values)])


def test_the_least_likely_are_the_low_confidence_ones_lowest_first() -> None:
    values = [-0.01] * 300
    lows = {20: -3.0, 150: -0.8, 151: -5.0, 200: -0.9, 250: -2.0, 260: -1.0, 270: -4.0}
    lows |= {280: -1.5, 290: -0.75, 299: -6.0}
    for i, lp in lows.items():
        values[i] = lp
    writer, recorder = make("batched", 128, threshold=0.5)
    one_by_one(writer, logprobs_of(values))
    writer.close()
    # Ten below p = 0.5 (logprob -0.693), eight slots: the eight lowest, in index order.
    expected = sorted(sorted(lows, key=lambda i: lows[i])[:8])
    assert least_likely(recorder) == expected
    assert 299 in expected  # logprobs.min_index: always one of them
    copies = [(a["logprobs.token.index"], ts) for name, a, ts in recorder.events if name == TOKEN]
    assert copies == [(i, T0 + i) for i in expected]  # each at its own arrival
    check_covered(recorder, 300)


def test_without_low_confidence_tokens_the_lowest_alone_is_kept() -> None:
    values = [-0.1] * 200
    values[5] = values[130] = -0.3  # tied: the first is the minimum
    values[131] = math.nan  # no probability: never the least likely
    writer, recorder = make("tokens", 128)
    one_by_one(writer, logprobs_of(values))
    writer.close()
    assert least_likely(recorder) == [130]  # 5 was a token event already
    check_covered(recorder, 200)


def test_a_later_low_confidence_token_replaces_the_lowest_so_far() -> None:
    values = [-0.1] * 300
    values[10] = -0.4  # the lowest of the first batches, not low
    values[290] = -2.0  # low, in the last batch
    writer, recorder = make("batched", None)  # batches go out as they fill
    one_by_one(writer, logprobs_of(values))
    writer.close()
    assert least_likely(recorder) == [290]


def test_no_copies_when_the_held_tokens_fit_as_token_events() -> None:
    writer, recorder = make("tokens", 128, threshold=1.0)  # every token is low
    one_by_one(writer, plain(127))
    writer.close()
    assert recorder.names() == [TOKEN] * 127
    check_covered(recorder, 127)


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
