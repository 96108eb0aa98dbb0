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

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_MESSAGE,
    EXCEPTION_TYPE,
)

from .. import _contract as n
from ._field_events import read_fields
from ._records import AttributeValue, ModelCall, TraceFormatError, TraceSet
from ._tokens import SpanEvent, reassemble
from ._values import (
    Malformed,
    a_noun,
    as_dict,
    as_int,
    as_list,
    attributes,
    enum_name,
    field,
    hex_id,
    iso_nanos,
    json_type,
    plain_attributes,
)

__all__ = ["parse_traces", "read_traces"]

_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUS = ("UNSET", "OK", "ERROR")
_MAX_SIZE = 1 << 30
_OTHER_SIGNALS = ("resourceMetrics", "resource_metrics", "resourceLogs", "resource_logs")
_OUR_PREFIX = "logprobs."  # the namespace of the contract's own names
_TOKEN_EVENTS = (n.EVENT_TOKEN, n.EVENT_TOKENS)
_EXCEPTION_EVENT = "exception"  # the event the SDK's record_exception adds


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
                    f"{where}: not an OTLP trace export ({a_noun(json_type(item))}, "
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
            except Malformed as exc:
                raise TraceFormatError(f"{where}: malformed OTLP JSON: {exc}") from None
    if not recognised:
        raise TraceFormatError(f"{source}: no OTLP trace data")
    return TraceSet(tuple(calls), spans, (source,))


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


def _classify(item: Mapping[str, object]) -> str | None:
    if "resourceSpans" in item or "resource_spans" in item:
        return "otlp"
    if any(k in item for k in _OTHER_SIGNALS):
        return "skip"
    if "name" in item and isinstance(item.get("context"), dict):
        return "console"
    return None


# -- OTLP JSON ---------------------------------------------------------------------------------


def _read_request(
    request: Mapping[str, object], where: str
) -> Iterator[tuple[int, ModelCall | None]]:
    for r, rs in enumerate(as_list(field(request, "resourceSpans"), "resourceSpans")):
        rs = as_dict(rs, f"resourceSpans[{r}]")
        resource = as_dict(field(rs, "resource"), "resource")
        resource_attrs = attributes(resource.get("attributes"), "resource.attributes")
        scope_spans = field(rs, "scopeSpans")
        if scope_spans is None:
            scope_spans = field(rs, "instrumentationLibrarySpans")  # OTLP before 0.15
        for s, ss in enumerate(as_list(scope_spans, f"resourceSpans[{r}].scopeSpans")):
            ss = as_dict(ss, f"scopeSpans[{s}]")
            scope = as_dict(field(ss, "scope") or field(ss, "instrumentationLibrary"), "scope")
            scope_name = scope.get("name")
            for i, span in enumerate(as_list(ss.get("spans"), f"scopeSpans[{s}].spans")):
                span = as_dict(span, f"spans[{i}]")
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
        raise Malformed("a span has no name")
    attrs = attributes(span.get("attributes"), f"span {name!r} attributes")
    events: list[SpanEvent] = []
    for i, raw in enumerate(as_list(span.get("events"), f"span {name!r} events")):
        raw = as_dict(raw, f"span {name!r} events[{i}]")
        event_name = raw.get("name")
        events.append(
            SpanEvent(
                event_name if isinstance(event_name, str) else "",
                as_int(field(raw, "timeUnixNano"), "timeUnixNano"),
                attributes(raw.get("attributes"), f"event {event_name!r} attributes"),
            )
        )
    if not _is_model_call(attrs, events):
        return None
    status = as_dict(span.get("status"), "status")
    message = status.get("message")
    parent = hex_id(field(span, "parentSpanId"), 8)
    return _build_call(
        trace_id=hex_id(field(span, "traceId"), 16),
        span_id=hex_id(field(span, "spanId"), 8),
        parent_span_id=parent or None,
        name=name,
        kind=enum_name(span.get("kind"), _KINDS, "SPAN_KIND_", "UNSPECIFIED"),
        start=as_int(field(span, "startTimeUnixNano"), "startTimeUnixNano"),
        end=as_int(field(span, "endTimeUnixNano"), "endTimeUnixNano"),
        status_code=enum_name(status.get("code"), _STATUS, "STATUS_CODE_", "UNSET"),
        status_message=message if isinstance(message, str) else "",
        attributes=attrs,
        resource=resource,
        scope=scope,
        events=events,
        dropped_events=as_int(field(span, "droppedEventsCount"), "droppedEventsCount"),
        source=where,
    )


# -- the SDK's console exporter ----------------------------------------------------------------


def _read_console_span(
    span: Mapping[str, object], where: str
) -> Iterator[tuple[int, ModelCall | None]]:
    name = span.get("name")
    if not isinstance(name, str):
        raise Malformed("a span has no name")
    context = as_dict(span.get("context"), "context")
    attrs = plain_attributes(span.get("attributes"), "attributes")
    events: list[SpanEvent] = []
    for i, raw in enumerate(as_list(span.get("events"), "events")):
        raw = as_dict(raw, f"events[{i}]")
        event_name = raw.get("name")
        events.append(
            SpanEvent(
                event_name if isinstance(event_name, str) else "",
                iso_nanos(raw.get("timestamp"), "event timestamp"),
                plain_attributes(raw.get("attributes"), "event attributes"),
            )
        )
    if not _is_model_call(attrs, events):
        yield 1, None
        return
    status = as_dict(span.get("status"), "status")
    description = status.get("description")
    resource = as_dict(span.get("resource"), "resource")
    parent = span.get("parent_id")
    yield (
        1,
        _build_call(
            trace_id=hex_id(context.get("trace_id"), 16),
            span_id=hex_id(context.get("span_id"), 8),
            parent_span_id=hex_id(parent, 8) or None,
            name=name,
            kind=enum_name(span.get("kind"), _KINDS, "SPAN_KIND_", "UNSPECIFIED"),
            start=iso_nanos(span.get("start_time"), "start_time"),
            end=iso_nanos(span.get("end_time"), "end_time"),
            status_code=enum_name(status.get("status_code"), _STATUS, "STATUS_CODE_", "UNSET"),
            status_message=description if isinstance(description, str) else "",
            attributes=attrs,
            resource=plain_attributes(resource.get("attributes"), "resource.attributes"),
            scope="",
            events=events,
            dropped_events=0,
            source=where,
        ),
    )


# -- a span to a model call --------------------------------------------------------------------


def _is_model_call(attrs: Mapping[str, AttributeValue], events: Sequence[SpanEvent]) -> bool:
    if n.GEN_AI_OPERATION_NAME in attrs:
        return True
    if any(key.startswith(_OUR_PREFIX) for key in attrs):
        return True
    return any(e.name in _TOKEN_EVENTS for e in events)


def _exception(events: Sequence[SpanEvent]) -> str | None:
    """The first recorded exception as ``type: message``."""
    for event in events:
        if event.name == _EXCEPTION_EVENT:
            etype = event.attributes.get(EXCEPTION_TYPE)
            emsg = event.attributes.get(EXCEPTION_MESSAGE)
            parts = [str(p) for p in (etype, emsg) if isinstance(p, str) and p]
            return ": ".join(parts) or "exception"
    return None


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
    events: Sequence[SpanEvent],
    dropped_events: int,
    source: str,
) -> ModelCall:
    k = attributes.get(n.LOGPROBS_TOP_LOGPROBS)
    top_k = k if isinstance(k, int) and not isinstance(k, bool) and k > 0 else None
    tokens, other_tokens = reassemble(events, top_k=top_k)
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
        tokens=tokens,
        other_tokens=other_tokens,
        fields=read_fields(events),
        exception=_exception(events),
        dropped_events=dropped_events,
        source=source,
    )
