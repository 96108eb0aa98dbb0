"""Token-like objects into the telemetry's columns: pydantic models read as decoded JSON,
anything else read field by field; no alternative is lost either way."""

from __future__ import annotations

from pydantic import BaseModel

from logprobscope.otel._input import TokenColumns


class Top(BaseModel):
    token: str
    logprob: float


class Token(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: tuple[Top, ...] | list[Top] = ()


def _columns(tokens: list[Token]) -> tuple[list[str], list[float], list[int]]:
    buf, start, stop = TokenColumns().append(tokens)
    return (
        buf.tokens[start:stop],
        list(buf.top_logprobs),
        list(buf.top_offsets),
    )


def test_models_with_lists_or_tuples_of_alternatives_keep_them_all() -> None:
    tops = [Top(token="a", logprob=-0.1), Top(token="b", logprob=-2.0)]
    as_list = [Token(token="a", logprob=-0.1, top_logprobs=tops)]
    as_tuple = [Token(token="a", logprob=-0.1, top_logprobs=tuple(tops))]
    assert _columns(as_list) == _columns(as_tuple) == (["a"], [-0.1, -2.0], [0, 2])
