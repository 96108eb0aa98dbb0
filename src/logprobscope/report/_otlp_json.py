"""Read OTLP JSON trace files into typed model calls with their tokens.

Accepted input, per file (formats may not be mixed inside one JSON value, but a file may hold
several values one after another):

- JSON lines of ``ExportTraceServiceRequest`` in the protobuf JSON mapping: what our
  `OTLPJsonFileSpanExporter` writes and what the OpenTelemetry Collector's ``file`` exporter
  writes (``resourceSpans`` / ``scopeSpans`` / ``spans``; hex or base64 ids; ``intValue`` as a
  string or a number; enums as numbers or names; camelCase or snake_case field names).
  Lines of metrics or logs (``resourceMetrics``, ``resourceLogs``) are skipped.
- One pretty-printed such document, or a JSON array of them.
- The OpenTelemetry SDK's ``ConsoleSpanExporter`` output (concatenated ``span.to_json()``
  objects).

A span is a model call when it has a ``gen_ai.operation.name`` attribute, any ``logprobs.*``
attribute, or ``logprobs.token(s)`` events. Its tokens are reassembled from the
``logprobs.token`` and ``logprobs.tokens`` events in index order (see TELEMETRY.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeAlias

__all__ = [
    "Alternative",
    "AttributeValue",
    "ModelCall",
    "TokenRecord",
    "TraceFormatError",
    "TraceSet",
    "parse_traces",
    "read_traces",
]

AttributeValue: TypeAlias = (
    "str | bool | int | float | bytes | None"
    " | tuple[AttributeValue, ...] | dict[str, AttributeValue]"
)
"""A decoded attribute value: OTLP arrays become tuples, key-value lists dicts."""

_EVENT_TOKEN = "logprobs.token"
_EVENT_TOKENS = "logprobs.tokens"
_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUS = ("UNSET", "OK", "ERROR")
_MAX_SIZE = 1 << 30
_OTHER_SIGNALS = ("resourceMetrics", "resource_metrics", "resourceLogs", "resource_logs")


class TraceFormatError(ValueError):
    """A trace file that cannot be read as OTLP JSON; the message says where and why."""


# -- the typed records ------------------------------------------------------------------------


@dataclass(frozen=True)
class Alternative:
    """One of the top alternatives at a position; `token` is None without content capture."""

    token: str | None
    logprob: float

    @property
    def probability(self) -> float:
        """exp(logprob)."""
        return _exp(self.logprob)


@dataclass(frozen=True)
class TokenRecord:
    """One generated token as recorded in the span events.

    `text` and `bytes` are None when content capture was off. `time_unix_nano` is the
    timestamp of the event that carried the token (for a stream: when its chunk arrived).
    """

    index: int
    logprob: float
    text: str | None = None
    bytes: tuple[int, ...] | None = None
    alternatives: tuple[Alternative, ...] = ()
    time_unix_nano: int | None = None

    @property
    def probability(self) -> float:
        """exp(logprob)."""
        return _exp(self.logprob)


@dataclass(frozen=True)
class ModelCall:
    """One model-call span (``chat {model}``) with its attributes and reassembled tokens."""

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
            self.attr_str("gen_ai.request.model")
            or self.attr_str("gen_ai.response.model")
            or self.name.removeprefix("chat ").strip()
            or "?"
        )

    @property
    def response_model(self) -> str | None:
        """The model the server said answered."""
        return self.attr_str("gen_ai.response.model")

    @property
    def stream(self) -> bool:
        """Whether the call streamed."""
        return bool(self.attr_bool("gen_ai.request.stream"))

    @property
    def duration_s(self) -> float:
        """Span duration in seconds."""
        return max(0, self.end_unix_nano - self.start_unix_nano) / 1e9

    @property
    def token_count(self) -> int:
        """Tokens that carried a logprob (the attribute, else the tokens recorded)."""
        count = self.attr_int("logprobs.token_count")
        return count if count is not None else len(self.tokens)

    @property
    def content_captured(self) -> bool:
        """Whether the trace holds the token texts."""
        return any(t.text is not None for t in self.tokens)

    @property
    def events_mode(self) -> str | None:
        """``tokens``, ``batched``, ``low_confidence`` or ``none``, as the span says."""
        return self.attr_str("logprobs.events.mode")

    @property
    def tokens_complete(self) -> bool:
        """Whether every token's logprob is in the trace (indexes 0..n-1, none missing)."""
        n = self.token_count
        return len(self.tokens) == n and all(t.index == i for i, t in enumerate(self.tokens))

    @property
    def low_confidence_threshold(self) -> float:
        """The probability threshold in force (default 0.5)."""
        value = self.attr_float("logprobs.low_confidence.threshold")
        return 0.5 if value is None else value

    def _computed(self, key: str) -> float | None:
        value = self.attr_float(key)
        if value is not None:
            return value
        if not self.tokens or not self.tokens_complete:
            return None
        logprobs = [t.logprob for t in self.tokens]
        mean = sum(logprobs) / len(logprobs)
        if key == "logprobs.mean":
            return mean
        if key == "logprobs.perplexity":
            return _exp(-mean)
        if key == "logprobs.min":
            return min(logprobs)
        if key == "logprobs.sum":
            return sum(logprobs)
        return None

    @property
    def perplexity(self) -> float | None:
        """exp(−mean logprob), from the span or computed from complete tokens."""
        return self._computed("logprobs.perplexity")

    @property
    def mean_logprob(self) -> float | None:
        """Mean logprob, from the span or computed from complete tokens."""
        return self._computed("logprobs.mean")

    @property
    def min_logprob(self) -> float | None:
        """Lowest token logprob, from the span or computed from complete tokens."""
        return self._computed("logprobs.min")

    @property
    def low_confidence_count(self) -> int | None:
        """Tokens below the threshold (the span's count, else counted when complete)."""
        count = self.attr_int("logprobs.low_confidence.count")
        if count is not None:
            return count
        if not self.tokens or not self.tokens_complete:
            return None
        threshold = self.low_confidence_threshold
        return sum(1 for t in self.tokens if t.probability < threshold)

    @property
    def time_to_first_chunk_s(self) -> float | None:
        """``gen_ai.response.time_to_first_chunk`` in seconds (streams)."""
        return self.attr_float("gen_ai.response.time_to_first_chunk")


@dataclass(frozen=True)
class TraceSet:
    """What was read: the model calls (by start time), and how many spans in all."""

    calls: tuple[ModelCall, ...]
    span_count: int
    sources: tuple[str, ...]


# -- reading ----------------------------------------------------------------------------------


def read_traces(paths: str | Path | Sequence[str | Path]) -> TraceSet:
    """Read one or more trace files (see the module docstring for the formats).

    Raises:
        TraceFormatError: a file cannot be read, is not JSON, or is not OTLP trace JSON; the
            message names the file and line.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    calls: list[ModelCall] = []
    spans = 0
    sources: list[str] = []
    for path in paths:
        name = str(path)
        try:
            with open(path, "rb") as f:
                raw = f.read(_MAX_SIZE + 1)
        except OSError as exc:
            raise TraceFormatError(f"{name}: cannot read: {exc.strerror or exc}") from None
        if len(raw) > _MAX_SIZE:
            raise TraceFormatError(f"{name}: larger than 1 GiB")
        if raw[:4] == b"\x28\xb5\x2f\xfd" or raw[:2] == b"\x1f\x8b":
            raise TraceFormatError(
                f"{name}: compressed (zstd/gzip); decompress it first or set the collector's "
                "file exporter to write plain JSON"
            )
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise TraceFormatError(f"{name}: not UTF-8 text (byte {exc.start})") from None
        found = parse_traces(text, source=name)
        calls.extend(found.calls)
        spans += found.span_count
        sources.append(name)
    calls.sort(key=lambda c: (c.start_unix_nano, c.trace_id, c.span_id))
    return TraceSet(tuple(calls), spans, tuple(sources))


def parse_traces(text: str, *, source: str = "<string>") -> TraceSet:
    """Parse the text of one trace file (see `read_traces`)."""
    if not text.strip():
        raise TraceFormatError(f"{source}: empty file, no spans")
    calls: list[ModelCall] = []
    spans = 0
    recognised = False
    for line, value in _json_values(text, source):
        where = f"{source}:{line}"
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, dict):
                raise TraceFormatError(
                    f"{where}: not an OTLP trace export ({_a(_json_type(item))}, "
                    "expected an object with resourceSpans)"
                )
            kind = _classify(item)
            if kind == "skip":
                recognised = True
                continue
            if kind is None:
                raise TraceFormatError(
                    f"{where}: not an OTLP trace export (an object with keys "
                    f"{', '.join(sorted(item)[:5]) or 'none'}; expected resourceSpans)"
                )
            recognised = True
            reader = _read_request if kind == "otlp" else _read_console_span
            try:
                for span_count, call in reader(item, where):
                    spans += span_count
                    if call is not None:
                        calls.append(call)
            except _Malformed as exc:
                raise TraceFormatError(f"{where}: malformed OTLP JSON: {exc}") from None
    if not recognised:
        raise TraceFormatError(f"{source}: no OTLP trace data")
    return TraceSet(tuple(calls), spans, (source,))


class _Malformed(Exception):
    pass


_WS = re.compile(r"[ \t\r\n]*")


def _json_values(text: str, source: str) -> Iterator[tuple[int, object]]:
    """Every JSON value in the text (JSON lines, one document, or concatenated objects)."""
    decoder = json.JSONDecoder()
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    end = len(text)
    while pos < end:
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            col = exc.pos - (text.rfind("\n", 0, exc.pos) + 1) + 1
            err_line = text.count("\n", 0, exc.pos) + 1
            at = f"column {col}" if err_line == line else f"line {err_line} column {col}"
            raise TraceFormatError(f"{source}:{line}: not JSON ({exc.msg} at {at})") from None
        except RecursionError:
            raise TraceFormatError(f"{source}:{line}: JSON nested too deeply") from None
        yield line, value
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else "object"


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _classify(item: Mapping[str, object]) -> str | None:
    if "resourceSpans" in item or "resource_spans" in item:
        return "otlp"
    if any(k in item for k in _OTHER_SIGNALS):
        return "skip"
    if "name" in item and isinstance(item.get("context"), dict):
        return "console"
    return None


# -- small converters -------------------------------------------------------------------------


def _exp(logprob: float) -> float:
    try:
        return math.exp(logprob)
    except OverflowError:
        return math.inf


def _get(obj: Mapping[str, object], camel: str) -> object:
    """A field by its JSON (camelCase) name or its proto (snake_case) name."""
    if camel in obj:
        return obj[camel]
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
    return obj.get(snake)


def _list(value: object, what: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Malformed(f"{what} is {_a(_json_type(value))}, expected an array")
    return value


def _dict(value: object, what: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Malformed(f"{what} is {_a(_json_type(value))}, expected an object")
    return value


def _int(value: object, what: str, default: int = 0) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        raise _Malformed(f"{what} is a boolean, expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise _Malformed(f"{what} is {value!r}, expected an integer")


def _float(value: object, what: str) -> float:
    if isinstance(value, bool):
        raise _Malformed(f"{what} is a boolean, expected a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)  # protobuf JSON: "NaN", "Infinity", "-Infinity"
        except ValueError:
            pass
    raise _Malformed(f"{what} is {value!r}, expected a number")


_HEX = re.compile(r"[0-9a-fA-F]*")


def _id(value: object, size: int) -> str:
    """A trace/span id as lowercase hex, from hex (OTLP JSON) or base64 (protobuf JSON)."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise _Malformed(f"id {value!r} is not a string")
    text = value.removeprefix("0x")
    if len(text) == 2 * size and _HEX.fullmatch(text):
        return text.lower()
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) == size:
        return decoded.hex()
    if _HEX.fullmatch(text):
        return text.lower()
    raise _Malformed(f"id {value!r} is neither hex nor base64")


def _any_value(value: object, what: str) -> AttributeValue:
    if not isinstance(value, dict):
        raise _Malformed(f"{what} is not an AnyValue object")
    for key, raw in value.items():
        name = key.replace("_", "").lower()
        if name == "stringvalue":
            if not isinstance(raw, str):
                raise _Malformed(f"{what}.stringValue is not a string")
            return raw
        if name == "boolvalue":
            if not isinstance(raw, bool):
                raise _Malformed(f"{what}.boolValue is not a boolean")
            return raw
        if name == "intvalue":
            return _int(raw, f"{what}.intValue")
        if name == "doublevalue":
            return _float(raw, f"{what}.doubleValue")
        if name == "arrayvalue":
            values = _list(_get(_dict(raw, what), "values"), f"{what}.arrayValue.values")
            return tuple(_any_value(v, f"{what}[{i}]") for i, v in enumerate(values))
        if name == "kvlistvalue":
            values = _list(_get(_dict(raw, what), "values"), f"{what}.kvlistValue.values")
            return _attributes(values, what)
        if name == "bytesvalue":
            if not isinstance(raw, str):
                raise _Malformed(f"{what}.bytesValue is not a string")
            try:
                return base64.b64decode(raw)
            except (binascii.Error, ValueError):
                raise _Malformed(f"{what}.bytesValue is not base64") from None
    return None  # an empty AnyValue


def _attributes(value: object, what: str) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for i, kv in enumerate(_list(value, what)):
        kv = _dict(kv, f"{what}[{i}]")
        key = kv.get("key")
        if not isinstance(key, str):
            raise _Malformed(f"{what}[{i}] has no string key")
        out[key] = _any_value(kv.get("value", {}), f"attribute {key!r}")
    return out


def _plain_value(value: object) -> AttributeValue:
    """A console-exporter attribute value (plain JSON) as an AttributeValue."""
    if isinstance(value, list):
        return tuple(_plain_value(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain_value(v) for k, v in value.items()}
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    return str(value)


def _plain_attributes(value: object, what: str) -> dict[str, AttributeValue]:
    return {str(k): _plain_value(v) for k, v in _dict(value, what).items()}


def _enum(value: object, names: Sequence[str], prefix: str, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return names[value] if 0 <= value < len(names) else default
    if isinstance(value, str):
        name = value.split(".")[-1].upper().removeprefix(prefix)
        return name if name in names else default
    return default


def _iso_nanos(value: object, what: str) -> int:
    if value is None:
        return 0
    if not isinstance(value, str):
        raise _Malformed(f"{what} is not an ISO-8601 string")
    match = re.fullmatch(r"(.*?T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?", value.strip())
    if not match:
        raise _Malformed(f"{what} {value!r} is not an ISO-8601 time")
    base, frac, zone = match.groups()
    try:
        moment = datetime.fromisoformat(base + ("+00:00" if zone in (None, "Z") else zone))
    except ValueError:
        raise _Malformed(f"{what} {value!r} is not an ISO-8601 time") from None
    nanos = int((frac or "0").ljust(9, "0")[:9])
    return int(moment.timestamp()) * 1_000_000_000 + nanos


# -- spans -------------------------------------------------------------------------------------


@dataclass
class _Event:
    name: str
    time_unix_nano: int
    attributes: dict[str, AttributeValue]


def _read_request(
    request: Mapping[str, object], where: str
) -> Iterator[tuple[int, ModelCall | None]]:
    for r, rs in enumerate(_list(_get(request, "resourceSpans"), "resourceSpans")):
        rs = _dict(rs, f"resourceSpans[{r}]")
        resource = _dict(_get(rs, "resource"), "resource")
        resource_attrs = _attributes(resource.get("attributes"), "resource.attributes")
        scope_spans = _get(rs, "scopeSpans")
        if scope_spans is None:
            scope_spans = _get(rs, "instrumentationLibrarySpans")  # OTLP before 0.15
        for s, ss in enumerate(_list(scope_spans, f"resourceSpans[{r}].scopeSpans")):
            ss = _dict(ss, f"scopeSpans[{s}]")
            scope = _dict(_get(ss, "scope") or _get(ss, "instrumentationLibrary"), "scope")
            scope_name = scope.get("name")
            for n, span in enumerate(_list(ss.get("spans"), f"scopeSpans[{s}].spans")):
                span = _dict(span, f"spans[{n}]")
                yield (
                    1,
                    _otlp_span(
                        span,
                        resource_attrs,
                        scope_name if isinstance(scope_name, str) else "",
                        where,
                    ),
                )


def _otlp_span(
    span: Mapping[str, object],
    resource: dict[str, AttributeValue],
    scope: str,
    where: str,
) -> ModelCall | None:
    name = span.get("name")
    if not isinstance(name, str):
        raise _Malformed("a span has no name")
    attributes = _attributes(span.get("attributes"), f"span {name!r} attributes")
    events: list[_Event] = []
    for i, raw in enumerate(_list(span.get("events"), f"span {name!r} events")):
        raw = _dict(raw, f"span {name!r} events[{i}]")
        event_name = raw.get("name")
        events.append(
            _Event(
                event_name if isinstance(event_name, str) else "",
                _int(_get(raw, "timeUnixNano"), "timeUnixNano"),
                _attributes(raw.get("attributes"), f"event {event_name!r} attributes"),
            )
        )
    if not _is_model_call(attributes, events):
        return None
    status = _dict(span.get("status"), "status")
    message = status.get("message")
    parent = _id(_get(span, "parentSpanId"), 8)
    return _build_call(
        trace_id=_id(_get(span, "traceId"), 16),
        span_id=_id(_get(span, "spanId"), 8),
        parent_span_id=parent or None,
        name=name,
        kind=_enum(span.get("kind"), _KINDS, "SPAN_KIND_", "UNSPECIFIED"),
        start=_int(_get(span, "startTimeUnixNano"), "startTimeUnixNano"),
        end=_int(_get(span, "endTimeUnixNano"), "endTimeUnixNano"),
        status_code=_enum(status.get("code"), _STATUS, "STATUS_CODE_", "UNSET"),
        status_message=message if isinstance(message, str) else "",
        attributes=attributes,
        resource=resource,
        scope=scope,
        events=events,
        dropped_events=_int(_get(span, "droppedEventsCount"), "droppedEventsCount"),
        source=where,
    )


def _read_console_span(
    span: Mapping[str, object], where: str
) -> Iterator[tuple[int, ModelCall | None]]:
    name = span.get("name")
    if not isinstance(name, str):
        raise _Malformed("a span has no name")
    context = _dict(span.get("context"), "context")
    attributes = _plain_attributes(span.get("attributes"), "attributes")
    events: list[_Event] = []
    for i, raw in enumerate(_list(span.get("events"), "events")):
        raw = _dict(raw, f"events[{i}]")
        event_name = raw.get("name")
        events.append(
            _Event(
                event_name if isinstance(event_name, str) else "",
                _iso_nanos(raw.get("timestamp"), "event timestamp"),
                _plain_attributes(raw.get("attributes"), "event attributes"),
            )
        )
    if not _is_model_call(attributes, events):
        yield 1, None
        return
    status = _dict(span.get("status"), "status")
    description = status.get("description")
    resource = _dict(span.get("resource"), "resource")
    parent = span.get("parent_id")
    yield (
        1,
        _build_call(
            trace_id=_id(context.get("trace_id"), 16),
            span_id=_id(context.get("span_id"), 8),
            parent_span_id=_id(parent, 8) or None,
            name=name,
            kind=_enum(span.get("kind"), _KINDS, "SPAN_KIND_", "UNSPECIFIED"),
            start=_iso_nanos(span.get("start_time"), "start_time"),
            end=_iso_nanos(span.get("end_time"), "end_time"),
            status_code=_enum(status.get("status_code"), _STATUS, "STATUS_CODE_", "UNSET"),
            status_message=description if isinstance(description, str) else "",
            attributes=attributes,
            resource=_plain_attributes(resource.get("attributes"), "resource.attributes"),
            scope="",
            events=events,
            dropped_events=0,
            source=where,
        ),
    )


def _is_model_call(attributes: Mapping[str, AttributeValue], events: Sequence[_Event]) -> bool:
    if "gen_ai.operation.name" in attributes:
        return True
    if any(key.startswith("logprobs.") for key in attributes):
        return True
    return any(e.name in (_EVENT_TOKEN, _EVENT_TOKENS) for e in events)


def _build_call(
    *,
    trace_id: str,
    span_id: str,
    parent_span_id: str | None,
    name: str,
    kind: str,
    start: int,
    end: int,
    status_code: str,
    status_message: str,
    attributes: dict[str, AttributeValue],
    resource: dict[str, AttributeValue],
    scope: str,
    events: Sequence[_Event],
    dropped_events: int,
    source: str,
) -> ModelCall:
    k = attributes.get("logprobs.top_logprobs")
    top_k = k if isinstance(k, int) and not isinstance(k, bool) and k > 0 else None
    tokens: dict[int, TokenRecord] = {}
    exception: str | None = None
    ordinal = 0
    for event in events:
        if event.name == _EVENT_TOKEN:
            record = _token_event(event, ordinal)
            ordinal += 1
            _keep(tokens, record)
        elif event.name == _EVENT_TOKENS:
            for record in _tokens_event(event, top_k):
                _keep(tokens, record)
        elif event.name == "exception" and exception is None:
            etype = event.attributes.get("exception.type")
            emsg = event.attributes.get("exception.message")
            parts = [str(p) for p in (etype, emsg) if isinstance(p, str) and p]
            exception = ": ".join(parts) or "exception"
    return ModelCall(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_span_id,
        name=name,
        kind=kind,
        start_unix_nano=start,
        end_unix_nano=end,
        status_code=status_code,
        status_message=status_message,
        attributes=attributes,
        resource=resource,
        scope=scope,
        tokens=tuple(tokens[i] for i in sorted(tokens)),
        exception=exception,
        dropped_events=dropped_events,
        source=source,
    )


def _keep(tokens: dict[int, TokenRecord], record: TokenRecord) -> None:
    old = tokens.get(record.index)
    if old is None or (old.text is None and record.text is not None):
        tokens[record.index] = record


def _floats(value: AttributeValue, what: str) -> list[float]:
    if value is None:
        return []
    if not isinstance(value, tuple):
        value = (value,)
    return [_float(v, what) for v in value]


def _strings(value: AttributeValue) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, tuple):
        value = (value,)
    return [v if isinstance(v, str) else str(v) for v in value]


def _token_event(event: _Event, ordinal: int) -> TokenRecord:
    a = event.attributes
    index = a.get("logprobs.token.index")
    logprob = a.get("logprobs.token.logprob")
    if logprob is None:
        raise _Malformed("a logprobs.token event has no logprobs.token.logprob")
    text = a.get("logprobs.token.text")
    raw_bytes = a.get("logprobs.token.bytes")
    tops = _floats(a.get("logprobs.token.top_logprobs"), "logprobs.token.top_logprobs")
    top_tokens = _strings(a.get("logprobs.token.top_tokens"))
    byte_values: tuple[int, ...] | None = None
    if isinstance(raw_bytes, tuple):
        byte_values = tuple(_int(b, "logprobs.token.bytes") for b in raw_bytes)
    return TokenRecord(
        index=_int(index, "logprobs.token.index") if index is not None else ordinal,
        logprob=_float(logprob, "logprobs.token.logprob"),
        text=text if isinstance(text, str) else None,
        bytes=byte_values,
        alternatives=_alternatives(tops, top_tokens),
        time_unix_nano=event.time_unix_nano or None,
    )


def _alternatives(
    logprobs: Sequence[float], tokens: Sequence[str] | None
) -> tuple[Alternative, ...]:
    out = []
    for j, lp in enumerate(logprobs):
        token = tokens[j] if tokens is not None and j < len(tokens) else None
        out.append(Alternative(token, lp))
    return tuple(out)


def _tokens_event(event: _Event, top_k: int | None) -> Iterable[TokenRecord]:
    a = event.attributes
    start = _int(a.get("logprobs.tokens.start_index"), "logprobs.tokens.start_index")
    logprobs = _floats(a.get("logprobs.tokens.logprobs"), "logprobs.tokens.logprobs")
    tops = _floats(a.get("logprobs.tokens.top_logprobs"), "logprobs.tokens.top_logprobs")
    texts = _strings(a.get("logprobs.tokens.texts"))
    top_tokens = _strings(a.get("logprobs.tokens.top_tokens"))
    n = len(logprobs)
    k = 0
    if n and tops:
        if top_k and len(tops) == n * top_k:
            k = top_k
        elif len(tops) % n == 0:
            k = len(tops) // n
        else:
            raise _Malformed(f"a logprobs.tokens event has {len(tops)} top logprobs for {n} tokens")
    for i, lp in enumerate(logprobs):
        row = tops[i * k : (i + 1) * k] if k else []
        row_tokens = top_tokens[i * k : (i + 1) * k] if (k and top_tokens is not None) else None
        yield TokenRecord(
            index=start + i,
            logprob=lp,
            text=texts[i] if texts is not None and i < len(texts) else None,
            alternatives=_alternatives(row, row_tokens),
            time_unix_nano=event.time_unix_nano or None,
        )
