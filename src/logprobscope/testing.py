"""A loopback OpenAI-compatible replay server for offline tests.

:class:`ReplayServer` answers ``POST /v1/chat/completions`` over real HTTP on a
loopback address with recorded ChatCompletion answers (:data:`Completion`), both
as plain JSON and as a server-sent-event stream (``text/event-stream``), exactly
as the OpenAI API shapes them, token log probabilities included.  It uses the
standard library only, so any OpenAI client (the official SDK, LangChain,
``curl -N``) can be pointed at :attr:`ReplayServer.base_url`::

    from openai import OpenAI
    from logprobscope.testing import ReplayServer

    with ReplayServer() as server:
        client = OpenAI(base_url=server.base_url, api_key="test")
        reply = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "how are you today?"}],
            logprobs=True,
        )

Without recorded completions the server replays :func:`seed_completions`, the
values of the LangChain.js "how to get log probabilities" guide.

:class:`Deviations` reproduces how other OpenAI-compatible servers (llama.cpp)
differ from OpenAI; :class:`Faults` injects transport and protocol failures
(delays, cut connections, HTTP errors, malformed or invalid UTF-8 events,
stalls, in-stream errors).

Streams are sent with ``Transfer-Encoding: chunked`` on HTTP/1.1 (so an abrupt
cut is detectable by the client as an incomplete body) and connections are kept
alive between requests.  The encoded bytes of every (completion, request shape)
pair are cached, and a stream without faults or delays is written with a single
``sendall``.

Text of a choice: when a recorded choice carries token logprobs, the streamed
deltas are made from its tokens.  If the joined token strings equal the
message content they are used as they are; else, if the joined token ``bytes``
decode to the content (byte-fallback tokens), the deltas are decoded from the
bytes; else the tokens win over the recorded content.  The non-streamed answer
uses the same text, so both modes always agree.

What the official ``openai`` SDK (3.x, on httpx2) raises for each fault:

- ``cut_after``: :class:`openai.APIConnectionError`, caused by
  ``httpx2.RemoteProtocolError`` (incomplete chunked body / Content-Length),
  streamed or not; the SDK retries it on a non-streamed call unless
  ``max_retries=0``.
- ``status``: the status' :class:`openai.APIStatusError` subclass (429:
  :class:`openai.RateLimitError`, 500: :class:`openai.InternalServerError`, ...);
  with ``fail_first`` and retries left the SDK retries (honouring
  ``Retry-After``) and succeeds.
- ``malformed_at``: :class:`json.JSONDecodeError`, raised from the iteration.
- ``invalid_utf8_at``: :class:`UnicodeDecodeError`, raised from the iteration
  (the SDK decodes each SSE line strictly).
- ``stall_after`` with a client timeout below ``stall_seconds``:
  :class:`openai.APITimeoutError`.
- ``error_event_at``: :class:`openai.APIError` with the event's message.

Run ``python -m logprobscope.testing [--port N] [--host 127.0.0.1] [--llama-cpp]``
to serve the seed completions in the foreground; the first line printed on
stdout is the base URL.
"""

from __future__ import annotations

import argparse
import codecs
import copy
import http
import ipaddress
import itertools
import json
import math
import random
import signal
import socket
import socketserver
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import ClassVar, Final, TypeAlias

__all__ = [
    "SEED_INVOKE",
    "SEED_STREAM",
    "SEED_TOP_LOGPROBS",
    "Completion",
    "CompletionChooser",
    "DEFAULT_MODEL",
    "Deviations",
    "Faults",
    "ReplayServer",
    "main",
    "make_completion",
    "seed_completions",
]

Completion: TypeAlias = dict[str, object]
"""One recorded answer: the non-streamed OpenAI ChatCompletion JSON object."""

CompletionChooser: TypeAlias = Callable[[Mapping[str, object]], Completion]
"""Chooses the completion to answer with, given the parsed request body."""

DEFAULT_MODEL: Final = "gpt-4o-2024-08-06"

_MAX_BODY: Final = 64 * 1024 * 1024
_MAX_N: Final = 128
_STOP_JOIN_SECONDS: Final = 5.0
_CHOSEN_CACHE_SIZE: Final = 256

# ---------------------------------------------------------------------------
# Building completions
# ---------------------------------------------------------------------------

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
    finish_reason: str = "stop",
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
        finish_reason: The choice's finish reason.
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
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": system_fingerprint,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "".join(t for t, _ in pairs),
                    "refusal": None,
                },
                "logprobs": {"content": entries, "refusal": None},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(pairs),
            "total_tokens": prompt_tokens + len(pairs),
        },
    }


# ---------------------------------------------------------------------------
# Seed completions: the LangChain.js logprobs guide, value for value
# (the first tokens are the guide's; the rest are plausible made-up values).
# ---------------------------------------------------------------------------

_SEED_CREATED: Final = 1_723_575_012
_SEED_FINGERPRINT: Final = "fp_2f406b9113"

_INVOKE_TOKENS: Final[tuple[tuple[str, float], ...]] = (
    ("Thank", -0.70174205),
    (" you", 0.0),
    (" for", -0.000004723352),
    (" asking", -0.0000013856493),
    ("!", -0.00030102333),
    (" I'm", -0.0026802311),
    (" just", -0.0021398535),
    (" a", -0.000029518099),
    (" computer", -0.0054893284),
    (" program", -0.000033332357),
    (",", -0.015882505),
    (" so", -0.0008530925),
    (" I", -0.0000066306106),
    (" don't", -0.0000012664457),
    (" have", 0.0),
    (" feelings", -0.0007284747),
    (",", -0.0017843946),
    (" but", 0.0),
    (" I'm", -0.00014263218),
    (" here", -0.0004037411),
    (" and", -0.038054),
    (" ready", -0.0000045967),
    (" to", 0.0),
    (" help", -0.0000011472419),
    (" you", -0.041064594),
    (" with", -0.0000050139948),
    (" whatever", -0.20145),
    (" you", -0.000010325924),
    (" need", -0.00021736434),
    (".", -0.0036004551),
    (" How", -0.0019286326),
    (" can", -0.0000011472419),
    (" I", 0.0),
    (" assist", -0.12692852),
    (" you", 0.0),
    (" today", -0.00000052001665),
    ("?", -0.0000015048748),
)

_STREAM_TOKENS: Final[tuple[tuple[str, float], ...]] = (
    ("Thank", -0.23375113),
    (" you", 0.0),
    (" for", -0.000004723352),
    (" asking", -0.0000017432603),
    ("!", -0.00043233807),
    (" I'm", -0.0035480857),
    (" here", -0.31423026),
    (" and", -0.0085630165),
    (" ready", -0.00000655651),
    (" to", 0.0),
    (" help", -0.0000021008714),
    (".", -0.28302464),
    (" How", -0.0006392703),
    (" can", -0.0000016240566),
    (" I", 0.0),
    (" assist", -0.0890519),
    (" you", 0.0),
    (" today", -0.0000011472419),
    ("?", -0.0000010280384),
)

# (chosen token, its logprob, the 3 top alternatives) -- alternatives sorted, descending.
_TOP_ROWS: Final[tuple[tuple[str, float, tuple[tuple[str, float], ...]], ...]] = (
    ("I'm", -2.2864406, (("Thank", -0.28644064), ("Hello", -2.0364406), ("I'm", -2.2864406))),
    (" just", -0.14442946, ((" just", -0.14442946), (" an", -2.3944294), (" a", -3.8944294))),
    (
        " a",
        -0.0000028160932,
        ((" a", -0.0000028160932), (" an", -13.250003), (" here", -14.625003)),
    ),
    (
        " computer",
        -0.0044125984,
        ((" computer", -0.0044125984), (" program", -5.629413), (" digital", -7.879413)),
    ),
    (
        " program",
        -0.0000079418505,
        ((" program", -0.0000079418505), (" assistant", -12.000008), (" programme", -14.125008)),
    ),
    (",", -0.03125492, ((",", -0.03125492), (" and", -3.5312548), (" designed", -6.9062548))),
    (" so", -0.00016170668, ((" so", -0.00016170668), (" and", -9.000162), (" but", -10.500162))),
    (
        " I",
        -0.0000019816675,
        ((" I", -0.0000019816675), (" I'm", -13.500002), (" there", -15.625002)),
    ),
    (
        " don't",
        -0.0000011472419,
        ((" don't", -0.0000011472419), (" don", -14.250001), (" do", -15.375001)),
    ),
    (" have", 0.0, ((" have", 0.0), (" experience", -17.25), (" really", -18.5))),
    (
        " feelings",
        -0.00060506153,
        ((" feelings", -0.00060506153), (" personal", -7.9381056), (" emotions", -9.0631056)),
    ),
    (",", -0.0000345, ((",", -0.0000345), (" or", -10.750035), (".", -11.875035))),
    (" but", -0.00000023392786, ((" but", -0.00000023392786), (" so", -15.375), (" and", -16.0))),
    (
        " I'm",
        -0.000042272848,
        ((" I'm", -0.000042272848), (" I", -10.375042), (" I\u2019m", -12.250042)),
    ),
    (" here", -0.0019293, ((" here", -0.0019293), (" always", -6.6269293), (" ready", -7.7519293))),
    (" to", -0.00038288, ((" to", -0.00038288), (" and", -8.000383), (" for", -11.000383))),
    (
        " help",
        -0.0000037697225,
        ((" help", -0.0000037697225), (" assist", -12.500004), (" chat", -15.125004)),
    ),
    ("!", -0.4740771, (("!", -0.4740771), (" you", -1.0990771), (".", -5.974077))),
    (" How", -0.001086, ((" How", -0.001086), (" What", -7.0010862), (" Is", -9.3760862))),
    (
        " can",
        -0.0000007854,
        ((" can", -0.0000007854), (" about", -14.625001), (" may", -15.750001)),
    ),
    (" I", 0.0, ((" I", 0.0), (" i", -19.25), (" we", -20.0))),
    (
        " assist",
        -0.1269285,
        ((" assist", -0.1269285), (" help", -2.2519286), (" support", -9.1269286)),
    ),
    (" you", 0.0, ((" you", 0.0), (" You", -20.125), (" your", -21.0))),
    (
        " today",
        -0.0000021008714,
        ((" today", -0.0000021008714), ("?", -13.375002), (" this", -15.000002)),
    ),
    ("?", -0.0000012664457, (("?", -0.0000012664457), ("?\n", -13.750001), ("?\n\n", -15.875001))),
)

SEED_INVOKE: Final[Completion] = make_completion(
    _INVOKE_TOKENS,
    id="chatcmpl-seed-invoke",
    prompt_tokens=13,
    created=_SEED_CREATED,
    system_fingerprint=_SEED_FINGERPRINT,
)
"""The guide's ``invoke`` answer (``logprobs: true``, no alternatives). Read-only."""

SEED_STREAM: Final[Completion] = make_completion(
    _STREAM_TOKENS,
    id="chatcmpl-seed-stream",
    prompt_tokens=13,
    created=_SEED_CREATED + 1,
    system_fingerprint=_SEED_FINGERPRINT,
)
"""The guide's streamed answer (its first token has another logprob). Read-only."""

SEED_TOP_LOGPROBS: Final[Completion] = make_completion(
    [(token, logprob) for token, logprob, _ in _TOP_ROWS],
    top_logprobs=[alternatives for _, _, alternatives in _TOP_ROWS],
    id="chatcmpl-seed-top-logprobs",
    prompt_tokens=13,
    created=_SEED_CREATED + 2,
    system_fingerprint=_SEED_FINGERPRINT,
)
"""The guide's ``topLogprobs: 3`` answer (3 alternatives per token). Read-only."""

_SEEDS: Final[tuple[Completion, ...]] = (SEED_INVOKE, SEED_STREAM, SEED_TOP_LOGPROBS)
_SEED_INVOKE_INDEX: Final = 0
_SEED_STREAM_INDEX: Final = 1
_SEED_TOP_INDEX: Final = 2


def seed_completions() -> list[Completion]:
    """Return deep copies of the seed completions: invoke, stream, top_logprobs.

    They reproduce the LangChain.js "how to get log probabilities" guide for
    ``gpt-4o-2024-08-06``, value for value where the guide shows values.
    """
    return copy.deepcopy(list(_SEEDS))


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Deviations:
    """How a non-OpenAI server deviates from the OpenAI wire format.

    Attributes:
        bytes_null: Every ``bytes`` field is ``null`` (llama.cpp).
        null_logprobs_on_edges: The role-only first chunk carries
            ``"logprobs": null`` instead of ``{"content": [], "refusal": null}``
            (llama.cpp); the finish chunk carries ``null`` in both.
        ignore_include_usage: Never send the usage chunk nor ``usage`` keys,
            even with ``stream_options.include_usage`` (llama.cpp).
        no_logprobs: Never send logprobs (``"logprobs": null`` everywhere),
            even when they are asked for.
    """

    bytes_null: bool = False
    null_logprobs_on_edges: bool = False
    ignore_include_usage: bool = False
    no_logprobs: bool = False

    LLAMA_CPP: ClassVar[Deviations]
    """Preset of llama.cpp's server: the first three deviations."""


Deviations.LLAMA_CPP = Deviations(
    bytes_null=True, null_logprobs_on_edges=True, ignore_include_usage=True
)


@dataclass(frozen=True)
class Faults:
    """Failures injected into the answers of ``POST /v1/chat/completions``.

    SSE event indexes count every ``data:`` event of a stream from 0: the role
    chunk(s), the content chunks, the finish chunk(s), the usage chunk and
    ``[DONE]``.

    Attributes:
        chunk_delay: Seconds to sleep before each SSE event (streams only).
        cut_after: Close the connection abruptly after this many SSE events,
            without the end of the chunked body nor ``[DONE]``.  For a
            non-streamed answer: send the headers (with the full
            Content-Length) and half the body, then close.
        status: Answer with this HTTP status and an OpenAI-style error body.
        fail_first: With ``status``: only the first ``fail_first`` requests
            (counted from the last :meth:`ReplayServer.set_faults`) fail; 0
            means all of them.
        retry_after: Send ``Retry-After: <seconds>`` with the error status.
        malformed_at: The SSE event at this index has data that is not JSON
            (its JSON cut in half).
        invalid_utf8_at: The SSE event at this index has the invalid UTF-8
            bytes ``FF FE`` inside a string (its delta content if it has one).
        stall_after: After this many SSE events stop sending, keeping the
            connection open, for ``stall_seconds``, then go on.  For a
            non-streamed answer: stall before answering.
        stall_seconds: Length of the stall.  :meth:`ReplayServer.stop` ends it.
        error_event_at: Send the in-stream error payload
            ``{"error": {"message": ..., "type": "server_error", ...}}`` as the
            SSE event at this index, then end the stream (without ``[DONE]``).
    """

    chunk_delay: float = 0.0
    cut_after: int | None = None
    status: int | None = None
    fail_first: int = 0
    retry_after: float | None = None
    malformed_at: int | None = None
    invalid_utf8_at: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 30.0
    error_event_at: int | None = None

    def __post_init__(self) -> None:
        if self.chunk_delay < 0 or self.stall_seconds < 0 or self.fail_first < 0:
            raise ValueError("chunk_delay, stall_seconds and fail_first must be >= 0")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {self.status}")
        indexes = ("cut_after", "malformed_at", "invalid_utf8_at", "stall_after", "error_event_at")
        for name in indexes:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")

    @property
    def _streams_plainly(self) -> bool:
        return (
            self.chunk_delay == 0
            and self.cut_after is None
            and self.stall_after is None
            and self.malformed_at is None
            and self.invalid_utf8_at is None
            and self.error_event_at is None
        )


_NO_DEVIATIONS: Final = Deviations()
_NO_FAULTS: Final = Faults()

# ---------------------------------------------------------------------------
# Rendering (pure functions; results are cached by the server)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """What of a request changes the bytes of the answer."""

    stream: bool
    logprobs: bool
    top_logprobs: int
    include_usage: bool
    n: int


@dataclass(frozen=True)
class _Segment:
    text: str
    entries: tuple[Mapping[str, object], ...]


@dataclass(frozen=True)
class _ChoicePlan:
    source: Mapping[str, object]
    content: str | None
    has_logprobs: bool
    segments: tuple[_Segment, ...]


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
    message = _as_mapping(choice.get("message")) or {}
    raw_content = message.get("content")
    content = raw_content if isinstance(raw_content, str) else None
    logprobs = _as_mapping(choice.get("logprobs"))
    raw_entries = logprobs.get("content") if logprobs is not None else None
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


def _out_entry(entry: Mapping[str, object], top_k: int, bytes_null: bool) -> Completion:
    out = dict(entry)
    top = entry.get("top_logprobs")
    alternatives: list[object] = []
    if isinstance(top, list):
        for alt in top[:top_k]:
            alt_map = _as_mapping(alt)
            if alt_map is None:
                continue
            alt_out = dict(alt_map)
            if bytes_null:
                alt_out["bytes"] = None
            alternatives.append(alt_out)
    out["top_logprobs"] = alternatives
    if bytes_null:
        out["bytes"] = None
    return out


class _Renderer:
    """Renders one completion for a request shape under fixed deviations."""

    def __init__(self, completion: Completion, deviations: Deviations, chunk_tokens: int) -> None:
        self.completion = completion
        self.deviations = deviations
        choices = completion.get("choices")
        assert isinstance(choices, list)
        self.plans = [_plan_choice(choice, chunk_tokens) for choice in choices]

    def _wants_logprobs(self, shape: _Shape, plan: _ChoicePlan) -> bool:
        return shape.logprobs and plan.has_logprobs and not self.deviations.no_logprobs

    def _logprobs_object(self, entries: Sequence[Mapping[str, object]], shape: _Shape) -> object:
        return {
            "content": [
                _out_entry(entry, shape.top_logprobs, self.deviations.bytes_null)
                for entry in entries
            ],
            "refusal": None,
        }

    def _usage(self, n: int) -> object:
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
                choice["message"] = {**message, "content": plan.content}
            if self._wants_logprobs(shape, plan):
                entries = [entry for seg in plan.segments for entry in seg.entries]
                choice["logprobs"] = self._logprobs_object(entries, shape)
            else:
                choice["logprobs"] = None
            choices.append(choice)
        out["choices"] = choices
        if "usage" in self.completion or shape.n > 1:
            out["usage"] = self._usage(shape.n)
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

        def chunk(choices: list[object]) -> bytes:
            payload = dict(base)
            payload["choices"] = choices
            if include_usage:
                payload["usage"] = None
            return b"data: " + _dumps(payload) + b"\n\n"

        plans = [self.plans[i % len(self.plans)] for i in range(shape.n)]
        events: list[bytes] = []
        for index, plan in enumerate(plans):
            edge_logprobs: object = None
            if self._wants_logprobs(shape, plan) and not self.deviations.null_logprobs_on_edges:
                edge_logprobs = {"content": [], "refusal": None}
            delta = {"role": "assistant", "content": "", "refusal": None}
            events.append(
                chunk(
                    [
                        {
                            "index": index,
                            "delta": delta,
                            "logprobs": edge_logprobs,
                            "finish_reason": None,
                        }
                    ]
                )
            )
        steps = max((len(plan.segments) for plan in plans), default=0)
        for step in range(steps):
            for index, plan in enumerate(plans):
                if step >= len(plan.segments):
                    continue
                segment = plan.segments[step]
                logprobs: object = None
                if self._wants_logprobs(shape, plan):
                    logprobs = self._logprobs_object(segment.entries, shape)
                events.append(
                    chunk(
                        [
                            {
                                "index": index,
                                "delta": {"content": segment.text},
                                "logprobs": logprobs,
                                "finish_reason": None,
                            }
                        ]
                    )
                )
        for index, plan in enumerate(plans):
            finish_reason = plan.source.get("finish_reason", "stop")
            events.append(
                chunk(
                    [
                        {
                            "index": index,
                            "delta": {},
                            "logprobs": None,
                            "finish_reason": finish_reason,
                        }
                    ]
                )
            )
        if include_usage:
            payload = dict(base)
            payload["choices"] = []
            payload["usage"] = self._usage(shape.n)
            events.append(b"data: " + _dumps(payload) + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        return tuple(events)


@dataclass(frozen=True)
class _Rendered:
    json_body: bytes = b""
    events: tuple[bytes, ...] = ()
    chunked_body: bytes = b""


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_LAST_CHUNK: Final = b"0\r\n\r\n"


def _malformed(event: bytes) -> bytes:
    payload = event[len(b"data: ") : -2]
    return b"data: " + payload[: max(1, len(payload) // 2)] + b"\n\n"


def _invalid_utf8(event: bytes) -> bytes:
    for marker in (b'"content":"', b'"id":"'):
        position = event.find(marker)
        if position >= 0:
            cut = position + len(marker)
            return event[:cut] + b"\xff\xfe" + event[cut:]
    cut = len(b"data: ")
    return event[:cut] + b"\xff\xfe" + event[cut:]


_ERROR_TYPES: Final[Mapping[int, tuple[str, str, str | None]]] = {
    400: ("Bad request (replay fault).", "invalid_request_error", None),
    401: ("Incorrect API key provided (replay fault).", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model (replay fault).", "invalid_request_error", None),
    404: ("The model does not exist (replay fault).", "invalid_request_error", "model_not_found"),
    408: ("Request timed out (replay fault).", "server_error", None),
    409: ("Conflict (replay fault).", "invalid_request_error", None),
    422: ("Unprocessable entity (replay fault).", "invalid_request_error", None),
    429: ("Rate limit reached (replay fault).", "requests", "rate_limit_exceeded"),
    500: (
        "The server had an error while processing your request (replay fault).",
        "server_error",
        None,
    ),
    502: ("Bad gateway (replay fault).", "server_error", None),
    503: (
        "The engine is currently overloaded, please try again later (replay fault).",
        "server_error",
        None,
    ),
}


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return _dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def _fault_error_body(status: int) -> bytes:
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    message, type_, code = _ERROR_TYPES.get(
        status, (f"Error {status} (replay fault).", default_type, None)
    )
    return _error_body(message, type_, code)


_STREAM_ERROR_EVENT: Final = (
    b"data: "
    + _dumps(
        {
            "error": {
                "message": "The server had an error while processing your request (replay fault).",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
    )
    + b"\n\n"
)


def _request_shape(body: Mapping[str, object], deviations: Deviations) -> _Shape:
    stream = body.get("stream") is True
    logprobs = body.get("logprobs") is True and not deviations.no_logprobs
    raw_top = body.get("top_logprobs")
    top = raw_top if isinstance(raw_top, int) and not isinstance(raw_top, bool) else 0
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


def _requested_top_logprobs(body: Mapping[str, object]) -> int:
    raw = body.get("top_logprobs")
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else 0


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], replay: ReplayServer, family: socket.AddressFamily
    ) -> None:
        self.address_family = family
        self.replay = replay
        self.live_lock = threading.Lock()
        self.live_connections: set[socket.socket] = set()
        self.live_threads: set[threading.Thread] = set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # Skip HTTPServer.server_bind: its socket.getfqdn() may wait on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        assert isinstance(request, socket.socket)
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"replay-connection-{self.server_port}",
            daemon=True,
        )
        with self.live_lock:
            self.live_connections.add(request)
            self.live_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: object) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self.live_lock:
                self.live_connections.discard(request)
                self.live_threads.discard(threading.current_thread())

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away; nothing to report
        super().handle_error(request, client_address)

    def abort_connections(self) -> None:
        with self.live_lock:
            connections = list(self.live_connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_connections(self, deadline: float) -> None:
        with self.live_lock:
            threads = list(self.live_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "logprobscope-replay"
    server: _HTTPServer
    _request_id: str = "req_replay_0"

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    # -- low-level writing -------------------------------------------------

    @property
    def _chunked(self) -> bool:
        return self.request_version != "HTTP/1.0"

    def _head(self, status: int, headers: Sequence[tuple[str, str]]) -> bytes:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        lines = [f"{self.protocol_version} {status} {phrase}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        lines.append(f"x-request-id: {self._request_id}")
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send_bytes(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        extra: Sequence[tuple[str, str]] = (),
    ) -> None:
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
        self.connection.sendall(self._head(status, headers) + body)

    def _send_error_json(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        self._send_bytes(status, _error_body(message, type_, code, param))

    def _abort(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    return None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                total += size
                if total > _MAX_BODY:
                    return None
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            return None
        if not 0 <= size <= _MAX_BODY:
            return None
        return self.rfile.read(size)

    # -- routing -------------------------------------------------------------

    def _route(self, method: str) -> None:
        replay = self.server.replay
        self._request_id = f"req_replay_{next(replay._request_ids)}"
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._send_error_json(400, "Could not read the request body.")
            return
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path in ("/v1/chat/completions", "/chat/completions"):
            if method != "POST":
                self._send_error_json(405, f"Method {method} is not allowed on {path}.")
                return
            self._chat_completions(body)
        elif path in ("/v1/models", "/models") and method == "GET":
            data = [
                {"id": model, "object": "model", "created": 0, "owned_by": "logprobscope-replay"}
                for model in replay._models()
            ]
            self._send_bytes(200, _dumps({"object": "list", "data": data}))
        elif path == "/health" and method == "GET":
            self._send_bytes(200, _dumps({"status": "ok"}))
        else:
            self._send_error_json(
                404,
                f"Invalid URL ({method} {path})",
                type_="invalid_request_error",
            )

    def _chat_completions(self, raw: bytes) -> None:
        replay = self.server.replay
        try:
            parsed: object = json.loads(raw)
        except ValueError:
            self._send_error_json(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                "payload.)",
            )
            return
        if not isinstance(parsed, dict):
            self._send_error_json(400, "The request body must be a JSON object.")
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        faults, fail = replay._on_request(parsed, headers)
        if fail:
            assert faults.status is not None
            extra = []
            if faults.retry_after is not None:
                extra.append(("Retry-After", f"{faults.retry_after:g}"))
            self._send_bytes(faults.status, _fault_error_body(faults.status), extra=extra)
            return
        try:
            rendered, shape = replay._render(parsed)
        except Exception as error:  # a chooser bug or a bad completion: tell the client
            self._send_error_json(
                500, f"replay server could not render a completion: {error!r}", type_="server_error"
            )
            return
        stop = replay._stop_event
        if not shape.stream:
            self._send_json_answer(rendered.json_body, faults, stop)
        else:
            self._send_stream(rendered, faults, stop)

    def _send_json_answer(self, body: bytes, faults: Faults, stop: threading.Event) -> None:
        if faults.stall_after is not None and stop.wait(faults.stall_seconds):
            self._abort()
            return
        if faults.cut_after is not None:
            head = self._head(
                200, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            self.connection.sendall(head + body[: len(body) // 2])
            self._abort()
            return
        self._send_bytes(200, body)

    def _send_stream(self, rendered: _Rendered, faults: Faults, stop: threading.Event) -> None:
        chunked = self._chunked
        if not chunked:
            self.close_connection = True  # HTTP/1.0: the body ends with the connection
        headers = [
            ("Content-Type", "text/event-stream; charset=utf-8"),
            ("Cache-Control", "no-cache"),
        ]
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        head = self._head(200, headers)
        if faults._streams_plainly:
            if chunked:
                self.connection.sendall(head + rendered.chunked_body)
            else:
                self.connection.sendall(head + b"".join(rendered.events))
            return

        events = list(rendered.events)
        if faults.malformed_at is not None and faults.malformed_at < len(events):
            events[faults.malformed_at] = _malformed(events[faults.malformed_at])
        if faults.invalid_utf8_at is not None and faults.invalid_utf8_at < len(events):
            events[faults.invalid_utf8_at] = _invalid_utf8(events[faults.invalid_utf8_at])
        if faults.error_event_at is not None and faults.error_event_at < len(events):
            events = events[: faults.error_event_at] + [_STREAM_ERROR_EVENT]
        self.connection.sendall(head)
        # Index len(events) stands for the end of the body (the last chunk).
        for index in range(len(events) + 1):
            if faults.cut_after is not None and index >= faults.cut_after:
                self._abort()
                return
            if faults.stall_after == index and stop.wait(faults.stall_seconds):
                self._abort()
                return
            if index == len(events):
                break
            if faults.chunk_delay and stop.wait(faults.chunk_delay):
                self._abort()
                return
            event = events[index]
            self.connection.sendall(_frame(event) if chunked else event)
        if chunked:
            self.connection.sendall(_LAST_CHUNK)


@dataclass(frozen=True)
class _ChosenEntry:
    completion: Completion
    renderer: _Renderer
    rendered: dict[_Shape, _Rendered]


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host must be a loopback address, got {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"host must be a loopback address, got {host!r}")


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class ReplayServer:
    """An OpenAI-compatible chat completions server on a loopback address.

    Args:
        completions: The answers: a sequence served round-robin, or a callable
            choosing one given the parsed request body.  Default: the seed
            completions, chosen by request: ``top_logprobs >= 1`` gets
            :data:`SEED_TOP_LOGPROBS`, else ``stream: true`` gets
            :data:`SEED_STREAM`, else :data:`SEED_INVOKE`.  A sequence is
            deep-copied.  A callable's results are cached by identity (the
            same dict object gives the same bytes; the last 256 objects are
            kept): return a new dict rather than mutate one already returned.
        host: A loopback address (anything else is refused).
        port: The port; 0 picks a free one.
        deviations: How to deviate from OpenAI's wire format.
        faults: Faults to inject (see :meth:`set_faults`).
        chunk_tokens: Tokens per streamed content chunk.
        record_requests: Keep :attr:`requests` and :attr:`request_headers`
            (turn off for long benchmarks).

    Attributes:
        requests: Every parsed JSON object body received on the chat
            completions endpoint, in arrival order.
        request_headers: The headers of each of those requests (names
            lower-cased), index for index.
    """

    def __init__(
        self,
        completions: Sequence[Completion] | CompletionChooser | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        deviations: Deviations = _NO_DEVIATIONS,
        faults: Faults = _NO_FAULTS,
        chunk_tokens: int = 1,
        record_requests: bool = True,
    ) -> None:
        _check_loopback(host)
        if chunk_tokens < 1:
            raise ValueError("chunk_tokens must be >= 1")
        self._chooser: CompletionChooser | None = None
        self._completions: tuple[Completion, ...]
        if completions is None:
            self._completions = _SEEDS
            self._default = True
        elif callable(completions):
            self._chooser = completions
            self._completions = ()
            self._default = False
        else:
            if not completions:
                raise ValueError("completions must not be empty")
            self._completions = tuple(
                _check_completion(copy.deepcopy(completion)) for completion in completions
            )
            self._default = False
        self._host = host
        self._requested_port = port
        self._deviations = deviations
        self._faults = faults
        self._fault_failures = 0
        self._chunk_tokens = chunk_tokens
        self._record = record_requests
        self.requests: list[dict[str, object]] = []
        self.request_headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._round_robin = itertools.count()
        self._request_ids = itertools.count(1)
        self._renderers: list[_Renderer | None] = [None] * len(self._completions)
        self._cache: dict[tuple[int, _Shape], _Rendered] = {}
        self._chosen: OrderedDict[int, _ChosenEntry] = OrderedDict()
        self._served_models: dict[str, None] = {}
        self._stop_event = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> ReplayServer:
        """Bind the socket and serve from a daemon thread; return ``self``.

        Idempotent while running; a stopped server can be started again.
        """
        with self._state_lock:
            if self._httpd is not None:
                return self
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            self._stop_event = threading.Event()
            httpd = _HTTPServer((self._host, self._requested_port), self, family)
            self._port = int(httpd.server_address[1])
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"replay-server-{self._port}",
                daemon=True,
            )
            thread.start()
            self._httpd = httpd
            self._thread = thread
            return self

    def stop(self) -> None:
        """Shut down, end in-flight answers (stalls included) and close the socket.

        Idempotent and bounded in time: connections still open are shut down,
        and their daemon threads are joined for a few seconds at most.
        """
        with self._state_lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = None
            self._thread = None
            if httpd is None:
                return
            self._stop_event.set()
            deadline = time.monotonic() + _STOP_JOIN_SECONDS
            httpd.shutdown()
            httpd.abort_connections()
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
            httpd.join_connections(deadline)
            httpd.server_close()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("the server has not been started")
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/v1"

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    @property
    def deviations(self) -> Deviations:
        """The deviations in force."""
        return self._deviations

    def set_faults(self, faults: Faults) -> None:
        """Change the faults for the next requests (resets the ``fail_first`` count)."""
        with self._lock:
            self._faults = faults
            self._fault_failures = 0

    # -- request handling (called from the connection threads) -----------------

    def _on_request(self, body: dict[str, object], headers: dict[str, str]) -> tuple[Faults, bool]:
        with self._lock:
            if self._record:
                self.requests.append(body)
                self.request_headers.append(headers)
            faults = self._faults
            fail = False
            if faults.status is not None:
                if faults.fail_first == 0 or self._fault_failures < faults.fail_first:
                    fail = True
                    self._fault_failures += 1
            return faults, fail

    def _choose(self, body: Mapping[str, object]) -> tuple[int | None, Completion]:
        if self._chooser is not None:
            completion = _check_completion(self._chooser(body))
            model = completion.get("model")
            if isinstance(model, str):
                with self._lock:
                    self._served_models[model] = None
            return None, completion
        if self._default:
            if _requested_top_logprobs(body) >= 1:
                index = _SEED_TOP_INDEX
            elif body.get("stream") is True:
                index = _SEED_STREAM_INDEX
            else:
                index = _SEED_INVOKE_INDEX
        else:
            index = next(self._round_robin) % len(self._completions)
        return index, self._completions[index]

    def _renderer(self, index: int) -> _Renderer:
        renderer = self._renderers[index]
        if renderer is None:
            renderer = _Renderer(self._completions[index], self._deviations, self._chunk_tokens)
            self._renderers[index] = renderer
        return renderer

    def _render(self, body: Mapping[str, object]) -> tuple[_Rendered, _Shape]:
        shape = _request_shape(body, self._deviations)
        index, completion = self._choose(body)
        if index is not None:
            cached = self._cache.get((index, shape))
            if cached is not None:
                return cached, shape
            renderer = self._renderer(index)
        else:
            entry = self._chosen_entry(completion)
            cached = entry.rendered.get(shape)
            if cached is not None:
                return cached, shape
            renderer = entry.renderer
        if shape.stream:
            events = renderer.render_stream(shape)
            rendered = _Rendered(events=events, chunked_body=_frame(b"".join(events)) + _LAST_CHUNK)
        else:
            rendered = _Rendered(json_body=renderer.render_json(shape))
        if index is not None:
            self._cache[(index, shape)] = rendered
        else:
            entry.rendered[shape] = rendered
        return rendered, shape

    def _chosen_entry(self, completion: Completion) -> _ChosenEntry:
        key = id(completion)
        with self._lock:
            entry = self._chosen.get(key)
            if entry is not None and entry.completion is completion:
                self._chosen.move_to_end(key)
                return entry
        entry = _ChosenEntry(
            completion, _Renderer(completion, self._deviations, self._chunk_tokens), {}
        )
        with self._lock:
            self._chosen[key] = entry  # holds the object, so its id is not reused meanwhile
            self._chosen.move_to_end(key)
            while len(self._chosen) > _CHOSEN_CACHE_SIZE:
                self._chosen.popitem(last=False)
        return entry

    def _models(self) -> list[str]:
        models: dict[str, None] = {}
        for completion in self._completions:
            model = completion.get("model")
            if isinstance(model, str):
                models[model] = None
        with self._lock:
            models.update(self._served_models)
        return list(models)


# ---------------------------------------------------------------------------
# python -m logprobscope.testing
# ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the seed completions in the foreground until SIGTERM or SIGINT.

    The first line printed on stdout is the base URL.  Must run in the main
    thread (it installs signal handlers).
    """
    parser = argparse.ArgumentParser(
        prog="python -m logprobscope.testing",
        description="Loopback OpenAI-compatible replay server (seed completions).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument(
        "--llama-cpp", action="store_true", help="deviate from OpenAI as llama.cpp does"
    )
    parser.add_argument(
        "--chunk-delay", type=float, default=0.0, help="seconds before each SSE event"
    )
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        server = ReplayServer(
            host=args.host,
            port=args.port,
            deviations=Deviations.LLAMA_CPP if args.llama_cpp else _NO_DEVIATIONS,
            faults=Faults(chunk_delay=args.chunk_delay),
        )
    except ValueError as error:
        parser.error(str(error))
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with server:
            print(server.base_url, flush=True)
            while not stop.wait(0.2):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
