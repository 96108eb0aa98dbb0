"""`instrument_openai` for the Responses API: a `Response`, or its stream's events, into a call.

The same telemetry as a chat completion's. A non-streamed `Response` gives the tokens of
every `output_text` part (`output[i].content[j].logprobs`), its id, model, usage and the
finish reason its status maps to (as `ChatOpenAI(use_responses_api=True)` maps it). A
stream's events are read as the caller's loop receives them: `response.created` gives the
id and model, each `response.output_text.delta` its tokens (without bytes: the events
carry none), `response.completed` / `response.incomplete` the usage and finish reason.
The chunks counted for the timing metrics are the events our model makes chunks of (see
`_responses_wire.ResponsesAccumulator`); `response.output_text.done`, which repeats the
deltas' tokens, and the other bookkeeping events are not. A `response.failed` or `error`
event, which the SDK yields without raising, fails the call with the `openai.APIError` our
model raises for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import httpx2
import openai

from ._responses_wire import finish_reason
from .otel import CallTelemetry, ResponseFacts

__all__ = ["ResponsesRecorder", "input_messages", "record_response", "request_of"]

logger = logging.getLogger("logprobscope")

_CHUNK_EVENTS: Final = frozenset(
    {
        "response.created",
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.completed",
        "response.incomplete",
    }
)


def _status(response: Any) -> dict[str, object]:
    details = getattr(response, "incomplete_details", None)
    return {
        "status": getattr(response, "status", None),
        "incomplete_details": {"reason": getattr(details, "reason", None)},
    }


def _has_calls(response: Any) -> bool:
    return any(getattr(item, "type", None) == "function_call" for item in response.output or ())


def _output(response: Any) -> tuple[str | None, list[dict[str, object]] | None]:
    # The answer's refusal and tool calls (chat wire shape), for `gen_ai.output.messages`.
    refusals: list[str] = []
    calls: list[dict[str, object]] = []
    for item in response.output or ():
        kind = getattr(item, "type", None)
        if kind == "function_call":
            function = {"name": item.name, "arguments": item.arguments}
            calls.append({"id": item.call_id, "type": "function", "function": function})
        elif kind == "message":
            for part in getattr(item, "content", None) or ():
                if getattr(part, "type", None) == "refusal":
                    refusals.append(part.refusal)
    return ("".join(refusals) if refusals else None), (calls or None)


def _facts(response: Any, texts: list[str] | None) -> ResponseFacts:
    """The response's facts; its output too when `texts` (content capture) are given."""
    usage = getattr(response, "usage", None)
    reason = finish_reason(_status(response), calls=_has_calls(response))
    refusal, calls = _output(response) if texts is not None else (None, None)
    return ResponseFacts(
        id=getattr(response, "id", None),
        model=getattr(response, "model", None),
        finish_reasons=[reason] if reason else None,
        input_tokens=getattr(usage, "input_tokens", None),
        output_tokens=getattr(usage, "output_tokens", None),
        output_text="".join(texts) if texts is not None else None,
        output_refusal=refusal,
        output_tool_calls=calls,
    )


def _failure(error: Any, request: Any, default: str) -> openai.APIError:
    message = getattr(error, "message", None)
    body = error.model_dump() if hasattr(error, "model_dump") else error
    return openai.APIError(
        message if isinstance(message, str) and message else default, request, body=body
    )


def request_of(resource: object, result: object) -> Any:
    """The HTTP request of a Responses API call, for the `APIError` of a failed response."""
    response = getattr(result, "response", None) or getattr(result, "http_response", None)
    request = getattr(response, "request", None)
    if request is None:  # a parsed Response keeps none: the request it was the answer to
        base = getattr(getattr(resource, "_client", None), "base_url", "")
        request = httpx2.Request("POST", f"{base}responses")
    return request


def record_response(call: CallTelemetry, response: Any, capture: bool, request: Any) -> None:
    """A non-streamed `Response` (or `ParsedResponse`) into its call; a failed one fails it."""
    if getattr(response, "status", None) == "failed":
        call.fail(_failure(getattr(response, "error", None), request, "The response failed"))
        return
    now = time.time_ns()
    texts: list[str] = []
    for item in response.output or ():
        if getattr(item, "type", None) != "message":
            continue
        for part in getattr(item, "content", None) or ():
            if getattr(part, "type", None) != "output_text":
                continue
            logprobs = getattr(part, "logprobs", None)
            if logprobs:  # the SDK's entries are token-like (token, logprob, bytes, tops)
                call.add_tokens(logprobs, time_ns=now)
            texts.append(getattr(part, "text", "") or "")
    call.set_response(_facts(response, texts if capture else None))


class ResponsesRecorder:
    """Feeds one Responses stream's events to its call and ends the call exactly once."""

    __slots__ = ("call", "texts", "request", "model", "reading")

    def __init__(self, call: CallTelemetry, capture: bool, request: Any) -> None:
        self.call = call
        self.texts: list[str] | None = [] if capture else None
        self.request = request
        self.model: str | None = None
        self.reading = False  # the proxy waits for the real stream's next event

    def chunk(self, event: Any) -> None:
        try:
            kind = getattr(event, "type", None)
            call = self.call
            if kind == "response.output_text.delta":
                call.add_tokens(getattr(event, "logprobs", None) or (), time_ns=time.time_ns())
                if self.texts is not None:
                    self.texts.append(event.delta)
                return
            if kind == "response.output_item.added":
                if getattr(event.item, "type", None) == "function_call":
                    call.add_chunk()
                return
            if kind not in _CHUNK_EVENTS:
                if kind in ("response.failed", "error"):
                    self._failed(event, kind)
                return
            if kind == "response.created":
                response = event.response
                self.model = response.model
                # Known from the first event: observations can be recorded as they come.
                call.set_response(ResponseFacts(id=response.id, model=response.model))
            elif kind in ("response.completed", "response.incomplete"):
                call.set_response(_facts(event.response, self.texts))
            call.add_chunk()
        except Exception:  # telemetry never breaks the caller's loop
            logger.debug("recording a Responses stream event failed", exc_info=True)

    def _failed(self, event: Any, kind: str) -> None:
        if kind == "error":
            error = _failure(event, self.request, "An error occurred during streaming")
        else:
            error = _failure(
                getattr(event.response, "error", None), self.request, "The response failed"
            )
        self.fail(error)

    def end(self, *, completed: bool) -> None:
        if self.call.ended:
            return
        if self.texts is not None:
            self.call.set_response(ResponseFacts(output_text="".join(self.texts)))
        self.call.end(completed=completed)

    def response_closed(self) -> None:
        """The HTTP response was closed: the stream is over, unless the proxy is reading
        (then the end or the error of that read ends the call)."""
        if not self.reading:
            self.end(completed=False)

    def fail(self, error: BaseException) -> None:
        self.call.fail(error)


# -- the request's input, as chat messages for `gen_ai.input.messages` -------------------------


def _part(part: object) -> object:
    if not isinstance(part, Mapping):
        return part
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part.get("text")}
    if kind == "input_image" and part.get("image_url"):
        return {"type": "image_url", "image_url": {"url": part.get("image_url")}}
    return dict(part)


def _content(value: object) -> object:
    if isinstance(value, str):
        return value
    return [_part(p) for p in value] if isinstance(value, Sequence) else ""


def input_messages(value: object) -> list[dict[str, object]] | None:
    """A Responses request's `input` as OpenAI chat messages (the telemetry's input shape).

    A string is one user message; messages keep their role and text; `function_call` items
    are an assistant's tool calls, `function_call_output` items tool messages; other items
    (reasoning, ...) are left out.
    """
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, Sequence):
        return None
    out: list[dict[str, object]] = []
    for item in value:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        if kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments")},
            }
            last = out[-1] if out else None
            if last is not None and last.get("role") == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # type: ignore[attr-defined]
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            content = _content(item.get("output"))
            out.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": content})
        elif "role" in item and kind in (None, "message"):
            out.append({"role": item.get("role"), "content": _content(item.get("content"))})
    return out
