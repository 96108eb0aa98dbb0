"""What an entry point hands the telemetry core: tokens, and the facts of the response.

Tokens come as a sequence of token-like objects (`TokenLogprobLike`) or of JSON entries:

- our `TokenLogprobList`: its columns are read where they are, nothing is copied or built;
- the openai SDK's `ChatCompletionTokenLogprob` objects, or our `TokenLogprob` models: they
  have the protocol's fields;
- OpenAI-format JSON entries (`Mapping`s, as LangChain hands them over).

All but our own lists are copied once, into the call's own columns. Malformed entries are
kept as far as they make sense: a missing token is "", a logprob that is not a number is NaN,
malformed bytes are None; items that are neither a mapping nor have a `logprob`, or whose
fields cannot be read, are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from .._logprobs import TokenBuffer, _as_float, _as_str, _pack_bytes, model_fields

__all__ = [
    "ResponseFacts",
    "TokenColumns",
    "TokenInput",
    "TokenLogprobLike",
    "TopLogprobLike",
    "append_tokens",
]


class TopLogprobLike(Protocol):
    """One of the most likely tokens at a position: its text, logprob and UTF-8 bytes."""

    @property
    def token(self) -> str: ...

    @property
    def logprob(self) -> float: ...

    @property
    def bytes(self) -> Sequence[int] | None: ...


class TokenLogprobLike(Protocol):
    """A generated token: its text, logprob, UTF-8 bytes and top alternatives.

    Our `TokenLogprob` and the openai SDK's `ChatCompletionTokenLogprob` have these fields.
    """

    @property
    def token(self) -> str: ...

    @property
    def logprob(self) -> float: ...

    @property
    def bytes(self) -> Sequence[int] | None: ...

    @property
    def top_logprobs(self) -> Sequence[TopLogprobLike]: ...


TokenInput: TypeAlias = Sequence[TokenLogprobLike] | Sequence[Mapping[str, object]]
"""Tokens for `CallTelemetry.add_tokens`: token-like objects, or OpenAI-format JSON entries."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFacts:
    """What the server answered, for `CallTelemetry.set_response`; None: not known (yet).

    Attributes:
        id: the response id (`gen_ai.response.id`).
        model: the model that answered (`gen_ai.response.model`, also a metric attribute).
        finish_reasons: every choice's finish reason (`gen_ai.response.finish_reasons`).
        input_tokens: prompt tokens (`gen_ai.usage.input_tokens`, the token usage metric).
        output_tokens: completion tokens (`gen_ai.usage.output_tokens`, likewise).
        output_text: the answer's text; `gen_ai.output.messages` with content capture only.
        output_refusal: the model's refusal text, likewise (a `refusal` part).
        output_tool_calls: the answer's tool calls in the OpenAI wire shape
            (`{"id", "type": "function", "function": {"name", "arguments"}}`), likewise
            (`tool_call` parts).

    Raises:
        TypeError: `finish_reasons` is a single string instead of a sequence of them.
    """

    id: str | None = None
    model: str | None = None
    finish_reasons: Sequence[str] | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    output_text: str | None = None
    output_refusal: str | None = None
    output_tool_calls: Sequence[Mapping[str, object]] | None = None

    def __post_init__(self) -> None:
        reasons = self.finish_reasons
        if isinstance(reasons, str):
            raise TypeError("finish_reasons takes a sequence of strings, not one string")
        if reasons is not None and not isinstance(reasons, tuple):
            object.__setattr__(self, "finish_reasons", tuple(reasons))  # a frozen value
        calls = self.output_tool_calls
        if calls is not None and not isinstance(calls, tuple):
            object.__setattr__(self, "output_tool_calls", tuple(calls))


def _list(value: object) -> object:
    # Bytes as a list of ints for `_pack_bytes`: the SDK's lists, or any other sequence.
    if isinstance(value, list) or not isinstance(value, Sequence) or isinstance(value, str):
        return value
    return list(value)


def _get(item: object, name: str) -> object:
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


def _append_one(buf: TokenBuffer, item: object) -> None:
    token = _as_str(_get(item, "token"))
    raw = _get(item, "bytes")
    # Every column is read before any is appended: a failure leaves the buffer aligned.
    entry = (token, _as_float(_get(item, "logprob")), None if raw is None else _list(raw))
    tops: list[tuple[str, float]] = []
    alternatives = _get(item, "top_logprobs")
    if isinstance(alternatives, Iterable) and not isinstance(alternatives, (str, Mapping)):
        for top in alternatives:
            if isinstance(top, Mapping) or hasattr(top, "logprob"):
                tops.append((_as_str(_get(top, "token")), _as_float(_get(top, "logprob"))))
    buf.tokens.append(token)
    buf.logprobs.append(entry[1])
    buf.bytes.append(None if entry[2] is None else _pack_bytes(token, entry[2]))
    for top_token, top_logprob in tops:
        buf.top_tokens.append(top_token)
        buf.top_logprobs.append(top_logprob)
        buf.top_bytes.append(None)  # the alternatives' bytes are exported nowhere
    buf.top_offsets.append(len(buf.top_tokens))


def append_tokens(buf: TokenBuffer, tokens: object) -> None:
    """Append token-like objects or JSON entries to `buf`, tolerating malformed ones."""
    if type(tokens) is list:
        # The alternatives' bytes are exported nowhere: not kept (see `TokenBuffer`).
        if all(type(entry) is dict for entry in tokens):
            buf.append_json(tokens, top_bytes=False)  # decoded JSON: the buffer's own reader
            return
        # The openai SDK's token objects are pydantic models: their fields are decoded JSON.
        fields = [model_fields(entry) for entry in tokens]
        if None not in fields and all(
            type(f.get("top_logprobs")) is list  # type: ignore[union-attr]
            for f in fields
        ):
            buf.append_json(fields, top_bytes=False)
            return
    if not isinstance(tokens, Iterable) or isinstance(tokens, (str, bytes, Mapping)):
        return
    for item in tokens:
        try:
            if isinstance(item, Mapping) or hasattr(item, "logprob"):
                _append_one(buf, item)
        except Exception:  # a field that cannot be read: the item is skipped whole
            continue


class TokenColumns:
    """One call's columns for tokens that do not come in columns (everything but ours).

    They are read by the telemetry only, which exports no alternative's bytes: those are
    not kept (None), which saves packing three or more byte strings per token."""

    __slots__ = ("_own",)

    def __init__(self) -> None:
        # Appended to as tokens come, so one stream's tokens stay contiguous (a batch event
        # then reads one range); made on first use (our own tokens never need it).
        self._own: TokenBuffer | None = None

    def append(self, tokens: object) -> tuple[TokenBuffer, int, int]:
        """Copy `tokens` in; return the buffer and the range [start, stop) they now fill."""
        own = self._own
        if own is None:
            own = self._own = TokenBuffer()
        start = len(own)
        append_tokens(own, tokens)
        return own, start, len(own)
