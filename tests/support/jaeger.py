"""What Jaeger shows of our spans, without running Jaeger.

Jaeger's query service reads OTLP, sorts every span's attributes and every event's
attributes by key, and hands the UI the Jaeger model: span attributes become tags, each
event a log whose first field is ``event=<name>``, and array attributes JSON text. The UI
then orders a span's tags by the configured ``topTagPrefixes`` (then alphabetically,
ignoring case), and shows a collapsed log as its fields, ``key=value``, on one line.

`jaeger_spans` does that conversion from an OTLP JSON document (what our file exporter
writes and what the collector sends on); `order_tags` is the UI's ordering; `summary` is
the text of a collapsed log line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from logprobscope.report import AttributeValue
from logprobscope.report._values import any_value

__all__ = [
    "JaegerField",
    "JaegerLog",
    "JaegerSpan",
    "jaeger_spans",
    "js_number",
    "order_tags",
    "summary",
    "ui_config",
]

# The kinds the Jaeger model gives a value (its JSON API names them so).
STRING, BOOL, INT64, FLOAT64, BINARY = "string", "bool", "int64", "float64", "binary"

_KIND_NAMES = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class JaegerField:
    """A tag or log field: its key, the Jaeger model's type, and the value as typed."""

    key: str
    type: str
    value: str | bool | int | float

    @property
    def text(self) -> str:
        """The value as the UI prints it in a collapsed line (JavaScript's `String(value)`)."""
        value = self.value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return js_number(value)
        return str(value)


@dataclass(frozen=True)
class JaegerLog:
    """A span event as a Jaeger log: microseconds since the epoch, fields in Jaeger's order."""

    timestamp_us: int
    fields: tuple[JaegerField, ...]

    @property
    def name(self) -> str:
        """The event's name (the `event` field)."""
        return next((str(f.value) for f in self.fields if f.key == "event"), "")

    def get(self, key: str) -> JaegerField:
        """The field named `key` (KeyError if absent)."""
        for item in self.fields:
            if item.key == key:
                return item
        raise KeyError(key)

    def keys(self) -> list[str]:
        """The fields' keys, in order."""
        return [f.key for f in self.fields]


@dataclass(frozen=True)
class JaegerSpan:
    """A span as the Jaeger model holds it."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    operation_name: str
    service_name: str
    start_us: int
    duration_us: int
    tags: tuple[JaegerField, ...]
    logs: tuple[JaegerLog, ...] = field(default=())

    def tag(self, key: str) -> JaegerField:
        """The tag named `key` (KeyError if absent)."""
        for item in self.tags:
            if item.key == key:
                return item
        raise KeyError(key)


def js_number(value: float) -> str:
    """A double as JavaScript's `String` (and Go's JSON encoder) writes it: the shortest
    digits that read back the same, positional from 1e-6 up to 1e21, else like 1.5e-7."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr writes the shortest round-trip digits, as both of them do.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    assert isinstance(exponent, int)
    every = "".join(map(str, digit_tuple))
    digits = every.rstrip("0")
    exponent += len(every) - len(digits)
    point = len(digits) + exponent  # digits before the decimal point
    if 1e-6 <= abs(value) < 1e21:
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits}"
        if point >= len(digits):
            return sign + digits + "0" * (point - len(digits))
        return f"{sign}{digits[:point]}.{digits[point:]}"
    power = point - 1
    tail = f".{digits[1:]}" if len(digits) > 1 else ""
    return f"{sign}{digits[0]}{tail}e{'+' if power > 0 else '-'}{abs(power)}"


def _json_text(value: AttributeValue) -> str:
    """An array or map attribute as Jaeger stores it: compact JSON as Go writes it."""

    def plain(v: AttributeValue) -> object:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, bytes):
            return v.decode("latin-1")
        return v

    def dump(v: object) -> str:
        if isinstance(v, list):
            return "[" + ",".join(dump(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ",".join(f"{dump(k)}:{dump(x)}" for k, x in v.items()) + "}"
        if isinstance(v, bool) or v is None:
            return json.dumps(v)
        if isinstance(v, float):
            return js_number(v)
        text = json.dumps(v, ensure_ascii=False)
        # Go's encoder escapes these for HTML safety; the UI's JSON.parse undoes it.
        for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
            text = text.replace(char, escaped)
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")

    return dump(plain(value))


def _field(key: str, value: AttributeValue) -> JaegerField:
    if isinstance(value, bool):
        return JaegerField(key, BOOL, value)
    if isinstance(value, int):
        return JaegerField(key, INT64, value)
    if isinstance(value, float):
        return JaegerField(key, FLOAT64, value)
    if isinstance(value, str):
        return JaegerField(key, STRING, value)
    if isinstance(value, bytes):
        return JaegerField(key, BINARY, value.hex())
    if value is None:
        return JaegerField(key, STRING, "")
    return JaegerField(key, STRING, _json_text(value))


def _sorted_fields(attributes: Mapping[str, AttributeValue]) -> list[JaegerField]:
    # The query service's SortCollections adjuster: byte order of the keys.
    return [_field(k, attributes[k]) for k in sorted(attributes, key=lambda k: k.encode())]


def _list(obj: Mapping[str, object], key: str) -> list[dict[str, object]]:
    value = obj.get(key) or []
    assert isinstance(value, list)
    return value


def _attributes(obj: Mapping[str, object]) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for kv in _list(obj, "attributes"):
        key = kv["key"]
        assert isinstance(key, str)
        out[key] = any_value(kv.get("value", {}), key)
    return out


def _us(nanos: object) -> int:
    return int(str(nanos)) // 1000


def jaeger_spans(document: Mapping[str, object]) -> list[JaegerSpan]:
    """The spans of an OTLP JSON ``ExportTraceServiceRequest`` as Jaeger's query service
    returns them to its UI."""
    spans: list[JaegerSpan] = []
    for resource_spans in _list(document, "resourceSpans"):
        resource = resource_spans.get("resource") or {}
        assert isinstance(resource, dict)
        service = str(_attributes(resource).get("service.name", "unknown_service"))
        for scope_spans in _list(resource_spans, "scopeSpans"):
            scope = scope_spans.get("scope") or {}
            assert isinstance(scope, dict)
            for span in _list(scope_spans, "spans"):
                spans.append(_span(span, service, scope))
    return spans


def _span(span: dict[str, object], service: str, scope: Mapping[str, object]) -> JaegerSpan:
    tags: list[JaegerField] = []
    if scope.get("name"):
        tags.append(JaegerField("otel.scope.name", STRING, str(scope["name"])))
    if scope.get("version"):
        tags.append(JaegerField("otel.scope.version", STRING, str(scope["version"])))
    tags.extend(_sorted_fields(_attributes(span)))
    kind = _KIND_NAMES.get(int(str(span.get("kind", 0))))
    if kind is not None:
        tags.append(JaegerField("span.kind", STRING, kind))
    status = span.get("status") or {}
    assert isinstance(status, dict)
    code = int(str(status.get("code", 0)))
    if code == 2:
        tags.append(JaegerField("otel.status_code", STRING, "ERROR"))
        tags.append(JaegerField("error", BOOL, True))
    elif code == 1:
        tags.append(JaegerField("otel.status_code", STRING, "OK"))
    if status.get("message"):
        tags.append(JaegerField("otel.status_description", STRING, str(status["message"])))
    events = _list(span, "events")
    # SortCollections also sorts the events by name (stably); the UI sorts them by time.
    events = sorted(events, key=lambda e: str(e.get("name", "")).encode())
    logs = []
    for event in events:
        fields = [JaegerField("event", STRING, str(event["name"]))] if event.get("name") else []
        fields.extend(_sorted_fields(_attributes(event)))
        logs.append(JaegerLog(_us(event.get("timeUnixNano", 0)), tuple(fields)))
    start = _us(span["startTimeUnixNano"])
    parent = span.get("parentSpanId")
    return JaegerSpan(
        trace_id=str(span["traceId"]),
        span_id=str(span["spanId"]),
        parent_span_id=str(parent) if parent else None,
        operation_name=str(span["name"]),
        service_name=service,
        start_us=start,
        duration_us=_us(span["endTimeUnixNano"]) - start,
        tags=tuple(tags),
        logs=tuple(sorted(logs, key=lambda log: log.timestamp_us)),
    )


def order_tags(keys: Sequence[str], top_prefixes: Sequence[str]) -> list[str]:
    """A span's tag keys in the order the UI lists them: those starting with an earlier
    `topTagPrefixes` entry first, then alphabetically, case ignored."""
    prefixes = [p.lower() for p in top_prefixes]

    def rank(key: str) -> tuple[list[bool], str]:
        low = key.lower()
        return [not low.startswith(p) for p in prefixes], low

    return sorted(keys, key=rank)


def summary(fields: Sequence[JaegerField]) -> str:
    """A collapsed log (or tag list) as the UI writes it on one line."""
    return " ".join(f"{f.key}={f.text}" for f in fields)


def ui_config(path: Path) -> dict[str, object]:
    """The Jaeger UI configuration file (JSON)."""
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded
