"""Responses API wire JSON (decoded) to typed results: whole responses and stream events.

The same results as a chat completion's: the text of every `output_text` part, refusals,
`function_call` items as tool calls, the tokens of every text part in
`response_metadata.logprobs.content` (a stream's without `bytes`: its events carry none),
usage, the response id, and a finish reason mapped from the status: `completed` is "stop"
(or "tool_calls" when the answer calls tools), `incomplete` for `max_output_tokens` is
"length", for `content_filter` "content_filter", for any other reason that reason.

Logprobs are read only when the call asked for them: OpenAI sends `"logprobs": []` on
every text part either way. Tolerant by design, as `_wire`: nothing here raises on a
field's content; a failed response (`status: failed`, an `error` event) raises
`ResponseError`, which the caller turns into the SDK's `APIError`.
"""

from __future__ import annotations

from typing import Final

from ._construct import construct
from ._lazy import Extras, Slice, StreamDeltas, StreamText
from ._logprobs import ChoiceLogprobs, TokenBuffer, TokenLogprobList
from ._messages import AIMessage, AIMessageChunk, ResponseMetadata, UsageMetadata
from ._messages import make_chunk as _make_chunk
from ._toolcalls import Delta, parse_calls
from ._wire import streamed_message

__all__ = [
    "ResponseError",
    "ResponsesAccumulator",
    "finish_reason",
    "message_from_response",
    "usage_from_response",
]

_INCOMPLETE: Final = {"max_output_tokens": "length", "content_filter": "content_filter"}


class ResponseError(Exception):
    """The server reported the response failed (`status: failed` or an `error` event)."""

    def __init__(self, message: str, body: object) -> None:
        super().__init__(message)
        self.message = message
        self.body = body


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _failure(error: object, default: str) -> ResponseError:
    message = error.get("message") if isinstance(error, dict) else None
    return ResponseError(message if isinstance(message, str) and message else default, error)


def usage_from_response(value: object) -> UsageMetadata | None:
    """A response's `usage`, or None when absent or not an object."""
    if not isinstance(value, dict):
        return None
    prompt = _int(value.get("input_tokens"))
    completion = _int(value.get("output_tokens"))
    total = value.get("total_tokens")
    return construct(
        UsageMetadata,
        {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": total if isinstance(total, int) else prompt + completion,
        },
    )


def finish_reason(response: dict[str, object], *, calls: bool) -> str | None:
    """The chat finish reason a response's status and incomplete details map to."""
    status = response.get("status")
    if status == "completed":
        return "tool_calls" if calls else "stop"
    if status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        if isinstance(reason, str):
            return _INCOMPLETE.get(reason, reason)
        return "incomplete"
    return "cancelled" if status == "cancelled" else None


def _call_delta(item: dict[str, object], index: int) -> Delta:
    arguments = item.get("arguments")
    return (
        index,
        _str_or_none(item.get("call_id")),
        _str_or_none(item.get("name")),
        arguments if isinstance(arguments, str) else "",
    )


def _items(value: object) -> list[dict[str, object]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def message_from_response(body: dict[str, object], *, logprobs: bool) -> AIMessage:
    """A decoded non-streamed `response` object as an `AIMessage`.

    Raises:
        ResponseError: the response's status is `failed`.
    """
    if body.get("status") == "failed":
        raise _failure(body.get("error"), "The response failed")
    texts: list[str] = []
    refusals: list[str] = []
    deltas: list[Delta] = []
    buf = TokenBuffer()
    saw_logprobs = False
    for item in _items(body.get("output")):
        kind = item.get("type")
        if kind == "function_call":
            deltas.append(_call_delta(item, len(deltas)))
        elif kind == "message":
            for part in _items(item.get("content")):
                if part.get("type") == "output_text":
                    text = part.get("text")
                    texts.append(text if isinstance(text, str) else "")
                    entries = part.get("logprobs")
                    if logprobs and isinstance(entries, list):
                        saw_logprobs = True
                        buf.append_json(entries)
                elif part.get("type") == "refusal":
                    refusal = part.get("refusal")
                    refusals.append(refusal if isinstance(refusal, str) else "")
    tool_calls, invalid_tool_calls = parse_calls(deltas)
    choice_logprobs = None
    if saw_logprobs:
        content = TokenLogprobList._view(buf, 0, len(buf))
        choice_logprobs = construct(ChoiceLogprobs, {"content": content, "refusal": None})
    metadata = construct(
        ResponseMetadata,
        {
            "logprobs": choice_logprobs,
            "finish_reason": finish_reason(body, calls=bool(deltas)),
            "model_name": _str_or_none(body.get("model")),
            "id": _str_or_none(body.get("id")),
            "system_fingerprint": None,
            "incomplete": False,
        },
    )
    return construct(
        AIMessage,
        {
            "role": "assistant",
            "content": "".join(texts),
            "name": None,
            "refusal": "".join(refusals) if refusals else None,
            "tool_calls": tool_calls,
            "invalid_tool_calls": invalid_tool_calls,
            "audio": None,
            "function_call": None,
            "response_metadata": metadata,
            "usage_metadata": usage_from_response(body.get("usage")),
        },
    )


class ResponsesAccumulator:
    """Turns decoded Responses stream events into chunks, and keeps the whole answer.

    Chunks come from `response.created` (empty: the response's id and model, as a chat
    stream's role chunk), each `response.output_text.delta` (its text and tokens), each
    `response.refusal.delta`, each function call's head (`output_item.added`) and argument
    delta, and the final `response.completed` or `response.incomplete` (finish reason and
    usage). Every other event (in_progress, content parts, the `.done` events that repeat
    what the deltas carried) gives none. As in `_wire.StreamAccumulator`, all chunks of a
    stream share its buffers, so adding them up costs what each chunk's own tokens cost.

    Raises (from `feed`):
        ResponseError: a `response.failed` or an `error` event.
    """

    __slots__ = (
        "logprobs",
        "pieces",
        "refusals",
        "deltas",
        "calls",
        "content",
        "saw_logprobs",
        "finish_reason",
        "model_name",
        "id",
        "usage",
    )

    def __init__(self, *, logprobs: bool) -> None:
        self.logprobs = logprobs
        self.pieces = StreamText()
        self.refusals = StreamText()
        self.deltas = StreamDeltas()
        # output_index (or a stand-in key) -> [call index, argument length]
        self.calls: dict[object, list[int]] = {}
        self.content = TokenBuffer(owned=True)
        self.saw_logprobs = False
        self.finish_reason: str | None = None
        self.model_name: str | None = None
        self.id: str | None = None
        self.usage: UsageMetadata | None = None

    def _response(self, value: object) -> dict[str, object]:
        if not isinstance(value, dict):
            return {}
        ident = value.get("id")
        if type(ident) is str:
            self.id = ident
        model = value.get("model")
        if type(model) is str:
            self.model_name = model
        return value

    def feed(self, body: object) -> AIMessageChunk | None:
        """The chunk for one decoded event, or None for an event with nothing for one."""
        if type(body) is not dict:
            return None
        kind = body.get("type")
        if kind == "response.output_text.delta":
            delta = body.get("delta")
            return self._chunk(delta if type(delta) is str else "", self._logprobs(body))
        if kind == "response.function_call_arguments.delta":
            delta = body.get("delta")
            return self._call_piece(body.get("output_index"), delta if type(delta) is str else "")
        if kind == "response.created":
            self._response(body.get("response"))
            return self._chunk("", None)
        if kind in ("response.completed", "response.incomplete"):
            response = self._response(body.get("response"))
            self.finish_reason = finish_reason(response, calls=bool(self.calls))
            usage = usage_from_response(response.get("usage"))
            if usage is not None:
                self.usage = usage
            return self._chunk("", None, reason=self.finish_reason, usage=usage)
        if kind == "response.output_item.added" or kind == "response.output_item.done":
            item = body.get("item")
            if type(item) is dict and item.get("type") == "function_call":
                return self._call_item(body.get("output_index"), item, done=kind.endswith("done"))
            return None
        if kind == "response.refusal.delta":
            delta = body.get("delta")
            return self._refusal(delta if type(delta) is str else "")
        if kind == "response.in_progress":
            self._response(body.get("response"))
            return None
        if kind == "response.failed":
            response = self._response(body.get("response"))
            raise _failure(response.get("error"), "The response failed")
        if kind == "error":
            raise _failure(body, "An error occurred during streaming")
        return None

    def _logprobs(self, body: dict[str, object]) -> ChoiceLogprobs | None:
        entries = body.get("logprobs")
        if not self.logprobs or type(entries) is not list:
            return None
        self.saw_logprobs = True
        buf = self.content
        start = len(buf.tokens)
        buf.append_json(entries)
        view = TokenLogprobList._view(buf, start, len(buf.tokens))
        return construct(ChoiceLogprobs, {"content": view, "refusal": None})

    def _chunk(
        self,
        text: str,
        logprobs: ChoiceLogprobs | None,
        *,
        reason: str | None = None,
        usage: UsageMetadata | None = None,
        more: Extras | None = None,
    ) -> AIMessageChunk:
        pieces = self.pieces
        pieces.append(text)
        n = len(pieces)
        metadata = construct(
            ResponseMetadata,
            {
                "logprobs": logprobs,
                "finish_reason": reason,
                "model_name": self.model_name,
                "id": self.id,
                "system_fingerprint": None,
                "incomplete": False,
            },
        )
        return _make_chunk(Slice(pieces, n - 1, n), metadata, usage, more)

    def _refusal(self, text: str) -> AIMessageChunk:
        self.refusals.append(text)
        n = len(self.refusals)
        return self._chunk("", None, more=Extras(Slice(self.refusals, n - 1, n), None))

    def _tools(self, delta: Delta) -> AIMessageChunk:
        self.deltas.append(delta)
        n = len(self.deltas)
        return self._chunk("", None, more=Extras(None, Slice(self.deltas, n - 1, n)))

    def _known_call(self, output_index: object, *, new: bool) -> tuple[object, list[int] | None]:
        """The call an event is about: by its `output_index`; without one (llama-server
        sends none), a new call for a head, else the latest call."""
        if type(output_index) is int:
            return output_index, self.calls.get(output_index)
        if new or not self.calls:
            return -1 - len(self.calls), None
        key = next(reversed(self.calls))
        return key, self.calls[key]

    def _call_item(
        self, output_index: object, item: dict[str, object], *, done: bool
    ) -> AIMessageChunk | None:
        key, known = self._known_call(output_index, new=not done)
        if known is None:  # the head (or a whole call whose head was not sent)
            index = len(self.calls)
            delta = _call_delta(item, index)
            self.calls[key] = [index, len(delta[3])]
            return self._tools(delta)
        arguments = item.get("arguments")
        if done and known[1] == 0 and isinstance(arguments, str) and arguments:
            known[1] = len(arguments)  # no argument deltas came: the done item has them
            return self._tools((known[0], None, None, arguments))
        return None

    def _call_piece(self, output_index: object, text: str) -> AIMessageChunk | None:
        _, known = self._known_call(output_index, new=False)
        if known is None:
            return None  # a delta of a call never announced: nothing to attach it to
        known[1] += len(text)
        return self._tools((known[0], None, None, text))

    def message(self, *, incomplete: bool) -> AIMessage:
        """Everything so far as one `AIMessage`."""
        logprobs = None
        if self.saw_logprobs:
            view = TokenLogprobList._view(self.content, 0, len(self.content))
            logprobs = construct(ChoiceLogprobs, {"content": view, "refusal": None})
        return streamed_message(
            pieces=self.pieces,
            refusal="".join(self.refusals) if self.refusals else None,
            deltas=self.deltas,
            logprobs=logprobs,
            finish_reason=self.finish_reason,
            model_name=self.model_name,
            id=self.id,
            system_fingerprint=None,
            incomplete=incomplete,
            usage=self.usage,
        )
