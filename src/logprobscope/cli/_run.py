"""`logprobscope run PROMPT`: one answer, token by token, coloured by probability."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import openai

from logprobscope import (
    AIMessage,
    AIMessageChunk,
    Callbacks,
    ChatOpenAI,
    HumanMessage,
    MessageInput,
    SystemMessage,
    TokenLogprob,
)

from ._errors import EXIT_OK, EXIT_USAGE, CliError, check_credentials, effective_base_url
from ._render import Output, print_answer, print_summary
from ._schema import message_fields, print_fields
from ._telemetry import telemetry_from_env

_LOCAL_KEY = "not-needed"  # servers on a custom base URL usually ignore the key


def _client_options(
    args: argparse.Namespace,
) -> tuple[str | None, str | None, float | openai.Timeout, int]:
    check_credentials(args.base_url)
    base_url: str | None = args.base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = os.environ.get("OPENAI_API_KEY") or (_LOCAL_KEY if base_url else None)
    timeout: float | openai.Timeout = openai.DEFAULT_TIMEOUT
    if args.timeout is not None:
        timeout = float(args.timeout)
    retries: int = openai.DEFAULT_MAX_RETRIES
    if args.max_retries is not None:
        retries = int(args.max_retries)
    return api_key, base_url, timeout, retries


def response_format_of(args: argparse.Namespace) -> dict[str, object] | None:
    """The `response_format` read from --json-schema by the command line, or None."""
    value = getattr(args, "response_format", None)
    return value if isinstance(value, dict) else None


def _model(args: argparse.Namespace, callbacks: Callbacks, **clients: object) -> ChatOpenAI:
    response_format = response_format_of(args)
    try:
        return ChatOpenAI(
            model=args.model,
            logprobs=True,
            top_logprobs=args.top_logprobs or None,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
            response_format=response_format,
            callbacks=list(callbacks),
            **clients,  # type: ignore[arg-type]
        )
    except (ValueError, TypeError) as error:
        raise CliError(str(error), EXIT_USAGE) from None


@contextmanager
def open_model(args: argparse.Namespace, callbacks: Callbacks = ()) -> Iterator[ChatOpenAI]:
    """The model the `run` options describe, on an SDK client closed afterwards."""
    api_key, base_url, timeout, retries = _client_options(args)
    client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=retries)
    try:
        yield _model(args, callbacks, client=client)
    finally:
        client.close()


@asynccontextmanager
async def open_async_model(
    args: argparse.Namespace, callbacks: Callbacks = ()
) -> AsyncIterator[ChatOpenAI]:
    """`open_model` for async calls (the client is closed on the running loop)."""
    api_key, base_url, timeout, retries = _client_options(args)
    client = openai.AsyncOpenAI(
        api_key=api_key, base_url=base_url, timeout=timeout, max_retries=retries
    )
    try:
        yield _model(args, callbacks, async_client=client)
    finally:
        await client.close()


def build_input(prompt: str, system: str | None) -> MessageInput:
    """The prompt, with the system message first when given."""
    if system is None:
        return prompt
    return [SystemMessage(content=system), HumanMessage(content=prompt)]


def tokens_of(message: AIMessage) -> list[TokenLogprob]:
    """The answer's content tokens (empty if the server sent none)."""
    logprobs = message.response_metadata.logprobs
    if logprobs is None or logprobs.content is None:
        return []
    return list(logprobs.content)


def require_logprobs(message: AIMessage, args: argparse.Namespace) -> None:
    """Fail when the answer has text but no logprobs: the server ignored `logprobs`."""
    if message.content and not tokens_of(message):
        raise CliError(
            f"the server at {effective_base_url(args.base_url)} returned no logprobs for model "
            f"{args.model!r}: the model or server does not support them"
        )


def run_prompt(args: argparse.Namespace) -> int:
    """Run one prompt; print the coloured answer and its summary (or JSON)."""
    prompt: str = args.prompt
    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise CliError("the prompt is empty", EXIT_USAGE)
    out = Output()
    response_format = response_format_of(args)
    with telemetry_from_env() as handlers, open_model(args, handlers) as model:
        messages = build_input(prompt, args.system)
        if args.stream:
            message = _stream(model, messages, out, echo=not args.json)
        else:
            message = model.invoke(messages)
            if not args.json:
                print_answer(out, message.content, tokens_of(message))
                out.line()
    if args.json:
        sys.stdout.write(message.model_dump_json() + "\n")
        sys.stdout.flush()
        require_logprobs(message, args)
        return EXIT_OK
    require_logprobs(message, args)
    out.line()
    print_summary(out, tokens_of(message))
    if response_format is not None:
        print_fields(out, message_fields(message, response_format))
    out.legend()
    return EXIT_OK


def _stream(model: ChatOpenAI, messages: MessageInput, out: Output, *, echo: bool) -> AIMessage:
    agg: AIMessageChunk | None = None
    with model.stream(messages) as stream:
        for chunk in stream:
            agg = chunk if agg is None else agg + chunk
            if echo:
                logprobs = chunk.response_metadata.logprobs
                tokens = list(logprobs.content) if logprobs and logprobs.content else []
                print_answer(out, chunk.content, tokens)
    if echo:
        out.line()
    if agg is None:
        return AIMessage()
    return agg.to_message()
