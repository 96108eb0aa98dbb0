"""The seed completions: the LangChain.js logprobs guide, value for value.

The first tokens are the guide's; the rest are plausible made-up values.
"""

from __future__ import annotations

import copy
from typing import Final

from ._completions import Completion, make_completion

__all__ = [
    "SEED_INVOKE",
    "SEED_STREAM",
    "SEED_STRUCTURED",
    "SEED_TOOL_ANSWER",
    "SEED_TOOL_CALL",
    "SEED_TOP_LOGPROBS",
    "seed_completions",
]


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

SEED_TOOL_CALL: Final[Completion] = make_completion(
    [],
    tool_calls=[("get_weather", {"city": "New York City"})],
    id="chatcmpl-seed-tool-call",
    prompt_tokens=44,
    created=_SEED_CREATED + 3,
    system_fingerprint=_SEED_FINGERPRINT,
)
"""A request with ``tools`` (its last message not a tool result): the model calls
``get_weather`` with ``{"city":"New York City"}``, as in OpenAI's own streamed tool-call
recordings (the call's head, then the arguments in pieces). Read-only."""

SEED_TOOL_ANSWER: Final[Completion] = make_completion(
    [
        ("It", -0.31326166),
        ("'s", -0.0067153485),
        (" sunny", -0.20141353),
        (" and", -0.047437165),
        (" 22", -1.1920929e-06),
        ("°C", -0.0024756414),
        (" in", -0.00033546583),
        (" New", -0.12692805),
        (" York", 0.0),
        (" City", -2.1008714e-06),
        (".", -0.0015918379),
    ],
    k=3,
    seed=12,
    id="chatcmpl-seed-tool-answer",
    prompt_tokens=71,
    created=_SEED_CREATED + 4,
    system_fingerprint=_SEED_FINGERPRINT,
)
"""A request with ``tools`` whose last message is a tool result: the answer. Read-only."""

SEED_STRUCTURED: Final[Completion] = make_completion(
    [
        ('{"', -1.9816675e-06),
        ("city", 0.0),
        ('":"', 0.0),
        ("San", -0.0024767374),
        (" Francisco", -1.3856493e-06),
        ('","', -3.0545007e-06),
        ("temperature", 0.0),
        ('":', 0.0),
        ("65", -0.5767712),
        (',"', -1.2664457e-06),
        ("units", 0.0),
        ('":"', 0.0),
        ("f", -0.0009114635),
        ('"}', 0.0),
    ],
    k=3,
    seed=13,
    id="chatcmpl-seed-structured",
    prompt_tokens=78,
    created=_SEED_CREATED + 5,
    system_fingerprint=_SEED_FINGERPRINT,
)
"""A request with a ``json_schema`` response_format: ``{"city":"San Francisco",
"temperature":65,"units":"f"}``, split as OpenAI streams structured output. Read-only."""

_SEEDS: Final[tuple[Completion, ...]] = (
    SEED_INVOKE,
    SEED_STREAM,
    SEED_TOP_LOGPROBS,
    SEED_TOOL_CALL,
    SEED_TOOL_ANSWER,
    SEED_STRUCTURED,
)
_SEED_INVOKE_INDEX: Final = 0
_SEED_STREAM_INDEX: Final = 1
_SEED_TOP_INDEX: Final = 2
_SEED_TOOL_CALL_INDEX: Final = 3
_SEED_TOOL_ANSWER_INDEX: Final = 4
_SEED_STRUCTURED_INDEX: Final = 5


def seed_completions() -> list[Completion]:
    """Return deep copies of the seed completions: invoke, stream, top_logprobs.

    They reproduce the LangChain.js "how to get log probabilities" guide for
    ``gpt-4o-2024-08-06``, value for value where the guide shows values.
    """
    return copy.deepcopy(list(_SEEDS[:3]))
