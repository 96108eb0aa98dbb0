"""Token logprobs: the public models and the columnar buffer behind them.

A streamed call appends every token to one append-only `TokenBuffer` (plain lists and
float arrays, a few hundred bytes a token). `TokenLogprobList` is an immutable view of a
range of such a buffer: chunks and aggregates share the buffer, so `agg + chunk` over one
stream is O(1), and `TokenLogprob` models are only built when somebody reads them.
"""

from __future__ import annotations

import math
import operator
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, SupportsIndex, TypeVar, overload

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic_core import core_schema

from ._construct import construct

__all__ = ["ChoiceLogprobs", "TokenBuffer", "TokenLogprob", "TokenLogprobList", "TopLogprob"]

# Servers send -inf and NaN logprobs (vLLM); JSON dumps keep them as the -Infinity / NaN
# tokens the servers used (pydantic's default, null, loses them and fails to load back).
_CONFIG = ConfigDict(frozen=True, ser_json_inf_nan="constants")


class TopLogprob(BaseModel):
    """One of the most likely tokens at a position, as OpenAI returns it."""

    model_config = _CONFIG

    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(BaseModel):
    """A generated token with its logprob, UTF-8 bytes and top alternatives.

    `model_dump()` gives exactly OpenAI's JSON shape for one entry of `logprobs.content`.
    """

    model_config = _CONFIG

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = []


class _Derived:
    """Marker: the bytes are the token's own UTF-8 encoding (the common case, not stored)."""

    __slots__ = ()

    def __reduce__(self) -> str:
        # The one marker: buffers that are copied or unpickled keep comparing by identity.
        return "_DERIVED"


_DERIVED = _Derived()


def _pack_bytes(token: str, value: object) -> bytes | None | _Derived:
    if not isinstance(value, list):
        return None
    try:
        packed = bytes(value)
    except (TypeError, ValueError):
        return None  # not a list of 0..255: keep the token, drop the malformed bytes
    try:
        if packed == token.encode("utf-8"):
            return _DERIVED
    except UnicodeEncodeError:  # lone surrogates: keep the bytes the server sent
        pass
    return packed


def _unpack_bytes(token: str, stored: bytes | None | _Derived) -> list[int] | None:
    if stored is _DERIVED:
        return list(token.encode("utf-8"))
    if stored is None:
        return None
    return list(stored)  # type: ignore[arg-type]


def model_fields(value: object) -> dict[str, object] | None:
    """A pydantic model's field values, as decoded JSON would hold them; None for anything
    else, or a model without a `logprob` (read as a token-like object, one is required)."""
    kind = type(value)
    if kind not in _MODEL_KINDS:
        if not isinstance(value, BaseModel):  # an ABC check: done once per class
            return None
        _MODEL_KINDS.add(kind)
    fields: dict[str, object] = value.__dict__  # pydantic keeps field values there
    return fields if "logprob" in fields else None


_MODEL_KINDS: set[type] = set()  # pydantic model classes met by `model_fields`


def _as_float(value: object) -> float:
    # Servers send -inf, NaN and -9999 floors; they are data. Anything that is not a
    # number at all becomes NaN rather than an exception on the user's call.
    if type(value) is float:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


def _as_str(value: object) -> str:
    return value if type(value) is str else ("" if value is None else str(value))


class TokenBuffer:
    """Append-only columns of tokens; shared by the views over it.

    Not thread-safe for concurrent appends; one stream appends from one place at a time.
    A buffer `owned` by a stream is appended to by that stream only: `+` never extends it
    (the stream's whole answer is read back from it at the end).
    """

    __slots__ = (
        "owned",
        "tokens",
        "logprobs",
        "bytes",
        "top_offsets",
        "top_tokens",
        "top_logprobs",
        "top_bytes",
        "_models",
    )

    def __init__(self, *, owned: bool = False) -> None:
        self.owned = owned
        self.tokens: list[str] = []
        self.logprobs: array[float] = array("d")
        self.bytes: list[bytes | None | _Derived] = []
        self.top_offsets: array[int] = array("q", (0,))
        self.top_tokens: list[str] = []
        self.top_logprobs: array[float] = array("d")
        self.top_bytes: list[bytes | None | _Derived] = []
        self._models: list[TokenLogprob | None] | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    def append_json(self, entries: object, *, top_bytes: bool = True) -> int:
        """Append OpenAI-format entries (decoded JSON); return how many were appended.

        An entry's alternatives may also be pydantic models with the same fields (the
        openai SDK's `TopLogprob`), read through `model_fields`. Malformed entries are kept
        as far as they make sense: a missing token is "", a logprob that is not a number is
        NaN, malformed bytes are None. `top_bytes=False` keeps no bytes of the alternatives
        (None), for buffers read only by the telemetry, which exports none of them.
        """
        if not isinstance(entries, list):
            return 0
        # The hot path (every token of every decoded answer): bound methods in locals.
        tokens = self.tokens
        top_tokens = self.top_tokens
        add_token = tokens.append
        add_logprob = self.logprobs.append
        add_bytes = self.bytes.append
        add_top_token = top_tokens.append
        add_top_logprob = self.top_logprobs.append
        add_top_bytes = self.top_bytes.append
        add_offset = self.top_offsets.append
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            token = _as_str(entry.get("token"))
            add_token(token)
            add_logprob(_as_float(entry.get("logprob")))
            raw = entry.get("bytes")
            add_bytes(None if raw is None else _pack_bytes(token, raw))
            tops = entry.get("top_logprobs")
            if isinstance(tops, list):
                for top in tops:
                    if not isinstance(top, dict):
                        top = model_fields(top)
                        if top is None:
                            continue
                    top_token = _as_str(top.get("token"))
                    add_top_token(top_token)
                    add_top_logprob(_as_float(top.get("logprob")))
                    raw = top.get("bytes") if top_bytes else None
                    add_top_bytes(None if raw is None else _pack_bytes(top_token, raw))
            add_offset(len(top_tokens))
        return len(entries)

    def append_models(self, items: Iterable[TokenLogprob]) -> None:
        """Append already-built models (user-constructed lists, foreign chunks)."""
        for item in items:
            self.tokens.append(item.token)
            self.logprobs.append(item.logprob)
            self.bytes.append(None if item.bytes is None else _pack_bytes(item.token, item.bytes))
            for top in item.top_logprobs:
                self.top_tokens.append(top.token)
                self.top_logprobs.append(top.logprob)
                self.top_bytes.append(
                    None if top.bytes is None else _pack_bytes(top.token, top.bytes)
                )
            self.top_offsets.append(len(self.top_tokens))

    def append_range(self, other: TokenBuffer, start: int, stop: int) -> None:
        """Append tokens [start, stop) of another buffer, columns copied as they are."""
        self.tokens.extend(other.tokens[start:stop])
        self.logprobs.extend(other.logprobs[start:stop])
        self.bytes.extend(other.bytes[start:stop])
        t0, t1 = other.top_offsets[start], other.top_offsets[stop]
        base = len(self.top_tokens) - t0
        self.top_offsets.extend(off + base for off in other.top_offsets[start + 1 : stop + 1])
        self.top_tokens.extend(other.top_tokens[t0:t1])
        self.top_logprobs.extend(other.top_logprobs[t0:t1])
        self.top_bytes.extend(other.top_bytes[t0:t1])

    def model(self, i: int) -> TokenLogprob:
        """The `TokenLogprob` at position i, built once and then shared by every view."""
        models = self._models
        if models is None:
            models = self._models = []
        if len(models) <= i:
            models.extend([None] * (len(self.tokens) - len(models)))
        cached = models[i]
        if cached is not None:
            return cached
        token = self.tokens[i]
        tops = [
            TopLogprob.model_construct(
                token=self.top_tokens[j],
                logprob=self.top_logprobs[j],
                bytes=_unpack_bytes(self.top_tokens[j], self.top_bytes[j]),
            )
            for j in range(self.top_offsets[i], self.top_offsets[i + 1])
        ]
        built = TokenLogprob.model_construct(
            token=token,
            logprob=self.logprobs[i],
            bytes=_unpack_bytes(token, self.bytes[i]),
            top_logprobs=tops,
        )
        models[i] = built
        return built

    def dump(self, i: int) -> dict[str, object]:
        """OpenAI's JSON shape of token i, without building models."""
        token = self.tokens[i]
        return {
            "token": token,
            "logprob": self.logprobs[i],
            "bytes": _unpack_bytes(token, self.bytes[i]),
            "top_logprobs": [
                {
                    "token": self.top_tokens[j],
                    "logprob": self.top_logprobs[j],
                    "bytes": _unpack_bytes(self.top_tokens[j], self.top_bytes[j]),
                }
                for j in range(self.top_offsets[i], self.top_offsets[i + 1])
            ],
        }


class TokenLogprobList(Sequence[TokenLogprob]):
    """An immutable list of `TokenLogprob`, stored as columns and built on access.

    Behaves like a read-only list: `len`, indexing, slicing (gives a `list`), iteration,
    and `==` with any sequence of `TokenLogprob`. Concatenation with `+` is linear in the
    right-hand side when the left-hand side ends where its buffer ends (a stream's chunks).
    """

    __slots__ = ("_buf", "_start", "_stop")

    def __init__(self, items: Iterable[TokenLogprob] = ()) -> None:
        buf = TokenBuffer()
        buf.append_models(items)
        self._buf = buf
        self._start = 0
        self._stop = len(buf)

    @classmethod
    def _view(cls, buf: TokenBuffer, start: int, stop: int) -> TokenLogprobList:
        view = cls.__new__(cls)
        view._buf = buf
        view._start = start
        view._stop = stop
        return view

    @classmethod
    def from_json(cls, entries: object) -> TokenLogprobList:
        """Build from OpenAI-format JSON entries (decoded), tolerating malformed ones."""
        buf = TokenBuffer()
        buf.append_json(entries)
        return cls._view(buf, 0, len(buf))

    def __len__(self) -> int:
        return self._stop - self._start

    @overload
    def __getitem__(self, index: SupportsIndex) -> TokenLogprob: ...

    @overload
    def __getitem__(self, index: slice) -> list[TokenLogprob]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> TokenLogprob | list[TokenLogprob]:
        if isinstance(index, slice):
            return [self._buf.model(self._start + i) for i in range(*index.indices(len(self)))]
        i = index.__index__()
        n = self._stop - self._start
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("TokenLogprobList index out of range")
        return self._buf.model(self._start + i)

    def __iter__(self) -> Iterator[TokenLogprob]:
        model = self._buf.model
        for i in range(self._start, self._stop):
            yield model(i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TokenLogprobList):
            return len(self) == len(other) and self.dump() == other.dump()
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(map(operator.eq, self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self))

    def __add__(self, other: TokenLogprobList) -> TokenLogprobList:
        if not isinstance(other, TokenLogprobList):
            return NotImplemented
        buf = self._buf
        if other._buf is buf and other._start == self._stop:
            return TokenLogprobList._view(buf, self._start, other._stop)  # adjacent: O(1)
        if self._stop == len(buf) and not buf.owned:
            buf.append_range(other._buf, other._start, other._stop)  # at the tip: O(len(other))
            return TokenLogprobList._view(buf, self._start, len(buf))
        fresh = TokenBuffer()  # a fork of an older prefix: copy once, then it is a tip
        fresh.append_range(buf, self._start, self._stop)
        fresh.append_range(other._buf, other._start, other._stop)
        return TokenLogprobList._view(fresh, 0, len(fresh))

    def __reduce__(self) -> tuple[object, ...]:
        # Pickle and copy this view's own tokens, not the whole buffer it shares.
        return (TokenLogprobList.from_json, (self.dump(),))

    def dump(self) -> list[dict[str, object]]:
        """OpenAI's JSON shape of every entry, without building models."""
        dump = self._buf.dump
        return [dump(i) for i in range(self._start, self._stop)]

    def _columns(self) -> tuple[TokenBuffer, int, int]:
        """The shared buffer and range (for telemetry that reads numbers, not models)."""
        return self._buf, self._start, self._stop

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[object], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        from_list = core_schema.no_info_after_validator_function(
            cls, handler.generate_schema(list[TokenLogprob])
        )
        return core_schema.json_or_python_schema(
            json_schema=from_list,
            python_schema=core_schema.union_schema(
                [core_schema.is_instance_schema(cls), from_list]
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v.dump()),
        )


class _Addable(Protocol):
    def __add__(self: _T, other: _T, /) -> _T: ...


_T = TypeVar("_T", bound=_Addable)


def concat_optional(left: _T | None, right: _T | None) -> _T | None:
    """`left + right` where None means "the server sent none" (token lists, whole logprobs)."""
    if left is None:
        return right
    if right is None:
        return left
    return left + right


class ChoiceLogprobs(BaseModel):
    """The `logprobs` of one choice: content tokens and refusal tokens."""

    model_config = _CONFIG

    content: TokenLogprobList | None = None
    refusal: TokenLogprobList | None = None

    if TYPE_CHECKING:  # plain lists are validated into TokenLogprobList: say so to mypy

        def __init__(
            self,
            *,
            content: Sequence[TokenLogprob] | None = None,
            refusal: Sequence[TokenLogprob] | None = None,
        ) -> None: ...

    def __add__(self, other: ChoiceLogprobs) -> ChoiceLogprobs:
        if not isinstance(other, ChoiceLogprobs):
            return NotImplemented
        mine = self.__dict__
        theirs = other.__dict__
        # `construct`, not `model_construct`: this runs once per `agg + chunk` (hot path).
        return construct(
            ChoiceLogprobs,
            {
                "content": concat_optional(mine["content"], theirs["content"]),
                "refusal": concat_optional(mine["refusal"], theirs["refusal"]),
            },
        )
