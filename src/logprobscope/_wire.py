"""OpenAI wire JSON (decoded) to typed results: whole completions and stream chunks.

Tolerant by design: servers that are not OpenAI send `logprobs: null`, `bytes: null`,
no usage, extra fields, or odd values; nothing here raises on a field's content.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic_core import from_json

from ._construct import construct
from ._lazy import Extras, Slice, StreamDeltas, StreamText
from ._logprobs import ChoiceLogprobs, TokenBuffer, TokenLogprobList
from ._messages import AIMessage, AIMessageChunk, ResponseMetadata, UsageMetadata
from ._messages import make_chunk as _make_chunk
from ._text import valid_json
from ._toolcalls import Delta, deltas_from_json, parse_calls, tool_calls_from_json

__all__ = [
    "StreamAccumulator",
    "loads",
    "message_from_completion",
    "streamed_message",
    "usage_from_json",
]


def loads(payload: bytes) -> object:
    """`json.loads`, faster: pydantic-core's parser first (about half the CPU per chunk).

    Where it succeeds its result equals the stdlib's; where it fails (invalid JSON, but
    also lone surrogates or a BOM, which the stdlib accepts) the stdlib decides, so the
    result or exception is `json.loads`'s, except that escaped lone surrogates become
    U+FFFD (see `_text`): results must always dump to JSON. It also shares equal short
    strings between events (token texts), which the stream's buffers keep.
    """
    try:
        return from_json(payload)
    except ValueError:
        return valid_json(json.loads(payload))


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_from_json(value: object) -> UsageMetadata | None:
    """`usage` of a completion or chunk, or None when absent or not an object."""
    if not isinstance(value, dict):
        return None
    prompt = _int(value.get("prompt_tokens"))
    completion = _int(value.get("completion_tokens"))
    total = value.get("total_tokens")
    return construct(
        UsageMetadata,
        {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": total if isinstance(total, int) else prompt + completion,
        },
    )


def _first_choice(choices: object) -> dict[str, object] | None:
    # Only one choice is asked for (n > 1 is refused before the request); a server that
    # sends more anyway gets its choice 0 used.
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return None


def _logprobs_from_json(value: object) -> ChoiceLogprobs | None:
    if not isinstance(value, dict):
        return None
    content = value.get("content")
    refusal = value.get("refusal")
    return construct(
        ChoiceLogprobs,
        {
            "content": TokenLogprobList.from_json(content) if isinstance(content, list) else None,
            "refusal": TokenLogprobList.from_json(refusal) if isinstance(refusal, list) else None,
        },
    )


def message_from_completion(body: dict[str, object]) -> AIMessage:
    """The first choice of a decoded `chat.completion` as an `AIMessage`."""
    choice = _first_choice(body.get("choices")) or {}
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    content = message.get("content")
    tool_calls, invalid_tool_calls = tool_calls_from_json(message.get("tool_calls"))
    metadata = construct(
        ResponseMetadata,
        {
            "logprobs": _logprobs_from_json(choice.get("logprobs")),
            "finish_reason": _str_or_none(choice.get("finish_reason")),
            "model_name": _str_or_none(body.get("model")),
            "id": _str_or_none(body.get("id")),
            "system_fingerprint": _str_or_none(body.get("system_fingerprint")),
            "incomplete": False,
        },
    )
    return construct(
        AIMessage,
        {
            "role": "assistant",
            "content": content if isinstance(content, str) else "",
            "name": None,
            "refusal": _str_or_none(message.get("refusal")),
            "tool_calls": tool_calls,
            "invalid_tool_calls": invalid_tool_calls,
            "audio": None,
            "function_call": None,
            "response_metadata": metadata,
            "usage_metadata": usage_from_json(body.get("usage")),
        },
    )


class StreamAccumulator:
    """Turns decoded `chat.completion.chunk` objects into chunks, and keeps the whole answer.

    All chunks of one stream share `pieces` (text), `refusals` (refusal text), `deltas`
    (tool-call deltas) and two token buffers, so a chunk costs what its own tokens cost and
    `message()` joins everything once.
    """

    __slots__ = (
        "pieces",
        "refusals",
        "deltas",
        "saw_refusal_text",
        "content",
        "refusal",
        "saw_logprobs",
        "saw_content",
        "saw_refusal",
        "finish_reason",
        "model_name",
        "id",
        "system_fingerprint",
        "usage",
        "chunks",
    )

    def __init__(self) -> None:
        # Owned: `chunk + other` never appends to these, so `message()` reads this stream's
        # answer only, whatever the user adds the chunks to.
        self.pieces = StreamText()
        self.refusals = StreamText()
        self.deltas = StreamDeltas()
        self.saw_refusal_text = False
        self.content = TokenBuffer(owned=True)
        self.refusal = TokenBuffer(owned=True)
        self.saw_logprobs = False
        self.saw_content = False
        self.saw_refusal = False
        self.finish_reason: str | None = None
        self.model_name: str | None = None
        self.id: str | None = None
        self.system_fingerprint: str | None = None
        self.usage: UsageMetadata | None = None
        self.chunks = 0

    def feed(self, body: object) -> AIMessageChunk | None:
        """The chunk for one decoded event, or None for an event with nothing in it."""
        if not isinstance(body, dict):
            return None
        value = body.get("id")
        if type(value) is str:
            self.id = value
        value = body.get("model")
        if type(value) is str:
            self.model_name = value
        value = body.get("system_fingerprint")
        if type(value) is str:
            self.system_fingerprint = value
        usage = body.get("usage")
        usage_metadata = usage_from_json(usage) if usage is not None else None
        if usage_metadata is not None:
            self.usage = usage_metadata
        choice = _first_choice(body.get("choices"))
        more = None
        if choice is None:
            if usage_metadata is None:
                return None
            text = ""
            logprobs = None
            finish_reason: str | None = None
        else:
            delta = choice.get("delta")
            if type(delta) is dict:
                content = delta.get("content")
                text = content if type(content) is str else ""
                if delta.get("refusal") is not None or delta.get("tool_calls") is not None:
                    more = self._extras(delta)
            else:
                text = ""
            logprobs = self._logprobs(choice.get("logprobs"))
            reason = choice.get("finish_reason")
            finish_reason = reason if type(reason) is str else None
            if finish_reason is not None:
                self.finish_reason = finish_reason
        pieces = self.pieces
        pieces.append(text)
        n = len(pieces)
        self.chunks += 1
        metadata = construct(
            ResponseMetadata,
            {
                "logprobs": logprobs,
                "finish_reason": finish_reason,
                "model_name": self.model_name,
                "id": self.id,
                "system_fingerprint": self.system_fingerprint,
                "incomplete": False,
            },
        )
        return _make_chunk(Slice(pieces, n - 1, n), metadata, usage_metadata, more)

    def _extras(self, delta: dict[str, object]) -> Extras | None:
        """A delta's refusal text and tool-call deltas, appended to the stream's own lists."""
        refusal_slice = None
        refusal = delta.get("refusal")
        if type(refusal) is str:
            self.saw_refusal_text = True
            self.refusals.append(refusal)
            n = len(self.refusals)
            refusal_slice = Slice(self.refusals, n - 1, n)
        tools_slice = None
        new = deltas_from_json(delta.get("tool_calls"))
        if new:
            start = len(self.deltas)
            self.deltas.extend(new)
            tools_slice = Slice(self.deltas, start, len(self.deltas))
        if refusal_slice is None and tools_slice is None:
            return None
        return Extras(refusal_slice, tools_slice)

    def _logprobs(self, value: object) -> ChoiceLogprobs | None:
        if type(value) is not dict:
            return None
        self.saw_logprobs = True
        content = value.get("content")
        content_view = None
        if type(content) is list:
            self.saw_content = True
            buf = self.content
            start = len(buf.tokens)
            buf.append_json(content)
            content_view = TokenLogprobList._view(buf, start, len(buf.tokens))
        refusal = value.get("refusal")
        refusal_view = None
        if type(refusal) is list:
            self.saw_refusal = True
            buf = self.refusal
            start = len(buf.tokens)
            buf.append_json(refusal)
            refusal_view = TokenLogprobList._view(buf, start, len(buf.tokens))
        return construct(ChoiceLogprobs, {"content": content_view, "refusal": refusal_view})

    def message(self, *, incomplete: bool) -> AIMessage:
        """Everything so far as one `AIMessage`."""
        logprobs = None
        if self.saw_logprobs:
            logprobs = construct(
                ChoiceLogprobs,
                {
                    "content": TokenLogprobList._view(self.content, 0, len(self.content))
                    if self.saw_content
                    else None,
                    "refusal": TokenLogprobList._view(self.refusal, 0, len(self.refusal))
                    if self.saw_refusal
                    else None,
                },
            )
        return streamed_message(
            pieces=self.pieces,
            refusal="".join(self.refusals) if self.saw_refusal_text else None,
            deltas=self.deltas,
            logprobs=logprobs,
            finish_reason=self.finish_reason,
            model_name=self.model_name,
            id=self.id,
            system_fingerprint=self.system_fingerprint,
            incomplete=incomplete,
            usage=self.usage,
        )


def streamed_message(
    *,
    pieces: Sequence[str],
    refusal: str | None,
    deltas: Sequence[Delta],
    logprobs: ChoiceLogprobs | None,
    finish_reason: str | None,
    model_name: str | None,
    id: str | None,
    system_fingerprint: str | None,
    incomplete: bool,
    usage: UsageMetadata | None,
) -> AIMessage:
    """A stream's aggregate as one `AIMessage` (both APIs' accumulators end here)."""
    tool_calls, invalid_tool_calls = parse_calls(deltas)
    metadata = construct(
        ResponseMetadata,
        {
            "logprobs": logprobs,
            "finish_reason": finish_reason,
            "model_name": model_name,
            "id": id,
            "system_fingerprint": system_fingerprint,
            "incomplete": incomplete,
        },
    )
    return construct(
        AIMessage,
        {
            "role": "assistant",
            "content": "".join(pieces),
            "name": None,
            "refusal": refusal,
            "tool_calls": tool_calls,
            "invalid_tool_calls": invalid_tool_calls,
            "audio": None,
            "function_call": None,
            "response_metadata": metadata,
            "usage_metadata": usage,
        },
    )
