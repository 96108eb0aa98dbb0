"""`logprobscope demo`: the logprobs guide's three examples, end to end, with telemetry."""

from __future__ import annotations

import argparse
import os
from contextlib import ExitStack
from pathlib import Path

import openai

from logprobscope import AIMessage, AIMessageChunk, BaseCallbackHandler, ChatOpenAI
from logprobscope import _contract as n

from ._errors import EXIT_OK, CliError, describe_error
from ._render import Output, print_answer, print_summary
from ._report_cmd import build_report
from ._run import tokens_of
from ._telemetry import otlp_endpoint_configured, start_telemetry

TRACES_FILE = "logprobscope-traces.jsonl"
REPORT_FILE = "logprobscope-report.html"
_CHUNK_DELAY = 0.02  # seconds between replayed stream chunks, so the timeline shows a stream


def _check(message: AIMessage, base_url: str | None, model: str) -> None:
    if message.content and not tokens_of(message):
        where = base_url or os.environ.get("OPENAI_BASE_URL") or "the OpenAI API"
        raise CliError(
            f"{where} returned no logprobs for model {model!r}: the model or server does not "
            "support them"
        )


def run_demo(args: argparse.Namespace) -> int:
    """Run invoke, stream and top_logprobs=3 with the OpenTelemetry handler; build the report."""
    out = Output()
    own_endpoint = bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))
    otlp = otlp_endpoint_configured()
    write_files = args.out is not None or not otlp
    out_dir = Path(args.out or ".")
    traces_path = out_dir / TRACES_FILE
    report_path = out_dir / REPORT_FILE
    if write_files:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CliError(f"{out_dir}: cannot create: {error.strerror or error}") from None

    with ExitStack() as stack:
        base_url: str | None = None
        if own_endpoint:
            where = os.environ.get("OPENAI_BASE_URL") or "the OpenAI API (OPENAI_API_KEY)"
            model_name = args.model or os.environ.get("LOGPROBSCOPE_MODEL") or "gpt-4o-mini"
            out.line(f"endpoint: {where}, model {model_name}")
        else:
            from logprobscope.testing import Faults, ReplayServer

            server = stack.enter_context(ReplayServer(faults=Faults(chunk_delay=_CHUNK_DELAY)))
            base_url = server.base_url
            model_name = args.model or "gpt-4o"
            out.line(
                "endpoint: no OPENAI_API_KEY or OPENAI_BASE_URL set, so the offline replay "
                f"server of logprobscope.testing answers at {base_url} with recorded "
                "completions (the logprobs guide's values)"
            )

        exporters = []
        if write_files:
            from logprobscope.report import OTLPJsonFileSpanExporter

            try:
                exporters.append(OTLPJsonFileSpanExporter(traces_path, append=False))
            except OSError as error:
                raise CliError(f"{traces_path}: cannot write: {error.strerror or error}") from None
        handle, handler = start_telemetry(
            span_exporters=exporters, capture_content=True, events=n.MODE_TOKENS
        )
        stack.callback(handle.shutdown)
        destinations = []
        if otlp:
            destinations.append("the OTLP endpoint of OTEL_EXPORTER_OTLP_*")
        if write_files:
            destinations.append(str(traces_path))
        out.line(
            "telemetry: OpenTelemetryCallbackHandler(capture_content=True, events='tokens'): "
            "the demo records token texts and messages in the spans (the default is off); "
            f"spans go to {' and '.join(destinations)}"
        )
        out.line()

        tracer = handle.tracer_provider.get_tracer("logprobscope.cli")
        try:
            with tracer.start_as_current_span("logprobscope demo"):
                _examples(out, model_name, base_url, handler)
        except CliError:
            raise
        except Exception as error:
            raise describe_error(error, base_url) from None

    if not write_files:
        out.line("telemetry sent to the OTLP endpoint; no local files (use --out DIR for them)")
        return EXIT_OK
    path, _ = build_report([str(traces_path)], str(report_path), "logprobscope demo")
    out.line()
    out.line(f"traces: {traces_path.resolve()}")
    out.line(f"report: {path.resolve()}")
    return EXIT_OK


def _examples(
    out: Output, model_name: str, base_url: str | None, handler: BaseCallbackHandler
) -> None:
    api_key = os.environ.get("OPENAI_API_KEY") or "not-needed"  # a local server ignores it
    with openai.OpenAI(api_key=api_key, base_url=base_url) as client:
        model = ChatOpenAI(model=model_name, logprobs=True, client=client, callbacks=[handler])
        _three_examples(out, model, base_url)


def _three_examples(out: Output, model: ChatOpenAI, base_url: str | None) -> None:
    model_name = model.model

    out.line("1. invoke, logprobs=True: 'how are you today?'", "bold")
    message = model.invoke("how are you today?")
    _check(message, base_url, model_name)
    print_answer(out, message.content, tokens_of(message))
    out.line()
    out.line()

    out.line("2. stream, logprobs=True: 'How are you today?' (tokens as they arrive)", "bold")
    agg: AIMessageChunk | None = None
    with model.stream("How are you today?") as stream:
        for chunk in stream:
            agg = chunk if agg is None else agg + chunk
            logprobs = chunk.response_metadata.logprobs
            print_answer(out, chunk.content, list(logprobs.content or []) if logprobs else [])
    streamed = agg.to_message() if agg is not None else AIMessage()
    _check(streamed, base_url, model_name)
    out.line()
    out.line()

    out.line("3. top_logprobs=3: the alternatives at each position", "bold")
    top = model.invoke("how are you today?", top_logprobs=3)
    _check(top, base_url, model_name)
    print_answer(out, top.content, tokens_of(top))
    out.line()
    out.line()
    print_summary(out, tokens_of(top))
    out.legend()
