"""The issue's targets, each read from this run's numbers (none is hard-coded as met).

The verdict is the median's; where the figure from the mins disagrees, the row says so.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Literal

from _stats import Pair, Results

__all__ = ["TARGETS", "Target", "target_rows"]

Kind = Literal["added_us", "added_ms", "ratio", "growth"]


@dataclass(frozen=True)
class Target:
    """`config` against `base` at each of `sizes`: at most `limit` (µs, ms or x)."""

    label: str
    kind: Kind
    config: str
    base: str
    sizes: tuple[int, ...]
    limit: float


TARGETS: tuple[Target, ...] = (
    Target(
        "streamed, raw client, `instrument_openai`: added per chunk over `sdk_stream`",
        "added_us",
        "raw_ours_stream",
        "sdk_stream",
        (200, 2000),
        25.0,
    ),
    Target(
        "non-streamed, raw client, `instrument_openai`: added per token over `sdk_create`",
        "added_us",
        "raw_ours_create",
        "sdk_create",
        (200, 2000),
        6.0,
    ),
    Target(
        "LangChain handler, stream: added per chunk over `langchain_stream`",
        "added_us",
        "langchain_ours_stream",
        "langchain_stream",
        (200, 2000),
        25.0,
    ),
    Target(
        "LangChain handler, invoke: added per token over `langchain_invoke`",
        "added_us",
        "langchain_ours_invoke",
        "langchain_invoke",
        (200, 2000),
        6.0,
    ),
    Target(
        "our model + handler, stream (`otel_tokens`) / bare SDK stream",
        "ratio",
        "otel_tokens",
        "sdk_stream",
        (50, 200, 2000),
        0.4,
    ),
    Target(
        "our model + handler, invoke (`ours_invoke_otel`) / bare SDK create",
        "ratio",
        "ours_invoke_otel",
        "sdk_create",
        (50, 200, 2000),
        1.0,
    ),
    Target(
        "fixed cost of a call through the handler, stream: `otel_tokens` - `ours_stream`",
        "added_ms",
        "otel_tokens",
        "ours_stream",
        (1,),
        0.15,
    ),
    Target(
        "fixed cost of a call through the handler, invoke: `ours_invoke_otel` - `ours_invoke`",
        "added_ms",
        "ours_invoke_otel",
        "ours_invoke",
        (1,),
        0.15,
    ),
    Target(
        "(previous) stream, no handler (`ours_stream`) / bare SDK stream",
        "ratio",
        "ours_stream",
        "sdk_stream",
        (2000,),
        0.35,
    ),
    Target(
        "(previous) stream + OTel tokens, sampled (`otel_tokens`) / bare SDK stream",
        "ratio",
        "otel_tokens",
        "sdk_stream",
        (2000,),
        0.5,
    ),
    Target(
        "(previous) stream + OTel tokens, sampled out (`otel_tokens_unsampled`) / bare SDK stream",
        "ratio",
        "otel_tokens_unsampled",
        "sdk_stream",
        (2000,),
        0.4,
    ),
    Target(
        "(previous) invoke + OTel handler (`ours_invoke_otel`) / bare SDK create",
        "ratio",
        "ours_invoke_otel",
        "sdk_create",
        (2000,),
        1.0,
    ),
    Target(
        "(previous) stream + `agg = agg + chunk` (`ours_agg`): per-chunk cost at 32,000 / at 2,000",
        "growth",
        "ours_agg",
        "ours_agg",
        (32000,),
        1.3,
    ),
)


def _value(results: Results, t: Target, n: int) -> Pair | None:
    if t.kind == "ratio":
        return results.ratio(t.config, t.base, n)
    if t.kind == "growth":
        return results.per_chunk_growth(t.config, 2000, n)
    return results.added(t.config, t.base, n)


def _show(kind: Kind, value: float) -> str:
    if kind == "added_us":
        return f"{value * 1e6:+.1f} µs"
    if kind == "added_ms":
        return f"{value * 1e3:+.3f} ms"
    return f"{value:.2f}x"


def _scale(kind: Kind, value: float) -> float:
    return value * 1e6 if kind == "added_us" else value * 1e3 if kind == "added_ms" else value


def _verdict(median_ok: bool, min_ok: bool | None) -> str:
    verdict = "met" if median_ok else "**missed**"
    if min_ok is not None and min_ok != median_ok:
        verdict += f" (from the mins: {'met' if min_ok else 'missed'})"
    return verdict


def _limit(kind: Kind, limit: float) -> str:
    return {"added_us": f"{limit:g} µs", "added_ms": f"{limit:g} ms"}.get(kind, f"{limit:.2f}x")


def target_rows(
    results: Results,
    *,
    sizes: list[int],
    mem: dict[str, dict[str, Any]],
    ttfc: dict[str, Any] | None,
) -> list[str]:
    """The targets table (markdown lines): measured median, min, verdict."""
    rows = ["| target | N | measured (median) | measured (min) | verdict |"]
    rows.append("|---|---:|---:|---:|---|")
    for t in TARGETS:
        for n in t.sizes:
            label = f"{t.label} ≤ {_limit(t.kind, t.limit)}"
            value = _value(results, t, n) if n in sizes else None
            if value is None:
                rows.append(f"| {label} | {n:,} | — | — | not measured |")
                continue
            ok = _scale(t.kind, value.median) <= t.limit
            min_ok = _scale(t.kind, value.min) <= t.limit
            rows.append(
                f"| {label} | {n:,} | {_show(t.kind, value.median)} | "
                f"{_show(t.kind, value.min)} | {_verdict(ok, min_ok)} |"
            )
    kept = mem.get("ours_agg")
    label = "(previous) memory kept per token, aggregated message (`ours_agg`) ≤ 0.60 KB"
    if kept:
        kb = kept["kept_bytes"] / kept["kept_n"] / 1024
        rows.append(
            f"| {label} | {kept['kept_n']:,} | {kb:.2f} KB | — | {_verdict(kb <= 0.6, None)} |"
        )
    else:
        rows.append(f"| {label} | — | — | — | not measured |")
    label = "(previous) time to first chunk added by the wrapper (`ours` - `sdk`) ≤ 0.2 ms"
    if ttfc is not None:
        wall = ttfc["wall"]
        added = (statistics.median(wall["ours"]) - statistics.median(wall["sdk"])) * 1e3
        added_lo = (min(wall["ours"]) - min(wall["sdk"])) * 1e3
        rows.append(
            f"| {label} | {ttfc.get('n', 20)} | {added:+.3f} ms | {added_lo:+.3f} ms | "
            f"{_verdict(added <= 0.2, added_lo <= 0.2)} |"
        )
    else:
        rows.append(f"| {label} | — | — | — | not measured |")
    return rows
