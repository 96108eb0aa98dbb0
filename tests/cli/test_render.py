"""The terminal renderer shows hidden characters of tokens as escapes, coloured or plain."""

from __future__ import annotations

import io
import re
import unicodedata

import pytest

from logprobscope import TokenLogprob, TopLogprob
from logprobscope.cli._render import Output, print_answer, print_summary

SGR = re.compile(r"\x1b\[[0-9;]*m")  # rich's colours, the only escapes allowed through

TOKENS = [
    ("Hi", -0.01),
    (" \u202e", -2.5),  # right-to-left override: would reverse what follows
    ("<b>", -0.2),
    (" \u2066x", -3.0),  # left-to-right isolate
    (" \u200bz", -0.05),  # zero-width space
    ("\x1b[2J", -4.0),  # clear screen
    (" done", -0.1),
]


def _tokens() -> list[TokenLogprob]:
    return [
        TokenLogprob(
            token=text,
            logprob=lp,
            top_logprobs=[
                TopLogprob(token=text, logprob=lp),
                TopLogprob(token="\u2067", logprob=-6.0),
            ],
        )
        for text, lp in TOKENS
    ]


def _hidden(text: str) -> list[str]:
    return [
        c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") and c != "\n"
    ]


@pytest.mark.parametrize("color", [True, False])
def test_answer_and_summary_show_escapes_in_order(color: bool) -> None:
    stream = io.StringIO()
    out = Output(stream, color=color)
    assert out.color is color
    tokens = _tokens()
    print_answer(out, "".join(t.token for t in tokens), tokens)
    out.line()
    print_summary(out, tokens)
    raw = stream.getvalue()
    if color:
        assert SGR.search(raw)  # really coloured
    text = SGR.sub("", raw)
    assert _hidden(text) == []
    answer = text.splitlines()[0]
    assert answer == "Hi \\u202e<b> \\u2066x \\u200bz\\x1b[2J done"
    assert "#5    '\\x1b[2J'" in text  # least likely first, as a quoted literal
    assert "'\\u2067' 0.0025" in text  # an alternative
    assert "#1    ' \\u202e'" in text


def test_byte_level_tokens_that_do_not_spell_the_answer() -> None:
    stream = io.StringIO()
    print_answer(Output(stream, color=False), "a\u202eb", _tokens()[:2])
    assert stream.getvalue() == "a\\u202eb"
