"""The page's "Fields" table and "Refusal" tokens, from the OpenTelemetry handler's own spans
written by our exporter: what a structured answer's fields and a refusal look like."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from pydantic import BaseModel

from logprobscope.otel import OpenTelemetryCallbackHandler
from logprobscope.report import ModelCall, OTLPJsonFileSpanExporter, read_traces, render_html
from logprobscope.testing import SEED_STRUCTURED, make_completion
from tests.support.factories import ModelFactory, ServerFactory


class Location(BaseModel):
    city: str
    temperature: float
    units: Literal["c", "f"]


HOSTILE_KEY = "<img src=x onerror=alert(1)>"


def _calls(
    tmp_path: Path, make_server: ServerFactory, make_model: ModelFactory, *, capture: bool
) -> tuple[ModelCall, ...]:
    path = tmp_path / "traces.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPJsonFileSpanExporter(path)))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=provider, meter_provider=meters, capture_content=capture
    )
    hostile = make_completion(['{"', HOSTILE_KEY, '": ', "true", "}"], k=2, seed=3)
    refusal = make_completion(["I'm", " sorry", "."], refusal=True, k=2, seed=4)
    server = make_server([SEED_STRUCTURED, hostile, refusal])
    model = make_model(server, logprobs=True, top_logprobs=2)
    structured = model.with_structured_output(Location)
    for _ in range(3):
        structured.invoke("x", callbacks=[handler])
    provider.shutdown()
    meters.shutdown()
    return read_traces(path).calls


def _section(page: str, number: int) -> str:
    match = re.search(rf'<section class="call" id="call-{number}".*?</section>', page, re.S)
    assert match is not None
    return match.group(0)


def test_fields_table_with_content_capture(
    tmp_path: Path, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    calls = _calls(tmp_path, make_server, make_model, capture=True)
    page = render_html(calls)
    location = _section(page, 0)
    assert "<h3>Fields</h3>" in location
    rows = re.findall(r"<tr><td class=\"mono\">(.*?)</td><td class=\"mono\">(.*?)</td>", location)
    assert rows == [
        ("$.city", "&quot;San Francisco&quot;"),
        ("$.temperature", "65"),
        ("$.units", "&quot;f&quot;"),
    ]
    (units,) = [f for f in calls[0].fields if f.path == "$.units"]
    assert units.alternatives is not None and units.alternatives[0].token is not None
    assert f"&#x27;{units.alternatives[0].token}&#x27;" in location  # the enum's alternatives
    # A key from the model is escaped like any text from the trace.
    hostile = _section(page, 1)
    assert HOSTILE_KEY not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in hostile
    assert "<h3>Fields</h3>" in hostile and "<h3>Refusal</h3>" not in hostile


def test_fields_without_content_capture_show_numbers_only(
    tmp_path: Path, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    calls = _calls(tmp_path, make_server, make_model, capture=False)
    location = _section(render_html(calls), 0)
    values = re.findall(r"<tr><td class=\"mono\">[^<]*</td><td class=\"mono\">(.*?)</td>", location)
    assert values == ["—", "—", "—"]
    assert all(f.value is None for f in calls[0].fields)


def test_refusal_tokens_are_shown_with_their_details(
    tmp_path: Path, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    calls = _calls(tmp_path, make_server, make_model, capture=True)
    page = render_html(calls)
    refused = _section(page, 2)
    assert "<h3>Refusal</h3>" in refused and "<h3>Fields</h3>" not in refused
    assert 'data-call="2" data-stream="refusal"' in refused
    assert "<dt>refusal tokens</dt><dd>3</dd>" in refused
    assert "<dt>content captured</dt><dd>yes</dd>" in refused  # the refusal's texts
    assert "No content tokens: the model refused" in refused
    match = re.search(r'<script type="application/json" id="lps-data">(.*?)</script>', page)
    assert match is not None
    data = json.loads(match.group(1))
    assert [row[2] for row in data["calls"][2]["refusal"]] == ['"I\'m"', "' sorry'", "'.'"]
    assert data["calls"][2]["tokens"] == [] and data["calls"][0]["refusal"] == []
