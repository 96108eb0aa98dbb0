"""The worker side: one fresh process measures one configuration and prints its numbers.

Every worker warms up first (calls at each size it will measure, up to 2,000), checks that
the configuration recorded what it should (`Providers.verify`), then `gc.collect()` and
`gc.freeze()`: the import-time heap moves to the permanent generation, so that no measured
call pays a full collection of it (without it the second large call in each process did).
CPU is `time.process_time()` around each measured call: the whole process, all threads, so
the batch processors' export threads are charged too (their queues are flushed after each
size's loop and that time is spread over the loop's calls).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

from _builds import MESSAGES, PROMPT, Bench, build
from _configs import BY_NAME, CALLS
from _telemetry import providers

__all__ = ["TTFC_N", "worker_mem", "worker_quick", "worker_time", "worker_ttfc"]

TTFC_N = 20
_WARM_CALLS = {1: 5, 50: 2, 200: 2, 2000: 1}


def _warm_up(name: str, bench: Bench, sizes: list[int]) -> None:
    """Warm-up calls, the recording check, then the heap frozen."""
    calls = 0
    for n in sorted({min(n, 2000) for n in sizes}):  # a 32,000-chunk call is not repeated
        for _ in range(_WARM_CALLS.get(n, 1)):
            bench.run(n)
            calls += 1
    config = BY_NAME[name]
    if bench.telemetry is not None:
        bench.telemetry.verify(name, config.expect, calls, PROMPT)
    elif not config.expect.nothing:
        raise AssertionError(f"{name} has no telemetry set up")
    gc.collect()
    gc.freeze()


def _measure(bench: Bench, n: int, repeats: int) -> list[float]:
    """CPU seconds of each of `repeats` calls."""
    times: list[float] = []
    for _ in range(repeats):
        if bench.timed is not None:
            times.append(bench.timed(n))
            continue
        t0 = time.process_time()
        result = bench.run(n)
        del result
        t1 = time.process_time()
        times.append(t1 - t0)
    # Background export work (the batch processors' threads) is charged to the calls.
    t0 = time.process_time()
    bench.flush()
    spread = (time.process_time() - t0) / repeats
    return [t + spread for t in times]


def worker_time(
    name: str, base_url: str, sizes: list[int], calls: dict[int, int] | None = None
) -> dict[str, Any]:
    """CPU seconds of every measured call, per size: {"config", "cpu": {N: [s, ...]}}."""
    bench = build(name, base_url)
    _warm_up(name, bench, sizes)
    calls = calls or CALLS
    out = {str(n): _measure(bench, n, calls.get(n, 1)) for n in sorted(sizes)}
    return {"config": name, "cpu": out}


def _maxrss_kib() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _memory(bench: Bench, rss_n: int, kept_n: int) -> dict[str, int]:
    """Peak RSS added by one call of rss_n chunks; bytes kept by a result of kept_n."""
    import tracemalloc

    bench.keep(min(kept_n, 2000))
    gc.collect()
    base = _maxrss_kib()
    result = bench.run(rss_n)
    peak = _maxrss_kib()
    del result
    gc.collect()

    bench.keep(kept_n)  # warm again at the kept size (caches, pools)
    gc.collect()
    bench.flush()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = bench.keep(kept_n)
    bench.flush()  # spans waiting in the BatchSpanProcessor's queue are not kept
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return {"rss_n": rss_n, "rss_kib": peak - base, "kept_n": kept_n, "kept_bytes": after - before}


def worker_mem(name: str, base_url: str, rss_n: int, kept_n: int) -> dict[str, Any]:
    """The memory probes of one configuration, in a process of its own."""
    bench = build(name, base_url)
    _warm_up(name, bench, [min(kept_n, 2000)])
    return {"config": name, **_memory(bench, rss_n, kept_n)}


def worker_quick(
    name: str, base_url: str, sizes: list[int], rss_n: int, kept_n: int
) -> dict[str, Any]:
    """The smoke run's one process per configuration: one call per size, the memory probes."""
    bench = build(name, base_url)
    _warm_up(name, bench, sizes)
    out = {str(n): _measure(bench, n, 1) for n in sorted(sizes)}
    return {"config": name, "cpu": out, **_memory(bench, rss_n, kept_n)}


def worker_ttfc(base_url: str, n: int, samples: int) -> dict[str, Any]:
    """Wall and CPU time to the first chunk: the bare SDK, ours, ours + the OTel handler,
    alternating in one process."""
    import openai

    from logprobscope import ChatOpenAI
    from logprobscope.otel import OpenTelemetryCallbackHandler

    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)
    create: Any = client.chat.completions.create
    variants: dict[str, Callable[[], Iterator[object]]] = {
        "sdk": lambda: iter(
            create(
                model=f"bench-{n}",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
                logprobs=True,
                top_logprobs=3,
            )
        ),
    }
    ours = ChatOpenAI(model=f"bench-{n}", logprobs=True, top_logprobs=3, client=client)
    variants["ours"] = lambda: ours.stream(PROMPT)
    telemetry = providers()
    handler = OpenTelemetryCallbackHandler(
        events="tokens",
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        capture_content=True,
    )
    ours_otel = ours.with_callbacks([handler])
    variants["ours_otel_tokens"] = lambda: ours_otel.stream(PROMPT)
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for i in range(samples + 5):
        if i == 5:  # the first rounds warm up
            gc.collect()
            gc.freeze()
        order = names if i % 2 == 0 else names[::-1]
        for key in order:
            c0 = time.process_time()
            t0 = time.perf_counter()
            it = variants[key]()
            next(it)
            t1 = time.perf_counter()
            c1 = time.process_time()
            for _ in it:
                pass
            if i >= 5:
                wall[key].append(t1 - t0)
                cpu[key].append(c1 - c0)
    return {"wall": wall, "cpu": cpu}
