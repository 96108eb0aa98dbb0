"""The recorded cases, the call our model makes for each, and both sides in one shape.

`canonical_sdk` (the bare SDK's parse of the bytes) and `canonical_ours` (our model's
message) put an answer in the same plain structure, with every float as its bit pattern
(NaN as one marker) so that `==` compares logprobs bit for bit.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from logprobscope import AIMessage, ChoiceLogprobs, InvalidToolCall, ToolCall

from .loopback import Loopback, random_sizes, recorded_sizes, utf8_sizes

CASES_DIR = Path(__file__).parent / "cases"
SEEDS = (1, 2, 3)
SPLITS = ["recorded", "utf8", *(f"seed{s}" for s in SEEDS)]


# The schema of the openai-python structured-output recordings, as their test code has it
# (no docstring: pydantic would put it in the schema as a description).
class Location(BaseModel):
    city: str
    temperature: float
    units: Literal["c", "f"]


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    request: dict[str, Any]
    meta: dict[str, Any]

    @property
    def stream(self) -> bool:
        return str(self.meta["content_type"]).startswith("text/event-stream")

    @property
    def n(self) -> int:
        n = self.request.get("n", 1)
        assert isinstance(n, int)
        return n

    @property
    def structured(self) -> bool:
        """The request asked for the `Location` schema (the SDK test's `parse(Location)`)."""
        fmt = self.request.get("response_format")
        return isinstance(fmt, dict) and fmt.get("json_schema", {}).get("name") == "Location"


def load_cases() -> list[Case]:
    out = []
    for directory in sorted(CASES_DIR.glob("*/*")):
        meta = json.loads((directory / "meta.json").read_text())
        out.append(
            Case(
                name=f"{directory.parent.name}/{directory.name}",
                body=(directory / "response.body").read_bytes(),
                request=json.loads((directory / "request.json").read_text()),
                meta=meta,
            )
        )
    return out


def _is_responses(case: Case) -> bool:
    return case.meta.get("endpoint") == "/v1/responses"


# The Chat Completions cases, and the Responses API's (test_realwire_responses.py).
CASES = [case for case in load_cases() if not _is_responses(case)]
RESPONSES_CASES = [case for case in load_cases() if _is_responses(case)]


def loopback(case: Case, split: str | None = None) -> Loopback:
    """A server answering the case's bytes; a stream cut as `split` says (see SPLITS)."""
    sizes = None
    if case.stream:
        if split is None or split == "recorded":
            sizes = recorded_sizes(len(case.body), case.meta.get("chunk_sizes"))
        elif split == "utf8":
            sizes = utf8_sizes(case.body)
        else:
            sizes = random_sizes(len(case.body), int(split.removeprefix("seed")))
    return Loopback(
        case.body, content_type=case.meta["content_type"], status=case.meta["status"], sizes=sizes
    )


# -- the call our model makes -----------------------------------------------------------------

_OPTIONS = (
    "model",
    "logprobs",
    "top_logprobs",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
)


@dataclass
class OurCall:
    """`model.invoke(messages, **options)` (or `stream`) that should send the recording."""

    messages: list[dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    # What the recorded request has that our model does not send, and why (documented
    # differences; everything else must be equal).
    not_sent: dict[str, str] = field(default_factory=dict)


def our_call(case: Case) -> OurCall:
    request = dict(case.request)
    call = OurCall(messages=request.pop("messages"))
    call.stream = bool(request.pop("stream", False))
    if "stream" in case.request and case.request["stream"] is False:
        call.not_sent["stream"] = "false is the default: a non-streamed call sends no 'stream'"
    stream_options = request.pop("stream_options", None)
    if call.stream:
        include = isinstance(stream_options, dict) and stream_options.get("include_usage")
        call.options["stream_usage"] = bool(include)
    n = request.pop("n", None)
    if n is not None:
        call.options["n"] = n
        if n > 1:
            call.not_sent["n"] = "n > 1 is refused before the request: one call, one message"
    for name in _OPTIONS:
        if name in request:
            call.options[name] = request.pop(name)
    if request:  # anything else (e.g. `user`) is a model_kwargs field
        call.options["model_kwargs"] = request
    return call


def expected_request(case: Case, call: OurCall) -> dict[str, Any]:
    """The recorded request without the documented differences."""
    return {k: v for k, v in case.request.items() if k not in call.not_sent}


# -- canonical shapes ---------------------------------------------------------------------------


def bits(value: float) -> object:
    """A float's bit pattern; every NaN is one marker (parsers may differ in its payload)."""
    if math.isnan(value):
        return "nan"
    return struct.pack("<d", value).hex()


def _token(token: str, logprob: float, raw: Sequence[int] | None, tops: Any) -> tuple[Any, ...]:
    return (
        token,
        bits(logprob),
        None if raw is None else list(raw),
        [(t.token, bits(t.logprob), None if t.bytes is None else list(t.bytes)) for t in tops],
    )


def _tokens(items: Any) -> list[tuple[Any, ...]] | None:
    if items is None:
        return None
    return [_token(t.token, t.logprob, t.bytes, t.top_logprobs) for t in items]


def canonical_logprobs(value: ChoiceLogprobs | Any | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"content": _tokens(value.content), "refusal": _tokens(value.refusal)}


def canonical_ours(message: AIMessage) -> dict[str, Any]:
    meta = message.response_metadata
    usage = message.usage_metadata
    for call in message.tool_calls:
        assert call.args == json.loads(call.arguments or "{}")
    calls: list[ToolCall | InvalidToolCall] = [*message.tool_calls, *message.invalid_tool_calls]
    return {
        "content": message.content,
        "refusal": message.refusal,
        "tool_calls": [(c.id, c.name, c.arguments) for c in calls],
        "logprobs": canonical_logprobs(meta.logprobs),
        "finish_reason": meta.finish_reason,
        "usage": None
        if usage is None
        else (usage.input_tokens, usage.output_tokens, usage.total_tokens),
        "id": meta.id,
        "model": meta.model_name,
        "system_fingerprint": meta.system_fingerprint,
    }


def canonical_sdk_message(
    *,
    content: str | None,
    refusal: str | None,
    tool_calls: Sequence[tuple[str | None, str | None, str]],
    logprobs: Any,
    finish_reason: str | None,
    usage: Any,
    id: str | None,
    model: str | None,
    system_fingerprint: str | None,
) -> dict[str, Any]:
    return {
        # Our one normalisation: `content: null` is "" (AIMessage.content is a string).
        "content": content or "",
        "refusal": refusal,
        "tool_calls": list(tool_calls),
        "logprobs": canonical_logprobs(logprobs),
        "finish_reason": finish_reason,
        "usage": None
        if usage is None
        else (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),
        "id": id,
        "model": model,
        "system_fingerprint": system_fingerprint,
    }
