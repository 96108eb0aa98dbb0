"""The floor: what the OpenTelemetry SDK itself costs for what our telemetry contract emits.

    .venv/bin/python bench/floor.py [--reps 300]

Times the SDK's public calls, set up as the bench sets it up (`_telemetry.providers()`:
ALWAYS_ON + `BatchSpanProcessor`, `PeriodicExportingMetricReader`, discarding exporters),
with the attributes our calls carry (content capture on), and prints markdown: µs per
operation, best and median over `--reps` repetitions, then the per-call and per-token floor
of the contract (docs/telemetry.md) computed from them, next to what our handler adds to the
same calls (`micro.decode_stream` / `decode_completion`, with it minus without). One
process; each repetition runs every block once, in a shuffled order, so that load hits them
alike. A block is a loop of one operation timed with `time.process_time_ns()` (all threads:
a flush that exports is charged where it happens). bench/FLOOR.md records a run.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine, versions  # noqa: E402
from _telemetry import providers  # noqa: E402

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.util.types import AttributeValue

Attrs = Mapping[str, "AttributeValue"]
SIZES = (1, 200, 2000)
EVENT, BATCH = "logprobs.token", "logprobs.tokens"

clock = time.process_time_ns
# fmt: off
METRIC_ATTRS: Attrs = {  # every observation's (5)
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
    "server.address": "api.openai.com",
}
REQUEST_ATTRS: Attrs = {  # what a streamed call's span starts with, content capture on (12)
    **{k: v for k, v in METRIC_ATTRS.items() if k != "gen_ai.response.model"},
    "gen_ai.request.stream": True, "gen_ai.request.temperature": 0.7,
    "gen_ai.request.max_tokens": 512, "server.port": 443, "logprobs.enabled": True,
    "logprobs.top_logprobs": 3, "logprobs.low_confidence.threshold": 0.5,
    "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]',
}
SUMMARY_ATTRS: Attrs = {  # what it ends with (20: a structured answer's, with two fields.*)
    "gen_ai.response.id": "chatcmpl-0123456789abcdef",
    "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.response.finish_reasons": ("stop",),
    "gen_ai.usage.input_tokens": 13, "gen_ai.usage.output_tokens": 200,
    "gen_ai.response.time_to_first_chunk": 0.231, "logprobs.token_count": 200,
    "logprobs.sum": -22.65, "logprobs.mean": -0.113, "logprobs.perplexity": 1.12,
    "logprobs.min": -0.533, "logprobs.min_index": 54, "logprobs.low_confidence.count": 0,
    "logprobs.entropy.mean": 0.385, "logprobs.margin.mean": 0.756,
    "logprobs.stream.completed": True, "logprobs.events.mode": "batched",
    "logprobs.fields.count": 3, "logprobs.fields.complete": True,
    "gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": "text", "content": '
    '"{\\"label\\": \\"positive\\"}"}], "finish_reason": "stop"}]',
}
TOKEN_EVENT: Attrs = {  # one `logprobs.token` event, content capture on (7)
    "logprobs.token.index": 41, "logprobs.token.line": "p=0.7484 ' today'",
    "logprobs.token.logprob": -0.2898, "logprobs.token.probability": 0.7484,
    "logprobs.token.top_logprobs": (-0.2898, -1.2898, -4.997),
    "logprobs.token.text": " today", "logprobs.token.top_tokens": (" today", " now", " here"),
}
# fmt: on


def batch_event(m: int) -> Attrs:
    """One `logprobs.tokens` event of m tokens, content capture on (8 attributes)."""
    tops = [(f" w{i}", f" x{i}", f" y{i}") for i in range(m)]
    return {
        "logprobs.tokens.first_index": 107,
        "logprobs.tokens.last_index": 106 + m,
        "logprobs.tokens.lines": tuple(
            f"{107 + i} p=0.9891 '{t[0]}' | top: '{t[0]}' 0.9891, '{t[1]}' 0.0086, '{t[2]}' 0.0011"
            for i, t in enumerate(tops)
        ),
        "logprobs.tokens.start_index": 107,
        "logprobs.tokens.logprobs": tuple(-0.011 - i / 1000 for i in range(m)),
        "logprobs.tokens.top_logprobs": tuple(x for i in range(m) for x in (-0.011, -4.7, -6.8)),
        "logprobs.tokens.texts": tuple(t[0] for t in tops),
        "logprobs.tokens.top_tokens": tuple(x for t in tops for x in t),
    }


def operations() -> dict[str, tuple[int, Callable[[], int]]]:
    """Each operation: (operations per block, the block, returning its CPU ns)."""
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    from logprobscope._contract import PROBABILITY_BUCKETS

    telemetry = providers()
    telemetry.seen.stop_keeping()
    tracer = telemetry.tracer_provider.get_tracer("floor")
    meter = telemetry.meter_provider.get_meter("floor")
    buckets = list(PROBABILITY_BUCKETS)
    hist = meter.create_histogram("h", unit="1", explicit_bucket_boundaries_advisory=buckets)
    counter = meter.create_counter("c", unit="{token}")
    sampled = trace.set_span_in_context(tracer.start_span("parent"))  # exemplars offered
    no_span = trace.set_span_in_context(trace.INVALID_SPAN)  # what ours passes per token
    values = [0.005 + 0.99 * i / 200 for i in range(200)]  # across the buckets

    def observe(op: Callable[..., None], attrs: Attrs | None, ctx: Context) -> Callable[[], int]:
        def block() -> int:
            t0 = clock()
            for v in values:
                op(v, attrs, ctx)
            return clock() - t0

        return block

    def events(name: str, attrs: Attrs, k: int) -> Callable[[], int]:
        def block() -> int:  # k events on a fresh span (within the 128 it keeps)
            span = tracer.start_span("events")
            add = span.add_event
            t0 = clock()
            for _ in range(k):
                add(name, attrs)
            spent = clock() - t0
            span.end()
            telemetry.flush()  # out of the clock: no export falls into another block
            return spent

        return block

    def span_lives() -> int:
        start = tracer.start_span
        t0 = clock()
        for _ in range(50):
            span = start("chat gpt-4o", kind=SpanKind.CLIENT, attributes=REQUEST_ATTRS)
            span.set_attributes(SUMMARY_ATTRS)
            span.end()
        telemetry.flush()  # the 50 spans' export (discarded) is part of their life
        return clock() - t0

    k, record = len(values), hist.record
    return {  # the table's first column: exemplar offered where a sampled span is current
        "`Histogram.record`, 5 attrs, sampled span": (k, observe(record, METRIC_ATTRS, sampled)),
        "`Histogram.record`, 5 attrs, no span": (k, observe(record, METRIC_ATTRS, no_span)),
        "`Histogram.record`, no attrs, no span": (k, observe(record, None, no_span)),
        "`Counter.add`, 5 attrs, sampled span": (k, observe(counter.add, METRIC_ATTRS, sampled)),
        "`add_event`, a token event (7 attrs)": (100, events(EVENT, TOKEN_EVENT, 100)),
        "`add_event`, a batch event of 64 tokens": (12, events(BATCH, batch_event(64), 12)),
        "a span: start (12 attrs), set 20, end": (50, span_lives),
    }


def ours() -> dict[str, tuple[int, Callable[[], int]]]:
    """A call of n tokens through `micro`'s decode path with our handler, and without it."""
    import micro
    import server

    from logprobscope.otel import OpenTelemetryCallbackHandler

    telemetry = providers()
    telemetry.seen.stop_keeping()
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        capture_content=True,
    )

    def calls(decode: Callable[..., object], data: object, k: int, on: bool) -> Callable[[], int]:
        def block() -> int:
            t0 = clock()
            for _ in range(k):
                decode(data, [handler] if on else None)
            telemetry.flush()  # the spans' export, charged to them as run.py charges it
            return clock() - t0

        return block

    out = {}
    for n in SIZES:
        k = max(1, 50 // n)  # small calls: one flush per 50 spans, as in `span_lives`
        for kind, decode, data in (
            ("stream", micro.decode_stream, micro.frames(n)),
            ("invoke", micro.decode_completion, server.completion_body(n).encode()),
        ):
            out[f"ours_{kind}_{n}"] = (k, calls(decode, data, k, True))
            out[f"bare_{kind}_{n}"] = (k, calls(decode, data, k, False))
    return out


def measure(reps: int) -> dict[str, list[float]]:
    ops = {**operations(), **ours()}
    for _, block in ops.values():  # warm-up: data points, reservoirs, lazy imports
        block()
    gc.collect()
    gc.freeze()  # as run.py's workers: no full collection of the import-time heap
    out: dict[str, list[float]] = {name: [] for name in ops}
    order = list(ops)
    rng = random.Random(0)
    for _ in range(reps):
        rng.shuffle(order)
        for name in order:
            k, block = ops[name]
            out[name].append(block() / 1000 / k)
    return out


def floor(f: list[float], n: int, kind: str) -> float:
    """The contract's calls at the costs `f` (µs, in `operations()`' order), n tokens."""
    exemplar, plain, _, count, event, _, span = f[:7]
    fixed = 6 * exemplar + count + span  # 7 observations with exemplars, one span
    if kind == "stream":  # + time to first chunk; per token (chunk) + the chunk's gap
        return fixed + exemplar + n * 2 * plain + min(n, 127) * event
    return fixed + n * plain + min(n, 127) * event


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=300)
    args = parser.parse_args()
    load = machine()["load"]
    got = measure(args.reps)
    best = {k: min(v) for k, v in got.items()}
    med = {k: statistics.median(v) for k, v in got.items()}
    info = machine()
    vers = versions(["opentelemetry-api", "opentelemetry-sdk"])
    print(f"{info['nproc']} × {info['cpu']}, Python {info['python']}, {info['platform']},")
    print(", ".join(f"{k} {v}" for k, v in vers.items()) + f", commit {info['commit']},")
    print(f"load average {load} before, {info['load']} after; {args.reps} repetitions\n")
    print("| operation | best µs | median µs |\n|---|---:|---:|")
    for label in list(got)[:7]:
        print(f"| {label} | {best[label]:.2f} | {med[label]:.2f} |")
    print("\n| call | tokens | floor µs | floor µs/token | ours added µs | ours / floor |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in ("invoke", "stream"):
        for n in (0, *SIZES):
            b, m = floor(list(best.values()), n, kind), floor(list(med.values()), n, kind)
            row = f"| {kind} | {n:,} | {b:.0f} / {m:.0f} | "
            row += f"{b / n:.2f} / {m / n:.2f} | " if n else "— | "
            if n:
                ob = best[f"ours_{kind}_{n}"] - best[f"bare_{kind}_{n}"]
                om = med[f"ours_{kind}_{n}"] - med[f"bare_{kind}_{n}"]
                row += f"{ob:.0f} / {om:.0f} | {ob / b:.2f}x / {om / m:.2f}x |"
            print(row if n else row + "— | — |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
