"""What the reader returns: model calls with their attributes and tokens, as typed records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeAlias

from .. import _contract as n
from .._figures import probability, summarize, summary_attributes

__all__ = [
    "Alternative",
    "AttributeValue",
    "FieldRecord",
    "ModelCall",
    "TokenRecord",
    "TraceFormatError",
    "TraceSet",
]

AttributeValue: TypeAlias = (
    "str | bool | int | float | bytes | None"
    " | tuple[AttributeValue, ...] | dict[str, AttributeValue]"
)
"""A decoded attribute value: OTLP arrays become tuples, key-value lists dicts."""


class TraceFormatError(ValueError):
    """A trace file that cannot be read as OTLP JSON; the message says where and why."""


@dataclass(frozen=True)
class Alternative:
    """One of the top alternatives at a position; `token` is None without content capture."""

    token: str | None
    logprob: float

    @property
    def probability(self) -> float:
        """exp(logprob)."""
        return probability(self.logprob)


@dataclass(frozen=True)
class TokenRecord:
    """One generated token as recorded in the span events.

    `text` and `bytes` are None when content capture was off. `time_unix_nano` is the
    timestamp of the event that carried the token (for a stream: when its chunk arrived).
    `channel` ("content" or "refusal") and `choice` say which stream it belongs to; `index`
    counts within that stream.
    """

    index: int
    logprob: float
    text: str | None = None
    bytes: tuple[int, ...] | None = None
    alternatives: tuple[Alternative, ...] = ()
    time_unix_nano: int | None = None
    channel: str = n.CHANNEL_CONTENT
    choice: int = 0

    @property
    def probability(self) -> float:
        """exp(logprob)."""
        return probability(self.logprob)


@dataclass(frozen=True)
class FieldRecord:
    """One leaf value of a structured answer, from its ``logprobs.field`` event.

    `alternatives` are given for booleans and schema enums (their texts only with content
    capture); `value` is the value as JSON text, with content capture only.
    """

    path: str
    logprob: float
    min_probability: float
    token_start: int
    token_stop: int
    alternatives: tuple[Alternative, ...] | None = None
    alternatives_token: int | None = None
    value: str | None = None

    @property
    def probability(self) -> float:
        """The joint probability of the value's tokens, exp(logprob)."""
        return probability(self.logprob)


@dataclass(frozen=True)
class ModelCall:
    """One model-call span (``chat {model}``) with its attributes and reassembled tokens.

    Each figure (`perplexity`, `mean_logprob`, ...) is the span's summary attribute when it
    has one, else computed from the tokens when the trace holds all of them, by the rules
    the writer follows (`logprobscope._figures`), else None.

    `tokens` are choice 0's content tokens (what the figures describe); `other_tokens` those
    of every other stream (choice 0's refusal, other choices), each marked with its channel
    and choice. `fields` are the structured answer's ``logprobs.field`` events.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_unix_nano: int
    end_unix_nano: int
    status_code: str
    status_message: str
    attributes: Mapping[str, AttributeValue]
    resource: Mapping[str, AttributeValue] = field(default_factory=dict)
    scope: str = ""
    tokens: tuple[TokenRecord, ...] = ()
    other_tokens: tuple[TokenRecord, ...] = ()
    fields: tuple[FieldRecord, ...] = ()
    exception: str | None = None
    dropped_events: int = 0
    source: str = ""

    # -- attribute access ---------------------------------------------------------------

    def attr_str(self, key: str) -> str | None:
        """The attribute as a string, or None if absent or not a string."""
        value = self.attributes.get(key)
        return value if isinstance(value, str) else None

    def attr_int(self, key: str) -> int | None:
        """The attribute as an int, or None if absent or not an integer."""
        value = self.attributes.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        return value

    def attr_float(self, key: str) -> float | None:
        """The attribute as a float, or None if absent or not a number."""
        value = self.attributes.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)

    def attr_bool(self, key: str) -> bool | None:
        """The attribute as a bool, or None if absent or not a bool."""
        value = self.attributes.get(key)
        return value if isinstance(value, bool) else None

    # -- what a reader wants --------------------------------------------------------------

    @property
    def model(self) -> str:
        """The requested model (or the response's, or the span name's)."""
        return (
            self.attr_str(n.GEN_AI_REQUEST_MODEL)
            or self.attr_str(n.GEN_AI_RESPONSE_MODEL)
            or self.name.removeprefix(f"{n.OPERATION_CHAT} ").strip()
            or "?"
        )

    @property
    def response_model(self) -> str | None:
        """The model the server said answered."""
        return self.attr_str(n.GEN_AI_RESPONSE_MODEL)

    @property
    def stream(self) -> bool:
        """Whether the call streamed."""
        return bool(self.attr_bool(n.GEN_AI_REQUEST_STREAM))

    @property
    def duration_s(self) -> float:
        """Span duration in seconds."""
        return max(0, self.end_unix_nano - self.start_unix_nano) / 1e9

    @property
    def token_count(self) -> int:
        """Tokens that carried a logprob (the attribute, else the tokens recorded)."""
        count = self.attr_int(n.LOGPROBS_TOKEN_COUNT)
        return count if count is not None else len(self.tokens)

    @property
    def content_captured(self) -> bool:
        """Whether the trace holds the token texts (of any stream)."""
        return any(t.text is not None for t in self.tokens) or any(
            t.text is not None for t in self.other_tokens
        )

    @property
    def events_mode(self) -> str | None:
        """``tokens``, ``batched``, ``low_confidence`` or ``none``, as the span says."""
        return self.attr_str(n.LOGPROBS_EVENTS_MODE)

    @property
    def tokens_complete(self) -> bool:
        """Whether every token's logprob is in the trace (indexes 0..n-1, none missing)."""
        count = self.token_count
        return len(self.tokens) == count and all(t.index == i for i, t in enumerate(self.tokens))

    @property
    def low_confidence_threshold(self) -> float:
        """The probability threshold in force (the contract's default when absent)."""
        value = self.attr_float(n.LOGPROBS_LOW_CONFIDENCE_THRESHOLD)
        return n.DEFAULT_LOW_CONFIDENCE_THRESHOLD if value is None else value

    # -- figures: the span's summary attributes, else computed from complete tokens -------

    @cached_property
    def _computed(self) -> dict[str, float | int]:
        """The summary attributes the writer sets for these tokens, when the trace holds
        every token (else none)."""
        if not self.tokens or not self.tokens_complete:
            return {}
        return summary_attributes(
            summarize(
                [t.logprob for t in self.tokens],
                top_logprobs=[[a.logprob for a in t.alternatives] for t in self.tokens],
                low_confidence_threshold=self.low_confidence_threshold,
            )
        )

    def _float_figure(self, key: str) -> float | None:
        value = self.attr_float(key)
        computed = self._computed.get(key)
        return value if value is not None or computed is None else float(computed)

    def _int_figure(self, key: str) -> int | None:
        value = self.attr_int(key)
        computed = self._computed.get(key)
        return value if value is not None or not isinstance(computed, int) else computed

    @property
    def sum_logprob(self) -> float | None:
        """Σ logprob (``logprobs.sum``)."""
        return self._float_figure(n.LOGPROBS_SUM)

    @property
    def mean_logprob(self) -> float | None:
        """Mean logprob (``logprobs.mean``)."""
        return self._float_figure(n.LOGPROBS_MEAN)

    @property
    def perplexity(self) -> float | None:
        """exp(−mean logprob) (``logprobs.perplexity``)."""
        return self._float_figure(n.LOGPROBS_PERPLEXITY)

    @property
    def min_logprob(self) -> float | None:
        """Lowest token logprob (``logprobs.min``)."""
        return self._float_figure(n.LOGPROBS_MIN)

    @property
    def min_index(self) -> int | None:
        """Index of the lowest token logprob, the first if tied (``logprobs.min_index``)."""
        return self._int_figure(n.LOGPROBS_MIN_INDEX)

    @property
    def low_confidence_count(self) -> int | None:
        """Tokens below the threshold (``logprobs.low_confidence.count``)."""
        return self._int_figure(n.LOGPROBS_LOW_CONFIDENCE_COUNT)

    @property
    def entropy_mean(self) -> float | None:
        """Mean top-k entropy in nats (``logprobs.entropy.mean``)."""
        return self._float_figure(n.LOGPROBS_ENTROPY_MEAN)

    @property
    def margin_mean(self) -> float | None:
        """Mean margin p(top1) − p(top2) (``logprobs.margin.mean``)."""
        return self._float_figure(n.LOGPROBS_MARGIN_MEAN)

    # -- the refusal and the fields -------------------------------------------------------

    @property
    def refusal_tokens(self) -> tuple[TokenRecord, ...]:
        """Choice 0's refusal tokens, in index order."""
        return tuple(
            t for t in self.other_tokens if t.channel == n.CHANNEL_REFUSAL and t.choice == 0
        )

    @property
    def refusal_token_count(self) -> int:
        """Choice 0's refusal tokens (the attribute, else the tokens recorded)."""
        count = self.attr_int(n.LOGPROBS_REFUSAL_TOKEN_COUNT)
        return count if count is not None else len(self.refusal_tokens)

    @cached_property
    def refusal_figures(self) -> dict[str, float | int]:
        """The refusal's summary under the content's names (``logprobs.sum``, ...): the
        span's ``logprobs.refusal.*`` attributes, else computed from complete tokens."""
        out: dict[str, float | int] = {}
        for content, refusal in n.REFUSAL_SUMMARY.items():
            value = self.attributes.get(refusal)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[content] = value
        tokens = self.refusal_tokens
        complete = len(tokens) == self.refusal_token_count and all(
            t.index == i for i, t in enumerate(tokens)
        )
        if tokens and complete:
            computed = summary_attributes(
                summarize(
                    [t.logprob for t in tokens],
                    top_logprobs=[[a.logprob for a in t.alternatives] for t in tokens],
                    low_confidence_threshold=self.low_confidence_threshold,
                )
            )
            for key, value in computed.items():
                out.setdefault(key, value)
        return out

    @property
    def fields_complete(self) -> bool | None:
        """Whether the structured answer's JSON was complete (``logprobs.fields.complete``)."""
        return self.attr_bool(n.LOGPROBS_FIELDS_COMPLETE)

    @property
    def fields_dropped(self) -> int:
        """Field events left out for lack of room (``logprobs.fields.dropped``)."""
        return self.attr_int(n.LOGPROBS_FIELDS_DROPPED) or 0

    @property
    def time_to_first_chunk_s(self) -> float | None:
        """``gen_ai.response.time_to_first_chunk`` in seconds (streams)."""
        return self.attr_float(n.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)


@dataclass(frozen=True)
class TraceSet:
    """What was read: the model calls (by start time), and how many spans in all."""

    calls: tuple[ModelCall, ...]
    span_count: int
    sources: tuple[str, ...]
