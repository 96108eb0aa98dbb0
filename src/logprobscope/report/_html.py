"""One self-contained HTML page from model calls: tokens coloured by probability.

No external resource of any kind: the CSS and JavaScript (package data, ``assets/``) are
inlined and allowed by hash in a Content-Security-Policy (``default-src 'none'``), so the
page cannot load or send anything.

Every string from the trace is made printable (`logprobscope._printable`: control, bidi and
invisible characters as visible escapes, as in the terminal) and HTML-escaped when rendered
on the server; the per-token details the script shows are embedded as JSON (``<``, ``>``,
``&`` escaped), token texts as quoted printable literals, and put into the page with
``textContent`` only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path

from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_SYSTEM_INSTRUCTIONS,
)
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME

from .. import _contract as n
from .._figures import least_likely, probability
from ._fields_table import render_fields
from ._format import (
    BUCKETS,
    bucket,
    escape,
    fmt,
    fmt_lp,
    fmt_p,
    json_number,
    literal,
    token_label,
    token_name,
)
from ._records import ModelCall, TokenRecord
from ._timeline import render_timeline

__all__ = ["render_html", "write_html"]


def _asset(name: str) -> str:
    """A file of `assets/`, without its final newline (the page inlines it as it is)."""
    return (files("logprobscope.report") / "assets" / name).read_text(encoding="utf-8").strip()


# Read once, at import: the page inlines them and the CSP allows exactly these texts by hash.
_CSS = _asset("report.css")
_JS = _asset("report.js")


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


_CSP = (
    "default-src 'none'; "
    f"style-src 'sha256-{_sha256(_CSS)}'; "
    f"script-src 'sha256-{_sha256(_JS)}'; "
    "img-src 'none'; base-uri 'none'; form-action 'none'"
)


def _gap(missing: int) -> str:
    return (
        f'<span class="gap">[… {missing} token{"s" if missing > 1 else ""} not recorded …]</span>'
    )


def _render_tokens(
    call: ModelCall,
    call_no: int,
    tokens: Sequence[TokenRecord] | None = None,
    count: int | None = None,
    stream: str | None = None,
) -> str:
    # Choice 0's content by default; `stream` names another list of the page's data.
    if tokens is None:
        tokens, count = call.tokens, call.token_count
    if not tokens and stream is None and call.refusal_tokens:
        return '<p class="muted">No content tokens: the model refused (below).</p>'
    if not tokens:
        mode = call.events_mode or "unknown"
        return (
            '<p class="muted">No token events in this span (events mode: '
            f"{escape(mode)}): the summary attributes are all there is.</p>"
        )
    threshold = call.low_confidence_threshold
    holder = f' data-stream="{stream}"' if stream else ""
    parts = [f'<div class="tokens" data-call="{call_no}"{holder}>']
    expected = 0
    for k, token in enumerate(tokens):
        if token.index > expected:
            parts.append(_gap(token.index - expected))
        expected = token.index + 1
        p = token.probability
        cls, _ = bucket(p)
        classes = ["tok", cls]
        if p < threshold:
            classes.append("low")
        if token.text is None:
            classes.append("notext")
        elif token.text == "":
            classes.append("empty")
        parts.append(
            f'<span class="{" ".join(classes)}" tabindex="0" data-k="{k}" '
            f'aria-describedby="lps-tip">{escape(token_label(token))}</span>'
        )
    if (count or 0) > expected:
        parts.append(_gap((count or 0) - expected))
    parts.append("</div>")
    return "".join(parts)


def _refusal(call: ModelCall, call_no: int) -> str:
    if not call.refusal_tokens and not call.refusal_token_count:
        return ""
    figures = call.refusal_figures
    perplexity = figures.get(n.LOGPROBS_PERPLEXITY)
    lowest = figures.get(n.LOGPROBS_MIN)
    facts = [f"{call.refusal_token_count} tokens"]
    if perplexity is not None:
        facts.append(f"perplexity {fmt(float(perplexity))}")
    if lowest is not None:
        facts.append(f"min p {fmt_p(probability(float(lowest)))}")
    tokens = _render_tokens(
        call, call_no, call.refusal_tokens, call.refusal_token_count, stream="refusal"
    )
    return f'<h3>Refusal</h3><p class="muted">{escape(" · ".join(facts))}</p>{tokens}'


def _least_likely_table(call: ModelCall) -> str:
    if not call.tokens:
        return ""
    picks = least_likely([t.logprob for t in call.tokens], count=5)
    rows = []
    for k in picks:
        token = call.tokens[k]
        alts = ", ".join(
            f"{'#' + str(j + 1) if a.token is None else literal(a.token)} {fmt_p(a.probability)}"
            for j, a in enumerate(token.alternatives)
        )
        name = escape(token_name(token))
        rows.append(
            f'<tr><td class="num">{token.index}</td><td class="mono">{name}</td>'
            f'<td class="num">{fmt_p(token.probability)}</td><td class="num">'
            f'{fmt_lp(token.logprob)}</td><td class="mono">{escape(alts) or "—"}</td></tr>'
        )
    return (
        '<h3>Least likely tokens</h3><table><thead><tr><th class="num">#</th><th>token</th>'
        '<th class="num">p</th><th class="num">logprob</th><th>top alternatives</th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _summary(call: ModelCall) -> str:
    items: list[tuple[str, str]] = []

    def add(label: str, value: object) -> None:
        if value is not None and value != "":
            items.append((label, escape(value)))

    add("model", call.model)
    if call.response_model and call.response_model != call.model:
        add("response model", call.response_model)
    add("tokens", call.token_count)
    if call.refusal_token_count:
        add("refusal tokens", call.refusal_token_count)
    others = call.attr_int(n.LOGPROBS_OTHER_CHOICES_TOKEN_COUNT)
    if others:
        add("other choices' tokens", others)
    add("perplexity", fmt(call.perplexity))
    add("mean logprob", fmt_lp(call.mean_logprob))
    total = call.sum_logprob
    if total is not None:
        add("sum logprob", fmt(total))
    min_lp = call.min_logprob
    if min_lp is not None:
        min_p = fmt_p(probability(min_lp))
        idx = call.min_index
        add("min probability", f"{min_p}" + (f" (token #{idx})" if idx is not None else ""))
    low = call.low_confidence_count
    if low is not None:
        add(f"low confidence (p < {call.low_confidence_threshold:g})", low)
    entropy = call.entropy_mean
    if entropy is not None:
        add("mean entropy (top-k, nats)", fmt(entropy))
    margin = call.margin_mean
    if margin is not None:
        add("mean margin p1 − p2", fmt(margin))
    add("top_logprobs k", call.attr_int(n.LOGPROBS_TOP_LOGPROBS))
    add("duration", f"{call.duration_s * 1000:,.1f} ms")
    ttfc = call.time_to_first_chunk_s
    if ttfc is not None:
        add("time to first chunk", f"{ttfc * 1000:,.1f} ms")
    add("streamed", "yes" if call.stream else "no")
    completed = call.attr_bool(n.LOGPROBS_STREAM_COMPLETED)
    if completed is not None:
        add("stream read to its end", "yes" if completed else "no")
    reasons = call.attributes.get(n.GEN_AI_RESPONSE_FINISH_REASONS)
    if isinstance(reasons, tuple):
        add("finish reasons", ", ".join(str(r) for r in reasons))
    usage_in = call.attr_int(n.GEN_AI_USAGE_INPUT_TOKENS)
    usage_out = call.attr_int(n.GEN_AI_USAGE_OUTPUT_TOKENS)
    if usage_in is not None or usage_out is not None:
        add(
            "usage in / out",
            f"{usage_in if usage_in is not None else '?'} / "
            f"{usage_out if usage_out is not None else '?'}",
        )
    temperature = call.attr_float(n.GEN_AI_REQUEST_TEMPERATURE)
    if temperature is not None:
        add("temperature", f"{temperature:g}")
    mode = call.events_mode
    recorded = len(call.tokens)
    events = f"{mode or 'unknown'}, {recorded} of {call.token_count} tokens recorded"
    dropped = call.attr_int(n.LOGPROBS_EVENTS_DROPPED)
    if dropped:
        events += f", {dropped} dropped"
    if call.dropped_events:
        events += f", {call.dropped_events} span events dropped by the SDK"
    add("token events", events)
    add("content captured", "yes" if call.content_captured else "no (positions and numbers only)")
    address = call.attr_str(n.SERVER_ADDRESS)
    if address:
        port = call.attr_int(n.SERVER_PORT)
        add("server", f"{address}:{port}" if port is not None else address)
    add("response id", call.attr_str(n.GEN_AI_RESPONSE_ID))
    add("status", call.status_code + (f": {call.status_message}" if call.status_message else ""))
    if call.exception:
        add("exception", call.exception)
    error_type = call.attr_str(n.ERROR_TYPE)
    if error_type:
        add(n.ERROR_TYPE, error_type)
    add("trace / span", f"{call.trace_id} / {call.span_id}")
    service = call.resource.get(SERVICE_NAME)
    if isinstance(service, str):
        add("service", service)
    body = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in items)
    return f'<dl class="summary">{body}</dl>'


def _messages(call: ModelCall) -> str:
    out = []
    for key, label in (
        (GEN_AI_SYSTEM_INSTRUCTIONS, "System instructions"),
        (n.GEN_AI_INPUT_MESSAGES, "Input messages"),
        (n.GEN_AI_OUTPUT_MESSAGES, "Output messages"),
    ):
        value = call.attributes.get(key)
        if value is None:
            continue
        text = value if isinstance(value, str) else repr(value)
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except (ValueError, TypeError):
            pass
        out.append(f"<details><summary>{label}</summary><pre>{escape(text)}</pre></details>")
    return "".join(out)


def _badges(call: ModelCall) -> str:
    badges = []
    if call.stream:
        badges.append('<span class="badge">stream</span>')
    if call.attr_bool(n.LOGPROBS_STREAM_COMPLETED) is False:
        badges.append('<span class="badge err">incomplete</span>')
    if call.status_code == "ERROR":
        badges.append('<span class="badge err">error</span>')
    if (call.tokens or call.other_tokens) and not call.content_captured:
        badges.append('<span class="badge">no content capture</span>')
    return "".join(badges)


def _call_section(call: ModelCall, call_no: int) -> str:
    return (
        f'<section class="call" id="call-{call_no}" aria-labelledby="call-{call_no}-h">'
        f'<h2 id="call-{call_no}-h">{call_no + 1}. {escape(call.name)}{_badges(call)}</h2>'
        f"{_summary(call)}"
        f"<h3>Tokens</h3>{_render_tokens(call, call_no)}"
        f"{_refusal(call, call_no)}"
        f"{render_fields(call)}"
        f"{render_timeline(call, call_no)}"
        f"{_least_likely_table(call)}"
        f"{_messages(call)}"
        "</section>"
    )


def _or_dash(value: int | None) -> str:
    return "—" if value is None else str(value)


def _overview(calls: Sequence[ModelCall]) -> str:
    rows = []
    for i, call in enumerate(calls):
        min_lp = call.min_logprob
        min_p = None if min_lp is None or math.isnan(min_lp) else probability(min_lp)
        rows.append(
            f'<tr><td class="num"><a href="#call-{i}">{i + 1}</a></td>'
            f"<td>{escape(call.model)}{' (stream)' if call.stream else ''}</td>"
            f'<td class="num">{call.token_count}</td>'
            f'<td class="num">{fmt(call.perplexity)}</td>'
            f'<td class="num">{fmt_p(min_p)}</td>'
            f'<td class="num">{_or_dash(call.low_confidence_count)}</td>'
            f'<td class="num">{call.duration_s * 1000:,.0f} ms</td>'
            f"<td>{escape(call.status_code)}</td></tr>"
        )
    return (
        '<table class="overview"><thead><tr><th class="num">#</th><th>model</th>'
        '<th class="num">tokens</th><th class="num">perplexity</th><th class="num">min p</th>'
        '<th class="num">low-conf.</th><th class="num">duration</th><th>status</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _legend() -> str:
    swatches = "".join(
        f'<span class="sw {cls}">{escape(label)}</span>' for _, cls, _, label in BUCKETS
    )
    return (
        f'<div class="legend"><span class="muted">token probability:</span>{swatches}'
        '<span class="muted">· dotted underline: below the low-confidence threshold · hover or '
        "focus (Tab, ← →) a token for its alternatives</span></div>"
    )


def _rows(call: ModelCall, tokens: Sequence[TokenRecord]) -> list[list[object]]:
    return [
        [
            t.index,
            json_number(t.logprob),
            literal(t.text),
            None
            if t.time_unix_nano is None
            else round((t.time_unix_nano - call.start_unix_nano) / 1e6, 3),
            [[literal(a.token), json_number(a.logprob)] for a in t.alternatives],
        ]
        for t in tokens
    ]


def _data(calls: Sequence[ModelCall]) -> str:
    payload = {
        "calls": [
            {
                "threshold": call.low_confidence_threshold,
                "tokens": _rows(call, call.tokens),
                "refusal": _rows(call, call.refusal_tokens),
            }
            for call in calls
        ]
    }
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_html(
    calls: Sequence[ModelCall],
    *,
    title: str = "logprobscope report",
    sources: Sequence[str] = (),
    generated_at: datetime | None = None,
) -> str:
    """The report page for `calls`, as one self-contained HTML document."""
    moment = generated_at or datetime.now(timezone.utc)
    source_text = ", ".join(os.path.basename(s) for s in sources)
    body = "".join(_call_section(call, i) for i, call in enumerate(calls))
    if not calls:
        body = '<p class="muted">No model calls in these traces.</p>'
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1>"
        f'<p class="muted">{len(calls)} model call{"s" if len(calls) != 1 else ""}'
        f"{' from ' + escape(source_text) if source_text else ''} · generated "
        f"{escape(moment.strftime('%Y-%m-%d %H:%M:%S %Z'))} by logprobscope</p>{_legend()}"
        f"{_overview(calls) if calls else ''}</header>"
        f"<main>{body}</main>"
        '<footer class="muted">Probabilities are exp(logprob) as the API returned them; '
        "alternatives are the server's top-k at each position. This page loads nothing from "
        "the network.</footer>"
        '<div id="lps-tip" role="tooltip" hidden></div>'
        "<noscript><p>Token details on hover need JavaScript; the tables above work without it."
        "</p></noscript>"
        f'<script type="application/json" id="lps-data">{_data(calls)}</script>'
        f"<script>{_JS}</script>"
        "</body></html>\n"
    )
    return page.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def write_html(
    path: str | os.PathLike[str],
    calls: Sequence[ModelCall],
    *,
    title: str = "logprobscope report",
    sources: Sequence[str] = (),
) -> Path:
    """Write `render_html(calls)` to `path` (UTF-8); return the path."""
    target = Path(path)
    target.write_text(render_html(calls, title=title, sources=sources), encoding="utf-8")
    return target
