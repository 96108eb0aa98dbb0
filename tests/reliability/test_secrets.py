"""Nothing private leaves the process: the API key and the `Authorization` header never appear
in spans, events, resources, metrics, our logs, the OTLP JSON file, the HTML report or the
errors the user sees; with content capture off, no token, prompt or alternative text either.

Every entry point is driven (our `ChatOpenAI` with `OpenTelemetryCallbackHandler`, LangChain's
`ChatOpenAI` with `LogprobsCallbackHandler`, a raw client under `instrument_openai`), invoked,
streamed and failing (HTTP 500, no retries), and then every exported byte is scanned.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import openai
import pytest
from langchain_openai import ChatOpenAI as LangChainChatOpenAI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from logprobscope import ChatOpenAI
from logprobscope.instrument import instrument_openai
from logprobscope.langchain import LogprobsCallbackHandler
from logprobscope.otel import OpenTelemetryCallbackHandler
from logprobscope.report import OTLPJsonFileSpanExporter, read_traces, render_html
from logprobscope.testing import Faults, ReplayServer, make_completion
from tests.support.otel import InMemoryOtel

pytestmark = pytest.mark.timeout(120)

KEY = "sk-logprobscope-SECRET-1234567890"
HEADER_KEY = "sk-logprobscope-HEADER-0987654321"
SECRETS = (KEY, HEADER_KEY, "SECRET-1234567890", "HEADER-0987654321", "Bearer")

# Distinctive content: none of these strings is an attribute name or a number.
TOKENS = ["Quixotic", "Zephyrine", "Marmalade", "Obsidian", "Lanternfish"]
ALTERNATIVES = [
    [(token, -0.1), (f"Altword{i}a", -2.5), (f"Altword{i}b", -3.5)]
    for i, token in enumerate(TOKENS)
]
PROMPT = "Promptwords Xylograph Vellichor"
CONTENT = (*TOKENS, *(alt for row in ALTERNATIVES for alt, _ in row[1:]), "Xylograph", "Vellichor")
TOP_K = 3


@dataclass
class Capture:
    """Every byte that leaves the process, gathered per test."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    file: Path
    user_errors: list[str] = field(default_factory=list)


@pytest.fixture
def capture(otel: InMemoryOtel, tmp_path: Path) -> Capture:
    file = tmp_path / "traces.jsonl"
    pipeline = otel.new(resource=Resource.create({"service.name": "secrets-test"}))
    pipeline.tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPJsonFileSpanExporter(file)))
    return Capture(
        pipeline.tracer_provider, pipeline.meter_provider, pipeline.exporter, pipeline.reader, file
    )


@pytest.fixture
def servers() -> Iterator[tuple[ReplayServer, ReplayServer]]:
    completion = make_completion(
        [(t, lp) for t, lp in ((row[0][0], row[0][1]) for row in ALTERNATIVES)],
        top_logprobs=ALTERNATIVES,
    )
    with (
        ReplayServer([completion]) as good,
        ReplayServer([completion], faults=Faults(status=500)) as failing,
    ):
        yield good, failing


def _expect_error(capture: Capture, call: Callable[[], object]) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        call()
    error = info.value
    capture.user_errors.append(
        "\n".join([str(error), repr(error), *traceback.format_exception(error)])
    )


def _ours(capture: Capture, server: ReplayServer, failing: ReplayServer, content: bool) -> None:
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=capture.tracer_provider,
        meter_provider=capture.meter_provider,
        capture_content=content,
    )
    for srv in (server, failing):
        # The key by argument, and a client whose Authorization header is set by hand.
        with ChatOpenAI(
            "gpt-4o",
            logprobs=True,
            top_logprobs=TOP_K,
            api_key=KEY,
            base_url=srv.base_url,
            max_retries=0,
            timeout=10.0,
            callbacks=[handler],
        ) as by_key:
            sdk = openai.OpenAI(
                api_key=KEY,
                base_url=srv.base_url,
                max_retries=0,
                default_headers={"Authorization": f"Bearer {HEADER_KEY}"},
            )
            with (
                sdk,
                ChatOpenAI(
                    "gpt-4o", logprobs=True, top_logprobs=TOP_K, client=sdk, callbacks=[handler]
                ) as by_header,
            ):
                for model in (by_key, by_header):
                    if srv is server:
                        result = model.invoke(PROMPT)
                        assert result.content == "".join(TOKENS)
                        assert "".join(str(c.content) for c in model.stream(PROMPT)) == "".join(
                            TOKENS
                        )
                    else:
                        _expect_error(capture, lambda m=model: m.invoke(PROMPT))  # type: ignore[misc]
                        _expect_error(capture, lambda m=model: list(m.stream(PROMPT)))  # type: ignore[misc]
    assert handler.active_calls == 0


def _langchain(
    capture: Capture, server: ReplayServer, failing: ReplayServer, content: bool
) -> None:
    handler = LogprobsCallbackHandler(
        tracer_provider=capture.tracer_provider,
        meter_provider=capture.meter_provider,
        capture_content=content,
    )
    for srv in (server, failing):
        with openai.DefaultHttpxClient() as http:
            model = LangChainChatOpenAI(
                model="gpt-4o",
                base_url=srv.base_url,
                api_key=KEY,  # type: ignore[arg-type]
                max_retries=0,
                timeout=10.0,
                logprobs=True,
                top_logprobs=TOP_K,
                stream_usage=True,
                http_client=http,
                default_headers={"X-Debug-Auth": f"Bearer {HEADER_KEY}"},
                callbacks=[handler],
            )
            if srv is server:
                model.invoke(PROMPT)
                for _ in model.stream(PROMPT):
                    pass
            else:
                _expect_error(capture, lambda m=model: m.invoke(PROMPT))  # type: ignore[misc]
                _expect_error(capture, lambda m=model: list(m.stream(PROMPT)))  # type: ignore[misc]
    assert handler.active_calls == 0


def _raw(capture: Capture, server: ReplayServer, failing: ReplayServer, content: bool) -> None:
    for srv in (server, failing):
        with openai.OpenAI(
            api_key=KEY,
            base_url=srv.base_url,
            max_retries=0,
            default_headers={"X-Debug-Auth": f"Bearer {HEADER_KEY}"},
        ) as client:
            instrument_openai(
                client,
                tracer_provider=capture.tracer_provider,
                meter_provider=capture.meter_provider,
                capture_content=content,
            )

            def create() -> object:
                return client.chat.completions.create(
                    model="gpt-4o",
                    messages=[{"role": "user", "content": PROMPT}],
                    logprobs=True,
                    top_logprobs=TOP_K,
                )

            def stream() -> object:
                chunks = client.chat.completions.create(
                    model="gpt-4o",
                    messages=[{"role": "user", "content": PROMPT}],
                    logprobs=True,
                    top_logprobs=TOP_K,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                return list(chunks)

            if srv is server:
                create()
                stream()
            else:
                _expect_error(capture, create)
                _expect_error(capture, stream)


def _format(record: logging.LogRecord) -> str:
    return logging.Formatter("%(name)s %(levelname)s %(message)s").format(record) + repr(
        record.__dict__
    )


@pytest.mark.parametrize("content", [True, False], ids=["capture-on", "capture-off"])
def test_no_secret_in_any_exported_byte(
    content: bool,
    capture: Capture,
    servers: tuple[ReplayServer, ReplayServer],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.DEBUG, logger="logprobscope")
    caplog.set_level(logging.DEBUG, logger="openai")
    server, failing = servers
    _ours(capture, server, failing, content)
    _langchain(capture, server, failing, content)
    _raw(capture, server, failing, content)

    # The secrets were really sent (else the scan proves nothing).
    sent = [h.get("authorization", "") for h in server.request_headers]
    assert f"Bearer {KEY}" in sent and f"Bearer {HEADER_KEY}" in sent
    assert any(h.get("x-debug-auth") == f"Bearer {HEADER_KEY}" for h in server.request_headers)

    spans = capture.spans.get_finished_spans()
    # Ours: 2 models x (invoke, stream) x (ok, failed); LangChain and raw: 2 ok + 2 failed.
    assert len(spans) == 16, [s.name for s in spans]
    assert sum(1 for s in spans if s.status.status_code.name == "ERROR") == 8
    capture.tracer_provider.force_flush()
    metrics = capture.metrics.get_metrics_data()
    assert metrics is not None
    file_text = capture.file.read_text(encoding="utf-8")
    traces = read_traces(capture.file)
    assert len(traces.calls) == 16
    html = render_html(traces.calls, sources=[str(capture.file)])

    exported: dict[str, str] = {
        "spans": "\n".join(span.to_json() for span in spans),
        "metrics": metrics.to_json(),
        "otlp-json file": file_text,
        "html report": html,
        "user errors": "\n".join(capture.user_errors),
        "logprobscope logs": "\n".join(
            _format(r) for r in caplog.records if r.name.startswith("logprobscope")
        ),
    }
    assert len(capture.user_errors) == 8
    for where, text in exported.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into the {where}"

    # The openai SDK's own DEBUG log is not ours; report if it carries the key, for the record.
    sdk_logs = "\n".join(_format(r) for r in caplog.records if r.name.startswith("openai"))
    assert sdk_logs, "the openai DEBUG logger recorded nothing: is the scan wired up?"
    assert KEY not in sdk_logs and HEADER_KEY not in sdk_logs, "the openai SDK logs the key"

    everything = "\n".join(exported[k] for k in exported if k != "user errors")
    if content:
        # Sanity: content capture on does put the text into the export (so the off check bites).
        assert all(t in exported["spans"] for t in TOKENS)
        assert "Altword0a" in exported["spans"] and "Xylograph" in exported["spans"]
    else:
        for text in CONTENT:
            assert text not in everything, f"{text!r} exported with content capture off"
