"""Spans shaped by the TELEMETRY.md contract, made with the OpenTelemetry SDK directly.

They stand in for the OpenTelemetry handler's output where a test needs exact control over
the events (batched mode, low-confidence mode, hostile token texts, no content capture).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from logprobscope.report import OTLPJsonFileSpanExporter

Token = tuple[str, float, Sequence[tuple[str, float]]]

SEED_TOP: list[Token] = [
    ("I'm", -2.2864406, [("Thank", -0.28644064), ("Hello", -2.0364406), ("I'm", -2.2864406)]),
    (" just", -0.14442946, [(" just", -0.14442946), (" an", -2.3944294), (" a", -3.8944294)]),
    (" a", -0.0000028160932, [(" a", -0.0000028160932), (" an", -13.25), (" here", -14.6)]),
    ("!", -0.4740771, [("!", -0.4740771), (" you", -1.0990771), (".", -5.974077)]),
]

HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_TOKENS: list[Token] = [
    ("Hi", -0.01, [("Hi", -0.01), ("</script><script>alert(2)</script>", -5.0)]),
    (HOSTILE, -1.2, [(HOSTILE, -1.2), ("&amp;\"'", -1.5)]),
    ("\x1b[31m\u2028", -0.3, [("\x1b[31m\u2028", -0.3), ("<b>", -2.0)]),
]


def write_call(
    path: Path,
    tokens: Sequence[Token],
    *,
    mode: str = "tokens",
    capture: bool = True,
    stream: bool = True,
    model: str = "gpt-4o",
    batch_size: int = 2,
    threshold: float = 0.5,
    error: bool = False,
    start: int = 1_700_000_000_000_000_000,
) -> Path:
    """Append one `chat {model}` span with `tokens` to `path` (OTLP JSON lines)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "contract-test"}))
    exporter = OTLPJsonFileSpanExporter(path)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("logprobscope")
    k = max((len(t[2]) for t in tokens), default=0)
    span = tracer.start_span(
        f"chat {model}",
        kind=SpanKind.CLIENT,
        start_time=start,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model,
            "gen_ai.request.stream": stream,
            "server.address": "127.0.0.1",
            "server.port": 8000,
        },
    )
    logprobs = [t[1] for t in tokens]
    for i, (text, lp, alts) in enumerate(tokens):
        at = start + 40_000_000 + i * 15_000_000
        if mode == "tokens" or (mode == "low_confidence" and math.exp(lp) < threshold):
            attrs: dict[str, object] = {
                "logprobs.token.index": i,
                "logprobs.token.logprob": lp,
                "logprobs.token.top_logprobs": [a[1] for a in alts],
            }
            if capture:
                attrs["logprobs.token.text"] = text
                attrs["logprobs.token.bytes"] = list(text.encode("utf-8"))
                attrs["logprobs.token.top_tokens"] = [a[0] for a in alts]
            span.add_event("logprobs.token", attrs, timestamp=at)  # type: ignore[arg-type]
    if mode == "batched":
        for s in range(0, len(tokens), batch_size):
            chunk = tokens[s : s + batch_size]
            attrs = {
                "logprobs.tokens.start_index": s,
                "logprobs.tokens.logprobs": [t[1] for t in chunk],
                "logprobs.tokens.top_logprobs": [a[1] for t in chunk for a in t[2]],
            }
            if capture:
                attrs["logprobs.tokens.texts"] = [t[0] for t in chunk]
                attrs["logprobs.tokens.top_tokens"] = [a[0] for t in chunk for a in t[2]]
            at = start + 40_000_000 + (s + len(chunk)) * 15_000_000
            span.add_event("logprobs.tokens", attrs, timestamp=at)  # type: ignore[arg-type]
    n = len(tokens)
    mean = sum(logprobs) / n if n else 0.0
    summary: dict[str, object] = {
        "logprobs.enabled": True,
        "logprobs.top_logprobs": k,
        "logprobs.token_count": n,
        "logprobs.events.mode": mode,
        "logprobs.low_confidence.threshold": threshold,
        "logprobs.low_confidence.count": sum(1 for lp in logprobs if math.exp(lp) < threshold),
        "gen_ai.response.model": model + "-2024-08-06",
        "gen_ai.response.finish_reasons": ["stop"],
    }
    if n:
        summary |= {
            "logprobs.sum": sum(logprobs),
            "logprobs.mean": mean,
            "logprobs.perplexity": math.exp(-mean),
            "logprobs.min": min(logprobs),
            "logprobs.min_index": logprobs.index(min(logprobs)),
        }
    if stream:
        summary["logprobs.stream.completed"] = True
        summary["gen_ai.response.time_to_first_chunk"] = 0.04
    for key, value in summary.items():
        span.set_attribute(key, value)  # type: ignore[arg-type]
    if error:
        span.set_attribute("error.type", "openai.APIConnectionError")
        span.record_exception(ValueError("cut <b>off</b>"))
        span.set_status(Status(StatusCode.ERROR, "cut off"))
    span.end(end_time=start + 60_000_000 + n * 15_000_000)
    provider.shutdown()
    return path
