"""The SVG timeline of a streamed call: when each token arrived, and its probability."""

from __future__ import annotations

import math

from ._format import bucket, escape, fmt_p, token_name
from ._records import ModelCall

__all__ = ["render_timeline"]


def render_timeline(call: ModelCall, call_no: int) -> str:
    """The figure for a streamed call with token times, else "" (nothing to plot)."""
    timed = [(k, t) for k, t in enumerate(call.tokens) if t.time_unix_nano is not None]
    if not call.stream or len({t.time_unix_nano for _, t in timed}) < 2:
        return ""
    start = call.start_unix_nano
    last = max(t.time_unix_nano or 0 for _, t in timed)
    span_ns = max(last, call.end_unix_nano) - start
    if span_ns <= 0:
        return ""
    width, height = 900, 190
    left, right, top, bottom = 44, 16, 14, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    total_ms = span_ns / 1e6

    def x(ns: int) -> float:
        return left + plot_w * max(0, ns - start) / span_ns

    def y(p: float) -> float:
        p = 0.0 if math.isnan(p) else min(1.0, max(0.0, p))
        return top + plot_h * (1 - p)

    out = [
        f'<figure><svg class="timeline" data-call="{call_no}" viewBox="0 0 {width} {height}" '
        'role="img" aria-label="Token arrival timeline">',
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
        f'y2="{top + plot_h}"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>',
    ]
    for p in (0.0, 0.5, 1.0):
        out.append(f'<text x="{left - 6}" y="{y(p) + 4:.1f}" text-anchor="end">{p:g}</text>')
    threshold = call.low_confidence_threshold
    out.append(
        f'<line class="thr" x1="{left}" y1="{y(threshold):.1f}" x2="{left + plot_w}" '
        f'y2="{y(threshold):.1f}"><title>low-confidence threshold p = {threshold:g}</title></line>'
    )
    for i in range(5):
        ms = total_ms * i / 4
        out.append(
            f'<text x="{left + plot_w * i / 4:.1f}" y="{height - 12}" '
            f'text-anchor="{"start" if i == 0 else "end" if i == 4 else "middle"}">'
            f"{ms:,.0f} ms</text>"
        )
    ttfc = call.time_to_first_chunk_s
    if ttfc is not None and 0 <= ttfc * 1e9 <= span_ns:
        tx = x(start + int(ttfc * 1e9))
        out.append(
            f'<line class="ttfc" x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{top + plot_h}">'
            f"<title>first chunk after {ttfc * 1000:.1f} ms</title></line>"
        )
    for k, token in timed:
        p = token.probability
        _, colour = bucket(p)
        ns = token.time_unix_nano or start
        title = f"{token_name(token)} p={fmt_p(p)} at +{(ns - start) / 1e6:.1f} ms"
        out.append(
            f'<circle cx="{x(ns):.1f}" cy="{y(p):.1f}" r="3.5" fill="{colour}" data-k="{k}">'
            f"<title>{escape(title)}</title></circle>"
        )
    out.append("</svg>")
    out.append(
        '<figcaption class="muted">Token timeline: when each token arrived (ms since the call '
        "started) and its probability; the dashed red line is the low-confidence threshold"
        f"{', the dotted blue one the first chunk' if ttfc is not None else ''}.</figcaption>"
        "</figure>"
    )
    return "".join(out)
