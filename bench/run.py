"""Client CPU benchmark: logprobscope and its peers against the bare openai SDK and LangChain.

    bash bench/setup.sh && .venvs/bench/bin/python bench/run.py          # full run, results.md
    bash bench/setup.sh && .venvs/bench/bin/python bench/run.py --quick  # CI's smoke run

Every configuration (`_configs.py`) runs in a fresh interpreter per round; rounds run the
configurations in a shuffled order, one at a time, so that background load hits them alike.
A worker (`_workers.py`) warms up, checks that its configuration records, freezes the heap,
then measures `time.process_time()` around each call. The server (`server.py`) is a separate
process serving pre-serialised answers, so its CPU is never counted. The report
(`_report.py`, `_targets.py`) gives each configuration's added CPU per chunk or token over its
own base, from the medians and from the mins, each process's median, memory per token and the
time to the first chunk.

The workers import logprobscope from this checkout's `src/` (put first on their path), so the
bench measures the sources next to it whatever the venv has installed; the bench venv
(`setup.sh`) brings the peers, which must not share the dev venv.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _builds import WORKER_ENV, Bench, build
from _configs import BY_NAME, CALLS, CONFIGS, LANGCHAIN_GENAI, PEERS, Config, missing
from _machine import machine as host_machine
from _machine import versions
from _report import Report, render
from _stats import Results
from _telemetry import _DiscardSpans
from _workers import TTFC_N, worker_mem, worker_quick, worker_time, worker_ttfc

# profile_hot.py and otel_costs.py use these from here.
__all__ = ["BY_NAME", "Bench", "_DiscardSpans", "_start_server", "build", "main"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROUNDS = 3
MEM_N = 20000  # peak RSS of one call of this many chunks
KEPT_N = 2000  # bytes kept per token, measured on a call of this many chunks
TTFC_SAMPLES = 300
FULL_SIZES = [1, 50, 200, 2000, 32000]
QUICK_SIZES = [1, 200]
_VERSIONS = (
    "openai",
    "httpx2",
    "httpx",
    "pydantic",
    "pydantic-core",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "langchain-core",
    "langchain-openai",
    "wrapt",
    *(p.dist for p in PEERS),
    LANGCHAIN_GENAI.dist,
    "opentelemetry-util-genai",
    "openinference-instrumentation",
    "opentelemetry-semantic-conventions-ai",
)


def _start_server(warm: list[int]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), "--warm", *map(str, warm)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"bench server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def _worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENINFERENCE_HIDE_")}
    env.update(WORKER_ENV)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + path if path else "")
    return env


def _spawn(args: list[str]) -> tuple[dict[str, Any] | None, str]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_worker_env(),
    )
    if proc.returncode != 0:
        return None, proc.stderr.strip()[-3000:] or f"exit code {proc.returncode}"
    try:
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, f"no result on stdout: {proc.stdout[-500:]!r} {proc.stderr[-2000:]!r}"
    return result, ""


def _command(quick: bool) -> str:
    exe = Path(sys.executable)
    try:
        python = str(exe.relative_to(ROOT)) if exe.is_absolute() else str(exe)
    except ValueError:
        python = "python"
    return f"{python} bench/run.py" + (" --quick" if quick else "")


class _Collector:
    """Gathers the workers' results as they come; prints progress."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.results = Results()
        self.mem: dict[str, dict[str, Any]] = {}
        self.ttfc: dict[str, Any] | None = None
        self.errors: dict[str, str] = {}

    def record(self, label: str, result: dict[str, Any] | None, err: str) -> None:
        if result is None:
            self.errors[label] = err
            print(f"FAILED {label}:\n{err}", flush=True)
            return
        if "wall" in result:  # the time-to-first-chunk worker's
            self.ttfc = result
            result = {}
        for n, times in result.get("cpu", {}).items():
            self.results.add(result["config"], int(n), times)
        if "rss_kib" in result:
            self.mem[result["config"]] = result
        print(f"  {label}: {time.monotonic() - self.started:5.0f}s", flush=True)


def _run_jobs(jobs: list[tuple[str, list[str]]], collector: _Collector, *, parallel: int) -> None:
    if parallel <= 1:
        for label, args in jobs:
            collector.record(label, *_spawn(args))
        return
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [(label, pool.submit(_spawn, args)) for label, args in jobs]
        for label, future in futures:
            collector.record(label, *future.result())


def _langchain_first(configs: list[Config]) -> list[Config]:
    # The slowest (LangChain's imports, its quadratic aggregation) first, not last alone.
    return sorted(configs, key=lambda c: c.group != "langchain")


def orchestrate(args: argparse.Namespace) -> int:
    quick: bool = args.quick
    sizes = QUICK_SIZES if quick else FULL_SIZES
    rounds = 1 if quick else args.rounds
    calls = {n: 1 for n in sizes} if quick else CALLS
    rss_n, kept_n = (500, 200) if quick else (MEM_N, KEPT_N)
    started = time.monotonic()
    machine = host_machine()

    configs = [c for c in CONFIGS if not args.only or c.name in args.only]
    skipped = {c.name: m for c in configs if (m := missing(c)) is not None}
    active = [c for c in configs if c.name not in skipped]
    for name, what in skipped.items():
        print(f"skip {name}: {what} is not installed", flush=True)

    server, base_url = _start_server(sorted({*sizes, rss_n, kept_n, TTFC_N}))
    collector = _Collector(started)
    ttfc_job = (
        "ttfc",
        ["--worker-ttfc", base_url, str(TTFC_N), str(10 if quick else TTFC_SAMPLES)],
    )
    try:
        if quick:
            # Timing is not looked at: two processes at a time, each configuration's one
            # process doing its calls and its memory probes.
            jobs = [
                (
                    f"quick {c.name}",
                    [
                        "--worker-quick",
                        c.name,
                        base_url,
                        json.dumps([n for n in sizes if n in c.sizes]),
                        str(rss_n),
                        str(kept_n),
                    ],
                )
                for c in _langchain_first(active)
            ]
            _run_jobs([*jobs, ttfc_job], collector, parallel=2)
        else:
            jobs = []
            for r in range(rounds):
                order = list(active)
                random.Random(r).shuffle(order)
                jobs += [
                    (
                        f"time {c.name} round {r + 1}",
                        [
                            "--worker-time",
                            c.name,
                            base_url,
                            json.dumps([n for n in sizes if n in c.sizes]),
                        ],
                    )
                    for c in order
                ]
            _run_jobs([*jobs, ttfc_job], collector, parallel=1)
            # Memory is not timing: two processes at a time.
            mem_jobs = [
                (f"mem {c.name}", ["--worker-mem", c.name, base_url, str(rss_n), str(kept_n)])
                for c in _langchain_first(active)
            ]
            _run_jobs(mem_jobs, collector, parallel=2)
    finally:
        server.kill()
        server.wait()
    machine["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if collector.ttfc is not None:
        collector.ttfc["n"] = TTFC_N

    report = render(
        Report(
            command=_command(quick),
            active=active,
            skipped=skipped,
            sizes=sizes,
            results=collector.results,
            mem=collector.mem,
            ttfc=collector.ttfc,
            errors=collector.errors,
            machine=machine,
            versions=versions(_VERSIONS),
            rounds=rounds,
            calls=calls,
            rss_n=rss_n,
            kept_n=kept_n,
            elapsed=time.monotonic() - started,
            quick=quick,
            note=args.note,
        )
    )
    print()
    print(report)
    out = args.output or (None if quick else HERE / "results.md")
    if out:
        Path(out).write_text(report)
        print(f"written to {out}")
    if collector.errors:
        failed = ", ".join(collector.errors)
        print(f"{len(collector.errors)} job(s) failed: {failed}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI's smoke run (N=1 and 200, once)")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--only", nargs="*", help="only these configurations")
    parser.add_argument("--output", help="write the report here (default bench/results.md)")
    parser.add_argument("--note", help="a line for the report (what src/ held, say)")
    parser.add_argument("--worker-time", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--worker-mem", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--worker-quick", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--worker-ttfc", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    result: dict[str, Any]
    if args.worker_time:
        name, base_url, sizes = args.worker_time
        result = worker_time(name, base_url, json.loads(sizes))
    elif args.worker_mem:
        name, base_url, rss_n, kept_n = args.worker_mem
        result = worker_mem(name, base_url, int(rss_n), int(kept_n))
    elif args.worker_quick:
        name, base_url, sizes, rss_n, kept_n = args.worker_quick
        result = worker_quick(name, base_url, json.loads(sizes), int(rss_n), int(kept_n))
    elif args.worker_ttfc:
        base_url, n, samples = args.worker_ttfc
        result = worker_ttfc(base_url, int(n), int(samples))
    else:
        return orchestrate(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
