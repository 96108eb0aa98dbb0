"""End to end: configure_telemetry's OTLP/HTTP exporter into a real Arize Phoenix.

A 2,000-token stream goes through our ChatOpenAI with the OpenTelemetry handler under the
SDK's default span limits (128 events); the span read back from Phoenix's REST API must hold
all 2,000 logprobs and their top alternatives.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import SpanLimits

from logprobscope import ChatOpenAI
from logprobscope.otel import OpenTelemetryCallbackHandler, TelemetryHandle, configure_telemetry
from logprobscope.testing import Faults, ReplayServer, make_completion
from tests.e2e.receivers import PhoenixHandle
from tests.support.otel import reassemble

pytestmark = pytest.mark.e2e

N_TOKENS = 2000


@pytest.fixture
def project(monkeypatch: pytest.MonkeyPatch) -> str:
    """A Phoenix project of this test's own (resource attribute from the standard variable)."""
    name = f"logprobscope-e2e-{uuid.uuid4().hex[:8]}"
    for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={name}")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")  # Phoenix receives traces only
    return name


@pytest.fixture
def telemetry(phoenix: PhoenixHandle, project: str) -> Iterator[TelemetryHandle]:
    assert SpanLimits().max_events == 128, "OTEL_SPAN_EVENT_COUNT_LIMIT is set"
    handle = configure_telemetry(
        service_name="logprobscope-e2e",
        otlp_endpoint=phoenix.otlp_traces_endpoint,
        set_global=False,
    )
    yield handle
    handle.shutdown()


def _trace_id(span: Any) -> str:
    return format(span.get_span_context().trace_id, "032x")


def test_2000_token_stream_arrives_whole(
    phoenix: PhoenixHandle,
    project: str,
    telemetry: TelemetryHandle,
) -> None:
    completion = make_completion([f" w{i}" for i in range(N_TOKENS)], k=3, seed=2024)
    entries: list[dict[str, Any]] = completion["choices"][0]["logprobs"]["content"]  # type: ignore[index]
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    tracer = telemetry.tracer_provider.get_tracer("e2e")
    with ReplayServer([completion]) as server:
        model = ChatOpenAI(
            model="gpt-4o", logprobs=True, top_logprobs=3, base_url=server.base_url, api_key="k"
        )
        with tracer.start_as_current_span("request") as request:
            chunks = list(model.stream("write a lot", callbacks=[handler]))
    assert len(chunks) > N_TOKENS
    assert handler.active_calls == 0
    assert telemetry.force_flush(30_000)

    spans = phoenix.spans(project, min_count=2, trace_id=_trace_id(request), timeout=60)
    by_name = {str(s["name"]): s for s in spans}
    chat, parent = by_name["chat gpt-4o"], by_name["request"]
    assert chat["parent_id"] == parent["context"]["span_id"]  # type: ignore[index]
    assert chat["status_code"] in ("UNSET", "OK")
    attributes = chat["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.response.model"] == completion["model"]
    assert attributes["gen_ai.usage.output_tokens"] == N_TOKENS
    assert attributes["logprobs.token_count"] == N_TOKENS
    assert attributes["logprobs.top_logprobs"] == 3
    assert attributes["logprobs.stream.completed"] is True
    assert attributes["logprobs.events.mode"] == "batched"
    assert "logprobs.events.dropped" not in attributes
    assert attributes["logprobs.min"] == min(e["logprob"] for e in entries)
    assert not [k for k in attributes if k.startswith("gen_ai.input") or "text" in k]

    events = chat["events"]
    assert isinstance(events, list) and len(events) <= 128
    tokens = reassemble(events)
    assert [t.logprob for t in tokens] == [e["logprob"] for e in entries]
    assert [t.top_logprobs for t in tokens] == [
        tuple(a["logprob"] for a in e["top_logprobs"]) for e in entries
    ]
    assert all(t.text is None for t in tokens)  # content capture is off by default


def test_failed_call_arrives_as_error(
    phoenix: PhoenixHandle,
    project: str,
    telemetry: TelemetryHandle,
) -> None:
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    tracer = telemetry.tracer_provider.get_tracer("e2e")
    with ReplayServer(faults=Faults(status=500)) as server:
        model = ChatOpenAI(
            model="gpt-4o", logprobs=True, base_url=server.base_url, api_key="k", max_retries=0
        )
        with tracer.start_as_current_span("request") as request:
            with pytest.raises(openai.InternalServerError):
                model.invoke("hi", callbacks=[handler])
    assert telemetry.force_flush(30_000)
    spans = phoenix.spans(project, min_count=2, trace_id=_trace_id(request), timeout=60)
    [chat] = [s for s in spans if s["name"] == "chat gpt-4o"]
    assert chat["status_code"] == "ERROR"
    assert chat["attributes"]["error.type"] == "openai.InternalServerError"  # type: ignore[index]
    events = chat["events"]
    assert isinstance(events, list)
    assert [e["name"] for e in events] == ["exception"]
