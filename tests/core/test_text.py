"""Lone surrogates never reach an encoder; clean text is returned as it is."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from logprobscope._text import valid_text, valid_texts


def test_a_lone_surrogate_becomes_the_replacement_character() -> None:
    assert valid_text("a\ud800b") == "a\ufffdb"
    assert valid_text("é😀") == "é😀"


@given(st.lists(st.text(st.characters(blacklist_categories=()), max_size=4), max_size=8))
def test_valid_texts_is_valid_text_of_each(texts: list[str]) -> None:
    out = valid_texts(texts)
    assert out == [valid_text(t) for t in texts]
    if all(valid_text(t) == t for t in texts):
        assert out is texts  # nothing to replace: no copy


def test_one_bad_text_among_clean_ones() -> None:
    texts = ["ok", "x\udfff", "é"]
    assert valid_texts(texts) == ["ok", "x\ufffd", "é"]
    assert texts[1] == "x\udfff"  # the caller's list is left as it was
