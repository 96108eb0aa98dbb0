"""The bare `openai` SDK's reading of a recorded answer, in the canonical shape.

For a stream the SDK only parses chunks; adding them up here is deliberately the plainest
code (concatenate strings, extend lists, merge tool calls by index), independent of ours,
and is itself checked against the SDK's own `ChatCompletionStreamState` where that is
affordable (it re-dumps its snapshot per chunk, quadratic on the long recordings).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from .cases import canonical_logprobs, canonical_sdk_message


def from_completion(completion: ChatCompletion, index: int = 0) -> dict[str, Any]:
    choice = next(c for c in completion.choices if c.index == index)
    message = choice.message
    return canonical_sdk_message(
        content=message.content,
        refusal=message.refusal,
        tool_calls=[
            (c.id, c.function.name, c.function.arguments)
            for c in message.tool_calls or []
            if c.type == "function"
        ],
        logprobs=choice.logprobs,
        finish_reason=choice.finish_reason,
        usage=completion.usage,
        id=completion.id,
        model=completion.model,
        system_fingerprint=completion.system_fingerprint,
    )


class _ListLogprobs:
    def __init__(self, content: list[Any] | None, refusal: list[Any] | None) -> None:
        self.content = content
        self.refusal = refusal


def per_chunk(chunks: Iterable[ChatCompletionChunk], index: int = 0) -> list[dict[str, Any]]:
    """What each event carries for choice `index` (events without it and usage skipped)."""
    out = []
    for chunk in chunks:
        choice = next((c for c in chunk.choices if c.index == index), None)
        if choice is None and chunk.usage is None:
            continue
        delta = choice.delta if choice is not None else None
        out.append(
            {
                "content": (delta.content if delta is not None else None) or "",
                "refusal": delta.refusal if delta is not None else None,
                "tool_calls": [
                    (
                        t.index,
                        t.id,
                        t.function.name if t.function else None,
                        (t.function.arguments if t.function else None) or "",
                    )
                    for t in (delta.tool_calls or [] if delta is not None else [])
                ],
                "logprobs": canonical_logprobs(choice.logprobs if choice is not None else None),
                "finish_reason": choice.finish_reason if choice is not None else None,
                "usage": None
                if chunk.usage is None
                else (
                    chunk.usage.prompt_tokens,
                    chunk.usage.completion_tokens,
                    chunk.usage.total_tokens,
                ),
            }
        )
    return out


def from_chunks(chunks: list[ChatCompletionChunk], index: int = 0) -> dict[str, Any]:
    """The chunks of choice `index` added up the plain way."""
    content: list[str] = []
    refusal: list[str] | None = None
    calls: dict[int, list[Any]] = {}
    saw_logprobs = False
    lp_content: list[Any] | None = None
    lp_refusal: list[Any] | None = None
    finish_reason = usage = id = model = fingerprint = None
    for chunk in chunks:
        id = chunk.id or id
        model = chunk.model or model
        fingerprint = chunk.system_fingerprint or fingerprint
        usage = chunk.usage or usage
        for choice in chunk.choices:
            if choice.index != index:
                continue
            delta = choice.delta
            if delta.content is not None:
                content.append(delta.content)
            if delta.refusal is not None:
                refusal = [*(refusal or []), delta.refusal]
            for call in delta.tool_calls or []:
                entry = calls.setdefault(call.index, [None, None, ""])
                function = call.function
                entry[0] = entry[0] or call.id
                entry[1] = entry[1] or (function.name if function else None)
                entry[2] += (function.arguments if function else None) or ""
            if choice.logprobs is not None:
                saw_logprobs = True
                if choice.logprobs.content is not None:
                    lp_content = [*(lp_content or []), *choice.logprobs.content]
                if choice.logprobs.refusal is not None:
                    lp_refusal = [*(lp_refusal or []), *choice.logprobs.refusal]
            finish_reason = choice.finish_reason or finish_reason
    return canonical_sdk_message(
        content="".join(content),
        refusal=None if refusal is None else "".join(refusal),
        tool_calls=[(c[0], c[1], c[2]) for _, c in sorted(calls.items())],
        logprobs=_ListLogprobs(lp_content, lp_refusal) if saw_logprobs else None,
        finish_reason=finish_reason,
        usage=usage,
        id=id,
        model=model,
        system_fingerprint=fingerprint,
    )


def from_stream_state(chunks: list[ChatCompletionChunk], index: int = 0) -> dict[str, Any]:
    """The SDK's own accumulation (its snapshot: no parsing, so no finish-reason errors)."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    snapshot = state.current_completion_snapshot
    choice = next(c for c in snapshot.choices if c.index == index)
    message = choice.message
    return canonical_sdk_message(
        content=message.content,
        refusal=message.refusal,
        tool_calls=[
            (c.id, c.function.name, c.function.arguments)
            for c in message.tool_calls or []
            if c.type == "function"
        ],
        logprobs=choice.logprobs,
        finish_reason=choice.finish_reason,
        usage=snapshot.usage,
        id=snapshot.id,
        model=snapshot.model,
        system_fingerprint=snapshot.system_fingerprint,
    )


TokenStreams = dict[tuple[str, int], list[Any]]
"""Every choice's content and refusal tokens, by (channel, choice index); empty ones left out."""


def streams_of_completion(completion: ChatCompletion) -> TokenStreams:
    """The SDK's token objects of every choice, by stream."""
    out: TokenStreams = {}
    for choice in completion.choices:
        logprobs = choice.logprobs
        if logprobs is None:
            continue
        if logprobs.content:
            out[("content", choice.index)] = list(logprobs.content)
        if logprobs.refusal:
            out[("refusal", choice.index)] = list(logprobs.refusal)
    return out


def streams_of_chunks(chunks: Iterable[ChatCompletionChunk]) -> TokenStreams:
    """The SDK's token objects of every choice of a stream, in order, by stream."""
    out: TokenStreams = {}
    for chunk in chunks:
        for choice in chunk.choices:
            logprobs = choice.logprobs
            if logprobs is None:
                continue
            if logprobs.content:
                out.setdefault(("content", choice.index), []).extend(logprobs.content)
            if logprobs.refusal:
                out.setdefault(("refusal", choice.index), []).extend(logprobs.refusal)
    return out
