"""Field-level confidence of a JSON answer: each leaf value's tokens and what they cost.

`field_confidence(tokens)` concatenates the tokens' bytes into the answer, scans the JSON in
it with byte positions (`_json_leaves.scan`), and maps each leaf's byte span to the tokens
that spell it:

- A leaf's tokens are every token that overlaps its span, `[token_start, token_stop)`. A token
  that straddles a boundary (`"},`, or `":"` before a string value) belongs to every value it
  overlaps; its whole logprob counts in each: that probability is what the model gave to
  emitting that text, value bytes included, so leaving it out would call a value certain that
  was not. Tokens that only spell syntax (a key, `:`, `,` between values) count for no field.
- A string's span includes its quotes (see `_json_leaves`), so an empty string has tokens too.
- `logprob` is the joint logprob: the compensated sum (`math.fsum`) of those tokens'
  logprobs. Non-finite values follow `_figures`: a NaN logprob (and +inf or above ~709) is
  skipped, -inf makes the sum -inf and the probability 0, -9999 floors are ordinary values.
  With no usable logprob at all, `logprob` and `min_probability` are NaN.
- `alternatives` (the classification confidence) are the top alternatives of the value's
  first token that adds value characters: for `"positive"` split as `"`, `pos`, `itive"` it is
  `pos`; split as `"pos`, it is `"pos`. For an empty string, the token of its closing quote.
  Given for booleans always, and with a schema for enum and const values; None otherwise
  (an empty tuple when the server sent no alternatives for that token).
- Bytes: a token's `bytes` when present (byte-fallback tokens split multi-byte characters
  across tokens), else its text in UTF-8.

The work is linear in the number of tokens. Model output never makes it raise: malformed
tokens count as empty text with NaN logprobs, invalid or truncated JSON gives the fields read
before the problem with `complete=False`.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict, JsonValue

from ._construct import construct
from ._figures import probability
from ._json_leaves import scan
from ._logprobs import TokenLogprobList
from ._schema_walk import SchemaInput, schema_root

__all__ = [
    "FieldAlternative",
    "FieldConfidence",
    "FieldReport",
    "TokenLike",
    "TopLogprobLike",
    "field_confidence",
]

_CONFIG = ConfigDict(frozen=True, ser_json_inf_nan="constants")
_EXP_MAX = 709.0  # `_figures`: logprobs above it have no probability and are skipped


class TopLogprobLike(Protocol):
    """An alternative: `TopLogprob`, or the openai SDK's."""

    @property
    def token(self) -> str: ...

    @property
    def logprob(self) -> float: ...


class TokenLike(Protocol):
    """A token: `TokenLogprob`, or the openai SDK's `ChatCompletionTokenLogprob`."""

    @property
    def token(self) -> str: ...

    @property
    def logprob(self) -> float: ...

    @property
    def top_logprobs(self) -> Sequence[TopLogprobLike]: ...

    @property
    def bytes(self) -> Sequence[int] | None: ...


class FieldAlternative(BaseModel):
    """One of the top alternatives at a field's first value token."""

    model_config = _CONFIG

    token: str
    logprob: float
    probability: float


class FieldConfidence(BaseModel):
    """The confidence of one leaf value of a JSON answer.

    `token_start` and `token_stop` index the answer's tokens: `tokens[token_start:token_stop]`
    spell the value (with the quotes of a string, and maybe some syntax around it).
    """

    model_config = _CONFIG

    path: str
    value: JsonValue
    logprob: float
    min_probability: float
    token_start: int
    token_stop: int
    alternatives: tuple[FieldAlternative, ...] | None = None
    alternatives_token: int | None = None

    @property
    def probability(self) -> float:
        """The joint probability of the value's tokens, exp(logprob)."""
        return probability(self.logprob)


class FieldReport(BaseModel):
    """Every field of a JSON answer, in document order, and whether the JSON was complete.

    `complete` is False when the answer was not valid JSON to its end (cut off by
    `max_tokens`, or invalid): `fields` then holds the values read completely before that.
    """

    model_config = _CONFIG

    fields: tuple[FieldConfidence, ...]
    complete: bool

    def get(self, path: str) -> FieldConfidence | None:
        """The field at `path` (the last one if a key repeats, as `json.loads` keeps), or None."""
        for field in reversed(self.fields):
            if field.path == path:
                return field
        return None

    def __getitem__(self, path: str) -> FieldConfidence:
        field = self.get(path)
        if field is None:
            raise KeyError(path)
        return field


def _as_float(value: object) -> float:
    if type(value) is float:
        return value
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _as_bytes(text: object, raw: object) -> bytes:
    if isinstance(raw, (list, tuple, bytes, bytearray)):
        try:
            return bytes(raw)
        except (TypeError, ValueError):
            pass  # not 0..255: the text is all there is
    if isinstance(text, str):
        return text.encode("utf-8", "surrogatepass")
    return b""


class _Columns:
    """The tokens as parallel columns; alternatives read only where a field needs them."""

    __slots__ = ("pieces", "logprobs", "_tokens")

    def __init__(self, tokens: Sequence[TokenLike]) -> None:
        self._tokens = tokens
        if isinstance(tokens, TokenLogprobList):
            # Our own list: read its buffer, build no models.
            buf, start, stop = tokens._columns()
            self.pieces = [
                b if isinstance(b, bytes) else t.encode("utf-8", "surrogatepass")
                for t, b in zip(buf.tokens[start:stop], buf.bytes[start:stop], strict=True)
            ]
            self.logprobs: Sequence[float] = buf.logprobs[start:stop]
            return
        items = self._tokens = list(tokens)  # any iterable; indexed again for alternatives
        pieces: list[bytes] = []
        logprobs: list[float] = []
        for token in items:
            pieces.append(_as_bytes(getattr(token, "token", None), getattr(token, "bytes", None)))
            logprobs.append(_as_float(getattr(token, "logprob", None)))
        self.pieces = pieces
        self.logprobs = logprobs

    def alternatives(self, i: int) -> tuple[FieldAlternative, ...]:
        tokens = self._tokens
        if isinstance(tokens, TokenLogprobList):
            buf, start, _ = tokens._columns()
            j = start + i
            pairs: list[tuple[object, object]] = [
                (buf.top_tokens[k], buf.top_logprobs[k])
                for k in range(buf.top_offsets[j], buf.top_offsets[j + 1])
            ]
        else:
            tops = getattr(tokens[i], "top_logprobs", None)
            if not isinstance(tops, Sequence) or isinstance(tops, (str, bytes)):
                return ()
            pairs = [(getattr(t, "token", None), getattr(t, "logprob", None)) for t in tops]
        out = []
        for token, raw in pairs:
            logprob = _as_float(raw)
            text = token if isinstance(token, str) else ""
            fields = {"token": text, "logprob": logprob, "probability": probability(logprob)}
            out.append(construct(FieldAlternative, fields))
        return tuple(out)


def _joint(logprobs: list[float]) -> float:
    try:
        return math.fsum(logprobs)
    except OverflowError:  # malformed logprobs near -1e308: the sum is -inf all the same
        return -math.inf


def field_confidence(tokens: Sequence[TokenLike], *, schema: SchemaInput = None) -> FieldReport:
    """The confidence of every leaf value of the JSON answer these tokens spell.

    `tokens` are an answer's content tokens (`message.response_metadata.logprobs.content`, or
    the openai SDK's `choice.logprobs.content`). `schema` is the JSON schema the answer
    follows (a mapping, a pydantic model class, or OpenAI's `response_format` wrapper): it
    marks enum and const fields for `alternatives`. See the module docstring for the rules.
    """
    root = schema_root(schema)
    columns = _Columns(tokens)
    pieces = columns.pieces
    starts: list[int] = []
    ends: list[int] = []
    offset = 0
    for piece in pieces:
        starts.append(offset)
        offset += len(piece)
        ends.append(offset)
    leaves, complete = scan(b"".join(pieces), root)
    logprobs = columns.logprobs
    fields: list[FieldConfidence] = []
    lo = 0
    for leaf in leaves:
        # Tokens overlapping [begin, end): ends[i] > begin and starts[i] < end. Leaves come
        # in document order, so each search starts where the previous one began.
        first = lo = bisect_right(ends, leaf.begin, lo)
        stop = bisect_left(starts, leaf.end, first)
        usable = [lp for lp in logprobs[first:stop] if lp <= _EXP_MAX]  # NaN fails too
        alternatives = None
        at = None
        if leaf.choice:
            at = bisect_right(ends, leaf.content_begin, first)
            alternatives = columns.alternatives(at)
        fields.append(
            construct(
                FieldConfidence,
                {
                    "path": leaf.path,
                    "value": leaf.value,
                    "logprob": _joint(usable) if usable else math.nan,
                    "min_probability": probability(min(usable)) if usable else math.nan,
                    "token_start": first,
                    "token_stop": stop,
                    "alternatives": alternatives,
                    "alternatives_token": at,
                },
            )
        )
    return construct(FieldReport, {"fields": tuple(fields), "complete": complete})
