"""`logprobscope report TRACES -o report.html`: OTLP JSON traces to one HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path

from logprobscope.report import TraceFormatError, read_traces, write_html

from ._errors import EXIT_BAD_INPUT, EXIT_OK, CliError


def build_report(traces: list[str], output: str, title: str) -> tuple[Path, int]:
    """Read the trace files and write the report; return its path and the call count."""
    try:
        found = read_traces(traces)
    except TraceFormatError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    if not found.calls:
        names = ", ".join(traces)
        raise CliError(
            f"{names}: {found.span_count} spans, none of them a model call "
            "(no gen_ai.operation.name, logprobs.* attributes or token events)",
            EXIT_BAD_INPUT,
        )
    try:
        path = write_html(output, found.calls, title=title, sources=found.sources)
    except OSError as error:
        raise CliError(f"{output}: cannot write: {error.strerror or error}") from None
    return path, len(found.calls)


def run_report(args: argparse.Namespace) -> int:
    """Write the report and say where."""
    path, count = build_report(args.traces, args.output, args.title)
    print(f"report: {path.resolve()} ({count} model call{'s' if count != 1 else ''})")
    return EXIT_OK
