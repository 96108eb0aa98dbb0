"""Micro-benchmark of the decode path alone (no network): SSE bytes to chunks, and handlers.

    .venv/bin/python bench/micro.py                # µs per chunk of each stage, best of 7
    .venv/bin/python bench/micro.py --otel         # also with the OTel handler, by events mode
    .venv/bin/python bench/micro.py --aggregation  # `agg + chunk` at 2,000 and 32,000 chunks,
                                                   # content and tool-call argument deltas

The last two lines are field confidence over a structured-output answer of n and 10·n tokens
(µs per token: equal figures mean linear time).

Feeds a pre-serialised stream (`bench/server.py`'s events, one SSE event per read, as the
HTTP client hands them over) through the same objects `ChatStream` uses. It isolates the
part of a call's CPU that logprobscope owns from the SDK's transport (httpx2/httpcore2/h11),
which `run.py` measures together. `--otel` adds the `OpenTelemetryCallbackHandler` with
the bench's providers (`_telemetry.providers()`) and content capture on, as `run.py` runs it,
the batch processors flushed after each stream (their export counted).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

import server  # noqa: E402

if TYPE_CHECKING:
    from logprobscope import TokenLogprobList
    from logprobscope._callbacks import Handler, RunCallbacks
    from logprobscope._messages import AIMessageChunk


def frames(n: int) -> list[bytes]:
    return [f"data: {p}\n\n".encode() for p in [*server.stream_events(n), "[DONE]"]]


def tool_call_events(n: int) -> list[str]:
    """A tool-calling answer streamed as OpenAI does: the call's head, then n argument deltas."""
    import json

    head = {"id": f"chatcmpl-tools{n}", "object": "chat.completion.chunk", "model": "bench"}

    def event(delta: dict[str, object], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return json.dumps({**head, "choices": [choice]}, separators=(",", ":"))

    call = {"index": 0, "id": "call_0", "type": "function"}
    events = [
        event(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{**call, "function": {"name": "f", "arguments": ""}}],
            }
        ),
        event({"tool_calls": [{"index": 0, "function": {"arguments": '{"text":"'}}]}),
    ]
    for i in range(n):
        events.append(event({"tool_calls": [{"index": 0, "function": {"arguments": f" w{i}"}}]}))
    events.append(event({"tool_calls": [{"index": 0, "function": {"arguments": '"}'}}]}))
    events.append(event({}, "tool_calls"))
    return events


def aggregation(sizes: tuple[int, ...] = (2000, 32000)) -> int:
    """Per-chunk cost of `agg = agg + chunk` (and of the whole decode path) at each size."""
    import json

    from logprobscope._wire import StreamAccumulator

    streams = {
        "content tokens (top_logprobs=3)": server.stream_events,
        "tool-call argument deltas": tool_call_events,
    }
    print("| chunks of | N | decode µs/chunk | aggregation µs/chunk |")
    print("|---|---:|---:|---:|")
    per: dict[tuple[str, int], float] = {}
    for label, make in streams.items():
        for n in sizes:
            payloads = make(n)
            reads = [f"data: {p}\n\n".encode() for p in [*payloads, "[DONE]"]]
            bodies = [json.loads(p) for p in payloads]
            acc = StreamAccumulator()
            chunks = [c for c in (acc.feed(b) for b in bodies) if c is not None]

            def agg_only(chunks: list[AIMessageChunk] = chunks) -> None:
                agg = chunks[0]
                for chunk in chunks[1:]:
                    agg = agg + chunk
                _ = agg.tool_calls  # the one join, at the end

            def decode_all(reads: list[bytes] = reads) -> None:
                decode_stream(reads)

            rounds = 7 if n <= 2000 else 3
            decode = best(decode_all, len(bodies), rounds)
            per[(label, n)] = best(agg_only, len(chunks), rounds)
            print(f"| {label} | {n:,} | {decode:.2f} | {per[(label, n)]:.2f} |")
    for label in streams:
        ratio = per[(label, sizes[-1])] / per[(label, sizes[0])]
        print(f"- {label}: per-chunk aggregation at {sizes[-1]:,} / at {sizes[0]:,}: {ratio:.2f}x")
    return 0


def run_callbacks(handlers: Sequence[Handler] | None, *, stream: bool) -> RunCallbacks | None:
    """The handlers of one run of the bench's request (logprobs, top 3), started."""
    if not handlers:
        return None
    from uuid import uuid4

    from logprobscope._callbacks import Run, RunCallbacks

    run = Run.model_construct(
        run_id=uuid4(),
        model="bench",
        stream=stream,
        invocation_params={"model": "bench", "logprobs": True, "top_logprobs": 3},
        tags=(),
        metadata={},
        provider="openai",
        server_address="127.0.0.1",
        server_port=1,
    )
    callbacks = RunCallbacks(run, handlers)
    callbacks.start_sync([])
    return callbacks


def decode_stream(reads: list[bytes], handlers: Sequence[Handler] | None = None) -> object:
    """What `ChatStream.__next__` does per read, minus the HTTP client (and its handlers')."""
    from logprobscope._stream import _StreamCore

    core = _StreamCore(None, [], None)  # no callbacks: they are driven here, as ChatStream does
    callbacks = run_callbacks(handlers, stream=True)
    parser = core._parser
    decode = core._decode
    last = None
    for data in reads:
        for payload in parser.feed(data):
            if payload == b"[DONE]":
                break
            chunk = decode(payload)
            if chunk is not None:
                if callbacks:
                    callbacks.token_sync(chunk)
                last = chunk
    if callbacks:
        callbacks.end_sync(core.message(incomplete=False))
    return last


def decode_completion(body: bytes, handlers: Sequence[Handler] | None = None) -> object:
    """What a non-streamed call does with the response's body, minus the HTTP client."""
    from logprobscope._wire import loads, message_from_completion

    callbacks = run_callbacks(handlers, stream=False)
    decoded = loads(body)
    assert isinstance(decoded, dict)
    message = message_from_completion(decoded)
    if callbacks:
        callbacks.end_sync(message)
    return message


def json_answer(n: int) -> TokenLogprobList:
    """A structured-output answer of exactly n tokens, as a message holds it.

    A JSON array of records (enum label, number, boolean, a string with non-ASCII text), cut
    into n tokens of equal byte length: cuts fall inside keys, values, multi-byte characters
    and across `"},` boundaries, so every token carries its `bytes`; three alternatives each.
    """
    import json

    from logprobscope import TokenLogprobList

    records: list[dict[str, object]] = []
    size = 0
    while size < 4 * n:
        i = len(records)
        record: dict[str, object] = {
            "id": i,
            "label": "positive" if i % 3 else "negative",
            "score": round(0.5 + (i % 50) / 100, 2),
            "ok": i % 2 == 0,
            "note": f"item {i}, café ✓",
        }
        records.append(record)
        size += len(json.dumps(record, ensure_ascii=False).encode()) + 2
    data = json.dumps({"items": records}, ensure_ascii=False).encode()
    bounds = [len(data) * k // n for k in range(n + 1)]
    entries: list[dict[str, object]] = []
    for k in range(n):
        piece = data[bounds[k] : bounds[k + 1]]
        text = piece.decode(errors="replace")
        tops = [{"token": text, "logprob": -0.1, "bytes": list(piece)}] + [
            {"token": alt, "logprob": -3.0 - j, "bytes": list(alt.encode())}
            for j, alt in enumerate(("neg", " the"))
        ]
        entries.append({"token": text, "logprob": -0.1, "bytes": list(piece), "top_logprobs": tops})
    return TokenLogprobList.from_json(entries)


FIELDS_SCHEMA = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"label": {"enum": ["positive", "negative"]}},
            },
        }
    },
}


def best(fn: Callable[[], object], n: int, rounds: int = 7) -> float:
    fn()
    times = []
    for _ in range(rounds):
        gc.collect()
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times) * 1e6 / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--otel", action="store_true", help="also the OTel handler's modes")
    parser.add_argument(
        "--aggregation", action="store_true", help="`agg + chunk` at 2,000 and 32,000 chunks"
    )
    args = parser.parse_args()
    if args.aggregation:
        return aggregation()
    n = args.n
    import json

    from logprobscope._sse import SSEParser
    from logprobscope._wire import StreamAccumulator

    reads = frames(n)
    payloads = [r[6:-2] for r in reads[:-1]]
    bodies = [json.loads(p) for p in payloads]

    def sse_only() -> None:
        p = SSEParser()
        for r in reads:
            p.feed(r)

    def json_only() -> None:
        from logprobscope._wire import loads  # what `_StreamCore._decode` parses with

        for p in payloads:
            loads(p)

    def accumulate_only() -> None:
        acc = StreamAccumulator()
        for b in bodies:
            acc.feed(b)

    chunks: list[AIMessageChunk] = []

    def collect() -> None:
        chunks.clear()
        acc = StreamAccumulator()
        for b in bodies:
            chunk = acc.feed(b)
            if chunk is not None:
                chunks.append(chunk)

    collect()

    def aggregate_only() -> None:
        agg = chunks[0]
        for chunk in chunks[1:]:
            agg = agg + chunk

    rows: list[tuple[str, Callable[[], object]]] = [
        ("SSE parser", sse_only),
        ("JSON decode", json_only),
        ("accumulator (decoded dicts to chunks)", accumulate_only),
        ("whole decode path", lambda: decode_stream(reads)),
        ("aggregation alone (agg = agg + chunk)", aggregate_only),
    ]
    if args.otel:
        from _telemetry import Providers, providers

        from logprobscope.otel import EventsMode, OpenTelemetryCallbackHandler

        modes: tuple[tuple[str, EventsMode, bool], ...] = (
            ("tokens", "tokens", True),
            ("batched", "batched", True),
            ("tokens, sampled out", "tokens", False),
        )
        for label, events, sampled in modes:
            # The bench's providers (batch processors, discarding exporters), content capture
            # on as in run.py; each run's spans are exported at its end and that is counted.
            telemetry = providers(sampled=sampled)
            telemetry.seen.stop_keeping()
            handler = OpenTelemetryCallbackHandler(
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
                capture_content=True,
                events=events,
            )

            def with_handler(
                h: OpenTelemetryCallbackHandler = handler, t: Providers = telemetry
            ) -> None:
                decode_stream(reads, [h])
                t.flush()

            rows.append((f"whole decode path + OTel handler ({label})", with_handler))
    for label, fn in rows:
        print(f"{best(fn, n):8.2f} µs/chunk  {label}")
    from logprobscope import field_confidence

    for size in (n, 10 * n):  # the same cost per token at both sizes: linear time
        answer = json_answer(size)

        def fields(tokens: TokenLogprobList = answer) -> None:
            field_confidence(tokens, schema=FIELDS_SCHEMA)

        print(f"{best(fields, size):8.2f} µs/token  field confidence, {size:,}-token JSON answer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
