"""The `logprobscope` command: argument parsing, dispatch, and one line per failure."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

import openai

import logprobscope
from logprobscope import _contract as n

from ._errors import (
    EXIT_CODES_HELP,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    describe_error,
    one_line,
)

_DEFAULT_MODEL = "gpt-4o-mini"


def _top_logprobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 20:
        raise argparse.ArgumentTypeError("must be from 0 to 20")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `logprobscope` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="logprobscope",
        description=(
            "See how confident a language model was, token by token: coloured answers in the "
            "terminal, an HTML report from OpenTelemetry traces, batch confidence figures."
        ),
        epilog="examples:\n"
        "  logprobscope demo\n"
        '  logprobscope run "Is the sky green? Answer yes or no." --top-logprobs 5\n'
        "  logprobscope run --input prompts.jsonl --output results.jsonl\n"
        "  logprobscope report traces.jsonl -o report.html\n\n" + EXIT_CODES_HELP,
        formatter_class=_Formatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"logprobscope {logprobscope.__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    model_default = os.environ.get("LOGPROBSCOPE_MODEL") or _DEFAULT_MODEL
    run = sub.add_parser(
        "run",
        help="answer a prompt (or a JSONL file of prompts) with per-token confidence",
        description=(
            "Send a prompt with logprobs on and print the answer token by token, coloured by "
            "probability (plain text when not a terminal or with NO_COLOR), then perplexity, "
            "mean logprob, the least likely tokens with their top alternatives and the "
            "low-confidence spans (consecutive tokens below "
            f"p = {n.DEFAULT_LOW_CONFIDENCE_THRESHOLD:g}).\n\n"
            'Batch: --input FILE reads one JSON object per line, {"prompt": ...} or '
            '{"messages": [...]}, with an optional "id", and writes one JSON line per prompt '
            "to --output (default stdout): id, answer, perplexity, mean logprob, min "
            "probability, and the first token's probability with its top alternatives "
            "(classification confidence).\n\n"
            "Structured output: --json-schema FILE sends the schema as response_format and "
            "prints, after the answer, each field with its probability (of the tokens that "
            "spell the value), its lowest token probability and, for booleans and enums, the "
            'alternatives; in a batch, each line gets a "fields" list.\n\n'
            "The endpoint is the OpenAI API (OPENAI_API_KEY) or --base-url / OPENAI_BASE_URL. "
            "Telemetry goes where the standard OTEL_* variables say (none when unset)."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=_Formatter,
    )
    run.add_argument("prompt", nargs="?", metavar="PROMPT", help="the prompt ('-': stdin)")
    run.add_argument(
        "--model",
        default=model_default,
        help=f"model name (default: $LOGPROBSCOPE_MODEL or {_DEFAULT_MODEL})",
    )
    run.add_argument("--base-url", help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL)")
    run.add_argument(
        "--top-logprobs",
        type=_top_logprobs,
        default=3,
        metavar="K",
        help="alternatives per token, 0-20 (default: 3)",
    )
    run.add_argument("--stream", action="store_true", help="stream the answer as it is generated")
    run.add_argument("--system", metavar="TEXT", help="a system message before the prompt")
    run.add_argument("--temperature", type=_non_negative_float, help="sampling temperature")
    run.add_argument("--max-tokens", type=_positive_int, metavar="N", help="answer length cap")
    run.add_argument(
        "--json", action="store_true", help="print the typed result as JSON instead of colours"
    )
    run.add_argument(
        "--json-schema",
        metavar="FILE",
        help="answer in this JSON schema (or response_format) and show each field's confidence",
    )
    run.add_argument(
        "--timeout", type=_non_negative_float, metavar="S", help="request timeout in seconds"
    )
    run.add_argument(
        "--max-retries",
        type=_non_negative_int,
        metavar="N",
        help="retries of failed requests (default: the openai SDK's, 2)",
    )
    batch = run.add_argument_group("batch")
    batch.add_argument("--input", metavar="FILE", help="JSONL prompts, one per line ('-': stdin)")
    batch.add_argument("--output", metavar="FILE", help="JSONL results (default: stdout)")
    batch.add_argument(
        "--concurrency",
        type=_positive_int,
        default=8,
        metavar="N",
        help="calls in flight at once (default: 8)",
    )
    run.set_defaults(handler=_run)

    demo = sub.add_parser(
        "demo",
        help="the three logprobs examples end to end, with telemetry and an HTML report",
        description=(
            "Run the three examples of the logprobs guide (invoke, stream, top_logprobs=3) "
            "with the OpenTelemetry handler, recording token texts (capture_content=True).\n\n"
            "Endpoint: with OPENAI_API_KEY or OPENAI_BASE_URL set, that one; otherwise the "
            "offline replay server of logprobscope.testing (recorded answers), started on "
            "127.0.0.1.\n\n"
            "Telemetry: with OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) set, spans "
            "and metrics go there; otherwise the spans are written to an OTLP JSON file, and "
            "the HTML report is built from it. Both paths are printed."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=_Formatter,
    )
    demo.add_argument(
        "--out",
        metavar="DIR",
        help="directory for logprobscope-traces.jsonl and logprobscope-report.html (default: "
        "the current directory; given, the files are written even with an OTLP endpoint)",
    )
    demo.add_argument(
        "--model",
        help="model name (default: gpt-4o on the replay server, else $LOGPROBSCOPE_MODEL or "
        f"{_DEFAULT_MODEL})",
    )
    demo.set_defaults(handler=_demo)

    report = sub.add_parser(
        "report",
        help="turn OTLP JSON traces into one self-contained HTML page",
        description=(
            "Read OTLP JSON traces (logprobscope demo's file, the OpenTelemetry Collector "
            "file exporter's output, or the SDK console exporter's) and write one HTML page: "
            "per model call the tokens coloured by probability (hover or focus one for its "
            "logprob and top alternatives), the summary attributes, and for streams the token "
            "timeline. Without content capture it shows positions and probabilities. The "
            "page loads nothing from the network."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=_Formatter,
    )
    report.add_argument("traces", nargs="+", metavar="TRACES", help="OTLP JSON trace file(s)")
    report.add_argument(
        "-o",
        "--output",
        default="report.html",
        metavar="FILE",
        help="the HTML file (default: report.html)",
    )
    report.add_argument("--title", default="logprobscope report", help="page title")
    report.set_defaults(handler=_report)
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.json_schema is not None:  # a bad schema file fails before any call
        from ._schema import load_response_format

        args.response_format = load_response_format(args.json_schema)
    if args.input is not None:
        clash = [
            flag for flag, value in (("PROMPT", args.prompt), ("--stream", args.stream)) if value
        ]
        if args.json:
            clash.append("--json")
        if clash:
            raise CliError(f"--input cannot be combined with {', '.join(clash)}", EXIT_USAGE)
        from ._batch import run_batch

        return run_batch(args)
    if args.output is not None:
        raise CliError("--output needs --input", EXIT_USAGE)
    if args.prompt is None:
        raise CliError("give a PROMPT, or --input FILE for a batch", EXIT_USAGE)
    from ._run import run_prompt

    return run_prompt(args)


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(args)


def _report(args: argparse.Namespace) -> int:
    from ._report_cmd import run_report

    return run_report(args)


def _fail(message: str, code: int) -> int:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print(f"logprobscope: error: {one_line(message, 500)}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `logprobscope` command line; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, --version, or a usage error (already printed)
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.handler(args)
        return code
    except CliError as error:
        return _fail(str(error), error.code)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except openai.OpenAIError as error:
        described = describe_error(error, getattr(args, "base_url", None))
        return _fail(str(described), described.code)
    except Exception as error:  # a bug: still one line, the traceback on request
        if os.environ.get("LOGPROBSCOPE_DEBUG"):
            traceback.print_exc()
        return _fail(
            f"internal error: {type(error).__name__}: {error} (set LOGPROBSCOPE_DEBUG=1 for "
            "the traceback)",
            EXIT_FAILURE,
        )
