"""A span exporter that appends OTLP JSON lines to a local file.

Each `export` call writes one line: an ``ExportTraceServiceRequest`` in the protobuf JSON
mapping, as the OpenTelemetry Collector's ``file`` exporter writes it (camelCase field names,
hex trace and span ids, 64-bit integers as strings, enums as numbers). `read_traces` reads it
back, and so does any tool that reads the collector's file output.

The OTLP protobuf encoder (package ``opentelemetry-exporter-otlp-proto-common``, extra
``otlp``) is used when installed; otherwise the same mapping is written by hand.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind

__all__ = ["OTLPJsonFileSpanExporter", "spans_to_otlp_json"]

_Encoder = Callable[[Sequence[ReadableSpan]], dict[str, object]]


def _proto_encoder() -> _Encoder | None:
    try:
        # Imported by name: protobuf ships no type stubs.
        json_format = importlib.import_module("google.protobuf.json_format")
        encoder = importlib.import_module("opentelemetry.exporter.otlp.proto.common.trace_encoder")
    except ImportError:
        return None
    message_to_dict: Callable[..., dict[str, object]] = json_format.MessageToDict
    encode_spans: Callable[[Sequence[ReadableSpan]], object] = encoder.encode_spans

    def encode(spans: Sequence[ReadableSpan]) -> dict[str, object]:
        document = message_to_dict(encode_spans(spans), use_integers_for_enums=True)
        _ids_to_hex(document)
        return document

    return encode


_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _ids_to_hex(value: object) -> None:
    """Protobuf JSON writes bytes as base64; OTLP JSON wants ids as hex."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _ID_KEYS and isinstance(item, str):
                value[key] = base64.b64decode(item).hex()
            else:
                _ids_to_hex(item)
    elif isinstance(value, list):
        for item in value:
            _ids_to_hex(item)


# -- the mapping by hand ------------------------------------------------------------------------


def _double(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _any_value(value: object) -> dict[str, object]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": _double(value)}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": _key_values(value)}}
    if isinstance(value, Sequence):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _key_values(attributes: Mapping[str, object] | None) -> list[dict[str, object]]:
    return [{"key": k, "value": _any_value(v)} for k, v in (attributes or {}).items()]


def _compact(obj: dict[str, object], *, keep: tuple[str, ...] = ()) -> dict[str, object]:
    # Protobuf JSON leaves out fields holding their default value (set sub-messages stay).
    return {k: v for k, v in obj.items() if k in keep or v not in (None, "", [], 0, "0")}


_KIND = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200


def _flags(context: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | (_IS_REMOTE if context is not None and context.is_remote else 0)


def _span(span: ReadableSpan) -> dict[str, object]:
    context = span.get_span_context()
    if context is None:  # pragma: no cover - finished SDK spans always have one
        raise ValueError(f"span {span.name!r} has no context")
    parent = span.parent
    events = [
        _compact(
            {
                "timeUnixNano": str(event.timestamp),
                "name": event.name,
                "attributes": _key_values(event.attributes),
                "droppedAttributesCount": event.dropped_attributes,
            }
        )
        for event in span.events
    ]
    links = [
        _compact(
            {
                "traceId": f"{link.context.trace_id:032x}",
                "spanId": f"{link.context.span_id:016x}",
                "attributes": _key_values(link.attributes),
                "droppedAttributesCount": link.dropped_attributes,
                "flags": _flags(link.context),
            }
        )
        for link in span.links
    ]
    trace_state = ",".join(f"{k}={v}" for k, v in context.trace_state.items())
    status = _compact(
        {"message": span.status.description or "", "code": span.status.status_code.value}
    )
    return _compact(
        {
            "traceId": f"{context.trace_id:032x}",
            "spanId": f"{context.span_id:016x}",
            "traceState": trace_state,
            "parentSpanId": f"{parent.span_id:016x}" if parent is not None else "",
            "name": span.name,
            "kind": _KIND.get(span.kind, 0),
            "startTimeUnixNano": str(span.start_time or 0),
            "endTimeUnixNano": str(span.end_time or 0),
            "attributes": _key_values(span.attributes),
            "droppedAttributesCount": span.dropped_attributes,
            "events": events,
            "droppedEventsCount": span.dropped_events,
            "links": links,
            "droppedLinksCount": span.dropped_links,
            "status": status,
            "flags": _flags(parent),
        },
        keep=("status",),
    )


def _hand_encode(spans: Sequence[ReadableSpan]) -> dict[str, object]:
    # Group by resource, then by instrumentation scope, in first-seen order (as the encoder).
    groups: dict[Resource, dict[InstrumentationScope | None, list[ReadableSpan]]] = {}
    for span in spans:
        groups.setdefault(span.resource, {}).setdefault(
            span.instrumentation_scope or None, []
        ).append(span)
    resource_spans: list[dict[str, object]] = []
    for resource, scopes in groups.items():
        scope_spans: list[dict[str, object]] = []
        for scope, members in scopes.items():
            scope_json: dict[str, object] = {}
            if scope is not None:
                scope_json = _compact(
                    {
                        "name": scope.name,
                        "version": scope.version or "",
                        "attributes": _key_values(scope.attributes),
                    }
                )
            scope_spans.append(
                _compact(
                    {
                        "scope": scope_json,
                        "spans": [_span(s) for s in members],
                        "schemaUrl": (scope.schema_url or "") if scope is not None else "",
                    },
                    keep=("scope",),
                )
            )
        resource_spans.append(
            _compact(
                {
                    "resource": _compact({"attributes": _key_values(resource.attributes)}),
                    "scopeSpans": scope_spans,
                    "schemaUrl": resource.schema_url or "",
                },
                keep=("resource",),
            )
        )
    return {"resourceSpans": resource_spans}


def spans_to_otlp_json(spans: Sequence[ReadableSpan], *, use_protobuf: bool = True) -> str:
    """One ``ExportTraceServiceRequest`` in the OTLP JSON mapping, as one line of text.

    Args:
        spans: Finished spans.
        use_protobuf: Use the OTLP protobuf encoder when installed (else, or if False, the
            mapping written by hand; both give the same document).
    """
    encoder = _proto_encoder() if use_protobuf else None
    document = encoder(spans) if encoder is not None else _hand_encode(spans)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class OTLPJsonFileSpanExporter(SpanExporter):
    """Append each batch of finished spans to `path` as one OTLP JSON line.

    Args:
        path: The file to write (its directory must exist).
        append: Keep what the file holds (default); False truncates it when opened.

    Thread-safe: lines from concurrent exports never interleave. The file is flushed after
    every line, so it can be read while the process runs.
    """

    def __init__(self, path: str | os.PathLike[str], *, append: bool = True) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._file: IO[str] | None = open(  # noqa: SIM115 - closed by shutdown()
            self._path, "a" if append else "w", encoding="utf-8", newline="\n"
        )
        self._encoder = _proto_encoder()

    @property
    def path(self) -> Path:
        """The file written to."""
        return self._path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write the spans as one line; FAILURE after shutdown or on an I/O error."""
        if not spans:
            return SpanExportResult.SUCCESS
        document = self._encoder(spans) if self._encoder is not None else _hand_encode(spans)
        line = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            try:
                self._file.write(line + "\n")
                self._file.flush()
            except OSError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Every line is flushed when written; nothing is pending."""
        return True

    def shutdown(self) -> None:
        """Close the file; later exports fail."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
