"""Trace `top_logprobs=3`: every token event carries its alternatives' logprobs, the span the
entropy and margin over them. With content capture the token texts are there too.

    python examples/otel_top_logprobs.py

Content capture (token texts, alternatives' texts, messages) is off by default; this example
turns it on with `capture_content=True` (or set
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true). With OPENAI_API_KEY or
OPENAI_BASE_URL set this calls that endpoint; otherwise it replays recorded answers.
"""

from __future__ import annotations

import math
import os
from contextlib import ExitStack

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from logprobscope import ChatOpenAI
from logprobscope.otel import OpenTelemetryCallbackHandler, configure_telemetry
from logprobscope.testing import ReplayServer


def main() -> None:
    spans = InMemorySpanExporter()
    telemetry = configure_telemetry(service_name="logprobscope-example", span_exporters=[spans])
    with ExitStack() as stack:
        base_url = None
        if not (os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")):
            base_url = stack.enter_context(ReplayServer()).base_url
            print(f"No OPENAI_API_KEY or OPENAI_BASE_URL: replaying from {base_url}")
        handler = OpenTelemetryCallbackHandler(capture_content=True, low_confidence_threshold=0.9)
        model = ChatOpenAI(
            model="gpt-4o", logprobs=True, top_logprobs=3, base_url=base_url, callbacks=[handler]
        )
        list(model.stream("How are you today?"))

    telemetry.force_flush()
    [span] = spans.get_finished_spans()
    attributes = span.attributes or {}
    print(f"\n{span.name!r}")
    print(f"  mean entropy over the top 3: {attributes['logprobs.entropy.mean']:.4f} nat")
    print(f"  mean margin p(top1) - p(top2): {attributes['logprobs.margin.mean']:.4f}")
    print(f"  tokens below p = 0.9: {attributes['logprobs.low_confidence.count']}")
    for event in span.events[:4]:
        attrs = event.attributes or {}
        alternatives = ", ".join(
            f"{token!r} p={math.exp(lp):.3f}"
            for token, lp in zip(
                attrs["logprobs.token.top_tokens"],
                attrs["logprobs.token.top_logprobs"],
                strict=True,
            )
        )
        print(f"  {attrs['logprobs.token.text']!r:12} <- {alternatives}")
    telemetry.shutdown()


if __name__ == "__main__":
    main()
