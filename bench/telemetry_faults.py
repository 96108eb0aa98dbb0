"""Telemetry-side faults as the user sees them: the wall time of a streamed model call.

    .venv/bin/python bench/telemetry_faults.py            # full run, about 5 min on 2 cores
    .venv/bin/python bench/telemetry_faults.py --quick    # smoke run: crashes and raised errors

What it measures: the wall-clock time (`time.perf_counter`) of one streamed call,
`logprobscope.ChatOpenAI(..., logprobs=True, top_logprobs=3).stream(...)` consumed to the
end (N = 24 tokens by default), under seven telemetry configurations:

- `none`: no handler, no telemetry set up;
- `healthy`: `configure_telemetry(otlp_endpoint=<collector answering 200 at once>,
  set_global=False)` and an `OpenTelemetryCallbackHandler` on its providers;
- `healthy-again`: the same, in its own processes: its difference to `healthy` is the noise
  floor (an A/A comparison);
- `slow`: the same against a collector that holds every request for 2 s (the exporter gives
  up after `OTEL_EXPORTER_OTLP_TIMEOUT=1` s);
- `error`: against a collector answering 500 to everything;
- `down`: against a port where nothing listens;
- `full-queue`: the slow collector with `OTEL_BSP_MAX_QUEUE_SIZE=8` and
  `OTEL_BSP_MAX_EXPORT_BATCH_SIZE=1`, the queue filled before measuring (8 spans), so that
  ending a call's span meets a full queue and drops (counted from the SDK's "Queue full"
  warnings, one per dropped span, read before its de-duplicating log filter).

Every configuration exports often (`OTEL_BSP_SCHEDULE_DELAY=20` ms,
`OTEL_METRIC_EXPORT_INTERVAL=100` ms) so that exports overlap the calls. The handler's own
cost is `healthy - none`; a fault's cost is `fault - healthy`, with a 95% two-level bootstrap
interval (processes resampled, then calls within them).

Two model servers (`bench/server.py`, each its own process): unpaced (the whole answer written
at once: the call is almost only client CPU, so the handler's cost is visible) and paced like
a hosted model (`--ttft-ms 150 --chunk-ms 15`: ~0.55 s per 24-token call, which is what users
wait for). The OTLP/HTTP collectors (`ok`, `slow`, `error`) are tiny `http.server`s in their
own processes. Everything listens on 127.0.0.1; every child process is stopped by PID.

Each configuration runs in a fresh worker process (this script with `--worker`) per round;
rounds run the configurations in a shuffled order so background load hits them alike. A
worker makes warm-up calls, waits 0.3 s (the first exports happen), then K sequential calls;
every answer is checked whole. It also records the exceptions that reached the caller (must
be 0), `handler.active_calls` afterwards (0), the time `handle.shutdown()` takes, spans
dropped, the time to the first chunk and from the last chunk to the end, and CPU time per
call: the whole process, the calling thread, and each other thread (the exporters).
Statistics pool every measured call of every round.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from _machine import machine as host_machine
from _machine import versions

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROMPT = "How are you today?"
CONFIGS = ("none", "healthy", "healthy-again", "slow", "error", "down", "full-queue")
COLLECTOR_MODES = ("ok", "slow", "error")
COLLECTOR_OF = {
    "healthy": "ok",
    "healthy-again": "ok",
    "slow": "slow",
    "error": "error",
    "full-queue": "slow",
}
FULL_QUEUE_SIZE = 8
SETTLE_S = 0.3
OTEL_ENV = {
    "OTEL_BSP_SCHEDULE_DELAY": "20",
    "OTEL_METRIC_EXPORT_INTERVAL": "100",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
}
FULL_QUEUE_ENV = {
    "OTEL_BSP_MAX_QUEUE_SIZE": str(FULL_QUEUE_SIZE),
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1",
}


# ---------------------------------------------------------------------------------------------
# the collector (its own process: `--collector MODE`)


class _Collector(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str, hold_s: float) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.mode = mode
        self.hold_s = hold_s
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}


class _CollectorHandler(BaseHTTPRequestHandler):
    server: _Collector
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: else a body written after its head waits for the head's ACK (Nagle
    # against delayed ACK: +40 ms per 500 answer), which no real collector does.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with self.server.lock:
            counts = dict(self.server.requests)
        self._reply(200, json.dumps(counts).encode(), "application/json")

    def do_POST(self) -> None:
        srv = self.server
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with srv.lock:
            srv.requests[self.path] = srv.requests.get(self.path, 0) + 1
        try:
            if srv.mode == "slow":
                time.sleep(srv.hold_s)  # the thread sleeps: no CPU
            if srv.mode == "error":
                self._reply(500, b"collector failure", "text/plain")
            else:
                self._reply(200, b"", "application/x-protobuf")  # an empty Export*Response
        except OSError:
            pass  # the exporter gave up (its timeout) and closed the connection


def run_collector(mode: str, hold_s: float) -> int:
    collector = _Collector(mode, hold_s)
    print(f"PORT {collector.server_address[1]}", flush=True)
    try:
        collector.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


# ---------------------------------------------------------------------------------------------
# the worker (its own process: `--worker SPEC`)


@dataclass
class WorkerSpec:
    config: str
    pacing: str
    base_url: str
    endpoint: str  # OTLP base URL ("" for `none`)
    tokens: int
    calls: int
    warmup: int


@dataclass
class WorkerResult:
    config: str
    pacing: str
    wall: list[float] = field(default_factory=list)  # s per measured call
    cpu: list[float] = field(default_factory=list)  # process CPU s per measured call
    caller_cpu: list[float] = field(default_factory=list)  # the calling thread's CPU s
    first: list[float] = field(default_factory=list)  # s from the call to its first chunk
    tail: list[float] = field(default_factory=list)  # s from the last chunk to the call's end
    # CPU s per measured call of every other thread, by name, over the measured loop
    threads_cpu: dict[str, float] = field(default_factory=dict)
    raised: int = 0  # exceptions that reached the caller (warm-up included)
    first_error: str = ""
    incomplete: int = 0  # answers that were not whole
    active_calls: int = 0
    shutdown_s: float = 0.0
    peak_queue: int = -1  # -1: not observed
    queue_max: int = -1
    dropped: int = 0  # "Queue full" warnings of the span processor (one per dropped span)
    otel_logs: dict[str, int] = field(default_factory=dict)  # opentelemetry.* records by level
    handler_logs: int = 0  # logprobscope.* records at WARNING and above


class _LevelCounter(logging.Handler):
    """Counts records by level name (and swallows them: nothing is written)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] = self.counts.get(record.levelname, 0) + 1


class _QueueFullCounter(logging.Filter):
    """Counts the span processor's "Queue full" warnings; put before the SDK's dedup filter."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Queue full"):
            self.count += 1
        return True


def _span_queues(tracer_provider: object) -> list[Sequence[object]]:
    """The queues of the provider's BatchSpanProcessors (private SDK state; [] if it moved)."""
    try:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        active = getattr(tracer_provider, "_active_span_processor")  # noqa: B009
        processors = getattr(active, "_span_processors")  # noqa: B009
        return [
            getattr(getattr(p, "_batch_processor"), "_queue")  # noqa: B009
            for p in processors
            if isinstance(p, BatchSpanProcessor)
        ]
    except (AttributeError, ImportError):
        return []


def _threads_cpu() -> dict[str, float]:
    """CPU seconds so far of every live thread but the calling one, by thread name."""
    out: dict[str, float] = {}
    me = threading.get_ident()
    for thread in threading.enumerate():
        if thread.ident is None or thread.ident == me:
            continue
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, AttributeError):  # ended meanwhile, or not Linux
            continue
        name = thread.name.split("(")[0].strip()  # "Thread-3 (worker)" -> "Thread-3"
        out[name] = out.get(name, 0.0) + seconds
    return out


def _expected_text(tokens: int) -> str:
    from server import completion_body  # bench/server.py, next to this script

    body = json.loads(completion_body(tokens))
    return str(body["choices"][0]["message"]["content"])


def worker(spec: WorkerSpec) -> WorkerResult:
    from logprobscope import AIMessageChunk, ChatOpenAI
    from logprobscope.otel import (
        OpenTelemetryCallbackHandler,
        TelemetryHandle,
        configure_telemetry,
    )

    result = WorkerResult(config=spec.config, pacing=spec.pacing)
    otel_counter = _LevelCounter()
    logging.getLogger("opentelemetry").addHandler(otel_counter)
    ours_counter = _LevelCounter()
    ours_counter.setLevel(logging.WARNING)
    logging.getLogger("logprobscope").addHandler(ours_counter)
    queue_full = _QueueFullCounter()
    # Before the SDK's DuplicateFilter, which lets one identical warning through per 20 s.
    logging.getLogger("opentelemetry.sdk._shared_internal").filters.insert(0, queue_full)

    handle: TelemetryHandle | None = None
    handler: OpenTelemetryCallbackHandler | None = None
    if spec.config != "none":
        handle = configure_telemetry(
            service_name=f"bench-{spec.config}", otlp_endpoint=spec.endpoint, set_global=False
        )
        handler = OpenTelemetryCallbackHandler(
            tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider
        )
    expected = _expected_text(spec.tokens)
    model = ChatOpenAI(
        model=f"bench-{spec.tokens}",
        base_url=spec.base_url,
        api_key="bench",
        max_retries=0,
        timeout=30.0,
        logprobs=True,
        top_logprobs=3,
        callbacks=[handler] if handler is not None else None,
    )
    queues = _span_queues(handle.tracer_provider) if handle is not None else []

    def check(chunks: list[AIMessageChunk]) -> None:
        text = "".join(str(c.content) for c in chunks)
        finished = any(c.response_metadata.finish_reason == "stop" for c in chunks)
        if text != expected or not finished:
            result.incomplete += 1

    def call() -> tuple[float, float, float, float, float] | None:
        """(wall, process CPU, caller CPU, to the first chunk, last chunk to end) seconds."""
        chunks: list[AIMessageChunk] = []
        first = last = 0.0
        c0 = time.process_time()
        m0 = time.thread_time()
        t0 = time.perf_counter()
        try:
            for chunk in model.stream(PROMPT):
                last = time.perf_counter()
                if not chunks:
                    first = last
                chunks.append(chunk)
        except Exception as exc:  # the point: count what reaches the caller
            result.raised += 1
            result.first_error = result.first_error or repr(exc)[:500]
            return None
        t1 = time.perf_counter()
        m1 = time.thread_time()
        c1 = time.process_time()
        check(chunks)
        return t1 - t0, c1 - c0, m1 - m0, first - t0, t1 - last

    try:
        for _ in range(spec.warmup):
            call()
        if spec.config == "full-queue" and handle is not None:
            # Start from a full queue: the slow collector drains one span per export timeout.
            tracer = handle.tracer_provider.get_tracer("bench.fill")
            for _ in range(FULL_QUEUE_SIZE):
                tracer.start_span("bench.fill").end()
        time.sleep(SETTLE_S)  # let the exporters run once (first-export imports, connections)
        gc.collect()
        before = _threads_cpu()
        for _ in range(spec.calls):
            timed = call()
            if timed is not None:
                result.wall.append(timed[0])
                result.cpu.append(timed[1])
                result.caller_cpu.append(timed[2])
                result.first.append(timed[3])
                result.tail.append(timed[4])
            if queues:
                result.peak_queue = max(result.peak_queue, *(len(q) for q in queues))
        after = _threads_cpu()
        result.threads_cpu = {
            name: (seconds - before.get(name, 0.0)) / spec.calls
            for name, seconds in after.items()
            if seconds - before.get(name, 0.0) > 0
        }
        if queues:
            result.queue_max = max(int(getattr(q, "maxlen", 0) or 0) for q in queues)
        if handler is not None:
            result.active_calls = handler.active_calls
    finally:
        if handle is not None:
            t0 = time.perf_counter()
            handle.shutdown()
            result.shutdown_s = time.perf_counter() - t0
        model.close()
    result.dropped = queue_full.count
    result.otel_logs = dict(otel_counter.counts)
    result.handler_logs = sum(ours_counter.counts.values())
    return result


# ---------------------------------------------------------------------------------------------
# orchestration


@dataclass(frozen=True)
class Pacing:
    name: str
    ttft_ms: float
    chunk_ms: float
    calls: int
    warmup: int

    @property
    def label(self) -> str:
        if not self.ttft_ms and not self.chunk_ms:
            return "unpaced server (whole answer written at once)"
        return (
            f"paced server (first event after {self.ttft_ms:g} ms, then {self.chunk_ms:g} ms "
            "between events)"
        )


def _start(args: list[str], what: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        _stop(proc)
        raise SystemExit(f"{what} did not start: {line!r}")
    return proc, int(line.split()[1])


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _worker_env(config: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(OTEL_ENV)
    if config == "full-queue":
        env.update(FULL_QUEUE_ENV)
    return env


def _spawn(spec: WorkerSpec, timeout_s: float) -> tuple[WorkerResult | None, str]:
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(spec))],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=_worker_env(spec.config),
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return None, f"worker timed out after {timeout_s:.0f} s"
    if proc.returncode != 0:
        return None, proc.stderr.strip()[-3000:] or f"exit code {proc.returncode}"
    try:
        return WorkerResult(**json.loads(proc.stdout.strip().splitlines()[-1])), ""
    except (ValueError, IndexError, TypeError):
        return None, f"no result on stdout: {proc.stdout[-500:]!r} {proc.stderr[-2000:]!r}"


def _collector_counts(port: int) -> dict[str, int]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
            counts: dict[str, int] = json.loads(response.read())
        return counts
    except (OSError, ValueError):
        return {}


_VERSIONS = (
    "openai",
    "httpx2",
    "httpx",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
)


def _p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def _resampled_median(rng: random.Random, groups: list[list[float]]) -> float:
    """The pooled median of a two-level resample: processes, then calls within each."""
    pooled: list[float] = []
    for group in rng.choices(groups, k=len(groups)):
        pooled.extend(rng.choices(group, k=len(group)))
    return statistics.median(pooled)


def _median_diff_ci(
    a: list[list[float]], b: list[list[float]], resamples: int = 2000
) -> tuple[float, float]:
    """A 95% bootstrap interval of median(a) - median(b), a and b given per process.

    Processes are resampled, then calls within them: the spread between processes (and
    between the moments they ran) is in the interval, not only the spread between calls.
    """
    rng = random.Random(0)
    diffs = sorted(_resampled_median(rng, a) - _resampled_median(rng, b) for _ in range(resamples))
    return diffs[int(0.025 * resamples)], diffs[int(0.975 * resamples) - 1]


def render(
    *,
    command: str,
    pacings: list[Pacing],
    results: list[WorkerResult],
    errors: dict[str, str],
    machine: dict[str, str],
    rounds: int,
    tokens: int,
    hold_s: float,
    collector_counts: dict[str, dict[str, int]],
    elapsed: float,
    quick: bool,
) -> str:
    lines: list[str] = []
    add = lines.append
    add(
        "# Telemetry-side faults: wall time of a streamed call"
        + (" (quick smoke run: not a measurement)" if quick else "")
    )
    add("")
    add(
        f"`{command}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{elapsed / 60:.1f} min."
    )
    add("")
    add(
        f"- machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['platform']}; "
        f"load average at start {machine['load']}, at end {machine['load_end']}"
    )
    add(f"- python {machine['python']}; logprobscope at commit {machine['commit']}")
    add("- " + ", ".join(f"{k} {v}" for k, v in versions(_VERSIONS).items()))
    add(
        f"- each call: `ChatOpenAI(logprobs=True, top_logprobs=3).stream(...)` consumed to the "
        f"end, {tokens} one-token chunks (plus role, finish and usage chunks), the answer "
        "checked whole; wall time by `time.perf_counter`, CPU by `time.process_time` (the "
        "whole process, exporter threads included)"
    )
    add(
        f"- {rounds} round(s); each round runs every configuration in a fresh process, in a "
        "shuffled order; per process: "
        + "; ".join(f"{p.name}: {p.warmup} warm-up + {p.calls} measured calls" for p in pacings)
        + f", {SETTLE_S:g} s pause between. Statistics pool every measured call of every round."
    )
    add(
        "- telemetry: `configure_telemetry(otlp_endpoint=..., set_global=False)` (OTLP/HTTP "
        "span and metric exporters, BatchSpanProcessor, PeriodicExportingMetricReader) and "
        "`OpenTelemetryCallbackHandler` (defaults: span sampled, events=tokens); env "
        + ", ".join(f"`{k}={v}`" for k, v in OTEL_ENV.items())
        + "; `full-queue` also "
        + ", ".join(f"`{k}={v}`" for k, v in FULL_QUEUE_ENV.items())
        + f" and the queue filled with {FULL_QUEUE_SIZE} spans before measuring"
    )
    add(
        f"- collectors (own processes, OTLP/HTTP on 127.0.0.1): `ok` answers 200 at once, "
        f"`slow` holds each request {hold_s:g} s, `error` answers 500; `down` is a port where "
        "nothing listens. Requests received: "
        + (
            "; ".join(
                f"{mode}: " + (", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none")
                for mode, c in collector_counts.items()
            )
            or "—"
        )
    )
    add("")
    add("How to read it: the handler's own cost is `healthy − none` (its work on the calling")
    add("thread, plus the exporters' work competing for the GIL and the cores during the call);")
    add("a fault's cost is `fault − healthy`. The 95% interval is a two-level bootstrap")
    add("(processes, then calls); `healthy-again` is `healthy` once more in other processes, so")
    add("its difference to `healthy` is the noise floor of the run: a fault within it is not")
    add("distinguishable from a healthy collector. The unpaced server makes a call almost only")
    add("client CPU; the paced server's ~0.57 s call is closer to what users wait for.")

    by_key: dict[tuple[str, str], list[WorkerResult]] = {}
    for r in results:
        by_key.setdefault((r.pacing, r.config), []).append(r)

    def pooled(rs: list[WorkerResult], what: str) -> list[float]:
        return [t for r in rs for t in getattr(r, what)]

    for p in pacings:
        add("")
        add(f"## {p.name}: {p.label}")
        add("")
        add(
            "| configuration | median ms/call | p90 ms/call | ratio to none | vs healthy, ms "
            "[95% CI] | vs healthy | per-round medians, ms |"
        )
        add("|---|---:|---:|---:|---:|---:|---|")
        walls = {c: pooled(by_key.get((p.name, c), []), "wall") for c in CONFIGS}
        none_walls, healthy_walls = walls["none"], walls["healthy"]
        none_med = statistics.median(none_walls) if none_walls else None
        healthy_med = statistics.median(healthy_walls) if healthy_walls else None
        for c in CONFIGS:
            w = walls[c]
            if not w:
                add(f"| {c} | — | — | — | — | — | (no result) |")
                continue
            med = statistics.median(w)
            ratio = f"{med / none_med:.3f}x" if none_med else "—"
            if healthy_med is not None and c != "healthy":
                lo, hi = _median_diff_ci(
                    [r.wall for r in by_key[(p.name, c)] if r.wall],
                    [r.wall for r in by_key[(p.name, "healthy")] if r.wall],
                )
                vs = f"{(med - healthy_med) * 1e3:+.2f} [{lo * 1e3:+.2f}, {hi * 1e3:+.2f}]"
                vs_pct = f"{(med - healthy_med) / healthy_med * 100:+.1f}%"
            else:
                vs, vs_pct = "—", "—"
            per_round = ", ".join(
                f"{statistics.median(r.wall) * 1e3:.2f}" for r in by_key[(p.name, c)] if r.wall
            )
            add(
                f"| {c} | {med * 1e3:.2f} | {_p90(w) * 1e3:.2f} | {ratio} | {vs} | {vs_pct} | "
                f"{per_round} |"
            )
        add("")
        add(
            "Where the time goes (medians over calls; other threads: their CPU over the measured "
            "loop / calls, mean over rounds), ms per call:"
        )
        add("")
        names = sorted({n for r in results if r.pacing == p.name for n in r.threads_cpu})
        add(
            "| configuration | call → first chunk | last chunk → end | CPU, whole process | "
            "CPU, calling thread | " + " | ".join(f"CPU, `{n}`" for n in names) + " |"
        )
        add("|---|" + "---:|" * (4 + len(names)))
        for c in CONFIGS:
            rs = by_key.get((p.name, c), [])
            if not rs or not walls[c]:
                continue
            cells = [
                f"{statistics.median(pooled(rs, what)) * 1e3:.2f}"
                for what in ("first", "tail", "cpu", "caller_cpu")
            ] + [f"{sum(r.threads_cpu.get(n, 0.0) for r in rs) / len(rs) * 1e3:.2f}" for n in names]
            add(f"| {c} | " + " | ".join(cells) + " |")

    add("")
    add("## What reached the caller, and what the SDK did")
    add("")
    add(
        "| server | configuration | calls | exceptions raised into the caller | incomplete "
        "answers | `active_calls` after | `handle.shutdown()` s (max) | peak span queue | "
        "spans dropped (queue full) | OTel SDK log records | logprobscope warnings |"
    )
    add("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for p in pacings:
        for c in CONFIGS:
            rs = by_key.get((p.name, c), [])
            if not rs:
                continue
            logs: dict[str, int] = {}
            for r in rs:
                for level, n in r.otel_logs.items():
                    logs[level] = logs.get(level, 0) + n
            peak = max(r.peak_queue for r in rs)
            qmax = max(r.queue_max for r in rs)
            add(
                f"| {p.name} | {c} | {sum(len(r.wall) for r in rs)} | "
                f"{sum(r.raised for r in rs)} | {sum(r.incomplete for r in rs)} | "
                f"{max(r.active_calls for r in rs)} | {max(r.shutdown_s for r in rs):.2f} | "
                f"{'—' if peak < 0 else f'{peak}/{qmax}'} | {sum(r.dropped for r in rs)} | "
                f"{', '.join(f'{k} {v}' for k, v in sorted(logs.items())) or '—'} | "
                f"{sum(r.handler_logs for r in rs)} |"
            )
    first_errors = {f"{r.pacing} {r.config}": r.first_error for r in results if r.first_error}
    if first_errors:
        add("")
        add("First exception per worker that raised:")
        add("")
        for label, err in first_errors.items():
            add(f"- {label}: `{err}`")
    if errors:
        add("")
        add("## Failures")
        add("")
        for label, err in errors.items():
            add(f"- {label}:")
            add("")
            add("```")
            add(err)
            add("```")
    return "\n".join(lines) + "\n"


def orchestrate(args: argparse.Namespace) -> int:
    quick: bool = args.quick
    rounds = 1 if quick else args.rounds
    pacings = [
        Pacing("unpaced", 0.0, 0.0, 5 if quick else args.calls, 1 if quick else args.warmup),
        Pacing(
            "paced",
            args.ttft_ms,
            args.chunk_ms,
            2 if quick else args.paced_calls,
            1 if quick else args.paced_warmup,
        ),
    ]
    pacings = [p for p in pacings if p.name in args.pacings]
    settings = [a for a in args.argv if not a.startswith("--output")]  # not a setting
    if args.output and args.output in settings:
        settings.remove(args.output)
    command = " ".join([".venv/bin/python bench/telemetry_faults.py", *settings])
    started = time.monotonic()
    machine = host_machine()
    children: list[subprocess.Popen[str]] = []
    results: list[WorkerResult] = []
    errors: dict[str, str] = {}
    collector_counts: dict[str, dict[str, int]] = {}
    try:
        base_urls: dict[str, str] = {}
        for p in pacings:
            server_args = [str(HERE / "server.py"), "--warm", str(args.tokens)]
            if p.ttft_ms or p.chunk_ms:
                server_args += ["--ttft-ms", str(p.ttft_ms), "--chunk-ms", str(p.chunk_ms)]
            proc, port = _start(server_args, f"bench server ({p.name})")
            children.append(proc)
            base_urls[p.name] = f"http://127.0.0.1:{port}/v1"
        collector_ports: dict[str, int] = {}
        for mode in COLLECTOR_MODES:
            proc, port = _start(
                [str(Path(__file__).resolve()), "--collector", mode, "--hold", str(args.hold)],
                f"collector ({mode})",
            )
            children.append(proc)
            collector_ports[mode] = port
        endpoints = {c: f"http://127.0.0.1:{collector_ports[m]}" for c, m in COLLECTOR_OF.items()}
        endpoints["down"] = f"http://127.0.0.1:{_closed_port()}"
        endpoints["none"] = ""

        for p in pacings:
            per_call = (p.ttft_ms + (args.tokens + 3) * p.chunk_ms) / 1e3 + 0.05
            timeout_s = 120 + 3 * (p.calls + p.warmup) * per_call
            for r in range(rounds):
                order = [c for c in CONFIGS if not args.only or c in args.only]
                random.Random(f"{p.name}{r}").shuffle(order)
                for config in order:
                    spec = WorkerSpec(
                        config=config,
                        pacing=p.name,
                        base_url=base_urls[p.name],
                        endpoint=endpoints[config],
                        tokens=args.tokens,
                        calls=p.calls,
                        warmup=p.warmup,
                    )
                    label = f"{p.name} {config} round {r + 1}"
                    result, err = _spawn(spec, timeout_s)
                    if result is None:
                        errors[label] = err
                        print(f"FAILED {label}:\n{err}", flush=True)
                        continue
                    results.append(result)
                    med = statistics.median(result.wall) * 1e3 if result.wall else float("nan")
                    print(
                        f"  {time.monotonic() - started:5.0f}s  {label}: median {med:.2f} ms, "
                        f"raised {result.raised}, shutdown {result.shutdown_s:.2f} s",
                        flush=True,
                    )
        for mode, port in collector_ports.items():
            collector_counts[mode] = _collector_counts(port)
    finally:
        for proc in children:
            _stop(proc)
    machine["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report = render(
        command=command,
        pacings=pacings,
        results=results,
        errors=errors,
        machine=machine,
        rounds=rounds,
        tokens=args.tokens,
        hold_s=args.hold,
        collector_counts=collector_counts,
        elapsed=time.monotonic() - started,
        quick=quick,
    )
    print()
    print(report)
    if args.output:
        Path(args.output).write_text(report)
        print(f"written to {args.output}")
    problems = [
        f"{r.pacing} {r.config}: {what}"
        for r in results
        for what, bad in (
            (f"{r.raised} exception(s) reached the caller", r.raised),
            (f"{r.incomplete} incomplete answer(s)", r.incomplete),
            (f"active_calls {r.active_calls} after the calls", r.active_calls),
        )
        if bad
    ]
    if errors or problems:
        for line in [*(f"worker failed: {e}" for e in errors), *problems]:
            print(line, file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        description=doc.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: few calls, 1 round")
    parser.add_argument("--rounds", type=int, default=3, help="processes per configuration")
    parser.add_argument("--tokens", type=int, default=24, help="tokens per answer (bench-N)")
    parser.add_argument("--calls", type=int, default=50, help="measured calls, unpaced")
    parser.add_argument("--warmup", type=int, default=10, help="warm-up calls, unpaced")
    parser.add_argument("--paced-calls", type=int, default=6, help="measured calls, paced")
    parser.add_argument("--paced-warmup", type=int, default=1, help="warm-up calls, paced")
    parser.add_argument("--ttft-ms", type=float, default=150.0, help="paced server: TTFT")
    parser.add_argument(
        "--chunk-ms", type=float, default=15.0, help="paced server: delay between SSE events"
    )
    parser.add_argument(
        "--hold", type=float, default=2.0, help="seconds the slow collector holds a request"
    )
    parser.add_argument(
        "--pacings",
        nargs="+",
        choices=("unpaced", "paced"),
        default=["unpaced", "paced"],
        help="which servers to run against",
    )
    parser.add_argument(
        "--only", nargs="+", choices=CONFIGS, help="only these configurations (default: all)"
    )
    parser.add_argument("--output", help="also write the report to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--collector", choices=COLLECTOR_MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.collector:
        return run_collector(args.collector, args.hold)
    if args.worker:
        result = worker(WorkerSpec(**json.loads(args.worker)))
        print(json.dumps(asdict(result)), flush=True)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
