"""The OTLP JSON reader and the HTML report: both file formats, escaping, no network."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from logprobscope.otel import EventsMode
from logprobscope.report import (
    ModelCall,
    OTLPJsonFileSpanExporter,
    TraceFormatError,
    parse_traces,
    read_traces,
    render_html,
    spans_to_otlp_json,
)
from tests.support.contract_spans import HOSTILE, HOSTILE_TOKENS, SEED_TOP, write_call
from tests.support.otel import InMemoryOtel

# -- reading our own file ----------------------------------------------------------------------


def test_tokens_mode_round_trip(tmp_path: Path) -> None:
    path = write_call(tmp_path / "t.jsonl", SEED_TOP)
    found = read_traces(path)
    assert found.span_count == 1
    (call,) = found.calls
    assert call.name == "chat gpt-4o"
    assert call.kind == "CLIENT"
    assert call.model == "gpt-4o"
    assert call.stream is True
    assert call.events_mode == "tokens"
    assert call.tokens_complete
    assert [t.text for t in call.tokens] == [t[0] for t in SEED_TOP]
    assert [t.logprob for t in call.tokens] == [t[1] for t in SEED_TOP]
    assert call.tokens[0].bytes == tuple(b"I'm")
    assert [(a.token, a.logprob) for a in call.tokens[0].alternatives] == SEED_TOP[0][2]
    times = [t.time_unix_nano or 0 for t in call.tokens]
    assert times == sorted(times) and 0 not in times
    assert call.time_to_first_chunk_s == pytest.approx(0.04)
    assert call.attr_int("server.port") == 8000
    assert call.resource["service.name"] == "contract-test"
    assert len(call.trace_id) == 32 and len(call.span_id) == 16
    assert call.perplexity == pytest.approx(math.exp(-sum(t[1] for t in SEED_TOP) / 4))


def test_batched_mode_without_content(tmp_path: Path) -> None:
    path = write_call(tmp_path / "t.jsonl", SEED_TOP * 3, mode="batched", capture=False)
    (call,) = read_traces(path).calls
    assert call.tokens_complete and len(call.tokens) == 12
    assert not call.content_captured
    assert all(t.text is None for t in call.tokens)
    assert [t.logprob for t in call.tokens] == [t[1] for t in SEED_TOP * 3]
    assert [[a.logprob for a in t.alternatives] for t in call.tokens] == [
        [a[1] for a in t[2]] for t in SEED_TOP * 3
    ]
    assert all(a.token is None for t in call.tokens for a in t.alternatives)


def test_low_confidence_mode_keeps_gaps(tmp_path: Path) -> None:
    path = write_call(tmp_path / "t.jsonl", SEED_TOP, mode="low_confidence")
    (call,) = read_traces(path).calls
    assert [t.index for t in call.tokens] == [0]  # only "I'm" (p 0.10) is below 0.5
    assert call.token_count == 4 and not call.tokens_complete
    assert call.low_confidence_count == 1
    page = render_html([call])
    assert "3 tokens not recorded" in page


def test_summary_computed_when_attributes_are_missing(tmp_path: Path) -> None:
    path = write_call(tmp_path / "t.jsonl", SEED_TOP)
    text = path.read_text()
    doc = json.loads(text)
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["attributes"] = [a for a in span["attributes"] if not a["key"].startswith("logprobs.")]
    (call,) = parse_traces(json.dumps(doc)).calls
    logprobs = [t[1] for t in SEED_TOP]
    assert call.mean_logprob == pytest.approx(sum(logprobs) / 4)
    assert call.min_logprob == min(logprobs)
    assert call.low_confidence_count == 1


def test_several_calls_and_files_sorted_by_start(tmp_path: Path) -> None:
    # Start times out of line and file order: only a sort by start gives m-a, m-b, m-c.
    second = 1_000_000_000
    a = write_call(tmp_path / "a.jsonl", SEED_TOP, model="m-c", start=3 * second)
    write_call(a, SEED_TOP[:2], model="m-a", stream=False, start=1 * second)
    b = write_call(tmp_path / "b.jsonl", HOSTILE_TOKENS, model="m-b", start=2 * second)
    found = read_traces([a, b])
    assert [c.model for c in found.calls] == ["m-a", "m-b", "m-c"]
    assert [c.start_unix_nano for c in found.calls] == [second, 2 * second, 3 * second]
    assert found.sources == (str(a), str(b))


# -- the exporter's two encoders agree --------------------------------------------------------


def test_hand_mapping_equals_protobuf_mapping(otel: InMemoryOtel) -> None:
    memory = otel.new(resource=Resource.create({"service.name": "svc"}))
    provider = memory.tracer_provider
    outer = provider.get_tracer("outer", "1.2", schema_url="https://example.invalid/schema")
    inner = provider.get_tracer("inner")
    with outer.start_as_current_span("root") as root:
        with inner.start_as_current_span(
            "chat m",
            kind=SpanKind.CLIENT,
            attributes={"i": 7, "f": [1.5, -math.inf, math.nan], "s": ["x", "<y>"], "b": True},
            links=[Link(root.get_span_context(), {"k": "v"})],
        ) as span:
            span.add_event("logprobs.token", {"logprobs.token.index": 0})
            span.add_event("bare")
            span.set_status(Status(StatusCode.ERROR, "boom"))
    spans = memory.spans()
    by_protobuf = json.loads(spans_to_otlp_json(spans))
    by_hand = json.loads(spans_to_otlp_json(spans, use_protobuf=False))
    assert by_protobuf == by_hand
    first = by_hand["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert re.fullmatch(r"[0-9a-f]{32}", first["traceId"])  # hex, as OTLP JSON wants


def test_exporter_appends_one_line_per_batch(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    exporter = OTLPJsonFileSpanExporter(path, append=False)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for name in ("one", "two"):
        tracer.start_span(name, attributes={"gen_ai.operation.name": "chat"}).end()
    provider.shutdown()
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert [c.name for c in read_traces(path).calls] == ["one", "two"]
    assert exporter.export([]).name == "SUCCESS"


# -- the collector's file exporter and other shapes ------------------------------------------


def _collector_line(**overrides: object) -> str:
    """One ExportTraceServiceRequest as the collector's file exporter writes it."""
    span: dict[str, object] = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "eee19b7ec3c1b173",
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
            {"key": "gen_ai.request.stream", "value": {"boolValue": True}},
            {"key": "logprobs.token_count", "value": {"intValue": "2"}},
            {"key": "logprobs.top_logprobs", "value": {"intValue": 2}},
            {"key": "logprobs.events.mode", "value": {"stringValue": "tokens"}},
            {
                "key": "gen_ai.response.finish_reasons",
                "value": {"arrayValue": {"values": [{"stringValue": "stop"}]}},
            },
        ],
        "events": [
            {
                "timeUnixNano": "1544712660300000000",
                "name": "logprobs.token",
                "attributes": [
                    {"key": "logprobs.token.index", "value": {"intValue": "1"}},
                    {"key": "logprobs.token.logprob", "value": {"doubleValue": "-Infinity"}},
                    {
                        "key": "logprobs.token.top_logprobs",
                        "value": {
                            "arrayValue": {
                                "values": [{"doubleValue": -0.1}, {"doubleValue": "-Infinity"}]
                            }
                        },
                    },
                ],
            },
            {
                "timeUnixNano": "1544712660200000000",
                "name": "logprobs.token",
                "attributes": [
                    {"key": "logprobs.token.index", "value": {"intValue": "0"}},
                    {"key": "logprobs.token.logprob", "value": {"doubleValue": -0.5}},
                    {"key": "logprobs.token.text", "value": {"stringValue": "Hi"}},
                ],
            },
        ],
        "status": {"code": 2, "message": "boom"},
    }
    span.update(overrides)
    request = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]
                },
                "scopeSpans": [{"scope": {"name": "logprobscope"}, "spans": [span]}],
            }
        ]
    }
    return json.dumps(request)


def test_collector_file_exporter_lines(tmp_path: Path) -> None:
    metrics = json.dumps({"resourceMetrics": [{"scopeMetrics": []}]})
    path = tmp_path / "collector.json"
    path.write_text(f"{_collector_line()}\n{metrics}\n\n{_collector_line(spanId='a' * 16)}\n")
    found = read_traces(path)
    assert found.span_count == 2
    call = found.calls[0]
    assert call.trace_id == "5b8efff798038103d269b633813fc60c"
    assert call.parent_span_id == "eee19b7ec3c1b173"
    assert call.kind == "CLIENT"
    assert call.status_code == "ERROR" and call.status_message == "boom"
    assert call.token_count == 2
    assert call.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert [t.index for t in call.tokens] == [0, 1]  # reassembled in index order
    assert call.tokens[0].text == "Hi"
    assert call.tokens[1].logprob == -math.inf and call.tokens[1].probability == 0.0
    assert call.tokens[1].alternatives[1].logprob == -math.inf
    page = render_html(found.calls)
    data = _embedded_data(page)
    assert data["calls"][0]["tokens"][1][1] == "-inf"


def test_protobuf_json_variants_base64_ids_enum_names_snake_case() -> None:
    trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    line = _collector_line(
        traceId=base64.b64encode(trace_id).decode(),
        spanId=base64.b64encode(bytes.fromhex("eee19b7ec3c1b174")).decode(),
        kind="SPAN_KIND_CLIENT",
        status={"code": "STATUS_CODE_OK"},
    )
    snake = line.replace("resourceSpans", "resource_spans").replace("scopeSpans", "scope_spans")
    snake = snake.replace("stringValue", "string_value").replace("intValue", "int_value")
    for text in (line, snake, f"[{line}, {line}]", json.dumps(json.loads(line), indent=2)):
        calls = parse_traces(text).calls
        assert calls[0].trace_id == trace_id.hex()
        assert calls[0].span_id == "eee19b7ec3c1b174"
        assert calls[0].kind == "CLIENT" and calls[0].status_code == "OK"
        assert calls[0].tokens[0].text == "Hi"


def test_sdk_console_exporter_output() -> None:
    out = io.StringIO()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out)))
    tracer = provider.get_tracer("t")
    span = tracer.start_span("chat m", attributes={"gen_ai.request.model": "m"})
    span.add_event(
        "logprobs.tokens",
        {
            "logprobs.tokens.start_index": 0,
            "logprobs.tokens.logprobs": [-0.1, -2.0],
            "logprobs.tokens.texts": ["a", "b"],
        },
    )
    span.end()
    tracer.start_span("unrelated").end()
    found = parse_traces(out.getvalue())
    assert found.span_count == 2
    (call,) = found.calls
    assert [t.text for t in call.tokens] == ["a", "b"]
    assert call.start_unix_nano > 0 and call.tokens[0].time_unix_nano


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"resourceSpans": [}\n', r"bad\.json:1: not JSON \(Expecting value at column 20\)"),
        (f"{_collector_line()}\nnot json\n", r"bad\.json:2: not JSON"),
        ('{"hello": 1}\n', r"bad\.json:1: not an OTLP trace export .*hello"),
        ("[1, 2]\n", r"bad\.json:1: not an OTLP trace export \(a number"),
        (
            '{"resourceSpans": {"a": 1}}',
            r"bad\.json:1: malformed OTLP JSON: resourceSpans is an obj",
        ),
        (
            _collector_line(attributes={"k": "v"}),
            r"malformed OTLP JSON: .*attributes.* expected an",
        ),
        (_collector_line(startTimeUnixNano="soon"), r"malformed OTLP JSON: startTimeUnixNano is"),
        ("   \n", r"bad\.json: empty file"),
    ],
)
def test_malformed_trace_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(TraceFormatError, match=message):
        read_traces(path)


def test_metrics_only_file_has_no_calls(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text('{"resourceMetrics": []}\n{"resourceLogs": []}\n')
    found = read_traces(path)
    assert found.calls == () and found.span_count == 0


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match=r"missing\.json: cannot read"):
        read_traces(tmp_path / "missing.json")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\x28\xb5\x2f\xfd\x00\x01")
    with pytest.raises(TraceFormatError, match="compressed"):
        read_traces(binary)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(TraceFormatError, match="not UTF-8"):
        read_traces(latin)


# -- the HTML page -------------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        self._in = tag if tag in ("script", "style") else None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts.append(data)
        elif self._in == "style":
            self.styles.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in = None


def _embedded_data(page: str) -> dict[str, list[dict[str, list[list[object]]]]]:
    match = re.search(r'<script type="application/json" id="lps-data">(.*?)</script>', page)
    assert match is not None
    data: dict[str, list[dict[str, list[list[object]]]]] = json.loads(match.group(1))
    return data


def _hostile_calls(tmp_path: Path) -> tuple[ModelCall, ...]:
    path = write_call(tmp_path / "h.jsonl", HOSTILE_TOKENS, model="<script>alert(3)</script>")
    write_call(path, HOSTILE_TOKENS, mode="batched", error=True)
    return read_traces(path).calls


def test_hostile_tokens_are_escaped(tmp_path: Path) -> None:
    calls = _hostile_calls(tmp_path)
    page = render_html(calls, title="<b>t</b>", sources=["<x>.jsonl"])
    assert HOSTILE not in page
    assert "<script>alert" not in page and "</script><script>alert(2)" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "\x1b" not in page and "\\x1b[31m" in page  # control characters made visible
    parser = _Tags()
    parser.feed(page)
    names = {tag for tag, _ in parser.tags}
    assert "img" not in names and "b" not in names
    assert sum(1 for tag, _ in parser.tags if tag == "script") == 2
    for _, attrs in parser.tags:
        assert not [name for name, _ in attrs if name.startswith("on")]
    data = _embedded_data(page)  # the JSON survives its escaping, values intact
    tokens: list[Any] = data["calls"][0]["tokens"]  # texts as the tooltip shows them
    assert tokens[1][2] == f"'{HOSTILE}'"
    assert tokens[0][4][1][0] == "'</script><script>alert(2)</script>'"
    assert tokens[2][2] == "'\\x1b[31m\\u2028'"
    assert "\\u003cimg" in page


def test_no_external_resources_and_csp_hashes_match(tmp_path: Path) -> None:
    page = render_html(_hostile_calls(tmp_path))
    parser = _Tags()
    parser.feed(page)
    for tag, attrs in parser.tags:
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
                assert value is not None and value.startswith("#"), (tag, name, value)
        assert tag not in ("link", "iframe", "img", "object", "embed", "base", "form")
    assert not re.search(r"https?:|//[a-z]|url\(|@import", page.replace("http-equiv", ""))
    (csp,) = [
        v
        for t, a in parser.tags
        if t == "meta"
        for k, v in a
        if k == "content" and v and "default-src" in v
    ]
    assert "default-src 'none'" in csp
    (script,) = [s for s in parser.scripts if "use strict" in s]
    (style,) = parser.styles

    def digest(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    assert f"script-src 'sha256-{digest(script)}'" in csp
    assert f"style-src 'sha256-{digest(style)}'" in csp


def test_without_content_capture_positions_are_shown(tmp_path: Path) -> None:
    path = write_call(tmp_path / "t.jsonl", SEED_TOP, capture=False)
    page = render_html(read_traces(path).calls)
    for i in range(4):
        assert f'data-k="{i}" aria-describedby="lps-tip">#{i}</span>' in page
    assert "I&#x27;m" not in page and "no content capture" in page


def test_stream_timeline_and_none_for_plain_calls(tmp_path: Path) -> None:
    path = write_call(tmp_path / "t.jsonl", SEED_TOP, stream=True)
    write_call(path, SEED_TOP, stream=False)
    calls = read_traces(path).calls
    streamed = next(c for c in calls if c.stream)
    plain = next(c for c in calls if not c.stream)
    page = render_html([streamed])
    assert page.count("<circle ") == 4 and 'class="timeline"' in page
    assert "<circle " not in render_html([plain])


def test_odd_text_never_breaks_the_page(tmp_path: Path) -> None:
    odd = [("\ud800", -0.1, [("\ud800", -0.1)]), ("", -0.2, []), ("\n", -9.0, [])]
    path = tmp_path / "odd.jsonl"
    doc = json.loads(_collector_line())
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["events"] = [
        {
            "timeUnixNano": "1544712660300000000",
            "name": "logprobs.token",
            "attributes": [
                {"key": "logprobs.token.index", "value": {"intValue": str(i)}},
                {"key": "logprobs.token.logprob", "value": {"doubleValue": lp}},
                {"key": "logprobs.token.text", "value": {"stringValue": text}},
            ],
        }
        for i, (text, lp, _) in enumerate(odd)
    ]
    path.write_text(json.dumps(doc), encoding="utf-8")  # "\ud800" stays escaped in the JSON
    page = render_html(read_traces(path).calls)
    page.encode("utf-8")  # no lone surrogate left
    assert "∅" in page and "↵\n" in page


# -- the real OpenTelemetry handler's output ---------------------------------------------------


def _handler_trace(
    tmp_path: Path, *, tokens: int, stream: bool, capture: bool, events: EventsMode, k: int = 2
) -> tuple[ModelCall, list[tuple[str, float, list[tuple[str, float]]]]]:
    from opentelemetry.sdk.metrics import MeterProvider

    from logprobscope import ChatOpenAI
    from logprobscope.otel import OpenTelemetryCallbackHandler
    from logprobscope.testing import ReplayServer, make_completion

    words = [f" w{i}" for i in range(tokens)]
    completion = make_completion(words, k=k, seed=7)
    path = tmp_path / "handler.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPJsonFileSpanExporter(path)))
    meters = MeterProvider()
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=provider,
        meter_provider=meters,
        capture_content=capture,
        events=events,
    )
    with ReplayServer([completion], chunk_tokens=3) as server:
        model = ChatOpenAI(
            model="m", logprobs=True, top_logprobs=k, base_url=server.base_url, callbacks=[handler]
        )
        if stream:
            for _ in model.stream("go"):
                pass
        else:
            model.invoke("go")
    provider.shutdown()
    meters.shutdown()
    (call,) = read_traces(path).calls
    choices = completion["choices"]
    assert isinstance(choices, list)
    expected = [
        (
            t["token"],
            t["logprob"],
            [(a["token"], a["logprob"]) for a in t["top_logprobs"]],
        )
        for t in choices[0]["logprobs"]["content"]
    ]
    return call, expected


@pytest.mark.parametrize("stream", [True, False])
def test_handler_long_answer_switches_to_batched_and_reads_back_whole(
    tmp_path: Path, stream: bool
) -> None:
    call, expected = _handler_trace(
        tmp_path, tokens=400, stream=stream, capture=True, events="tokens"
    )
    assert call.token_count == 400 and call.tokens_complete
    assert call.events_mode == "batched"  # 400 token events would not fit in 128
    assert [(t.text, t.logprob) for t in call.tokens] == [(e[0], e[1]) for e in expected]
    assert [[(a.token, a.logprob) for a in t.alternatives] for t in call.tokens] == [
        e[2] for e in expected
    ]
    if stream:
        times = [t.time_unix_nano or 0 for t in call.tokens]
        assert 0 not in times and times == sorted(times)  # every token on the timeline
    page = render_html([call])
    assert page.count('class="tok ') == 400


def test_repeated_least_likely_tokens_read_once_whatever_the_event_order(
    tmp_path: Path,
) -> None:
    # A batched call writes its least likely tokens once more as token events. Read back,
    # each token is there once, with its batch's record, also when the events come sorted
    # by name (as Jaeger's query service sorts them: the copies first).
    call, _ = _handler_trace(tmp_path, tokens=400, stream=True, capture=True, events="tokens")
    path = tmp_path / "handler.jsonl"
    document = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]

    def value(event: dict[str, Any], key: str) -> Any:
        item = next(a["value"] for a in event["attributes"] if a["key"] == key)
        return item.get("intValue") or item.get("arrayValue")

    inside: set[int] = set()
    for event in span["events"]:
        if event["name"] == "logprobs.tokens":
            start = int(value(event, "logprobs.tokens.start_index"))
            inside.update(
                range(start, start + len(value(event, "logprobs.tokens.logprobs")["values"]))
            )
    copies = [
        e
        for e in span["events"]
        if e["name"] == "logprobs.token" and int(value(e, "logprobs.token.index")) in inside
    ]
    assert 1 <= len(copies) <= 8
    span["events"].sort(key=lambda e: e["name"])
    resorted = tmp_path / "resorted.jsonl"
    resorted.write_text(json.dumps(document) + "\n", encoding="utf-8")
    (again,) = read_traces(resorted).calls
    assert again.tokens == call.tokens
    assert again.tokens_complete and len(again.tokens) == 400
    times = [t.time_unix_nano or 0 for t in again.tokens]
    assert times == sorted(times)  # a batch's tokens together, at the batch's time


def test_handler_without_content_capture(tmp_path: Path) -> None:
    call, expected = _handler_trace(
        tmp_path, tokens=30, stream=True, capture=False, events="batched"
    )
    assert call.tokens_complete and not call.content_captured
    assert [t.logprob for t in call.tokens] == [e[1] for e in expected]
    assert [[a.logprob for a in t.alternatives] for t in call.tokens] == [
        [a[1] for a in e[2]] for e in expected
    ]
    page = render_html([call])
    assert "w1" not in page and ">#29</span>" in page


def test_handler_low_confidence_mode(tmp_path: Path) -> None:
    call, expected = _handler_trace(
        tmp_path, tokens=60, stream=True, capture=True, events="low_confidence"
    )
    low = [i for i, e in enumerate(expected) if math.exp(e[1]) < 0.5]
    assert [t.index for t in call.tokens] == low
    assert call.low_confidence_count == len(low)
    assert call.perplexity == pytest.approx(math.exp(-sum(e[1] for e in expected) / len(expected)))
