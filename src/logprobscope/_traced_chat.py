"""`instrument_openai` for chat completions: a `ChatCompletion` into its call.

Every choice's content and refusal tokens (choice 0's make the summary; the others go to
events marked with their index), every finish reason, the usage, and with content capture
choice 0's text, refusal and tool calls. `parse()`'s `LengthFinishReasonError` and
`ContentFilterFinishReasonError` carry the completion they could not parse: it is recorded
before the call fails with them. A chat stream's chunks are `_traced_stream`'s.
"""

from __future__ import annotations

import logging
import time

import openai
from openai.types.chat import ChatCompletion

from .otel import CallTelemetry, ResponseFacts

__all__ = ["fail_call", "record_completion"]

logger = logging.getLogger("logprobscope")


def record_completion(call: CallTelemetry, completion: ChatCompletion, capture: bool) -> None:
    """A `ChatCompletion` (or `ParsedChatCompletion`) into its call: every choice's tokens,
    choice 0's output with content capture, the response's facts."""
    now = time.time_ns()
    choices = completion.choices
    output: ResponseFacts = ResponseFacts()
    for choice in choices:
        logprobs = choice.logprobs
        index = choice.index
        if logprobs is not None:
            # The SDK's entries are token-like (token, logprob, bytes, top_logprobs).
            if logprobs.content:
                call.add_tokens(logprobs.content, time_ns=now, choice=index)
            if logprobs.refusal:
                call.add_tokens(logprobs.refusal, time_ns=now, channel="refusal", choice=index)
        if capture and index == 0:
            message = choice.message
            calls = [
                c.model_dump(include={"id", "type", "function"}) for c in message.tool_calls or []
            ]
            output = ResponseFacts(
                output_text=message.content,
                output_refusal=message.refusal,
                output_tool_calls=calls or None,
            )
    usage = completion.usage
    call.set_response(
        ResponseFacts(
            id=completion.id,
            model=completion.model,
            finish_reasons=[c.finish_reason for c in choices if c.finish_reason],
            input_tokens=usage.prompt_tokens if usage is not None else None,
            output_tokens=usage.completion_tokens if usage is not None else None,
            output_text=output.output_text,
            output_refusal=output.output_refusal,
            output_tool_calls=output.output_tool_calls,
        )
    )


def _carried_completion(error: BaseException) -> ChatCompletion | None:
    # parse() raises these with the completion it could not parse: its tokens are kept.
    if isinstance(error, (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError)):
        completion = error.completion
        return completion if isinstance(completion, ChatCompletion) else None
    return None


def fail_call(call: CallTelemetry, error: BaseException, capture: bool) -> None:
    """Fail the call with `error`, first recording the completion a `parse()` error carries."""
    try:
        completion = _carried_completion(error)
        if completion is not None:
            record_completion(call, completion, capture)
    except Exception:  # telemetry never breaks the call
        logger.debug("recording a failed call's completion failed", exc_info=True)
    call.fail(error)
