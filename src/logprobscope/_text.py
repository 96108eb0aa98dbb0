"""Text every encoder takes: lone surrogates replaced by U+FFFD.

JSON may escape a lone UTF-16 surrogate (`"\\ud800"`) and the stdlib's decoder keeps it in
the `str`; no UTF-8 encoder takes it afterwards: pydantic's `model_dump_json`, the OTLP
exporter's protobuf (which would drop a whole batch of other calls' spans with it), a file.
Such code points are not text; each becomes U+FFFD, as a UTF-8 decoder marks bad bytes.
A token's `bytes`, when the server sent them, still carry what it really was.
"""

from __future__ import annotations

import re

__all__ = ["valid_json", "valid_text", "valid_texts"]

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (itself if there is none)."""
    if text.isascii():  # O(1) in CPython: the common case costs nothing
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)


def valid_texts(texts: list[str]) -> list[str]:
    """`valid_text` of each: `texts` itself when none holds a lone surrogate (one C-level
    search over them all, the common case)."""
    if not _LONE_SURROGATE.search("".join(texts)):
        return texts
    return [valid_text(t) for t in texts]


def valid_json(value: object) -> object:
    """Decoded JSON with `valid_text` applied to every string, keys included."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, list):
        return [valid_json(item) for item in value]
    if isinstance(value, dict):
        return {valid_text(k) if isinstance(k, str) else k: valid_json(v) for k, v in value.items()}
    return value
