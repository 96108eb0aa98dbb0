"""The telemetry core's public way in: options, token input of every shape, response facts,
and the call as a context manager."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Generator
from typing import Any

import pytest
from openai.types.chat import ChatCompletionTokenLogprob
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from logprobscope import TokenLogprob
from logprobscope._logprobs import TokenLogprobList
from logprobscope.otel import (
    CallTelemetry,
    LogprobTelemetry,
    ResponseFacts,
    TelemetryKwargs,
    TelemetryOptions,
)
from logprobscope.otel._input import TokenColumns
from tests.support.otel import InMemoryOtel

ENTRIES: list[dict[str, Any]] = [
    {
        "token": "Hé",
        "logprob": -0.25,
        "bytes": [72, 195, 169],
        "top_logprobs": [
            {"token": "Hé", "logprob": -0.25, "bytes": [72, 195, 169]},
            {"token": "Yo", "logprob": -1.5, "bytes": [89, 111]},
        ],
    },
    {"token": "!", "logprob": -2.0, "bytes": None, "top_logprobs": []},
]


def _core(otel: InMemoryOtel, **options: Any) -> LogprobTelemetry:
    return LogprobTelemetry(
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
        **options,
    )


def _events(span: ReadableSpan) -> list[tuple[str, dict[str, Any]]]:
    return [(e.name, dict(e.attributes or {})) for e in span.events]


# -- options ---------------------------------------------------------------------------------


def test_options_defaults_and_validation() -> None:
    options = TelemetryOptions()
    assert (options.events, options.low_confidence_threshold) == ("tokens", 0.5)
    assert options.capture_content is None
    assert options.tracer_provider is None and options.meter_provider is None
    assert TelemetryOptions(low_confidence_threshold=1).low_confidence_threshold == 1.0
    assert isinstance(TelemetryOptions(low_confidence_threshold=1).low_confidence_threshold, float)
    with pytest.raises(
        ValueError, match="^events must be one of tokens, batched, low_confidence, none, not 'all'$"
    ):
        TelemetryOptions(events="all")  # type: ignore[arg-type]
    for bad in (-0.1, 1.5, math.nan, True, "0.5"):
        with pytest.raises(ValueError, match=r"^low_confidence_threshold must be a probability"):
            TelemetryOptions(low_confidence_threshold=bad)  # type: ignore[arg-type]


def test_options_are_frozen_and_positional_arguments_are_refused() -> None:
    options = TelemetryOptions(events="batched")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.events = "none"  # type: ignore[misc]
    with pytest.raises(TypeError):
        TelemetryOptions(None)  # type: ignore[call-arg]
    assert options == TelemetryOptions(events="batched")


def test_the_keyword_options_are_the_options_fields() -> None:
    fields = [f.name for f in dataclasses.fields(TelemetryOptions)]
    assert list(TelemetryKwargs.__annotations__) == fields


def test_telemetry_from_options_or_keywords(
    otel: InMemoryOtel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "True")
    by_keywords = _core(otel, events="batched", low_confidence_threshold=0.25)
    by_options = LogprobTelemetry(
        TelemetryOptions(
            tracer_provider=otel.tracer_provider,
            meter_provider=otel.meter_provider,
            events="batched",
            low_confidence_threshold=0.25,
        )
    )
    # The options in effect: content capture resolved from the environment, now.
    assert by_keywords.options == by_options.options
    assert by_keywords.options.capture_content is True and by_keywords.capture_content is True
    assert (by_keywords.events, by_keywords.low_confidence_threshold) == ("batched", 0.25)
    with pytest.raises(TypeError, match="not both"):
        LogprobTelemetry(TelemetryOptions(), events="none")


def test_shared_or_new(otel: InMemoryOtel) -> None:
    shared = _core(otel)
    assert LogprobTelemetry.shared_or_new(shared) is shared
    made = LogprobTelemetry.shared_or_new(None, events="none")
    assert made is not shared and made.events == "none"
    with pytest.raises(TypeError, match=r"^pass telemetry= or its options \(events\), not both$"):
        LogprobTelemetry.shared_or_new(shared, events="none")


# -- tokens in every shape -------------------------------------------------------------------


def _shapes() -> dict[str, tuple[Any, Any]]:
    """The same two chunks of tokens in each shape an entry point may have them in."""
    first, rest = ENTRIES[:1], ENTRIES[1:]
    return {
        "json": (first, rest),
        "ours": (TokenLogprobList.from_json(first), TokenLogprobList.from_json(rest)),
        "models": (
            [TokenLogprob.model_validate(e) for e in first],
            [TokenLogprob.model_validate(e) for e in rest],
        ),
        "sdk": (
            [ChatCompletionTokenLogprob.model_validate(e) for e in first],
            [ChatCompletionTokenLogprob.model_validate(e) for e in rest],
        ),
    }


@pytest.mark.parametrize("events", ["tokens", "batched"])
def test_every_shape_of_tokens_gives_the_same_telemetry(
    otel: InMemoryOtel, events: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied: list[int] = []
    original = TokenColumns.append

    def spy(self: TokenColumns, tokens: object) -> Any:
        copied.append(1)
        return original(self, tokens)

    monkeypatch.setattr(TokenColumns, "append", spy)
    seen: dict[str, tuple[list[Any], dict[str, Any]]] = {}
    copies: dict[str, int] = {}
    for name, (first, rest) in _shapes().items():
        pipeline = otel.new()
        core = _core(pipeline, events=events, capture_content=True)
        copied.clear()
        with core.start_call(model="m", stream=True, params={}) as call:
            call.add_tokens(first, time_ns=1_000)
            call.add_tokens(rest, time_ns=2_000)
        copies[name] = len(copied)
        span = pipeline.span()
        attributes = dict(span.attributes or {})
        attributes.pop("gen_ai.response.time_to_first_chunk")
        seen[name] = (_events(span), attributes)
    assert seen["json"] == seen["ours"] == seen["models"] == seen["sdk"]
    # Our own lists are read in place; every other shape is copied into columns once.
    assert copies == {"json": 2, "ours": 0, "models": 2, "sdk": 2}
    events_seen, attributes = seen["ours"]
    assert attributes["logprobs.token_count"] == 2
    if events == "tokens":
        assert events_seen == [
            (
                "logprobs.token",
                {
                    "logprobs.token.index": 0,
                    "logprobs.token.line": "p=0.7788 'Hé'",
                    "logprobs.token.logprob": -0.25,
                    "logprobs.token.probability": 0.7788,
                    "logprobs.token.top_logprobs": (-0.25, -1.5),
                    "logprobs.token.text": "Hé",  # bytes [72, 195, 169]: its UTF-8, not repeated
                    "logprobs.token.top_tokens": ("Hé", "Yo"),
                },
            ),
            (
                "logprobs.token",
                {
                    "logprobs.token.index": 1,
                    "logprobs.token.line": "p=0.1353 '!'",
                    "logprobs.token.logprob": -2.0,
                    "logprobs.token.probability": 0.1353,
                    "logprobs.token.text": "!",
                },
            ),
        ]
    else:
        [(name, batch), (least_name, least)] = events_seen
        assert name == "logprobs.tokens"
        assert batch["logprobs.tokens.logprobs"] == (-0.25, -2.0)
        assert batch["logprobs.tokens.texts"] == ("Hé", "!")
        # The least likely token (p = 0.135, below the threshold) once more, on its own.
        assert least_name == "logprobs.token"
        assert (least["logprobs.token.index"], least["logprobs.token.text"]) == (1, "!")


def test_malformed_tokens_are_kept_as_far_as_they_make_sense(
    otel: InMemoryOtel, caplog: pytest.LogCaptureFixture
) -> None:
    class Unreadable:
        @property
        def logprob(self) -> float:
            raise RuntimeError("no")

    class Odd:
        token = 7
        logprob = "-1.5"
        bytes = (104, 105)
        top_logprobs = ({"token": "a", "logprob": None}, 3)

    tokens: list[Any] = [
        {"logprob": "x"},  # no token, no number
        None,  # not an entry: skipped
        Unreadable(),  # fields that cannot be read: skipped
        Odd(),
        {"token": "b", "logprob": -1.0, "bytes": "zz", "top_logprobs": "zz"},
    ]
    core = _core(otel, capture_content=True)
    with core.start_call(model="m", stream=False, params={}) as call:
        call.add_tokens(tokens, time_ns=1)
        call.add_tokens(ENTRIES, time_ns=2)  # later tokens stay aligned
    events = _events(otel.span())
    assert [e["logprobs.token.index"] for _, e in events] == [0, 1, 2, 3, 4]
    assert [e.get("logprobs.token.text") for _, e in events] == ["", "7", "b", "Hé", "!"]
    first, odd, malformed, *_ = (e for _, e in events)
    assert math.isnan(first["logprobs.token.logprob"])
    assert odd["logprobs.token.logprob"] == -1.5
    assert odd["logprobs.token.bytes"] == (104, 105)
    assert math.isnan(odd["logprobs.token.top_logprobs"][0])
    assert odd["logprobs.token.top_tokens"] == ("a",)
    assert (
        "logprobs.token.bytes" not in malformed and "logprobs.token.top_logprobs" not in malformed
    )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_anything_but_a_sequence_of_tokens_adds_none(otel: InMemoryOtel) -> None:
    core = _core(otel)
    with core.start_call(model="m", stream=True, params={}) as call:
        for junk in ("text", b"bytes", {"token": "x", "logprob": -1.0}, 42, None):
            call.add_tokens(junk, time_ns=1)  # type: ignore[arg-type]
        assert call.token_count == 0
    assert otel.span().events == ()


# -- response facts --------------------------------------------------------------------------


def test_response_facts_are_a_frozen_value() -> None:
    facts = ResponseFacts(id="r", finish_reasons=["stop", "length"])
    assert facts.finish_reasons == ("stop", "length")
    assert facts == ResponseFacts(id="r", finish_reasons=("stop", "length"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.id = "s"  # type: ignore[misc]
    with pytest.raises(TypeError, match="not one string"):
        ResponseFacts(finish_reasons="stop")
    with pytest.raises(TypeError):
        ResponseFacts("r")  # type: ignore[call-arg]


def test_response_facts_add_up(otel: InMemoryOtel) -> None:
    core = _core(otel, capture_content=True)
    call = core.start_call(model="m", stream=False, params={})
    call.set_response(ResponseFacts(id="r1", model="m-1"))
    assert call.response_model == "m-1"
    call.set_response(ResponseFacts(finish_reasons=["stop"], input_tokens=3, output_tokens=2))
    call.set_response(ResponseFacts(id="r2", output_text="Hi"))
    call.end()
    call.set_response(ResponseFacts(model="late"))  # after the end: ignored
    attributes = otel.span().attributes or {}
    assert attributes["gen_ai.response.id"] == "r2"
    assert attributes["gen_ai.response.model"] == "m-1"
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (
        3,
        2,
    )
    assert attributes["gen_ai.output.messages"] == (
        '[{"role": "assistant", "parts": [{"type": "text", "content": "Hi"}], '
        '"finish_reason": "stop"}]'
    )


def test_malformed_facts_never_raise(otel: InMemoryOtel, caplog: pytest.LogCaptureFixture) -> None:
    call = _core(otel).start_call(model="m", stream=False, params={})
    call.set_response(ResponseFacts(id=17, model="m-1"))  # type: ignore[arg-type]
    call.end()
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "set_response" in warning.getMessage()
    assert "gen_ai.response.model" not in (otel.span().attributes or {})


# -- the call as a context manager -----------------------------------------------------------


class Boom(RuntimeError):
    pass


def test_leaving_the_block_ends_the_call(otel: InMemoryOtel) -> None:
    core = _core(otel)
    with core.start_call(model="m", stream=True, params={}) as call:
        assert isinstance(call, CallTelemetry) and not call.ended
        call.add_tokens(ENTRIES, time_ns=1)
    assert call.ended
    span = otel.span()
    assert span.status.status_code is StatusCode.UNSET
    assert (span.attributes or {})["logprobs.stream.completed"] is True
    with core.start_call(model="m", stream=False, params={}):
        pass
    assert "logprobs.stream.completed" not in (otel.spans()[1].attributes or {})


def test_an_exception_fails_the_call_and_propagates_unchanged(otel: InMemoryOtel) -> None:
    core = _core(otel)
    error = Boom("upstream")
    with pytest.raises(Boom) as caught:
        with core.start_call(model="m", stream=True, params={}) as call:
            call.add_tokens(ENTRIES, time_ns=1)
            raise error
    assert caught.value is error
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "upstream"
    attributes = span.attributes or {}
    assert attributes["error.type"] == f"{__name__}.Boom"
    assert attributes["logprobs.stream.completed"] is False
    assert [e.name for e in span.events] == ["logprobs.token", "logprobs.token", "exception"]


def test_a_generator_left_early_is_not_a_failure(otel: InMemoryOtel) -> None:
    core = _core(otel)

    def chunks() -> Generator[int, None, None]:
        with core.start_call(model="m", stream=True, params={}) as call:
            for i, entry in enumerate(ENTRIES):
                call.add_tokens([entry], time_ns=i)
                yield i

    stream = chunks()
    assert next(stream) == 0
    stream.close()
    span = otel.span()
    assert span.status.status_code is StatusCode.UNSET
    assert (span.attributes or {})["logprobs.stream.completed"] is False
    assert [e.name for e in span.events] == ["logprobs.token"]


def test_an_explicit_end_inside_the_block_ends_once(
    otel: InMemoryOtel, caplog: pytest.LogCaptureFixture
) -> None:
    core = _core(otel)
    with pytest.raises(Boom):
        with core.start_call(model="m", stream=True, params={}) as call:
            call.end(completed=False)
            raise Boom("after the end")
    span = otel.span()  # one span, ended by the explicit end
    assert span.status.status_code is StatusCode.UNSET
    assert (span.attributes or {})["logprobs.stream.completed"] is False
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_disabled_call_is_a_context_manager_too() -> None:
    with CallTelemetry._disabled() as call:
        call.add_tokens(ENTRIES)
    with pytest.raises(Boom), CallTelemetry._disabled():
        raise Boom("still propagates")
