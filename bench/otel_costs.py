"""What the OpenTelemetry handler's per-chunk work costs, piece by piece (no network).

    .venv/bin/python bench/otel_costs.py

Each line is the best of several runs of a loop, in µs per call, on the same machine and
in the same process, so the pieces can be compared with each other and with the decode path
(`bench/micro.py`). The single SDK calls are `bench/floor.py`'s (which measures them
interleaved, best and median, and the floor they add up to); the handler runs with the
bench's providers (`_telemetry.providers()`) and content capture on, as `run.py` runs it.
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
    a: list[float] = []
    b: list[float] = []
    for _ in range(9):
        for out, f in ((a, ref), (b, fn)):
            gc.collect()
            t0 = time.process_time()
            f()
            out.append(time.process_time() - t0)
    return (min(b) - min(a)) * 1e6 / n


def main() -> int:
    from _telemetry import providers
    from floor import operations
    from opentelemetry.metrics import MeterProvider, NoOpMeterProvider

    from logprobscope.otel import EventsMode, OpenTelemetryCallbackHandler

    n = 2000
    reads = micro.frames(n)
    rows: list[tuple[str, float]] = []

    # -- single OTel SDK calls, with the attributes the handler uses (floor.py's) --------
    for label, (k, block) in operations().items():
        block()
        rows.append((label, min(block() for _ in range(9)) / 1000 / k))
    xs = [-0.1] * 20000

    def exp_4() -> None:
        exp = math.exp
        for x in xs:
            exp(x)
            exp(x)
            exp(x)
            exp(x)

    rows.append(("4 x math.exp (a token and its 3 alternatives)", best(exp_4, len(xs))))

    # -- the handler over a whole stream: per chunk (1 token each) -----------------------
    def reference() -> None:
        micro.decode_stream(reads)

    rows.append(("decode path, no handler (reference, µs per chunk)", best(reference, n)))

    def handler_row(
        label: str, *, sampled: bool, metrics: bool = True, events: EventsMode = "tokens"
    ) -> None:
        # The bench's providers, content capture on, as run.py runs the handler.
        telemetry = providers(sampled=sampled)
        telemetry.seen.stop_keeping()
        meter_provider: MeterProvider = telemetry.meter_provider if metrics else NoOpMeterProvider()
        h = OpenTelemetryCallbackHandler(
            tracer_provider=telemetry.tracer_provider,
            meter_provider=meter_provider,
            capture_content=True,
            events=events,
        )

        def handled() -> None:
            micro.decode_stream(reads, [h])
            telemetry.flush()  # the span's export, charged to the call as run.py does

        rows.append(
            (f"  + handler {label}, per chunk of 1 token", best_delta(reference, handled, n))
        )

    handler_row("tokens, sampled", sampled=True)
    handler_row("batched, sampled", sampled=True, events="batched")
    handler_row("tokens, sampled out", sampled=False)
    handler_row("tokens, sampled, no-op meter provider", sampled=True, metrics=False)
    handler_row("tokens, sampled out, no-op meter provider", sampled=False, metrics=False)
    handler_row(
        "events=none, sampled out, no-op meter provider",
        sampled=False,
        metrics=False,
        events="none",
    )

    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value:7.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
