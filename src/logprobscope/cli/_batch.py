"""`logprobscope run --input prompts.jsonl --output results.jsonl`: batch evaluation.

Each input line is a JSON object: ``{"prompt": "..."}`` or ``{"messages": [{"role": ...,
"content": ...}, ...]}``, with an optional ``"id"`` (default: the line number). Each output
line, in input order, holds the id, the answer and its confidence figures; for
classification, the first token's probability and its top alternatives. A prompt whose call
fails gets ``{"id": ..., "error": "..."}`` and the others go on; the exit code is then 1.
At most ``--concurrency`` calls are in flight at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

import openai

from logprobscope import AIMessage, BaseCallbackHandler, ChatOpenAI, MessageInput, SystemMessage
from logprobscope._figures import probability
from logprobscope._messages import coerce_messages

from ._errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    describe_error,
    one_line,
)
from ._render import answer_figures
from ._run import open_async_model, response_format_of, tokens_of
from ._schema import field_records, message_fields
from ._telemetry import telemetry_from_env

# Failures that every other prompt would hit as well: stop the batch at the first one.
_FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)


@dataclass(frozen=True)
class BatchItem:
    """One prompt of the input file."""

    line: int
    id: object
    input: MessageInput


def read_batch_input(path: str, system: str | None = None) -> list[BatchItem]:
    """Read and validate every line before any request (a bad line exits with code 3)."""
    name = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as error:
        raise CliError(f"{name}: cannot read: {error.strerror or error}", EXIT_BAD_INPUT) from None
    except UnicodeDecodeError as error:
        raise CliError(f"{name}: not UTF-8 text (byte {error.start})", EXIT_BAD_INPUT) from None
    items: list[BatchItem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{name}:{number}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as error:
            raise CliError(f"{where}: not JSON ({error.msg})", EXIT_BAD_INPUT) from None
        if not isinstance(obj, dict):
            raise CliError(
                f'{where}: expected an object with "prompt" or "messages"', EXIT_BAD_INPUT
            )
        item_id = obj.get("id", number)
        if not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
            raise CliError(f'{where}: "id" must be a string or an integer', EXIT_BAD_INPUT)
        prompt = obj.get("prompt")
        messages = obj.get("messages")
        if (prompt is None) == (messages is None):
            raise CliError(
                f'{where}: give exactly one of "prompt" (a string) or "messages" (a list)',
                EXIT_BAD_INPUT,
            )
        if prompt is not None:
            if not isinstance(prompt, str) or not prompt.strip():
                raise CliError(f'{where}: "prompt" must be a non-empty string', EXIT_BAD_INPUT)
            value: MessageInput = prompt
            if system is not None:
                value = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        else:
            if not isinstance(messages, list):
                raise CliError(f'{where}: "messages" must be a list', EXIT_BAD_INPUT)
            value = messages
        try:
            typed = coerce_messages(value)
        except (TypeError, ValueError) as error:
            raise CliError(f"{where}: {one_line(str(error))}", EXIT_BAD_INPUT) from None
        if messages is not None and system is not None:
            if not any(m.role in ("system", "developer") for m in typed):
                typed = [SystemMessage(content=system), *typed]
        items.append(BatchItem(number, item_id, typed))
    if not items:
        raise CliError(f"{name}: no prompts in the file", EXIT_BAD_INPUT)
    return items


def _number(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return value


def result_record(
    item: BatchItem,
    message: AIMessage,
    *,
    response_format: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The output line of one answered prompt (with its "fields" for --json-schema)."""
    tokens = tokens_of(message)
    s = answer_figures(tokens)
    record: dict[str, object] = {
        "id": item.id,
        "answer": message.content,
        "model": message.response_metadata.model_name,
        "finish_reason": message.response_metadata.finish_reason,
        "token_count": s.token_count,
        "perplexity": _number(s.perplexity),
        "mean_logprob": _number(s.mean),
        "min_probability": None,
        "min_token": None,
        "low_confidence_count": s.low_confidence_count,
        "first_token": None,
    }
    if s.min_index is not None and s.min is not None:
        weakest = tokens[s.min_index]
        record["min_probability"] = _number(probability(s.min))
        record["min_token"] = {"index": s.min_index, "token": weakest.token}
    if tokens:
        first = tokens[0]
        record["first_token"] = {
            "token": first.token,
            "logprob": _number(first.logprob),
            "probability": _number(probability(first.logprob)),
            "top_logprobs": [
                {
                    "token": alt.token,
                    "logprob": _number(alt.logprob),
                    "probability": _number(probability(alt.logprob)),
                }
                for alt in first.top_logprobs
            ],
        }
    if message.content and not tokens:
        record["warning"] = "the server returned no logprobs"
    usage = message.usage_metadata
    if usage is not None:
        record["usage"] = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
    if response_format is not None:
        record["fields"] = field_records(message_fields(message, response_format))
    return record


@dataclass
class BatchResult:
    """How the batch went."""

    total: int
    failed: int = 0
    without_logprobs: int = 0
    first_error: str | None = None


def _can_show_progress(stream: TextIO) -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as progress:
        task = progress.add_task("prompts", total=total)
        yield lambda: progress.advance(task)


async def _run_all(
    args: argparse.Namespace,
    handlers: list[BaseCallbackHandler],
    items: list[BatchItem],
    sink: TextIO,
    concurrency: int,
    advance: Callable[[], None],
    base_url: str | None,
) -> BatchResult:
    result = BatchResult(total=len(items))
    done: dict[int, dict[str, object]] = {}
    next_to_write = 0
    fatal: list[BaseException] = []
    queue = iter(range(len(items)))
    limit = asyncio.Semaphore(concurrency)

    def flush_ready() -> None:
        nonlocal next_to_write
        while next_to_write in done:
            record = done.pop(next_to_write)
            sink.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
            next_to_write += 1
        sink.flush()

    async def worker(model: ChatOpenAI) -> None:
        for position in queue:  # shared iterator: each item is taken by one worker
            if fatal:
                return
            item = items[position]
            async with limit:
                try:
                    message = await model.ainvoke(item.input)
                except _FATAL as error:
                    fatal.append(error)
                    return
                except (openai.OpenAIError, ValueError, TypeError) as error:
                    text = describe_error(error, base_url).args[0]
                    result.failed += 1
                    result.first_error = result.first_error or text
                    done[position] = {
                        "id": item.id,
                        "error": text,
                        "error_type": type(error).__name__,
                    }
                else:
                    record = result_record(item, message, response_format=response_format_of(args))
                    if "warning" in record:
                        result.without_logprobs += 1
                    done[position] = record
            advance()
            flush_ready()

    async with open_async_model(args, handlers) as model:
        await asyncio.gather(*(worker(model) for _ in range(min(concurrency, len(items)))))
    if fatal:
        raise describe_error(fatal[0], base_url)
    flush_ready()
    return result


def run_batch(args: argparse.Namespace) -> int:
    """Run every prompt of --input; write one JSON line per prompt to --output."""
    if args.concurrency < 1:
        raise CliError("--concurrency must be at least 1", EXIT_USAGE)
    items = read_batch_input(args.input, args.system)
    sink: TextIO
    if args.output in (None, "-"):
        sink = sys.stdout
        close = False
    else:
        try:
            sink = open(args.output, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as error:
            raise CliError(f"{args.output}: cannot write: {error.strerror or error}") from None
        close = True
    try:
        with telemetry_from_env() as handlers:
            show = _can_show_progress(sys.stderr)
            with _progress(len(items), show) as advance:
                result = asyncio.run(
                    _run_all(args, handlers, items, sink, args.concurrency, advance, args.base_url)
                )
    finally:
        if close:
            sink.close()
    where = "stdout" if not close else args.output
    note = f"{len(items) - result.failed} of {len(items)} prompts answered, results in {where}"
    if result.without_logprobs:
        note += f"; {result.without_logprobs} answers came without logprobs"
    if result.failed:
        print(f"logprobscope: error: {note}; first error: {result.first_error}", file=sys.stderr)
        return EXIT_FAILURE
    if result.without_logprobs == len(items):
        print(
            "logprobscope: error: the server returned no logprobs for any prompt: the model "
            "or server does not support them",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(f"logprobscope: {note}", file=sys.stderr)
    return EXIT_OK
