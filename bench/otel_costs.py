"""What the OpenTelemetry handler's per-chunk work costs, piece by piece (no network).

    .venv/bin/python bench/otel_costs.py

Each line is the best of several runs of a loop, in µs per call, on the same machine and
in the same process, so the pieces can be compared with each other and with the decode path
(`bench/micro.py`).
"""

from __future__ import annotations

import gc
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import micro  # noqa: E402


def best(fn: Callable[[], object], n: int, rounds: int = 9) -> float:
    fn()
    out = []
    for _ in range(rounds):
        gc.collect()
        t0 = time.process_time()
        fn()
        out.append(time.process_time() - t0)
    return min(out) * 1e6 / n


def best_delta(ref: Callable[[], object], fn: Callable[[], object], n: int) -> float:
    """Best of `fn` minus best of `ref`, the two run alternately (load hits both alike)."""
    ref()
    fn()
    a, b = [], []
    for _ in range(9):
        for out, f in ((a, ref), (b, fn)):
            gc.collect()
            t0 = time.process_time()
            f()
            out.append(time.process_time() - t0)
    return (min(b) - min(a)) * 1e6 / n


def main() -> int:
    import run
    from opentelemetry.context import Context
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from logprobscope.otel import OpenTelemetryCallbackHandler

    n = 2000
    reads = micro.frames(n)
    rows: list[tuple[str, float]] = []

    # -- single OTel SDK calls, with the attributes the handler uses --------------------
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    hist = mp.get_meter("bench").create_histogram("h", unit="1")
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "bench-2000",
        "server.address": "127.0.0.1",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
    }
    empty = Context()
    k = 20000

    def record_5_attrs() -> None:
        for _ in range(k):
            hist.record(0.5, attrs, empty)

    def record_no_attrs() -> None:
        for _ in range(k):
            hist.record(0.5)

    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(run._DiscardSpans()))  # type: ignore[arg-type]
    tracer = tp.get_tracer("bench")

    def add_event_3_attrs() -> None:
        span = tracer.start_span("s")
        for i in range(100):  # below the default limit of 128 events
            span.add_event(
                "logprobs.token",
                {
                    "logprobs.token.index": i,
                    "logprobs.token.logprob": -0.1,
                    "logprobs.token.top_logprobs": [-0.1, -2.0, -3.0],
                },
                1,
            )
        span.end()

    def exp_4() -> None:
        for _ in range(k):
            math.exp(-0.1)
            math.exp(-0.1)
            math.exp(-0.1)
            math.exp(-0.1)

    rows.append(
        ("Histogram.record, 5 attributes (as the handler records)", best(record_5_attrs, k))
    )
    rows.append(("Histogram.record, no attributes", best(record_no_attrs, k)))
    rows.append(("Span.add_event, 3 attributes", best(add_event_3_attrs, 100)))
    rows.append(("4 x math.exp (a token and its 3 alternatives)", best(exp_4, k)))

    # -- the handler over a whole stream: per chunk (1 token each) -----------------------
    def reference() -> None:
        micro.decode_stream(reads)

    rows.append(("decode path, no handler (reference, µs per chunk)", best(reference, n)))

    def handler_row(label: str, **kw: object) -> None:
        h = OpenTelemetryCallbackHandler(**kw)  # type: ignore[arg-type]
        rows.append(
            (
                f"  + handler {label}, per chunk of 1 token",
                best_delta(reference, lambda: micro.decode_stream(reads, [h]), n),
            )
        )

    def tp_of(sampled: bool) -> TracerProvider:
        p = TracerProvider() if sampled else TracerProvider(sampler=ALWAYS_OFF)
        p.add_span_processor(BatchSpanProcessor(run._DiscardSpans()))  # type: ignore[arg-type]
        return p

    sdk_mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    handler_row("tokens, sampled", tracer_provider=tp_of(True), meter_provider=sdk_mp)
    handler_row(
        "batched, sampled", tracer_provider=tp_of(True), meter_provider=sdk_mp, events="batched"
    )
    handler_row("tokens, sampled out", tracer_provider=tp_of(False), meter_provider=sdk_mp)
    handler_row(
        "tokens, sampled, no-op meter provider",
        tracer_provider=tp_of(True),
        meter_provider=NoOpMeterProvider(),
    )
    handler_row(
        "tokens, sampled out, no-op meter provider",
        tracer_provider=tp_of(False),
        meter_provider=NoOpMeterProvider(),
    )
    handler_row(
        "events=none, sampled out, no-op meter provider",
        tracer_provider=tp_of(False),
        meter_provider=NoOpMeterProvider(),
        events="none",
    )

    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value:7.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
