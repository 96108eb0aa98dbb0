"""`OpenTelemetryCallbackHandler`: our model's callbacks fed into the telemetry core."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from uuid import UUID

from typing_extensions import Unpack

from .._callbacks import BaseCallbackHandler, Run
from .._logprobs import ChoiceLogprobs
from .._messages import AIMessage, AIMessageChunk, BaseMessage
from .._toolcalls import _ordered
from ._call import CallTelemetry
from ._input import ResponseFacts
from ._telemetry import LogprobTelemetry, TelemetryKwargs

__all__ = ["OpenTelemetryCallbackHandler"]

logger = logging.getLogger("logprobscope.otel")


class OpenTelemetryCallbackHandler(BaseCallbackHandler):
    """One span per model call with every token's logprob, and the logprob metrics.

    Attach it to a model (`ChatOpenAI(..., callbacks=[handler])`) or to one call. Per call:

    - when the call starts (`invoke`, or when `stream()`/`astream()` is called): a span
      `chat {model}`, kind CLIENT, child of the context current at that moment, is started
      (never made current) with the request attributes;
    - per streamed chunk: its tokens as `logprobs.token` events timestamped with the chunk's
      arrival (or `logprobs.tokens` batches, per `events`), the refusal's tokens marked
      `logprobs.token.channel = "refusal"`; non-streamed calls add their tokens when the
      answer arrives;
    - when the call ends, however it ends: the response and `logprobs.*` summary attributes,
      `logprobs.stream.completed` for streams, status ERROR with `error.type` and the
      exception on failure; then the span ends and the metrics are recorded
      (`gen_ai.client.*` and `logprobs.*`, see TELEMETRY.md).

    A call through the Responses API (`use_responses_api=True`) gets the same span, with
    `openai.api.type = "responses"` (`Run.api` says which API a run went to).

    Args:
        telemetry: the `LogprobTelemetry` to record into (it may be shared with other entry
            points); when None, one is made from the options.
        **options: the `TelemetryOptions` (tracer_provider, meter_provider,
            capture_content, events, low_confidence_threshold), when `telemetry` is None.

    Raises:
        TypeError: both `telemetry` and options.
        ValueError: invalid options (see `TelemetryOptions`).

    The handler never raises into the call: its failures are logged and skipped.
    """

    def __init__(
        self, *, telemetry: LogprobTelemetry | None = None, **options: Unpack[TelemetryKwargs]
    ) -> None:
        self.telemetry = LogprobTelemetry.shared_or_new(telemetry, **options)
        self._calls: dict[UUID, CallTelemetry] = {}

    @property
    def active_calls(self) -> int:
        """Calls started and not ended yet (zero once every run has ended)."""
        return len(self._calls)

    def on_chat_model_start(self, messages: Sequence[BaseMessage], *, run: Run) -> None:
        """Start the call's span."""
        try:
            telemetry = self.telemetry
            inputs = [m.to_openai() for m in messages] if telemetry.capture_content else None
            self._calls[run.run_id] = telemetry.start_call(
                model=run.model,
                stream=run.stream,
                params=run.invocation_params,
                provider=run.provider,
                server_address=run.server_address,
                server_port=run.server_port,
                input_messages=inputs,
                api=run.api,
            )
        except Exception:
            logger.warning("OpenTelemetry handler: on_chat_model_start failed", exc_info=True)

    def on_llm_new_token(self, token: str, *, chunk: AIMessageChunk, run: Run) -> None:
        """Add the chunk's arrival and its tokens."""
        call = self._calls.get(run.run_id)
        if call is None:
            return
        try:
            now = time.time_ns()
            metadata = chunk.response_metadata
            if call.response_model is None and metadata.model_name:
                # Known from the first chunk on: observations can be recorded as they come.
                call.set_response(ResponseFacts(id=metadata.id, model=metadata.model_name))
            logprobs = metadata.logprobs
            if logprobs is None or (logprobs.content is None and logprobs.refusal is None):
                call.add_chunk(time_ns=now)
                return
            _add(call, logprobs, now)  # counts the chunk too
        except Exception:
            logger.debug("OpenTelemetry handler: on_llm_new_token failed", exc_info=True)

    def on_llm_end(self, message: AIMessage, *, run: Run) -> None:
        """Set the response and summary, end the span, record the metrics."""
        call = self._calls.pop(run.run_id, None)
        if call is None:
            return
        completed: bool | None = None
        try:
            metadata = message.response_metadata
            if run.stream:
                completed = not metadata.incomplete
            elif metadata.logprobs is not None:
                _add(call, metadata.logprobs, time.time_ns())
            usage = message.usage_metadata
            capture = self.telemetry.capture_content
            call.set_response(
                ResponseFacts(
                    id=metadata.id,
                    model=metadata.model_name,
                    finish_reasons=[metadata.finish_reason] if metadata.finish_reason else None,
                    input_tokens=usage.input_tokens if usage is not None else None,
                    output_tokens=usage.output_tokens if usage is not None else None,
                    output_text=message.content if capture else None,
                    output_refusal=message.refusal if capture else None,
                    output_tool_calls=_tool_calls(message) if capture else None,
                )
            )
        except Exception:
            logger.warning("OpenTelemetry handler: on_llm_end failed", exc_info=True)
        finally:
            call.end(completed=completed)

    def on_llm_error(self, error: BaseException, *, run: Run) -> None:
        """End the span as failed: status ERROR, `error.type`, the exception recorded."""
        call = self._calls.pop(run.run_id, None)
        if call is not None:
            call.fail(error)


def _add(call: CallTelemetry, logprobs: ChoiceLogprobs, now: int) -> None:
    # One chunk (or answer): the content's tokens, then the refusal's, one arrival.
    content, refusal = logprobs.content, logprobs.refusal
    if content is not None:
        call.add_tokens(content, time_ns=now)
    if refusal is not None:
        call.add_tokens(refusal, time_ns=now, channel="refusal", new_chunk=content is None)


def _tool_calls(message: AIMessage) -> list[dict[str, object]] | None:
    # Every call the model made, valid or not, in its order and the wire shape.
    calls = _ordered(message.tool_calls, message.invalid_tool_calls)
    if not calls:
        return None
    return [
        {
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments or ""},
        }
        for c in calls
    ]
