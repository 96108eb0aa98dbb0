"""Field-level confidence of a structured answer as `logprobs.field` events.

A call whose request asks for JSON (`response_format` of type `json_schema` or `json_object`)
keeps references to choice 0's content tokens as they come (no copy for our own tokens); when
it ends with an answer, `field_confidence` runs over them once (linear in the tokens, with the
request's schema marking the enum fields) and each leaf value becomes one `logprobs.field`
event, in document order, after the token events and only in the room they left. Numbers
and the path always; the value (JSON text) and the alternatives' texts with content capture.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from opentelemetry.util.types import AttributeValue

from .. import _contract as n
from .._fields import FieldConfidence, FieldReport, field_confidence
from .._logprobs import TokenBuffer, TokenLogprobList
from .._text import valid_text

__all__ = ["ContentTokens", "field_attributes", "structured_format"]

_JSON_FORMATS = ("json_schema", "json_object")


def structured_format(params: Mapping[str, object]) -> Mapping[str, object] | None:
    """The request's `response_format` when it asks for JSON, else None."""
    value = params.get("response_format")
    if isinstance(value, Mapping) and value.get("type") in _JSON_FORMATS:
        return value
    return None


class _Range:
    __slots__ = ("buf", "start", "stop")

    def __init__(self, buf: TokenBuffer, start: int, stop: int) -> None:
        self.buf = buf
        self.start = start
        self.stop = stop


class ContentTokens:
    """Choice 0's content tokens of one call, as ranges of the buffers they live in."""

    __slots__ = ("_ranges",)

    def __init__(self) -> None:
        self._ranges: list[_Range] = []

    def __len__(self) -> int:
        return sum(r.stop - r.start for r in self._ranges)

    def add(self, buf: TokenBuffer, start: int, stop: int) -> None:
        """Tokens [start, stop) of `buf` (which must stay unchanged in that range)."""
        ranges = self._ranges
        last = ranges[-1] if ranges else None
        if last is not None and last.buf is buf and last.stop == start:
            last.stop = stop  # the next tokens of the same buffer: one range
        else:
            ranges.append(_Range(buf, start, stop))

    def report(self, format: Mapping[str, object]) -> FieldReport:
        """`field_confidence` over the tokens, with the format's schema (if any)."""
        ranges = self._ranges
        if len(ranges) == 1:
            only = ranges[0]
            tokens = TokenLogprobList._view(only.buf, only.start, only.stop)
        else:
            joined = TokenBuffer()
            for r in ranges:
                joined.append_range(r.buf, r.start, r.stop)
            tokens = TokenLogprobList._view(joined, 0, len(joined))
        schema = format if format.get("type") == "json_schema" else None
        return field_confidence(tokens, schema=schema)


def field_attributes(field: FieldConfidence, *, capture: bool) -> dict[str, AttributeValue]:
    """The attributes of one field's `logprobs.field` event."""
    attributes: dict[str, AttributeValue] = {
        n.FIELD_PATH: valid_text(field.path),
        n.FIELD_LOGPROB: field.logprob,
        n.FIELD_MIN_PROBABILITY: field.min_probability,
        n.FIELD_TOKEN_START: field.token_start,
        n.FIELD_TOKEN_STOP: field.token_stop,
    }
    alternatives = field.alternatives
    if alternatives is not None and field.alternatives_token is not None:
        attributes[n.FIELD_ALTERNATIVES_TOKEN_INDEX] = field.alternatives_token
        attributes[n.FIELD_ALTERNATIVES_LOGPROBS] = [a.logprob for a in alternatives]
        if capture:
            attributes[n.FIELD_ALTERNATIVES_TOKENS] = [valid_text(a.token) for a in alternatives]
    if capture:
        attributes[n.FIELD_VALUE] = valid_text(
            json.dumps(field.value, ensure_ascii=False, allow_nan=True)
        )
    return attributes
