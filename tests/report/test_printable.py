"""One rule makes token text printable, for the terminal and the page alike."""

from __future__ import annotations

import json
import unicodedata
from html.parser import HTMLParser

import pytest

from logprobscope._printable import printable
from logprobscope.report import Alternative, AttributeValue, ModelCall, TokenRecord, render_html

HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}

# (character, its visible escape): one of each kind the rule names.
KINDS = [
    ("\x00", "\\x00"),
    ("\x1b", "\\x1b"),
    ("\x08", "\\x08"),
    ("\x7f", "\\x7f"),
    ("\x85", "\\x85"),  # C1
    ("\u202a", "\\u202a"),
    ("\u202e", "\\u202e"),  # right-to-left override
    ("\u2066", "\\u2066"),
    ("\u2069", "\\u2069"),
    ("\u200e", "\\u200e"),
    ("\u200f", "\\u200f"),
    ("\u061c", "\\u061c"),
    ("\u200b", "\\u200b"),
    ("\u200d", "\\u200d"),
    ("\u2060", "\\u2060"),
    ("\u2064", "\\u2064"),
    ("\ufeff", "\\ufeff"),
    ("\u00ad", "\\xad"),
    ("\u180e", "\\u180e"),
    ("\U000e0041", "\\U000e0041"),  # a tag character (Cf)
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
    ("\ud800", "\\ud800"),  # a lone surrogate
]


def hidden(text: str) -> list[str]:
    """The characters of `text` the rule hides, newline and tab aside."""
    return [c for c in text if unicodedata.category(c) in HIDDEN and c not in "\n\t"]


@pytest.mark.parametrize(("char", "escape"), KINDS)
def test_each_hidden_kind_becomes_a_visible_escape(char: str, escape: str) -> None:
    assert printable(f"a{char}b") == f"a{escape}b"
    assert printable(f"a{char}b", quoted=True) == f"'a{escape}b'"


def test_visible_text_is_kept() -> None:
    text = "Grüße, 東京 😀 \\ 'q' \"d\"\n\tend\u00a0"
    assert printable(text) == text
    assert printable("") == ""


def test_quoted_is_an_unambiguous_literal() -> None:
    assert printable("I'm", quoted=True) == '"I\'m"'
    assert printable("a\\u202e", quoted=True) == "'a\\\\u202e'"  # not the override itself
    assert printable("\u202e", quoted=True) == "'\\u202e'"
    for text in ["", " Paris", "\n", 'it\'s "x"', "\x1b[31m", "\u202e<b>", "\ud800", "\\"]:
        assert printable(text, quoted=True) == repr(text)


def test_every_cf_character_is_escaped() -> None:
    chars = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cf"]
    assert len(chars) > 150
    shown = printable("".join(chars))
    assert hidden(shown) == []
    assert shown.count("\\") == len(chars)


# -- the page ------------------------------------------------------------------------------------

TRICKY = ["A", "\u202e", "<b>", "\u2066", "x", "\u200b", "\ufeff\u00ad", "\x1b[2J", "\ud800", "Z"]


def _call() -> ModelCall:
    tokens = tuple(
        TokenRecord(
            i,
            -0.1 - i,
            text,
            alternatives=(Alternative(text, -0.1 - i), Alternative("\u202e?", -3.0)),
            time_unix_nano=10**8 * (i + 1),
        )
        for i, text in enumerate(TRICKY)
    )
    message = json.dumps([{"role": "assistant", "parts": [{"content": "".join(TRICKY[:-2])}]}])
    attributes: dict[str, AttributeValue] = {
        "gen_ai.output.messages": message,
        "gen_ai.request.stream": True,
    }
    return ModelCall(
        "0" * 32, "0" * 16, None, "chat m\u202e", "CLIENT", 0, 10**9, "UNSET", "", attributes,
        tokens=tokens,
    )  # fmt: skip


class _Text(HTMLParser):
    """Every text node and attribute value; the token line's texts apart."""

    def __init__(self) -> None:
        super().__init__()
        self.in_token = False
        self.token_line: list[str] = []
        self.all: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.all.extend(v for _, v in attrs if v)
        self.in_token = tag == "span" and "tok" in (dict(attrs).get("class") or "").split()

    def handle_endtag(self, tag: str) -> None:
        self.in_token = False

    def handle_data(self, data: str) -> None:
        self.all.append(data)
        if self.in_token:
            self.token_line.append(data)


def test_page_shows_no_hidden_character_anywhere() -> None:
    page = render_html([_call()], title="t\u2067")
    parser = _Text()
    parser.feed(page)
    assert parser.token_line == [
        "A",
        "\\u202e",
        "<b>",
        "\\u2066",
        "x",
        "\\u200b",
        "\\ufeff\\xad",
        "\\x1b[2J",
        "\\ud800",
        "Z",
    ]
    assert [c for text in parser.all for c in hidden(text)] == []
    assert hidden(page) == []  # the embedded data and the tables too
    assert "&#x27;\\u202e?&#x27; 0.0498" in page  # an alternative in the table
    assert "chat m\\u202e" in page
    assert "&quot;A\\u202e&lt;b&gt;\\u2066x\\u200b\\ufeff\\xad" in page  # the message
