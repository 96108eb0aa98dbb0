"""Read OTLP JSON traces of model calls back, and turn them into an HTML report.

- `read_traces(paths)`: OTLP JSON files (ours, the OpenTelemetry Collector ``file``
  exporter's, or the SDK console exporter's) to typed `ModelCall` records with their tokens.
- `render_html(calls)` / `write_html(path, calls)`: one self-contained page (no network
  access), tokens coloured by probability, details on hover and keyboard focus.
- `OTLPJsonFileSpanExporter(path)`: a span exporter writing OTLP JSON lines to a file.
"""

from __future__ import annotations

from ._decode import parse_traces, read_traces
from ._file_exporter import OTLPJsonFileSpanExporter, spans_to_otlp_json
from ._html import render_html, write_html
from ._records import (
    Alternative,
    AttributeValue,
    FieldRecord,
    ModelCall,
    TokenRecord,
    TraceFormatError,
    TraceSet,
)

__all__ = [
    "Alternative",
    "AttributeValue",
    "FieldRecord",
    "ModelCall",
    "OTLPJsonFileSpanExporter",
    "TokenRecord",
    "TraceFormatError",
    "TraceSet",
    "parse_traces",
    "read_traces",
    "render_html",
    "spans_to_otlp_json",
    "write_html",
]
