"""Rendering a completion for a request: the JSON body or the SSE events.

Pure functions of (completion, request shape, deviations); the server caches the results.
"""

from __future__ import annotations

import codecs
import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ._completions import DEFAULT_MODEL, Completion, call_pieces
from ._faults import Deviations

_MAX_N: Final = 128


@dataclass(frozen=True)
class _Shape:
    """What of a request changes the bytes of the answer."""

    stream: bool
    logprobs: bool
    top_logprobs: int
    include_usage: bool
    n: int
    responses: bool = False  # POST /v1/responses (see _responses)


@dataclass(frozen=True)
class _Segment:
    text: str
    entries: tuple[Mapping[str, object], ...]


@dataclass(frozen=True)
class _ChoicePlan:
    source: Mapping[str, object]
    content: str | None  # the refusal's text when `refusal`
    has_logprobs: bool
    segments: tuple[_Segment, ...]
    refusal: bool = False
    tool_calls: tuple[Mapping[str, object], ...] = ()


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _as_mapping(value: object) -> Mapping[str, object] | None:
    return value if isinstance(value, Mapping) else None


def _check_completion(completion: object) -> Completion:
    if not isinstance(completion, dict):
        raise TypeError(f"a completion must be a dict, got {type(completion).__name__}")
    choices = completion.get("choices")
    if (
        not isinstance(choices, list)
        or not choices
        or not all(isinstance(choice, Mapping) for choice in choices)
    ):
        raise ValueError("a completion needs a non-empty 'choices' list of objects")
    return completion


def _plan_choice(choice: Mapping[str, object], chunk_tokens: int) -> _ChoicePlan:
    plan = _plan_text(choice, chunk_tokens)
    message = _as_mapping(choice.get("message")) or {}
    raw_calls = message.get("tool_calls")
    calls = (
        tuple(c for c in raw_calls if isinstance(c, Mapping)) if isinstance(raw_calls, list) else ()
    )
    refusal = message.get("refusal")
    is_refusal = isinstance(refusal, str) and not isinstance(message.get("content"), str)
    return _ChoicePlan(
        plan.source, plan.content, plan.has_logprobs, plan.segments, is_refusal, calls
    )


def _plan_text(choice: Mapping[str, object], chunk_tokens: int) -> _ChoicePlan:
    message = _as_mapping(choice.get("message")) or {}
    raw_content = message.get("content")
    key = "content"
    if not isinstance(raw_content, str) and isinstance(message.get("refusal"), str):
        key = "refusal"  # a refusal streams like content, in `delta.refusal`
        raw_content = message.get("refusal")
    content = raw_content if isinstance(raw_content, str) else None
    logprobs = _as_mapping(choice.get("logprobs"))
    raw_entries = logprobs.get(key) if logprobs is not None else None
    entries = (
        [entry for entry in raw_entries if isinstance(entry, Mapping)]
        if isinstance(raw_entries, list)
        else []
    )
    if not entries:
        text = content or ""
        segments = (_Segment(text, ()),) if text else ()
        return _ChoicePlan(choice, content, False, segments)

    groups = [entries[i : i + chunk_tokens] for i in range(0, len(entries), chunk_tokens)]
    token_texts = [str(entry.get("token", "")) for entry in entries]
    byte_lists = [entry.get("bytes") for entry in entries]
    use_bytes = False
    if content is not None and "".join(token_texts) != content:
        if all(isinstance(b, list) for b in byte_lists):
            joined = b"".join(bytes(b) for b in byte_lists if isinstance(b, list))
            use_bytes = joined.decode("utf-8", "replace") == content
    seg_list: list[_Segment] = []
    if use_bytes:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        for number, group in enumerate(groups):
            raw = b"".join(bytes(b) for e in group if isinstance(b := e.get("bytes"), list))
            text = decoder.decode(raw, final=number == len(groups) - 1)
            seg_list.append(_Segment(text, tuple(group)))
    else:
        for group in groups:
            seg_list.append(_Segment("".join(str(e.get("token", "")) for e in group), tuple(group)))
    text = "".join(segment.text for segment in seg_list)
    return _ChoicePlan(choice, text, True, tuple(seg_list))


def _call_head(call: Mapping[str, object], number: int) -> dict[str, object]:
    function = _as_mapping(call.get("function")) or {}
    return {
        "index": number,
        "id": call.get("id"),
        "type": call.get("type", "function"),
        "function": {"name": function.get("name"), "arguments": ""},
    }


def _out_entry(
    entry: Mapping[str, object],
    top_k: int,
    deviations: Deviations,
    token_ids: Mapping[str, int],
) -> Completion:
    def deviate(source: Mapping[str, object]) -> dict[str, object]:
        out = dict(source)
        if deviations.token_ids and "id" not in out:
            # llama-server sends the id first; a recorded id is kept as it is.
            out = {"id": token_ids[str(source.get("token", ""))], **out}
        if deviations.bytes_null:
            out["bytes"] = None
        return out

    out = deviate(entry)
    top = entry.get("top_logprobs")
    alternatives: list[object] = []
    if isinstance(top, list):
        for alt in top[:top_k]:
            alt_map = _as_mapping(alt)
            if alt_map is not None:
                alternatives.append(deviate(alt_map))
    out["top_logprobs"] = alternatives
    return out


def _token_ids(plans: Sequence[_ChoicePlan]) -> dict[str, int]:
    """Number every token text of the answer (entries and alternatives) by first appearance."""
    ids: dict[str, int] = {}
    for plan in plans:
        for segment in plan.segments:
            for entry in segment.entries:
                top = entry.get("top_logprobs")
                alternatives = top if isinstance(top, list) else []
                for item in (entry, *alternatives):
                    item_map = _as_mapping(item)
                    if item_map is not None:
                        ids.setdefault(str(item_map.get("token", "")), len(ids))
    return ids


def _timings(usage: Mapping[str, object]) -> dict[str, object]:
    """llama.cpp's `timings` object: the usage's token counts, at a nominal 1 ms a token."""
    counts = {"prompt": usage.get("prompt_tokens"), "predicted": usage.get("completion_tokens")}
    timings: dict[str, object] = {"cache_n": 0}
    for name, count in counts.items():
        tokens = count if isinstance(count, int) and count >= 0 else 0
        timings[f"{name}_n"] = tokens
        timings[f"{name}_ms"] = float(tokens)
        timings[f"{name}_per_token_ms"] = 1.0
        timings[f"{name}_per_second"] = 1000.0
    return timings


class _Renderer:
    """Renders one completion for a request shape under fixed deviations."""

    def __init__(self, completion: Completion, deviations: Deviations, chunk_tokens: int) -> None:
        self.completion = completion
        self.deviations = deviations
        choices = completion.get("choices")
        assert isinstance(choices, list)
        self.chunk_tokens = chunk_tokens
        self.plans = [_plan_choice(choice, chunk_tokens) for choice in choices]
        self.token_ids = _token_ids(self.plans) if deviations.token_ids else {}

    def _wants_logprobs(self, shape: _Shape, plan: _ChoicePlan) -> bool:
        return shape.logprobs and plan.has_logprobs and not self.deviations.no_logprobs

    def _logprobs_object(
        self, entries: Sequence[Mapping[str, object]], shape: _Shape, *, refusal: bool = False
    ) -> object:
        out = [_out_entry(e, shape.top_logprobs, self.deviations, self.token_ids) for e in entries]
        if self.deviations.omit_logprobs_key:  # no null counterpart
            return {"refusal": out} if refusal else {"content": out}
        if refusal:
            return {"content": None, "refusal": out}
        return {"content": out, "refusal": None}

    def _set_logprobs(self, choice: dict[str, object], logprobs: object) -> dict[str, object]:
        """Set a choice's `logprobs`; under `omit_logprobs_key` a null one is left out."""
        if logprobs is None and self.deviations.omit_logprobs_key:
            choice.pop("logprobs", None)
        else:
            choice["logprobs"] = logprobs
        return choice

    def _timings(self, n: int) -> dict[str, object]:
        return _timings(_as_mapping(self._usage(n)) or {})

    def _usage(self, n: int) -> object:
        if self.deviations.usage_per_choice:
            n = 1  # llama-server counts one choice's tokens, whatever n is
        usage = _as_mapping(self.completion.get("usage"))
        if usage is None:
            counted = sum(len(seg.entries) or 1 for seg in self.plans[0].segments)
            usage = {"prompt_tokens": 0, "completion_tokens": counted, "total_tokens": counted}
        out = copy.deepcopy(dict(usage))
        completion_tokens = out.get("completion_tokens")
        prompt_tokens = out.get("prompt_tokens")
        if n > 1 and isinstance(completion_tokens, int) and isinstance(prompt_tokens, int):
            out["completion_tokens"] = completion_tokens * n
            out["total_tokens"] = prompt_tokens + completion_tokens * n
        return out

    def _model(self) -> object:
        return self.completion.get("model", DEFAULT_MODEL)

    def render_json(self, shape: _Shape) -> bytes:
        out = {key: copy.deepcopy(value) for key, value in self.completion.items()}
        out["model"] = self._model()
        choices: list[object] = []
        for index in range(shape.n):
            plan = self.plans[index % len(self.plans)]
            choice = copy.deepcopy(dict(plan.source))
            choice["index"] = index
            message = _as_mapping(choice.get("message"))
            if message is not None and plan.has_logprobs:
                key = "refusal" if plan.refusal else "content"
                choice["message"] = {**message, key: plan.content}
            logprobs: object = None
            if self._wants_logprobs(shape, plan):
                entries = [entry for seg in plan.segments for entry in seg.entries]
                logprobs = self._logprobs_object(entries, shape, refusal=plan.refusal)
            choices.append(self._set_logprobs(choice, logprobs))
        out["choices"] = choices
        if "usage" in self.completion or shape.n > 1:
            out["usage"] = self._usage(shape.n)
        if self.deviations.timings:
            out["timings"] = self._timings(shape.n)
        return _dumps(out)

    def render_stream(self, shape: _Shape) -> tuple[bytes, ...]:
        """Render the SSE events, ``data: [DONE]`` included."""
        completion = self.completion
        base: dict[str, object] = {
            "id": completion.get("id", "chatcmpl-replay"),
            "object": "chat.completion.chunk",
            "created": completion.get("created", 0),
            "model": self._model(),
        }
        if "service_tier" in completion:
            base["service_tier"] = completion["service_tier"]
        base["system_fingerprint"] = completion.get("system_fingerprint")
        include_usage = shape.include_usage and not self.deviations.ignore_include_usage

        def chunk(choices: list[object], **extra: object) -> bytes:
            payload = dict(base)
            payload["choices"] = choices
            if include_usage:
                payload["usage"] = None
            payload.update(extra)
            return b"data: " + _dumps(payload) + b"\n\n"

        def choice(index: int, delta: object, logprobs: object, finish: object) -> object:
            out: dict[str, object] = {"index": index, "delta": delta}
            return {**self._set_logprobs(out, logprobs), "finish_reason": finish}

        plans = [self.plans[i % len(self.plans)] for i in range(shape.n)]
        events: list[bytes] = []
        headers: list[int] = []  # choices whose first tool call went in the role chunk
        for index, plan in enumerate(plans):
            edge_logprobs: object = None
            edges_null = self.deviations.null_logprobs_on_edges or self.deviations.omit_logprobs_key
            if self._wants_logprobs(shape, plan) and not edges_null:
                edge_logprobs = {"content": [], "refusal": None}
                if plan.refusal:
                    edge_logprobs = {"content": None, "refusal": []}
            delta: dict[str, object] = {"role": "assistant", "content": "", "refusal": None}
            if self.deviations.omit_logprobs_key:
                delta = {"role": "assistant", "content": None}
            if plan.refusal:
                delta = {"role": "assistant", "content": None, "refusal": ""}
            elif plan.tool_calls and not plan.segments:
                # OpenAI's first chunk of a calls-only answer carries the first call's head
                delta = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [_call_head(plan.tool_calls[0], 0)],
                    "refusal": None,
                }
                headers.append(index)
            events.append(chunk([choice(index, delta, edge_logprobs, None)]))
        steps = max((len(plan.segments) for plan in plans), default=0)
        for step in range(steps):
            for index, plan in enumerate(plans):
                if step >= len(plan.segments):
                    continue
                segment = plan.segments[step]
                logprobs: object = None
                if self._wants_logprobs(shape, plan):
                    logprobs = self._logprobs_object(segment.entries, shape, refusal=plan.refusal)
                key = "refusal" if plan.refusal else "content"
                events.append(chunk([choice(index, {key: segment.text}, logprobs, None)]))
        for index, plan in enumerate(plans):
            # Tool calls after the text, one after the other: the head (id, name, empty
            # arguments), then the argument text in pieces, as OpenAI streams them.
            call_logprobs: object = None
            if self._wants_logprobs(shape, plan) and not self.deviations.omit_logprobs_key:
                call_logprobs = {"content": [], "refusal": None}  # as the text's chunks, empty
            for number, call in enumerate(plan.tool_calls):
                deltas: list[object] = []
                if not (number == 0 and index in headers):
                    deltas.append(_call_head(call, number))
                function = _as_mapping(call.get("function")) or {}
                pieces = call_pieces(str(function.get("arguments") or ""))
                for start in range(0, len(pieces), self.chunk_tokens):
                    text = "".join(pieces[start : start + self.chunk_tokens])
                    deltas.append({"index": number, "function": {"arguments": text}})
                for item in deltas:
                    delta = {"tool_calls": [item]}
                    events.append(chunk([choice(index, delta, call_logprobs, None)]))
        # llama-server's timings ride on the last chunk: the usage chunk, else a finish chunk;
        # under usage_per_choice every choice ends so: its finish chunk, then its usage chunk.
        timings = {"timings": self._timings(shape.n)} if self.deviations.timings else {}
        per_choice = self.deviations.usage_per_choice

        def usage_chunk() -> bytes:
            payload = {**base, "choices": [], "usage": self._usage(shape.n), **timings}
            return b"data: " + _dumps(payload) + b"\n\n"

        for index, plan in enumerate(plans):
            finish_reason = plan.source.get("finish_reason", "stop")
            last = (per_choice or index == len(plans) - 1) and not include_usage
            events.append(
                chunk([choice(index, {}, None, finish_reason)], **(timings if last else {}))
            )
            if include_usage and per_choice:
                events.append(usage_chunk())
        if include_usage and not per_choice:
            events.append(usage_chunk())
        events.append(b"data: [DONE]\n\n")
        return tuple(events)


@dataclass(frozen=True)
class _Rendered:
    json_body: bytes = b""
    events: tuple[bytes, ...] = ()
    chunked_body: bytes = b""


def _request_shape(body: Mapping[str, object], deviations: Deviations) -> _Shape:
    stream = body.get("stream") is True
    logprobs = body.get("logprobs") is True and not deviations.no_logprobs
    top = _requested_top_logprobs(body, deviations)
    if deviations.no_logprobs_for_top_zero and body.get("top_logprobs") == 0:
        logprobs = False
    stream_options = _as_mapping(body.get("stream_options"))
    include_usage = (
        stream
        and stream_options is not None
        and stream_options.get("include_usage") is True
        and not deviations.ignore_include_usage
    )
    raw_n = body.get("n")
    n = raw_n if isinstance(raw_n, int) and not isinstance(raw_n, bool) and raw_n >= 1 else 1
    return _Shape(
        stream=stream,
        logprobs=logprobs,
        top_logprobs=max(0, top) if logprobs else 0,
        include_usage=include_usage,
        n=min(n, _MAX_N),
    )


def _requested_top_logprobs(body: Mapping[str, object], deviations: Deviations) -> int:
    """The alternatives a request gets: its `top_logprobs`, or the server's default."""
    raw = body.get("top_logprobs")
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    return deviations.default_top_logprobs if body.get("logprobs") is True else 0
