"""A span's ``logprobs.field`` events back to the fields of its structured answer."""

from __future__ import annotations

from collections.abc import Iterable

from .. import _contract as n
from ._records import Alternative, AttributeValue, FieldRecord
from ._tokens import SpanEvent
from ._values import Malformed, as_float, as_int

__all__ = ["read_fields"]


def read_fields(events: Iterable[SpanEvent]) -> tuple[FieldRecord, ...]:
    """The fields, in the order of their events (the answer's document order).

    Raises:
        Malformed: a field event lacks its path, numbers or token range, or its
            alternatives do not line up.
    """
    return tuple(_field(e.attributes) for e in events if e.name == n.EVENT_FIELD)


def _field(a: dict[str, AttributeValue]) -> FieldRecord:
    path = a.get(n.FIELD_PATH)
    if not isinstance(path, str):
        raise Malformed(f"a {n.EVENT_FIELD} event has no {n.FIELD_PATH}")
    alternatives = None
    logprobs = a.get(n.FIELD_ALTERNATIVES_LOGPROBS)
    if logprobs is not None:
        values = logprobs if isinstance(logprobs, tuple) else (logprobs,)
        texts = a.get(n.FIELD_ALTERNATIVES_TOKENS)
        names = texts if isinstance(texts, tuple) else None
        if names is not None and len(names) != len(values):
            raise Malformed(
                f"a {n.EVENT_FIELD} event has {len(names)} alternative tokens "
                f"for {len(values)} alternative logprobs"
            )
        alternatives = tuple(
            Alternative(
                None if names is None else str(names[i]),
                as_float(v, n.FIELD_ALTERNATIVES_LOGPROBS),
            )
            for i, v in enumerate(values)
        )
    token = a.get(n.FIELD_ALTERNATIVES_TOKEN_INDEX)
    value = a.get(n.FIELD_VALUE)
    return FieldRecord(
        path=path,
        logprob=as_float(a.get(n.FIELD_LOGPROB), n.FIELD_LOGPROB),
        min_probability=as_float(a.get(n.FIELD_MIN_PROBABILITY), n.FIELD_MIN_PROBABILITY),
        token_start=as_int(a.get(n.FIELD_TOKEN_START), n.FIELD_TOKEN_START),
        token_stop=as_int(a.get(n.FIELD_TOKEN_STOP), n.FIELD_TOKEN_STOP),
        alternatives=alternatives,
        alternatives_token=None
        if token is None
        else as_int(token, n.FIELD_ALTERNATIVES_TOKEN_INDEX),
        value=value if isinstance(value, str) else None,
    )
