"""Strange logprobs through the whole path: telemetry core → OTLP JSON file → reader.

For each case the same tokens go into the telemetry core (as a stream, in chunks), whose span
is exported both in memory and, by the project's own exporter, to an OTLP JSON file. Then:

- the reader's figures (span attributes read back) equal the span's attributes, exactly;
- the figures the reader computes from the tokens alone equal them too (NaN/inf aware);
- `logprobscope run`'s summary line and the batch output line say the same;
- the page shows the same perplexity.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from logprobscope import AIMessage, TokenLogprob
from logprobscope import _contract as n
from logprobscope._logprobs import ChoiceLogprobs
from logprobscope._messages import ResponseMetadata
from logprobscope.cli._batch import BatchItem, result_record
from logprobscope.cli._render import Output, fmt_p, print_summary
from logprobscope.otel import EventsMode, LogprobTelemetry, ResponseFacts
from logprobscope.report import ModelCall, OTLPJsonFileSpanExporter, read_traces, render_html

NAN = math.nan
INF = math.inf

# span attribute → the reader's property
FIGURES = {
    "logprobs.sum": "sum_logprob",
    "logprobs.mean": "mean_logprob",
    "logprobs.perplexity": "perplexity",
    "logprobs.min": "min_logprob",
    "logprobs.min_index": "min_index",
    "logprobs.low_confidence.count": "low_confidence_count",
    "logprobs.entropy.mean": "entropy_mean",
    "logprobs.margin.mean": "margin_mean",
}


def _long() -> list[float]:
    # 400 tokens: more than the span's 128 events, so "tokens" mode turns to batches.
    values = [-((i * 7919) % 1000) / 250.0 for i in range(400)]
    values[123] = NAN
    values[250] = -9999.0
    values[311] = 3e-8
    return values


CASES: dict[str, list[float]] = {
    "nan-inside": [-0.1, NAN, -0.2],
    "nan-in-twelve": [-0.4, -2.1, -0.01, -1.2, -3.3, NAN, -0.6, -0.05, -2.8, -0.9, -1.7, -0.2],
    "neg-inf": [-0.5, -INF, -0.1],
    "floor": [-0.01, -9999.0, -0.3, -9999.0],
    "tiny-positive": [1e-7, -0.3, 2e-9],
    "huge-positive": [800.0, -0.2, INF],
    "empty": [],
    "one-token": [-0.7],
    "all-nan": [NAN, NAN],
    "long": _long(),
}


@dataclass
class Traced:
    """One case after the round trip."""

    entries: list[dict[str, object]]
    span: dict[str, object]
    read: ModelCall


def _entries(logprobs: list[float]) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = []
    for i, lp in enumerate(logprobs):
        # Ragged alternatives (4, 3, 2, 1, 0 of them; -inf and NaN among them): batches pad
        # short rows with NaN, which the figures skip.
        alternatives = [lp, lp - 1.3, -INF, NAN][: 4 - i % 5]
        entries.append(
            {
                "token": f" w{i}",
                "logprob": lp,
                "top_logprobs": [
                    {"token": f" a{i}.{j}", "logprob": a} for j, a in enumerate(alternatives)
                ],
            }
        )
    return entries


def _trace(tmp_path: Path, logprobs: list[float], events: EventsMode) -> Traced:
    path = tmp_path / "traces.jsonl"
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(OTLPJsonFileSpanExporter(path)))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    telemetry = LogprobTelemetry(
        tracer_provider=provider,
        meter_provider=meters,
        capture_content=True,
        events=events,
    )
    entries = _entries(logprobs)
    call = telemetry.start_call(
        model="m", stream=True, params={"logprobs": True, "top_logprobs": 4}
    )
    t0 = 1_700_000_000_000_000_000
    for start in range(0, max(1, len(entries)), 7):
        call.add_tokens(entries[start : start + 7], time_ns=t0 + start * 1_000_000)
    call.set_response(ResponseFacts(model="m-1", finish_reasons=["stop"]))
    call.end(completed=True)
    provider.shutdown()
    meters.shutdown()
    (span,) = memory.get_finished_spans()
    (read,) = read_traces(path).calls
    return Traced(entries, dict(span.attributes or {}), read)


def _same(a: object, b: object) -> bool:
    """Equal, NaN equal to NaN, and of the same kind (int stays int)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _json_number(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@pytest.fixture(params=["tokens", "batched"])
def events(request: pytest.FixtureRequest) -> EventsMode:
    mode: EventsMode = request.param
    return mode


@pytest.mark.parametrize("case", list(CASES))
def test_figures_survive_the_round_trip(tmp_path: Path, case: str, events: EventsMode) -> None:
    logprobs = CASES[case]
    traced = _trace(tmp_path, logprobs, events)
    span, read = traced.span, traced.read

    assert read.token_count == span["logprobs.token_count"] == len(logprobs)
    assert read.tokens_complete
    assert [t.text for t in read.tokens] == [e["token"] for e in traced.entries]
    assert all(_same(t.logprob, lp) for t, lp in zip(read.tokens, logprobs, strict=True))
    if case == "long":
        assert span["logprobs.events.mode"] == "batched"
    if case == "nan-inside":
        assert span["logprobs.perplexity"] == pytest.approx(1.1618, abs=1e-4)

    # Read back: the span's attributes.
    for key, name in FIGURES.items():
        assert _same(getattr(read, name), span.get(key)), (key, getattr(read, name), span.get(key))
    # Computed from the tokens alone, as when a trace lacks the attributes.
    bare = replace(read, attributes={k: v for k, v in read.attributes.items() if k not in FIGURES})
    for key, name in FIGURES.items():
        assert _same(getattr(bare, name), span.get(key)), (key, getattr(bare, name), span.get(key))


@pytest.mark.parametrize("case", list(CASES))
def test_cli_and_batch_say_what_the_span_says(tmp_path: Path, case: str) -> None:
    logprobs = CASES[case]
    traced = _trace(tmp_path, logprobs, "tokens")
    span = traced.span
    tokens = [TokenLogprob.model_validate(e) for e in traced.entries]

    # `logprobscope run`'s summary line.
    stream = io.StringIO()
    print_summary(Output(stream, color=False), tokens)
    line = stream.getvalue().splitlines()[0]
    perplexity = span.get("logprobs.perplexity")
    if perplexity is None:
        assert line == "no tokens with logprobs"
    else:
        assert isinstance(perplexity, float)
        mean = span["logprobs.mean"]
        lowest = span["logprobs.min"]
        index = span["logprobs.min_index"]
        assert isinstance(mean, float) and isinstance(lowest, float) and isinstance(index, int)
        uncounted = sum(1 for lp in logprobs if not lp <= 709.0)
        expected = (
            f"── {len(logprobs)} tokens · perplexity {perplexity:.4f} · mean logprob {mean:.4f}"
            f" · min p {fmt_p(math.exp(lowest))} at #{index} ' w{index}'"
        )
        if uncounted:
            expected += f" · {uncounted} without a logprob"
        assert line == expected
        assert "nan" not in stream.getvalue().lower()

    # The batch output line.
    message = AIMessage(
        content="".join(t.token for t in tokens),
        response_metadata=ResponseMetadata(
            logprobs=ChoiceLogprobs(content=tokens), model_name="m-1", finish_reason="stop"
        ),
    )
    record = result_record(BatchItem(1, case, "prompt"), message)
    json.dumps(record, allow_nan=False)  # as the batch writes it
    assert record["token_count"] == span["logprobs.token_count"]
    assert _same(record["perplexity"], _json_number(span.get("logprobs.perplexity")))
    assert _same(record["mean_logprob"], _json_number(span.get("logprobs.mean")))
    assert record["low_confidence_count"] == span.get("logprobs.low_confidence.count", 0)
    if "logprobs.min" in span:
        lowest = span["logprobs.min"]
        assert isinstance(lowest, float)
        assert _same(record["min_probability"], _json_number(math.exp(lowest)))
        assert record["min_token"] == {
            "index": span["logprobs.min_index"],
            "token": f" w{span['logprobs.min_index']}",
        }
    else:
        assert record["min_probability"] is None and record["min_token"] is None

    # The page.
    page = render_html([traced.read])
    if isinstance(perplexity, float):
        shown = "∞" if perplexity == INF else f"{perplexity:.4f}"
        assert f"<dt>perplexity</dt><dd>{shown}</dd>" in page
    else:
        assert "<dt>perplexity</dt><dd>—</dd>" in page


@pytest.mark.parametrize("capture", [False, True])
def test_streams_and_fields_survive_the_round_trip(
    tmp_path: Path, events: EventsMode, capture: bool
) -> None:
    # A structured answer's content, then a refusal, and a second choice: every stream, the
    # refusal's figures and the fields come back from the file as the span had them.
    path = tmp_path / "traces.jsonl"
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(OTLPJsonFileSpanExporter(path)))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    telemetry = LogprobTelemetry(
        tracer_provider=provider, meter_provider=meters, capture_content=capture, events=events
    )
    words = ['{"', "ok", '":', " true", ', "', "n", '":', " 4", "2", "}"]
    content = [
        {**e, "token": word}
        for e, word in zip(_entries(CASES["nan-in-twelve"]), words, strict=False)
    ]
    refusal = _entries([-0.3, -INF, -0.02, -1.5])
    other = _entries(CASES["neg-inf"])
    params = {"logprobs": True, "top_logprobs": 4, "response_format": {"type": "json_object"}}
    call = telemetry.start_call(model="m", stream=True, params=params)
    for i in range(0, len(content), 3):
        call.add_tokens(content[i : i + 3], time_ns=1_700_000_000_000_000_000 + i)
    call.add_tokens(refusal, channel="refusal")
    call.add_tokens(other, choice=1, new_chunk=False)
    call.end(completed=True)
    provider.shutdown()
    meters.shutdown()
    (span,) = memory.get_finished_spans()
    attrs = dict(span.attributes or {})
    (read,) = read_traces(path).calls

    for tokens, entries in ((read.tokens, content), (read.refusal_tokens, refusal)):
        assert len(tokens) == len(entries)
        assert all(_same(t.logprob, e["logprob"]) for t, e in zip(tokens, entries, strict=True))
    assert read.refusal_token_count == 4
    # By choice, then the content before the refusal, each in index order.
    assert [(t.channel, t.choice, t.index) for t in read.other_tokens] == [
        *(("refusal", 0, i) for i in range(4)),
        *(("content", 1, i) for i in range(3)),
    ]
    assert {(t.channel, t.choice) for t in read.other_tokens} == {("refusal", 0), ("content", 1)}
    if capture:
        assert [t.text for t in read.refusal_tokens] == [e["token"] for e in refusal]
    # The refusal's figures: read back, and computed from its tokens alone.
    expected = {k: attrs[v] for k, v in n.REFUSAL_SUMMARY.items() if v in attrs}
    assert expected[n.LOGPROBS_SUM] == -INF
    assert all(_same(read.refusal_figures[k], v) for k, v in expected.items())
    bare = replace(
        read,
        attributes={
            k: v for k, v in read.attributes.items() if k not in n.REFUSAL_SUMMARY.values()
        },
    )
    assert set(bare.refusal_figures) == set(expected)
    assert all(_same(bare.refusal_figures[k], v) for k, v in expected.items())
    # The fields, as the span's events had them.
    written = [e for e in span.events if e.name == "logprobs.field"]
    assert [f.path for f in read.fields] == ["$.ok", "$.n"]
    for field, event in zip(read.fields, written, strict=True):
        a = event.attributes or {}
        assert _same(field.logprob, a["logprobs.field.logprob"])
        assert (field.token_start, field.token_stop) == (
            a["logprobs.field.token_start"],
            a["logprobs.field.token_stop"],
        )
        assert field.value == (a["logprobs.field.value"] if capture else None)
    ok, number = read.fields
    assert ok.alternatives is not None and number.alternatives is None  # a boolean's
    assert [a.token is None for a in ok.alternatives] == [not capture] * len(ok.alternatives)
    assert read.fields_complete is True and read.fields_dropped == 0
