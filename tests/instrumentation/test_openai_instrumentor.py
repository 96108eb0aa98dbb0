"""OpenAIInstrumentor: instrument_openai() as an OpenTelemetry instrumentor, by entry point."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import openai
import pytest
from openai.resources.chat.completions import AsyncCompletions, Completions

from logprobscope import _contract as n
from logprobscope.instrument import instrument_openai, uninstrument_openai
from logprobscope.instrumentation import LangChainInstrumentor, OpenAIInstrumentor
from logprobscope.otel import LogprobTelemetry
from logprobscope.testing import ReplayServer, make_completion
from tests.support.entry_points import MESSAGES, TOP_K, token_logprobs
from tests.support.otel import InMemoryOtel

pytestmark = pytest.mark.timeout(60)

ORIGINAL_CREATE = Completions.__dict__["create"]
ORIGINAL_ACREATE = AsyncCompletions.__dict__["create"]


def _call(server: ReplayServer, *, stream: bool = False) -> list[float]:
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        if stream:
            chunks = list(
                client.chat.completions.create(
                    model="gpt-4o",
                    messages=MESSAGES,
                    logprobs=True,
                    top_logprobs=TOP_K,
                    stream=True,
                )
            )
            return [
                e.logprob
                for c in chunks
                for ch in c.choices
                if ch.logprobs is not None
                for e in ch.logprobs.content or []
            ]
        result = client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, logprobs=True, top_logprobs=TOP_K
        )
        content = result.choices[0].logprobs
        assert content is not None and content.content
        return [e.logprob for e in content.content]


def test_entry_points_name_both_instrumentors() -> None:
    found = {ep.name: ep for ep in entry_points(group="opentelemetry_instrumentor")}
    assert found[n.INSTRUMENTOR_OPENAI].load() is OpenAIInstrumentor
    assert found[n.INSTRUMENTOR_LANGCHAIN].load() is LangChainInstrumentor
    dist = found[n.INSTRUMENTOR_OPENAI].dist
    assert dist is not None and dist.name == "logprobscope"


def test_a_singleton_with_its_dependencies() -> None:
    assert OpenAIInstrumentor() is OpenAIInstrumentor()
    assert list(OpenAIInstrumentor().instrumentation_dependencies()) == ["openai >= 3.50, < 4"]
    assert not OpenAIInstrumentor().is_instrumented_by_opentelemetry


@pytest.mark.parametrize("stream", [False, True])
def test_instrument_gives_every_call_its_span(
    otel: InMemoryOtel, server: ReplayServer, stream: bool
) -> None:
    OpenAIInstrumentor().instrument(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    assert OpenAIInstrumentor().is_instrumented_by_opentelemetry
    assert Completions.__dict__["create"] is not ORIGINAL_CREATE
    assert AsyncCompletions.__dict__["create"] is not ORIGINAL_ACREATE
    logprobs = _call(server, stream=stream)
    [span] = otel.spans()
    assert span.name == "chat gpt-4o"
    assert token_logprobs(span) == logprobs
    assert dict(span.attributes or {})[n.GEN_AI_REQUEST_STREAM] is stream
    assert "logprobs.response.perplexity" in otel.metric_points()


def test_uninstrument_leaves_the_sdk_as_it_was(otel: InMemoryOtel, server: ReplayServer) -> None:
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=otel.tracer_provider)
    instrumentor.uninstrument()
    assert Completions.__dict__["create"] is ORIGINAL_CREATE
    assert AsyncCompletions.__dict__["create"] is ORIGINAL_ACREATE
    assert not instrumentor.is_instrumented_by_opentelemetry
    _call(server)
    assert otel.spans() == []


def test_the_same_patch_as_instrument_openai(otel: InMemoryOtel, server: ReplayServer) -> None:
    # instrument_openai() after the instrumentor replaces the telemetry, never wraps twice;
    # uninstrument_openai() undoes what the instrumentor did.
    other = otel.new()
    OpenAIInstrumentor().instrument(tracer_provider=otel.tracer_provider)
    instrument_openai(telemetry=LogprobTelemetry(tracer_provider=other.tracer_provider))
    _call(server)
    assert otel.spans() == []
    assert len(other.spans()) == 1
    uninstrument_openai()
    assert Completions.__dict__["create"] is ORIGINAL_CREATE


def test_options_and_a_shared_telemetry(otel: InMemoryOtel) -> None:
    completion = make_completion([f" t{i}" for i in range(5)], k=TOP_K, seed=3)
    with ReplayServer([completion]) as server:
        telemetry = LogprobTelemetry(
            tracer_provider=otel.tracer_provider,
            meter_provider=otel.meter_provider,
            events="batched",
            capture_content=True,
        )
        OpenAIInstrumentor().instrument(telemetry=telemetry, logger_provider=object())
        _call(server)
    [span] = otel.spans()
    attrs = dict(span.attributes or {})
    assert attrs[n.LOGPROBS_EVENTS_MODE] == "batched"
    [event] = [e for e in span.events if e.name == n.EVENT_TOKENS]
    assert list((event.attributes or {})[n.TOKENS_TEXTS]) == [f" t{i}" for i in range(5)]  # type: ignore[arg-type]


def test_a_wrong_telemetry_is_refused(otel: InMemoryOtel) -> None:
    with pytest.raises(TypeError, match="LogprobTelemetry"):
        OpenAIInstrumentor().instrument(telemetry="not telemetry")
    with pytest.raises(TypeError, match="not both"):  # as every entry point says
        OpenAIInstrumentor().instrument(telemetry=otel.telemetry, events="batched")
    with pytest.raises(ValueError, match="events"):
        OpenAIInstrumentor().instrument(events="everything")
    assert Completions.__dict__["create"] is ORIGINAL_CREATE


def test_environment_sets_what_opentelemetry_instrument_cannot_pass(
    otel: InMemoryOtel, server: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(n.ENV_EVENTS, "low_confidence")
    monkeypatch.setenv(n.ENV_LOW_CONFIDENCE_THRESHOLD, "0.999")
    monkeypatch.setenv(n.ENV_CAPTURE_CONTENT, "true")
    OpenAIInstrumentor().instrument(tracer_provider=otel.tracer_provider)
    logprobs = _call(server)
    [span] = otel.spans()
    attrs = dict(span.attributes or {})
    assert attrs[n.LOGPROBS_EVENTS_MODE] == "low_confidence"
    assert attrs[n.LOGPROBS_LOW_CONFIDENCE_THRESHOLD] == 0.999
    low = [lp for lp in logprobs if lp < -0.0010005]  # p < 0.999
    assert 0 < len(low) < len(logprobs)
    assert token_logprobs(span) == low
    assert all(n.TOKEN_TEXT in (e.attributes or {}) for e in span.events)


@pytest.mark.parametrize(
    ("variable", "value"),
    [(n.ENV_EVENTS, "everything"), (n.ENV_LOW_CONFIDENCE_THRESHOLD, "1.5")],
)
def test_a_bad_environment_value_is_logged_and_ignored(
    otel: InMemoryOtel,
    server: ReplayServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.WARNING, logger="logprobscope"):
        OpenAIInstrumentor().instrument(tracer_provider=otel.tracer_provider)
    assert variable in caplog.text
    _call(server)
    [span] = otel.spans()
    attrs = dict(span.attributes or {})
    assert attrs[n.LOGPROBS_EVENTS_MODE] == "tokens"
    assert attrs[n.LOGPROBS_LOW_CONFIDENCE_THRESHOLD] == 0.5
