"""The Responses API (`POST /v1/responses`): a recorded completion as a Response or its events.

Built from the same plans as the chat answers (`_Renderer`), so one completion replays
through both APIs with the same text, tokens and logprobs. The shapes are OpenAI's: a
non-streamed answer carries each token's `{token, bytes, logprob, top_logprobs}` at
`output[i].content[j].logprobs`; a stream sends `event:` + `data:` lines (created,
in_progress, output_item.added, content_part.added, output_text.delta with the delta's
logprobs, without bytes, output_text.done repeating them, content_part.done,
output_item.done, then completed or incomplete with the usage), and no `[DONE]`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from ._completions import call_pieces
from ._faults import Deviations
from ._render import _as_mapping, _ChoicePlan, _dumps, _Renderer, _Shape

RESPONSES_LOGPROBS: Final = "message.output_text.logprobs"

# finish_reason -> (status, incomplete_details.reason)
_STATUS: Final[Mapping[str, tuple[str, str | None]]] = {
    "length": ("incomplete", "max_output_tokens"),
    "content_filter": ("incomplete", "content_filter"),
}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def responses_shape(body: Mapping[str, object], deviations: Deviations) -> _Shape:
    """What of a Responses request changes the bytes of the answer."""
    include = body.get("include")
    asked = isinstance(include, list) and RESPONSES_LOGPROBS in include
    logprobs = asked and not deviations.no_logprobs and not deviations.empty_responses_logprobs
    return _Shape(
        stream=body.get("stream") is True,
        logprobs=logprobs,
        top_logprobs=max(0, _int(body.get("top_logprobs"))) if logprobs else 0,
        include_usage=False,
        n=1,
        responses=True,
    )


def seed_view(body: Mapping[str, object]) -> dict[str, object]:
    """A Responses request as the chat request the seed completions are chosen by."""
    text = _as_mapping(body.get("text")) or {}
    view: dict[str, object] = {
        "response_format": text.get("format"),
        "tools": body.get("tools"),
        "top_logprobs": body.get("top_logprobs"),
        "stream": body.get("stream"),
    }
    items = body.get("input")
    last = items[-1] if isinstance(items, list) and items else None
    if isinstance(last, Mapping) and last.get("type") == "function_call_output":
        view["messages"] = [{"role": "tool"}]
    return view


def _ids(completion: Mapping[str, object]) -> str:
    raw = completion.get("id")
    return (raw if isinstance(raw, str) else "replay").removeprefix("chatcmpl-")


class _Response:
    """One completion as the Responses API shapes it, for one request shape."""

    def __init__(self, renderer: _Renderer, shape: _Shape) -> None:
        self.renderer = renderer
        self.shape = shape
        self.plan: _ChoicePlan = renderer.plans[0]
        self.suffix = _ids(renderer.completion)
        self.logprobs = renderer._wants_logprobs(shape, self.plan)
        reason = self.plan.source.get("finish_reason")
        self.status, self.incomplete = _STATUS.get(
            reason if isinstance(reason, str) else "", ("completed", None)
        )

    # -- pieces ------------------------------------------------------------------------

    def entries(self, entries: Sequence[Mapping[str, object]], *, stream: bool) -> list[object]:
        """Token entries in the Responses shape; a stream's have no `bytes`."""
        if not self.logprobs:
            return []
        top_k = self.shape.top_logprobs
        null = self.renderer.deviations.bytes_null
        out: list[object] = []
        for entry in entries:
            tops: list[object] = []
            raw_tops = entry.get("top_logprobs")
            for alt in raw_tops[:top_k] if isinstance(raw_tops, list) else ():
                alt_map = _as_mapping(alt)
                if alt_map is not None:
                    tops.append(self._token(alt_map, stream=stream, null=null))
            item = self._token(entry, stream=stream, null=null)
            item["top_logprobs"] = tops
            out.append(item)
        return out

    @staticmethod
    def _token(entry: Mapping[str, object], *, stream: bool, null: bool) -> dict[str, object]:
        if stream:
            return {"token": entry.get("token"), "logprob": entry.get("logprob")}
        raw = None if null else entry.get("bytes")
        return {"token": entry.get("token"), "bytes": raw, "logprob": entry.get("logprob")}

    def all_entries(self) -> list[Mapping[str, object]]:
        return [entry for segment in self.plan.segments for entry in segment.entries]

    def text(self) -> str:
        if self.plan.has_logprobs:
            return "".join(segment.text for segment in self.plan.segments)
        return self.plan.content or ""

    def has_message(self) -> bool:
        return bool(self.plan.segments) or self.plan.refusal or not self.plan.tool_calls

    def part(self, *, final: bool) -> dict[str, object]:
        if self.plan.refusal:
            return {"type": "refusal", "refusal": self.text() if final else ""}
        return {
            "type": "output_text",
            "annotations": [],
            "logprobs": self.entries(self.all_entries(), stream=False) if final else [],
            "text": self.text() if final else "",
        }

    def message(self, *, final: bool) -> dict[str, object]:
        return {
            "id": f"msg_{self.suffix}",
            "type": "message",
            "status": (self.status if final else "in_progress"),
            "role": "assistant",
            "content": [self.part(final=True)] if final else [],
        }

    def call(self, number: int, call: Mapping[str, object], *, final: bool) -> dict[str, object]:
        function = _as_mapping(call.get("function")) or {}
        return {
            "id": f"fc_{self.suffix}_{number}",
            "type": "function_call",
            "status": "completed" if final else "in_progress",
            "arguments": str(function.get("arguments") or "") if final else "",
            "call_id": call.get("id"),
            "name": function.get("name"),
        }

    def output(self) -> list[object]:
        items: list[object] = [self.message(final=True)] if self.has_message() else []
        items.extend(
            self.call(number, call, final=True) for number, call in enumerate(self.plan.tool_calls)
        )
        return items

    def usage(self) -> dict[str, object]:
        usage = _as_mapping(self.renderer._usage(1)) or {}
        prompt = _as_mapping(usage.get("prompt_tokens_details")) or {}
        completion = _as_mapping(usage.get("completion_tokens_details")) or {}
        return {
            "input_tokens": usage.get("prompt_tokens", 0),
            "input_tokens_details": {"cached_tokens": prompt.get("cached_tokens", 0)},
            "output_tokens": usage.get("completion_tokens", 0),
            "output_tokens_details": {"reasoning_tokens": completion.get("reasoning_tokens", 0)},
            "total_tokens": usage.get("total_tokens", 0),
        }

    def response(self, *, final: bool) -> dict[str, object]:
        completion = self.renderer.completion
        incomplete = {"reason": self.incomplete} if final and self.incomplete else None
        return {
            "id": f"resp_{self.suffix}",
            "object": "response",
            "created_at": completion.get("created", 0),
            "status": self.status if final else "in_progress",
            "background": False,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": None,
            "max_output_tokens": None,
            "model": self.renderer._model(),
            "output": self.output() if final else [],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "service_tier": completion.get("service_tier", "default"),
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_logprobs": self.shape.top_logprobs,
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": self.usage() if final else None,
            "user": None,
            "metadata": {},
        }


def render_responses_json(renderer: _Renderer, shape: _Shape) -> bytes:
    """The non-streamed Response object."""
    return _dumps(_Response(renderer, shape).response(final=True))


def _event(kind: str, payload: dict[str, object]) -> bytes:
    return b"event: " + kind.encode("ascii") + b"\ndata: " + _dumps(payload) + b"\n\n"


def render_responses_stream(renderer: _Renderer, shape: _Shape) -> tuple[bytes, ...]:
    """The SSE events of a streamed Response, in the order OpenAI sends them."""
    answer = _Response(renderer, shape)
    events: list[bytes] = []

    def emit(kind: str, **fields: object) -> None:
        events.append(_event(kind, {"type": kind, **fields, "sequence_number": len(events)}))

    emit("response.created", response=answer.response(final=False))
    emit("response.in_progress", response=answer.response(final=False))
    index = 0
    if answer.has_message():
        item_id = f"msg_{answer.suffix}"
        at = {"item_id": item_id, "output_index": index, "content_index": 0}
        emit("response.output_item.added", output_index=index, item=answer.message(final=False))
        emit("response.content_part.added", **at, part=answer.part(final=False))
        kind = "refusal" if answer.plan.refusal else "output_text"
        for segment in answer.plan.segments:
            if kind == "refusal":
                emit("response.refusal.delta", **at, delta=segment.text)
            else:
                if renderer.deviations.empty_responses_logprobs:  # llama-server: no key
                    emit("response.output_text.delta", **at, delta=segment.text)
                    continue
                logprobs = answer.entries(segment.entries, stream=True)
                emit("response.output_text.delta", **at, delta=segment.text, logprobs=logprobs)
        if kind == "refusal":
            emit("response.refusal.done", **at, refusal=answer.text())
        else:
            logprobs = answer.entries(answer.all_entries(), stream=True)
            emit("response.output_text.done", **at, text=answer.text(), logprobs=logprobs)
        emit("response.content_part.done", **at, part=answer.part(final=True))
        emit("response.output_item.done", output_index=index, item=answer.message(final=True))
        index += 1
    for number, call in enumerate(answer.plan.tool_calls):
        item = answer.call(number, call, final=True)
        emit(
            "response.output_item.added",
            output_index=index,
            item=answer.call(number, call, final=False),
        )
        at = {"item_id": item["id"], "output_index": index}
        pieces = call_pieces(str(item["arguments"]))
        step = renderer.chunk_tokens
        for start in range(0, len(pieces), step):
            emit(
                "response.function_call_arguments.delta",
                **at,
                delta="".join(pieces[start : start + step]),
            )
        emit("response.function_call_arguments.done", **at, arguments=item["arguments"])
        emit("response.output_item.done", output_index=index, item=item)
        index += 1
    final = "response.completed" if answer.status == "completed" else "response.incomplete"
    emit(final, response=answer.response(final=True))
    return tuple(events)


def stream_error_event(sequence_number: int) -> bytes:
    """The `error` event OpenAI sends when a streamed response fails."""
    return _event(
        "error",
        {
            "type": "error",
            "code": "server_error",
            "message": "The server had an error while processing your request (replay fault).",
            "param": None,
            "sequence_number": sequence_number,
        },
    )
