"""Content capture: off by default (no text of the prompt or the answer anywhere in the
export), on through the handler's flag or the standard environment variable."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from logprobscope import HumanMessage, SystemMessage
from logprobscope.otel import LogprobTelemetry, ResponseFacts
from logprobscope.testing import Completion, make_completion
from tests.support.factories import ModelFactory, ServerFactory
from tests.support.otel import InMemoryOtel, all_strings, reassemble

ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
WORDS = ["Zebra", " quokka", " ferret", "ñandú", " wombat", "!"]
PROMPT = "Secret prompt about axolotls"
SYSTEM = "Confidential system instructions"


def _completion() -> Completion:
    return make_completion(WORDS, k=3, seed=5)


def _texts(completion: Completion) -> set[str]:
    entries: list[dict[str, Any]] = completion["choices"][0]["logprobs"]["content"]  # type: ignore[index]
    texts = {e["token"] for e in entries}
    texts |= {a["token"] for e in entries for a in e["top_logprobs"]}
    return texts | {"".join(WORDS), PROMPT, SYSTEM}


def _run(
    otel: InMemoryOtel,
    make_server: ServerFactory,
    make_model: ModelFactory,
    **options: Any,
) -> None:
    server = make_server([_completion()])
    model = make_model(server, logprobs=True, top_logprobs=3)
    handler = otel.handler(**options)
    messages = [SystemMessage(content=SYSTEM), HumanMessage(content=PROMPT)]
    list(model.stream(messages, callbacks=[handler]))
    model.invoke(messages, callbacks=[handler])
    model_batched = otel.handler(events="batched", **options)
    list(model.stream(messages, callbacks=[model_batched]))


def _export_strings(otel: InMemoryOtel) -> list[str]:
    strings: list[str] = []
    for span in otel.spans():
        strings.extend(all_strings(span))
    for metric in otel.metrics().values():
        strings.append(metric.name)
        for point in metric.data.data_points:
            for key, value in (point.attributes or {}).items():
                strings.extend([key, str(value)])
    return strings


def _assert_exported_tokens(otel: InMemoryOtel) -> None:
    """The three calls were recorded, every token with its logprob (text or not)."""
    spans = otel.spans()
    assert len(spans) == 3
    for span in spans:
        assert len(reassemble(span.events)) == len(WORDS)


def test_off_by_default_nothing_anywhere(
    otel: InMemoryOtel,
    make_server: ServerFactory,
    make_model: ModelFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    _run(otel, make_server, make_model)
    assert len(otel.spans()) == 3
    strings = _export_strings(otel)
    leaked = {s for s in strings if s in _texts(_completion())}
    assert not leaked
    for word in ("Zebra", "quokka", "ferret", "ñandú", "wombat", "axolotl", "Confidential"):
        assert not [s for s in strings if word in s], word
    for span in otel.spans():
        attrs = span.attributes or {}
        assert "gen_ai.input.messages" not in attrs and "gen_ai.output.messages" not in attrs
        for event in span.events:
            keys = set(event.attributes or {})
            assert not keys & {
                "logprobs.token.text",
                "logprobs.token.bytes",
                "logprobs.token.top_tokens",
                "logprobs.tokens.texts",
                "logprobs.tokens.top_tokens",
            }


@pytest.mark.parametrize("value", ["true", "TRUE", "span_only"])
def test_on_through_the_environment(
    otel: InMemoryOtel,
    make_server: ServerFactory,
    make_model: ModelFactory,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
) -> None:
    monkeypatch.setenv(ENV, value)
    _run(otel, make_server, make_model)
    assert "ñandú" in _export_strings(otel)


@pytest.mark.parametrize("value", ["false", "", "no_content", "1"])
def test_env_values_that_keep_it_off(
    otel: InMemoryOtel,
    make_server: ServerFactory,
    make_model: ModelFactory,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
) -> None:
    monkeypatch.setenv(ENV, value)
    _run(otel, make_server, make_model)
    _assert_exported_tokens(otel)  # so that the text's absence means something
    assert "ñandú" not in _export_strings(otel)


def test_the_flag_wins_over_the_environment(
    otel: InMemoryOtel,
    make_server: ServerFactory,
    make_model: ModelFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, "true")
    _run(otel, make_server, make_model, capture_content=False)
    _assert_exported_tokens(otel)
    assert "ñandú" not in _export_strings(otel)


def test_on_with_the_flag(
    otel: InMemoryOtel,
    make_server: ServerFactory,
    make_model: ModelFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    _run(otel, make_server, make_model, capture_content=True)
    completion = _completion()
    entries: list[dict[str, Any]] = completion["choices"][0]["logprobs"]["content"]  # type: ignore[index]
    stream_span, invoke_span, batched_span = otel.spans()
    for span in (stream_span, invoke_span, batched_span):
        tokens = reassemble(span.events)
        assert [t.text for t in tokens] == WORDS
        assert [t.top_tokens for t in tokens] == [
            tuple(a["token"] for a in e["top_logprobs"]) for e in entries
        ]
        attrs = span.attributes or {}
        inputs = json.loads(str(attrs["gen_ai.input.messages"]))
        assert inputs == [
            {"role": "system", "parts": [{"type": "text", "content": SYSTEM}]},
            {"role": "user", "parts": [{"type": "text", "content": PROMPT}]},
        ]
        outputs = json.loads(str(attrs["gen_ai.output.messages"]))
        assert outputs == [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": "".join(WORDS)}],
                "finish_reason": "stop",
            }
        ]
    assert len(stream_span.events) == len(entries)
    for event, sent in zip(stream_span.events, entries, strict=True):
        attrs = event.attributes or {}
        text = str(attrs["logprobs.token.text"])
        # The server's bytes are each text's own UTF-8: the text says it all, so they are
        # not repeated (they are written only when they differ).
        assert list(text.encode("utf-8")) == sent["bytes"]
        assert "logprobs.token.bytes" not in attrs
    # metrics never carry content, capture or not
    for metric in otel.metrics().values():
        for point in metric.data.data_points:
            values = {str(v) for v in (point.attributes or {}).values()}
            assert not values & _texts(completion)


@pytest.mark.parametrize("events", ["tokens", "batched"])
def test_lone_surrogates_never_reach_the_exporter(otel: InMemoryOtel, events: str) -> None:
    # The LangChain and raw-SDK entry points hand over the stdlib's decoding, where an
    # escaped lone surrogate survives; the OTLP encoder refuses it, which would lose the
    # whole export batch (every other call's spans in it). With capture on it is U+FFFD.
    core = LogprobTelemetry(
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
        capture_content=True,
        events=events,  # type: ignore[arg-type]
    )
    call = core.start_call(
        model="m",
        stream=True,
        params={"logprobs": True, "top_logprobs": 1},
        input_messages=[{"role": "user", "content": "q\ud800"}],
    )
    entry = {"token": "\udfff", "logprob": -0.5, "bytes": [237, 191, 191]}
    entry["top_logprobs"] = [{"token": "x\ud800", "logprob": -0.5}]
    call.set_response(ResponseFacts(id="id\ud800", model="m\ud800", finish_reasons=["s"]))
    call.add_tokens([entry, {**entry, "token": "ok"}], time_ns=1)
    call.set_response(ResponseFacts(output_text="a\ud800"))
    call.end(completed=True)
    span = otel.span()
    encode_spans([span]).SerializeToString()  # raises UnicodeEncodeError on a surrogate
    texts = all_strings(span)
    assert not [t for t in texts if any("\ud800" <= c <= "\udfff" for c in t)]
    tokens = reassemble(span.events)
    assert [t.text for t in tokens] == ["\ufffd", "ok"]
    assert [t.top_tokens for t in tokens] == [("x\ufffd",), ("x\ufffd",)]
    attributes = span.attributes or {}
    assert attributes["gen_ai.response.id"] == "id\ufffd"
    assert "q\ufffd" in str(attributes["gen_ai.input.messages"])
    assert "a\ufffd" in str(attributes["gen_ai.output.messages"])
