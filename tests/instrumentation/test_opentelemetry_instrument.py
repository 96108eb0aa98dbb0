"""`opentelemetry-instrument python app.py`: logprob telemetry with no code, as users run it.

Each test runs an app that knows nothing of logprobscope in a subprocess under
`opentelemetry-instrument`, with exporters chosen by OTEL_* variables only (the console
exporter here; OTLP into Phoenix in tests/e2e/test_zero_code_phoenix.py), against a replay
server, and reads the spans back from what the exporter printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from logprobscope import _contract as n
from logprobscope.testing import ReplayServer
from tests.support.zero_code import LANGCHAIN_APP, RAW_APP, Run, event_logprobs, run_instrumented

pytestmark = pytest.mark.timeout(180)


def _assert_one_span_per_call(run: Run, *, streams: list[bool]) -> None:
    spans = run.spans("chat gpt-4o")
    assert [s["name"] for s in run.spans()] == ["chat gpt-4o"] * len(run.calls), [
        s["name"] for s in run.spans()
    ]
    for call, span, stream in zip(run.calls, spans, streams, strict=True):
        assert call["logprobs"], call
        assert event_logprobs(span) == call["logprobs"], call["call"]
        attributes = span["attributes"]
        assert attributes[n.GEN_AI_REQUEST_STREAM] is stream
        assert attributes[n.LOGPROBS_TOKEN_COUNT] == len(call["logprobs"])
        assert span["kind"] == "SpanKind.CLIENT"
        assert span["resource"]["attributes"]["service.name"] == "zero-code-app"


def test_a_raw_openai_app(server: ReplayServer, tmp_path: Path) -> None:
    run = run_instrumented(
        RAW_APP,
        base_url=server.base_url,
        workdir=tmp_path,
        env={"OTEL_METRICS_EXPORTER": "console"},
    )
    assert [c["call"] for c in run.calls] == ["invoke", "stream", "left early", "async stream"]
    _assert_one_span_per_call(run, streams=[False, True, True, True])
    completed = [s["attributes"].get(n.LOGPROBS_STREAM_COMPLETED) for s in run.spans("chat gpt-4o")]
    assert completed == [None, True, False, True]
    assert {
        n.METRIC_RESPONSE_PERPLEXITY,
        n.METRIC_RESPONSE_MIN_PROBABILITY,
        n.GEN_AI_CLIENT_OPERATION_DURATION,
    } <= run.metric_names()


def test_a_langchain_app(server: ReplayServer, tmp_path: Path) -> None:
    # Both of our instrumentors load; each LangChain run is recorded once, by the handler.
    run = run_instrumented(LANGCHAIN_APP, base_url=server.base_url, workdir=tmp_path)
    assert [c["call"] for c in run.calls] == ["invoke", "stream", "chain", "async stream"]
    _assert_one_span_per_call(run, streams=[False, True, False, True])


@pytest.mark.parametrize(
    ("disabled", "app", "spans"),
    [
        (n.INSTRUMENTOR_OPENAI, RAW_APP, 0),
        (n.INSTRUMENTOR_LANGCHAIN, RAW_APP, 4),
        (f"{n.INSTRUMENTOR_LANGCHAIN},{n.INSTRUMENTOR_OPENAI}", LANGCHAIN_APP, 0),
    ],
)
def test_disabled_instrumentations_are_left_out(
    server: ReplayServer, tmp_path: Path, disabled: str, app: Path, spans: int
) -> None:
    run = run_instrumented(
        app,
        base_url=server.base_url,
        workdir=tmp_path,
        env={"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": f"openai, langchain, {disabled}"},
    )
    assert len(run.spans("chat gpt-4o")) == spans


@pytest.mark.parametrize("capture", ["true", "false"])
def test_content_capture_follows_the_variable(
    server: ReplayServer, tmp_path: Path, capture: str
) -> None:
    run = run_instrumented(
        RAW_APP,
        base_url=server.base_url,
        workdir=tmp_path,
        env={n.ENV_CAPTURE_CONTENT: capture, n.ENV_EVENTS: "batched"},
    )
    [invoke, *_] = run.spans("chat gpt-4o")
    assert invoke["attributes"][n.LOGPROBS_EVENTS_MODE] == "batched"
    [batch] = [e for e in invoke["events"] if e["name"] == n.EVENT_TOKENS]
    assert batch["attributes"][n.TOKENS_LOGPROBS] == run.calls[0]["logprobs"]
    assert (n.TOKENS_TEXTS in batch["attributes"]) is (capture == "true")
    assert (n.GEN_AI_INPUT_MESSAGES in invoke["attributes"]) is (capture == "true")


@pytest.mark.parametrize("app", [RAW_APP, LANGCHAIN_APP], ids=["raw-openai", "langchain"])
def test_next_to_opentelemetry_genai_instrumentations(
    server: ReplayServer, tmp_path: Path, app: Path
) -> None:
    # opentelemetry-instrument loads theirs too (installed from PyPI): still one chat span
    # per call, theirs, with our logprob events on it.
    run = run_instrumented(
        app,
        base_url=server.base_url,
        workdir=tmp_path,
        env={"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ""},
    )
    chats = run.spans("chat gpt-4o")
    assert len(chats) == len(run.calls), [s["name"] for s in run.spans()]
    for call, span in zip(run.calls, chats, strict=True):
        assert event_logprobs(span) == call["logprobs"], call["call"]
        attributes = span["attributes"]
        assert attributes["gen_ai.provider.name"] == "openai"
        assert attributes[n.LOGPROBS_TOKEN_COUNT] == len(call["logprobs"])
