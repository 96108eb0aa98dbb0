"""The report (bench/results.md): targets, the peers table, the CPU table, memory, first chunk."""

from __future__ import annotations

import datetime
import statistics
from dataclasses import dataclass
from typing import Any

from _configs import LANGCHAIN_GENAI, PEERS, Config
from _stats import SLOW, Pair, Results, fmt_ms
from _targets import target_rows

__all__ = ["Report", "render"]


@dataclass
class Report:
    """Everything one run measured, and how."""

    command: str
    active: list[Config]
    skipped: dict[str, str]  # configuration -> what it needs that is missing
    sizes: list[int]
    results: Results
    mem: dict[str, dict[str, Any]]
    ttfc: dict[str, Any] | None
    errors: dict[str, str]
    machine: dict[str, str]
    versions: dict[str, str]
    rounds: int
    calls: dict[int, int]
    rss_n: int
    kept_n: int
    elapsed: float
    quick: bool
    note: str | None = None


def _pair(value: Pair | None, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "us":
        return f"{value.median * 1e6:+.1f} ({value.min * 1e6:+.1f})"
    if kind == "ms":
        return f"{value.median * 1e3:+.3f} ({value.min * 1e3:+.3f})"
    return f"{value.median:.2f}x ({value.min:.2f}x)"


def _peers_table(r: Report) -> list[str]:
    """Rows as in the issue: each peer and ours, per mode and entry point; N = 50, 200, 2,000."""
    sizes = [n for n in (50, 200, 2000) if n in r.sizes]
    skipped = r.skipped
    lines = [
        "| | " + " | ".join(f"N={n:,}" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]

    def section(title: str) -> None:
        lines.append(f"| **{title}** |" + " |" * len(sizes))

    def row(label: str, name: str, base: str, kind: str) -> None:
        if name in skipped:
            lines.append(f"| {label} | skipped: no `{skipped[name]}` |" + " |" * (len(sizes) - 1))
            return
        if kind == "x":
            cells = [_pair(r.results.ratio(name, base, n), kind) for n in sizes]
        else:
            cells = [_pair(r.results.added(name, base, n), kind) for n in sizes]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    raw = [("logprobscope `instrument_openai`", "ours")]
    raw += [(f"{p.label} (`{p.dist}`)", p.key) for p in PEERS]
    for mode, unit in (("stream", "chunk"), ("create", "token")):
        what = "streamed" if mode == "stream" else "non-streamed"
        section(f"{what}, raw client: µs added per {unit} over `sdk_{mode}`, median (min)")
        for label, key in raw:
            row(label, f"raw_{key}_{mode}", f"sdk_{mode}", "us")
    for mode, unit in (("invoke", "token"), ("stream", "chunk")):
        section(f"LangChain {mode}: µs added per {unit} over `langchain_{mode}`, median (min)")
        row(
            "logprobscope `LogprobsCallbackHandler`",
            f"langchain_ours_{mode}",
            f"langchain_{mode}",
            "us",
        )
        row(
            f"{LANGCHAIN_GENAI.label} (`{LANGCHAIN_GENAI.dist}`)",
            f"langchain_genai_{mode}",
            f"langchain_{mode}",
            "us",
        )
    section("our model + handler: ratio to the bare SDK, median (min)")
    row("stream (`otel_tokens` / `sdk_stream`), target ≤ 0.4x", "otel_tokens", "sdk_stream", "x")
    row(
        "invoke (`ours_invoke_otel` / `sdk_create`), target ≤ 1.0x",
        "ours_invoke_otel",
        "sdk_create",
        "x",
    )
    section("our model + handler: µs added per chunk/token over our model alone, median (min)")
    row("stream (`otel_tokens` - `ours_stream`)", "otel_tokens", "ours_stream", "us")
    row("invoke (`ours_invoke_otel` - `ours_invoke`)", "ours_invoke_otel", "ours_invoke", "us")
    return lines


def _fixed_cost_table(r: Report) -> list[str]:
    lines = [
        "| configuration | over | ms added per call, median (min) | call, median ms |",
        "|---|---|---:|---:|",
    ]
    for c in r.active:
        cell = r.results.cell(c.name, 1)
        if c.base is None or cell is None:
            continue
        added = r.results.added(c.name, c.base, 1)
        lines.append(f"| {c.name} | {c.base} | {_pair(added, 'ms')} | {fmt_ms(cell.median)} |")
    return lines


def _cpu_table(r: Report) -> list[str]:
    lines = [
        "| configuration | N | median ms | min ms | per-process medians, ms | over | µs added "
        "per chunk/token, median (min) | ratio to bare SDK, median (min) |",
        "|---|---:|---:|---:|---|---|---:|---:|",
    ]
    for c in r.active:
        for n in r.sizes:
            cell = r.results.cell(c.name, n) if n in c.sizes else None
            if cell is None:
                continue
            slow = set(cell.slow)
            per = "/".join(
                f"**{fmt_ms(m)}**" if i in slow else fmt_ms(m)
                for i, m in enumerate(cell.per_process)
            )
            added = _pair(r.results.added(c.name, c.base, n), "us") if c.base else "—"
            ratio = "—" if c.group == "sdk" else _pair(r.results.ratio(c.name, c.ratio_to, n), "x")
            lines.append(
                f"| {c.name} | {n:,} | {fmt_ms(cell.median)} | {fmt_ms(cell.min)} | p: {per} | "
                f"{c.base or '—'} | {added} | {ratio} |"
            )
    return lines


def _slow_summary(r: Report) -> str:
    flagged = []
    total = 0
    for c in r.active:
        for n in r.sizes:
            cell = r.results.cell(c.name, n) if n in c.sizes else None
            if cell is None:
                continue
            total += 1
            if cell.slow:
                flagged.append(f"{c.name} N={n:,} (p{', p'.join(str(i + 1) for i in cell.slow)})")
    if not flagged:
        return f"- No process ran slow: no per-process median is > {SLOW}x the others' median."
    return (
        f"- Processes whose median is > {SLOW}x the median of the others' (bold in the table): "
        f"{len(flagged)} of {total} rows: " + "; ".join(flagged) + "."
    )


def _memory_table(r: Report) -> list[str]:
    lines = [
        f"| configuration | peak RSS added by one call of {r.rss_n:,} chunks | kept per token "
        f"(result held, N={r.kept_n:,}) |",
        "|---|---:|---:|",
    ]
    for c in r.active:
        m = r.mem.get(c.name)
        if m is None:
            lines.append(f"| {c.name} | — | — |")
            continue
        lines.append(
            f"| {c.name} | {m['rss_kib'] / 1024:,.1f} MiB | "
            f"{m['kept_bytes'] / m['kept_n'] / 1024:,.2f} KB |"
        )
    return lines


def _ttfc_table(ttfc: dict[str, Any]) -> list[str]:
    wall, cpu = ttfc["wall"], ttfc["cpu"]
    sdk_med, sdk_min = statistics.median(wall["sdk"]), min(wall["sdk"])
    sdk_cpu = statistics.median(cpu["sdk"])
    lines = [
        "| variant | median ms | min ms | CPU median ms | added vs bare SDK (median) | "
        "added (min) | added CPU (median) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in wall:
        m, lo, c_m = statistics.median(wall[key]), min(wall[key]), statistics.median(cpu[key])
        added = "—" if key == "sdk" else f"{(m - sdk_med) * 1e3:+.3f} ms"
        added_lo = "—" if key == "sdk" else f"{(lo - sdk_min) * 1e3:+.3f} ms"
        added_cpu = "—" if key == "sdk" else f"{(c_m - sdk_cpu) * 1e3:+.3f} ms"
        lines.append(
            f"| {key} | {m * 1e3:.3f} | {lo * 1e3:.3f} | {c_m * 1e3:.3f} | {added} | "
            f"{added_lo} | {added_cpu} |"
        )
    return lines


def _header(r: Report) -> list[str]:
    m = r.machine
    calls = ", ".join(f"{r.calls.get(n, 1)} at N={n:,}" for n in r.sizes)
    return [
        "# Benchmark results" + (" (quick smoke run: not a measurement)" if r.quick else ""),
        "",
        f"`{r.command}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{r.elapsed / 60:.1f} min.",
        "",
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['platform']}; load average at start "
        f"{m['load']}, at end {m['load_end']}",
        f"- python {m['python']}; logprobscope at commit {m['commit']}"
        + (f" ({r.note})" if r.note else ""),
        "- " + ", ".join(f"{k} {v}" for k, v in r.versions.items()),
        f"- {r.rounds} round(s); each round runs every configuration in a fresh process, in a "
        f"shuffled order. Per process, after warm-up and `gc.freeze()`, calls measured: {calls}."
        " Median and min are over every measured call of every process (pooled); the "
        "per-process medians are listed in the CPU table.",
        "- Added per chunk/token = (configuration - its base) / N at the same N, from the "
        "medians and, separately, from the mins; ratios likewise. CPU time of the whole client "
        "process (`time.process_time()`, all threads: the batch processors' export threads are "
        "charged, their queues flushed after each loop).",
        "- N = content chunks of one token each, top_logprobs=3 (plus a role, a finish and a "
        "usage chunk); server: `bench/server.py`, a separate process, pre-serialised answers, "
        "HTTP/1.1 chunked, one SSE event per HTTP chunk.",
        "- Telemetry: every instrumented configuration gets the same SDK providers: "
        "TracerProvider (ALWAYS_ON; ALWAYS_OFF for `otel_tokens_unsampled`) with a "
        "BatchSpanProcessor, MeterProvider with a PeriodicExportingMetricReader, LoggerProvider "
        "with a BatchLogRecordProcessor, each exporting to an exporter that discards. Content "
        "capture is on everywhere. Each worker checks in its warm-up that its configuration "
        "exported spans (one per call), the prompt's text, and its logprobs (ours, "
        "OpenInference) or events (OpenTelemetry GenAI), so none can look cheap by recording "
        "nothing.",
        "- CPU time on a shared machine varies (identical calls differ by up to 2x when other "
        "work runs): read the median and the min together.",
    ]


def render(r: Report) -> str:
    """The whole report, markdown."""
    lines = _header(r)
    add = lines.extend
    add(["", "## Targets", ""])
    add(target_rows(r.results, sizes=r.sizes, mem=r.mem, ttfc=r.ttfc))
    add(["", "Verdicts are the medians'; the figure from the mins is given next to it.", ""])
    add(["## Peers", ""])
    add(_peers_table(r))
    add(["", "## Fixed cost of a call (N=1)", ""])
    add(_fixed_cost_table(r))
    add(["", "## CPU time of the client process", ""])
    add(_cpu_table(r))
    add(["", _slow_summary(r)])
    if r.skipped:
        add(
            [
                "- skipped (not installed): "
                + ", ".join(f"`{k}` (no `{v}`)" for k, v in r.skipped.items())
            ]
        )
    add(["", "Configurations (`over`: the base its added cost is read against):", ""])
    add(
        f"- `{c.name}`: {c.what}" + (f"; over `{c.base}`" if c.base else "; a base")
        for c in r.active
    )
    add(["", "## Memory", ""])
    add(_memory_table(r))
    add(
        [
            "",
            "Peak RSS: `ru_maxrss` after the call minus before it, in a fresh process per "
            "configuration (after warm-up). Kept per token: `tracemalloc` bytes still allocated "
            "after the call with its result held (batch processors flushed, `gc.collect()`), "
            "divided by N: our streaming configurations and LangChain's hold the aggregate of the "
            "stream (for the memory probe the OTel configurations aggregate too, so their excess "
            "over `ours_agg` is what the handler keeps), the raw-client streams the list of the "
            "SDK's chunks (the SDK has no aggregation), the non-streamed ones the completion or "
            "message. Target ≤ 0.6 KB for an aggregated message (`ours_agg`).",
        ]
    )
    add(["", "## Time to first chunk", ""])
    if r.ttfc is None:
        add(["(not measured)"])
    else:
        n, samples = r.ttfc.get("n", "?"), len(r.ttfc["wall"]["sdk"])
        add(
            [
                f"N={n}, {samples} calls of each variant, alternating in one process (wall time "
                "from the call to the first chunk; the first chunk is the role-only one).",
                "",
            ]
        )
        add(_ttfc_table(r.ttfc))
        add(["", "Target: the wrapper adds ≤ 0.2 ms (`ours` vs `sdk`)."])
    if r.errors:
        add(["", "## Failures", ""])
        for label, err in r.errors.items():
            add([f"- {label}:", "", "```", err, "```"])
    return "\n".join(lines) + "\n"
