"""Faults on the telemetry side: a slow collector, one answering 500, one that is down, and a
full export queue. The user's calls must not notice: nothing raises, every answer is whole,
the export runs off the caller's thread, the queue stays bounded, and the SDK's own
accounting says what was dropped.

The collector is a real OTLP/HTTP endpoint (a tiny `http.server` on 127.0.0.1) started here.
Each fault is compared with a healthy collector measured in the same test (the handler's own
cost is in both, so the difference is what the fault costs), and with no telemetry. Timing is
asserted generously (a blocked call would take the exporter's 1 s timeout) to stay robust on
busy CI; the strong check is structural: calls finish while the slow collector is still
holding a request. The latency figures users care about come from
`bench/telemetry_faults.py`, with the server in its own process.
"""

from __future__ import annotations

import logging
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from logprobscope import ChatOpenAI
from logprobscope.otel import OpenTelemetryCallbackHandler, TelemetryHandle, configure_telemetry
from logprobscope.testing import ReplayServer, make_completion

CALLS = 50
TOKENS = [f"tok{i} " for i in range(24)]
ANSWER = "".join(TOKENS)
SLOW_SECONDS = 2.0


class _Collector(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.mode = mode
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.in_flight = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _CollectorHandler(BaseHTTPRequestHandler):
    server: _Collector
    protocol_version = "HTTP/1.1"
    # The head and the body go out in two writes: without this, Nagle's algorithm and
    # delayed ACKs hold the body back ~40 ms, which would throttle the exporter's retries.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        srv = self.server
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        with srv.lock:
            srv.requests[self.path] = srv.requests.get(self.path, 0) + 1
            srv.in_flight += 1
        try:
            if srv.mode == "slow":
                srv.stopping.wait(SLOW_SECONDS)
            status = 500 if srv.mode == "error" else 200  # "ok" and "slow" answer 200
            body = b"" if status == 200 else b"collector failure"
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the exporter gave up (timeout) and closed the connection
        finally:
            with srv.lock:
                srv.in_flight -= 1


@pytest.fixture
def collectors() -> Iterator[Callable[[str], _Collector]]:
    started: list[tuple[_Collector, threading.Thread]] = []

    def start(mode: str) -> _Collector:
        collector = _Collector(mode)
        thread = threading.Thread(target=collector.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        started.append((collector, thread))
        return collector

    yield start
    for collector, thread in started:
        collector.stopping.set()
        collector.shutdown()
        collector.server_close()
        thread.join(5)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    with ReplayServer([make_completion(TOKENS, k=3)]) as server:
        yield server


@pytest.fixture
def model(replay: ReplayServer) -> Iterator[ChatOpenAI]:
    with ChatOpenAI(
        model="gpt-4o",
        base_url=replay.base_url,
        api_key="test-key",
        max_retries=0,
        timeout=10.0,
        logprobs=True,
        top_logprobs=3,
    ) as chat:
        yield chat


def _timed_calls(
    model: ChatOpenAI,
    callbacks: Sequence[OpenTelemetryCallbackHandler],
    *,
    on_each: Callable[[], None] | None = None,
) -> list[float]:
    """`CALLS` streamed calls; each must return the whole answer. Seconds per call."""
    times: list[float] = []
    for _ in range(CALLS):
        start = time.perf_counter()
        chunks = list(model.stream("hi", callbacks=list(callbacks)))
        times.append(time.perf_counter() - start)
        text = "".join(str(chunk.content) for chunk in chunks)
        assert text == ANSWER
        if on_each is not None:
            on_each()
    return times


def _baseline(model: ChatOpenAI) -> float:
    _timed_calls(model, [])  # warm up the connection, the caches and the decoder
    return statistics.median(_timed_calls(model, []))


def _healthy(model: ChatOpenAI, collector: _Collector) -> float:
    """Median seconds per call with the handler exporting to a collector that answers 200."""
    handle = configure_telemetry(
        service_name="healthy", otlp_endpoint=collector.endpoint, set_global=False
    )
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider
    )
    try:
        _timed_calls(model, [handler])  # warm up the exporter's connection and the SDK
        times = _timed_calls(model, [handler])
    finally:
        handle.shutdown(timeout=None)
    assert handler.active_calls == 0
    assert collector.requests.get("/v1/traces", 0) >= 1, collector.requests
    return statistics.median(times)


def _queues(provider: Any) -> list[Any]:
    """The deques of every BatchSpanProcessor of an SDK TracerProvider (private SDK state)."""
    processors = provider._active_span_processor._span_processors
    return [p._batch_processor._queue for p in processors if isinstance(p, BatchSpanProcessor)]


def _report(
    name: str, baseline: float, healthy: float | None, times: list[float], extra: str = ""
) -> float:
    median = statistics.median(times)
    control = f"healthy collector {healthy * 1e3:.2f} ms/call, " if healthy is not None else ""
    print(
        f"\n[telemetry-fault] {name}: no telemetry {baseline * 1e3:.2f} ms/call, {control}"
        f"with the fault {median * 1e3:.2f} ms/call (max {max(times) * 1e3:.1f} ms) {extra}"
    )
    return median


@pytest.fixture
def otlp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Export often (so exports overlap the calls), give up on the collector after 1 s."""
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")


@pytest.mark.usefixtures("otlp_env")
@pytest.mark.parametrize("fault", ["slow", "error", "down"])
def test_collector_fault_does_not_reach_the_call(
    fault: str,
    model: ChatOpenAI,
    collectors: Callable[[str], _Collector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    collector = collectors(fault) if fault != "down" else None
    endpoint = collector.endpoint if collector else f"http://127.0.0.1:{_closed_port()}"
    baseline = _baseline(model)
    healthy = _healthy(model, collectors("ok"))
    handle: TelemetryHandle = configure_telemetry(
        service_name="faults", otlp_endpoint=endpoint, set_global=False
    )
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider
    )
    queues = _queues(handle.tracer_provider)
    assert queues, "configure_telemetry put no BatchSpanProcessor in front of the OTLP exporter"
    peak_queue = 0
    ended_while_collector_busy = 0

    def after_each() -> None:
        nonlocal peak_queue, ended_while_collector_busy
        peak_queue = max(peak_queue, *(len(q) for q in queues))
        if collector is not None and collector.in_flight > 0:
            ended_while_collector_busy += 1

    caplog.set_level(logging.WARNING)
    try:
        times = _timed_calls(model, [handler], on_each=after_each)
        # Let the exporter reach the collector at least once before shutting down.
        deadline = time.monotonic() + 3
        while collector is not None and not collector.requests and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        shutdown_start = time.perf_counter()
        handle.shutdown(timeout=None)
        shutdown_s = time.perf_counter() - shutdown_start
    assert handler.active_calls == 0
    median = _report(
        fault,
        baseline,
        healthy,
        times,
        f"collector requests {collector.requests if collector else 'n/a (port closed)'}, "
        f"ended while collector busy {ended_while_collector_busy}/{CALLS}, "
        f"peak queue {peak_queue}, shutdown {shutdown_s:.2f} s",
    )
    # A call that waited on the collector would take its 1 s timeout (or the slow one's 2 s).
    assert median < healthy * 2 + 0.020, (median, healthy, baseline)
    assert peak_queue <= min(q.maxlen for q in queues)
    assert shutdown_s < 15
    if collector is not None:
        assert collector.requests.get("/v1/traces", 0) >= 1, collector.requests
    if fault == "slow":
        # The collector sleeps 2 s per request: a call that ends while it holds one proves
        # the export is off the caller's thread. 50 calls at ~ms each cannot all be blocked.
        assert ended_while_collector_busy >= 1
        assert sum(times) < SLOW_SECONDS, sum(times)


class _BlockingExporter(SpanExporter):
    """An exporter that holds its first export until released: the queue backs up."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(10)
        with self._lock:
            self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def _dropped_counts(reader: InMemoryMetricReader) -> dict[str, int]:
    """`otel.sdk.processor.span.processed` points by `error.type` ("" for exported)."""
    out: dict[str, int] = {}
    data = reader.get_metrics_data()
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != "otel.sdk.processor.span.processed":
                    continue
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    key = str((point.attributes or {}).get("error.type", ""))
                    out[key] = out.get(key, 0) + int(point.value)
    return out


def _queue_pipeline(
    exporter: SpanExporter, max_queue: int, *, sdk_meters: MeterProvider
) -> tuple[TracerProvider, MeterProvider, OpenTelemetryCallbackHandler, BatchSpanProcessor]:
    """A handler whose spans go through a small BatchSpanProcessor in front of `exporter`."""
    processor = BatchSpanProcessor(
        exporter,
        max_queue_size=max_queue,
        max_export_batch_size=4,
        schedule_delay_millis=10,
        meter_provider=sdk_meters,
    )
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(processor)
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    return tracer_provider, meter_provider, handler, processor


def test_full_export_queue_drops_are_accounted(
    model: ChatOpenAI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    baseline = _baseline(model)
    max_queue = 8

    # The control: the same pipeline with an exporter that never blocks.
    free = _BlockingExporter()
    free.release.set()
    control_tracers, control_meters, control, _ = _queue_pipeline(
        free, max_queue, sdk_meters=MeterProvider()
    )
    try:
        _timed_calls(model, [control])
        healthy = statistics.median(_timed_calls(model, [control]))
    finally:
        control_tracers.shutdown()
        control_meters.shutdown()

    exporter = _BlockingExporter()
    sdk_reader = InMemoryMetricReader()
    sdk_meters = MeterProvider(metric_readers=[sdk_reader])
    tracer_provider, meter_provider, handler, processor = _queue_pipeline(
        exporter, max_queue, sdk_meters=sdk_meters
    )
    queue: Any = processor._batch_processor._queue
    peak_queue = 0

    def after_each() -> None:
        nonlocal peak_queue
        peak_queue = max(peak_queue, len(queue))

    caplog.set_level(logging.WARNING, logger="opentelemetry.sdk._shared_internal")
    try:
        times = _timed_calls(model, [handler], on_each=after_each)
        counts = _dropped_counts(sdk_reader)
        queued = len(queue)
    finally:
        exporter.release.set()
        tracer_provider.shutdown()
        meter_provider.shutdown()
        sdk_meters.shutdown()
    assert handler.active_calls == 0
    dropped = counts.get("queue_full", 0)
    warnings = [r for r in caplog.records if "Queue full" in r.getMessage()]
    median = _report(
        "full queue",
        baseline,
        healthy,
        times,
        f"peak queue {peak_queue}/{max_queue}, SDK processed counts {counts}, "
        f"queued {queued}, exported {exporter.exported}, 'Queue full' warnings {len(warnings)}",
    )
    assert median < healthy * 2 + 0.020, (median, healthy, baseline)
    assert peak_queue <= max_queue
    # The worker holds at most one batch of 4 in the blocked export, the queue 8: the rest drop.
    assert dropped >= CALLS - max_queue - 4, counts
    # Every span was either handed to the exporter or counted as dropped: nothing vanished.
    # (The SDK counts a span as processed when it hands it to the exporter.)
    assert counts.get("", 0) + dropped + queued == CALLS, (counts, queued)
    # The SDK also says so in its log (once per 20 s: the SDK de-duplicates that warning).
    assert warnings and warnings[0].levelno == logging.WARNING
