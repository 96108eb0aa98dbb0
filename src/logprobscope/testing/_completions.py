"""Building recorded answers: `make_completion` and its token entries and alternatives."""

from __future__ import annotations

import json
import math
import random
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Final, TypeAlias

__all__ = ["DEFAULT_MODEL", "Completion", "ToolCallSpec", "make_completion"]

Completion: TypeAlias = dict[str, object]
"""One recorded answer: the non-streamed OpenAI ChatCompletion JSON object."""

DEFAULT_MODEL: Final = "gpt-4o-2024-08-06"

ToolCallSpec: TypeAlias = tuple[str, Mapping[str, object] | str]
"""A tool call of a made completion: (function name, arguments as a mapping or JSON text)."""

# Plausible alternative tokens for generated top_logprobs.
_ALT_VOCAB: Final = (
    " the",
    " a",
    " I",
    ".",
    ",",
    " and",
    " to",
    " is",
    " you",
    " it",
    "!",
    "?",
    " of",
    " in",
    " that",
    " for",
    " with",
    " be",
    " on",
    " not",
    "Hello",
    "Thank",
    " just",
    " here",
    " can",
    " help",
    " today",
    " this",
    " my",
    " we",
)


_PIECE = re.compile(r'[{}\[\]":,]+|\s?[^\s{}\[\]":,]+|\s+')


def call_pieces(arguments: str) -> list[str]:
    """Argument text in the pieces OpenAI streams it in: `{"`, `city`, `":"`, ` York`..."""
    return _PIECE.findall(arguments)


def _round_logprob(value: float) -> float:
    # 8 significant digits, as the OpenAI API reports them; never -0.0.
    return float(f"{value:.8g}") + 0.0


def _token_entry(
    token: str, logprob: float, alternatives: Sequence[tuple[str, float]]
) -> Completion:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode("utf-8")),
        "top_logprobs": [
            {"token": alt, "logprob": alt_lp, "bytes": list(alt.encode("utf-8"))}
            for alt, alt_lp in alternatives
        ],
    }


def _generate_alternatives(
    token: str, logprob: float, k: int, rng: random.Random
) -> list[tuple[str, float]]:
    # The chosen token plus k - 1 others sharing (most of) the remaining probability mass.
    candidates = [text for text in _ALT_VOCAB if text != token]
    rng.shuffle(candidates)
    others: list[str] = []
    for j in range(k - 1):
        text = candidates[j] if j < len(candidates) else f"<alt{j}>"
        while text == token or text in others:
            text += "_"
        others.append(text)
    remaining = max(0.0, 1.0 - math.exp(logprob)) * 0.95
    weights = [rng.random() + 0.05 for _ in others]
    total = sum(weights) or 1.0
    alternatives = [(token, logprob)]
    for text, weight in zip(others, weights, strict=True):
        share = remaining * weight / total
        alt_lp = math.log(share) if share > 1e-12 else -20.0 - 5.0 * rng.random()
        alternatives.append((text, _round_logprob(alt_lp)))
    alternatives.sort(key=lambda alt: -alt[1])
    return alternatives


def make_completion(
    tokens: Sequence[tuple[str, float]] | Sequence[str],
    *,
    model: str = DEFAULT_MODEL,
    top_logprobs: Sequence[Sequence[tuple[str, float]]] | None = None,
    k: int = 0,
    finish_reason: str | None = None,
    tool_calls: Sequence[ToolCallSpec] = (),
    refusal: bool = False,
    prompt_tokens: int = 10,
    id: str = "chatcmpl-replay",
    seed: int | None = None,
    created: int = 1_723_000_000,
    system_fingerprint: str | None = "fp_replay",
) -> Completion:
    """Build a complete non-streamed ChatCompletion with token logprobs.

    Args:
        tokens: ``(token, logprob)`` pairs, or plain token strings whose logprobs
            are then generated deterministically in ``(-5, 0]`` by
            ``random.Random(seed)``.  The message content is the joined tokens and
            every ``bytes`` is the token's UTF-8 encoding.
        model: The (dated) model name of the answer.
        top_logprobs: Per token, the recorded alternatives ``(token, logprob)``;
            they are sorted by logprob, descending.  Must have one row per token.
        k: Without ``top_logprobs``: generate ``k`` sorted alternatives per
            token, the chosen token among them, whose probabilities sum to at
            most 1.
        finish_reason: The choice's finish reason; default ``"tool_calls"`` with
            ``tool_calls``, else ``"stop"``.
        tool_calls: Function calls the answer makes, after its text (if any): each a
            ``(name, arguments)`` pair, the arguments a mapping (sent as compact JSON)
            or JSON text (sent as it is). Their ids are ``call_<id>_<i>``.
        refusal: The tokens are a refusal: ``message.refusal`` is their text,
            ``message.content`` is null and their logprobs are ``logprobs.refusal``.
        prompt_tokens: Prompt token count of the ``usage`` object.
        id: The completion id.
        seed: Seed of the generated logprobs and alternatives; ``None`` derives
            one from the token texts, so the result is always deterministic.
        created: The ``created`` Unix timestamp.
        system_fingerprint: The ``system_fingerprint`` field.

    Raises:
        ValueError: On a positive or non-finite logprob, a ``top_logprobs`` of
            the wrong length, both ``top_logprobs`` and ``k``, or a negative ``k``.
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    if top_logprobs is not None and k:
        raise ValueError("give either top_logprobs or k, not both")
    texts = [item if isinstance(item, str) else item[0] for item in tokens]
    if seed is None:
        seed = zlib.crc32("\x00".join(texts).encode("utf-8", "surrogatepass"))
    rng = random.Random(seed)
    pairs: list[tuple[str, float]] = []
    for item in tokens:
        if isinstance(item, str):
            pairs.append((item, _round_logprob(-5.0 * rng.random())))
        else:
            text, logprob = item
            logprob = float(logprob)
            if not math.isfinite(logprob) or logprob > 0.0:
                raise ValueError(f"logprob of {text!r} must be finite and <= 0, got {logprob}")
            pairs.append((str(text), logprob + 0.0))
    if top_logprobs is not None:
        if len(top_logprobs) != len(pairs):
            raise ValueError(f"top_logprobs has {len(top_logprobs)} rows for {len(pairs)} tokens")
        alternatives = [
            sorted(((str(t), float(lp)) for t, lp in row), key=lambda alt: -alt[1])
            for row in top_logprobs
        ]
    elif k:
        alternatives = [_generate_alternatives(t, lp, k, rng) for t, lp in pairs]
    else:
        alternatives = [[] for _ in pairs]
    entries = [_token_entry(t, lp, alts) for (t, lp), alts in zip(pairs, alternatives, strict=True)]
    text = "".join(t for t, _ in pairs)
    message: Completion = {"role": "assistant", "content": text, "refusal": None}
    logprobs: Completion = {"content": entries, "refusal": None}
    if refusal:
        if tool_calls:
            raise ValueError("a refusal makes no tool calls")
        message = {"role": "assistant", "content": None, "refusal": text}
        logprobs = {"content": None, "refusal": entries}
    calls: list[Completion] = []
    completion_tokens = len(pairs)
    for i, (name, arguments) in enumerate(tool_calls):
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
        calls.append(
            {
                "id": f"call_{id.removeprefix('chatcmpl-')}_{i}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        )
        completion_tokens += len(call_pieces(arguments)) + 1
    if calls:
        message["tool_calls"] = calls
        if not text:
            message["content"] = None
    if finish_reason is None:
        finish_reason = "tool_calls" if calls else "stop"
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": system_fingerprint,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
