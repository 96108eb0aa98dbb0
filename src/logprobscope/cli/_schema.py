"""`logprobscope run --json-schema FILE`: the answer in a schema, each field with its confidence.

The file holds a JSON schema (named by its "title", else by the file's name; sent without
`strict`), or a whole `response_format` (`{"type": "json_schema", ...}` or
`{"type": "json_object"}`), sent as it is. The fields' figures are `field_confidence` over the
answer's tokens, the schema marking the enum fields.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path

from logprobscope import AIMessage, FieldConfidence, FieldReport
from logprobscope._figures import probability
from logprobscope._printable import printable
from logprobscope._structured import parser_for

from ._errors import EXIT_BAD_INPUT, CliError
from ._render import Output, fmt_p, style_for

__all__ = ["field_records", "load_response_format", "message_fields", "print_fields"]

_VALUE_WIDTH = 28


def load_response_format(path: str) -> dict[str, object]:
    """The `response_format` the file describes.

    Raises:
        CliError: the file cannot be read, is not JSON, or is not a schema (exit code 3).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read the JSON schema {path}: {error}", EXIT_BAD_INPUT) from None
    try:
        schema = json.loads(text)
    except ValueError as error:
        raise CliError(f"{path} is not JSON: {error}", EXIT_BAD_INPUT) from None
    if not isinstance(schema, Mapping):
        raise CliError(f"{path} holds no JSON schema (not an object)", EXIT_BAD_INPUT)
    # OpenAI names a format with letters, digits, "_" and "-", at most 64 of them.
    name = re.sub(r"[^A-Za-z0-9_-]", "_", Path(path).stem)[:64] or "answer"
    try:
        response_format, _ = parser_for(
            schema, name=None if "title" in schema else name, strict=None
        )
    except (TypeError, ValueError) as error:
        raise CliError(f"{path}: {error}", EXIT_BAD_INPUT) from None
    return response_format


def message_fields(message: AIMessage, response_format: Mapping[str, object]) -> FieldReport:
    """The answer's fields (none without logprobs)."""
    if message.response_metadata.logprobs is None:
        return FieldReport(fields=(), complete=False)
    return message.field_confidence(schema=response_format)


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def field_records(report: FieldReport) -> list[dict[str, object]]:
    """The fields as JSON-ready records (non-finite numbers as null), for batch output."""
    return [
        {
            "path": f.path,
            "value": f.value,
            "probability": _number(f.probability),
            "logprob": _number(f.logprob),
            "min_probability": _number(f.min_probability),
            "token_start": f.token_start,
            "token_stop": f.token_stop,
            "alternatives": None
            if f.alternatives is None
            else [
                {"token": a.token, "probability": _number(a.probability)} for a in f.alternatives
            ],
        }
        for f in report.fields
    ]


def _value(field: FieldConfidence) -> str:
    text = printable(json.dumps(field.value, ensure_ascii=False))
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 1] + "…"


def print_fields(out: Output, report: FieldReport) -> None:
    """The fields table: path, value, probability of the value's tokens (exp of their joint
    logprob), lowest token probability, and the alternatives of booleans and enums."""
    if not report.fields:
        out.line("fields: none (the answer is not a JSON object with values)", "bold")
        return
    state = "" if report.complete else " (the JSON is not complete: fields read whole)"
    out.line(f"fields: {len(report.fields)}{state}", "bold")
    width = min(32, max(len(printable(f.path)) for f in report.fields))
    out.line(f"  {'path':<{width}} {'value':<{_VALUE_WIDTH}} {'p':>9} {'min p':>9}", "dim")
    for field in report.fields:
        p = field.probability
        out.write(f"  {printable(field.path):<{width}} {_value(field):<{_VALUE_WIDTH}} ")
        out.write(f"{fmt_p(p):>9}", style_for(p))
        lowest = field.min_probability
        out.write(f" {fmt_p(lowest):>9}", style_for(lowest))
        if field.alternatives:
            out.write("  alternatives: ", "dim")
            out.write(
                ", ".join(
                    f"{printable(a.token, quoted=True)} {fmt_p(probability(a.logprob))}"
                    for a in field.alternatives
                )
            )
        out.line()
