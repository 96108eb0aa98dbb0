"""The SSE parser: bytes off the wire, in reads of any size, to the `data` of each event."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logprobscope._sse import DONE, SSEParser


def parse(reads: Sequence[bytes]) -> list[bytes]:
    parser = SSEParser()
    out: list[bytes] = []
    for data in reads:
        out.extend(parser.feed(data))
    out.extend(parser.flush())
    return out


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_line_endings(eol: bytes) -> None:
    stream = b"data: one" + eol + eol + b"data: two" + eol + eol
    assert parse([stream]) == [b"one", b"two"]
    assert parse([stream[i : i + 1] for i in range(len(stream))]) == [b"one", b"two"]


def test_mixed_line_endings() -> None:
    assert parse([b"data: a\r\n\ndata: b\r\rdata: c\n\r\n"]) == [b"a", b"b", b"c"]


def test_crlf_split_across_reads() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # the LF of the CRLF: not a second line end
    assert parser.feed(b"data: b\r") == []
    assert parser.feed(b"\n\r") == [b"a\nb"]
    assert parser.feed(b"\n") == []  # the CRLF of the blank line, split too
    assert parser.feed(b"data: c\r\n\r\n") == [b"c"]


def test_crlf_split_with_an_empty_read_between() -> None:
    # A read of zero bytes between the CR and the LF changes nothing.
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"\ndata: b\r\n\r\n") == [b"a\nb"]


def test_multi_line_data() -> None:
    assert parse([b'data: {\ndata:  "k": 1\ndata: }\n\n']) == [b'{\n "k": 1\n}']


def test_data_value_rules() -> None:
    assert parse([b"data:nospace\n\n"]) == [b"nospace"]
    assert parse([b"data:  two spaces\n\n"]) == [b" two spaces"]  # only one space is removed
    assert parse([b"data:\n\n"]) == [b""]
    assert parse([b"data: a:b: c\n\n"]) == [b"a:b: c"]


def test_comments_and_other_fields_are_ignored() -> None:
    stream = (
        b": keep-alive\n"
        b"event: message\n"
        b"id: 7\n"
        b"retry: 1000\n"
        b"data: x\n"
        b": between\n"
        b"\n"
        b": only a comment\n"
        b"\n"
        b"event: ping\n"
        b"\n"
    )
    assert parse([stream]) == [b"x"]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert parse([b"\n\n\n\r\n\r\r"]) == []


def test_event_without_final_blank_line_needs_flush() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n\ndata: last") == [b"a"]
    assert parser.flush() == [b"last"]
    assert parser.flush() == []


def test_flush_after_a_line_end_but_no_blank_line() -> None:
    for tail in (b"\n", b"\r\n", b"\r"):
        parser = SSEParser()
        assert parser.feed(b"data: last" + tail) == []
        assert parser.flush() == [b"last"]


def test_flush_of_nothing() -> None:
    parser = SSEParser()
    assert parser.flush() == []
    parser.feed(b"data: a\n\n")
    assert parser.flush() == []


def test_done() -> None:
    events = parse([b'data: {"a":1}\n\ndata: [DONE]\n\n'])
    assert events == [b'{"a":1}', DONE]
    assert events[-1] == b"[DONE]"


def test_utf8_split_inside_a_character() -> None:
    data = "data: h\u00e9llo \U0001f642\n\n".encode()
    for cut in range(len(data)):
        assert parse([data[:cut], data[cut:]]) == ["h\u00e9llo \U0001f642".encode()]


# -- property: any re-chunking of a valid stream gives the same payloads -----------------------

line_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"),
    max_size=12,
)
eols = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A valid SSE stream (any line endings, comments, other fields) and its payloads."""
    out = bytearray()
    payloads: list[bytes] = []

    def eol() -> bytes:
        end = draw(eols)
        # after a lone CR, an LF would join it into one CRLF line end
        return b"\r\n" if end == b"\n" and out.endswith(b"\r") else end

    for _ in range(draw(st.integers(0, 6))):
        lines = draw(st.lists(line_text, min_size=1, max_size=3))
        values: list[bytes] = []
        for line in lines:
            if draw(st.booleans()):
                out += b": " + draw(line_text).encode()
                out += eol()
            if draw(st.integers(0, 4)) == 0:
                out += b"event: e"
                out += eol()
            spaced = draw(st.booleans())
            out += b"data:" + (b" " if spaced else b"")
            out += line.encode()
            out += eol()
            # one leading space after "data:" is not part of the value
            values.append(line.encode() if spaced else line.encode().removeprefix(b" "))
        out += eol()
        payloads.append(b"\n".join(values))
    if draw(st.booleans()):
        out += b"data: [DONE]"
        out += eol()
        out += eol()
        payloads.append(DONE)
    return bytes(out), payloads


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]  # empty reads too


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_rechunking_gives_the_same_payloads(data: st.DataObject) -> None:
    stream, payloads = data.draw(streams())
    assert parse([stream]) == payloads
    assert parse(data.draw(splits(stream))) == payloads
    assert parse([stream[i : i + 1] for i in range(len(stream))]) == payloads


@settings(max_examples=200, deadline=None)
@given(st.lists(line_text.map(str.encode), max_size=8), st.data())
def test_rechunked_openai_style_stream(payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(b"data: " + p + b"\n\n" for p in payloads) + b"data: [DONE]\n\n"
    assert parse(data.draw(splits(stream))) == [*payloads, DONE]
