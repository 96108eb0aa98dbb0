"""Trace one `invoke`: a span `chat gpt-4o` with every token's logprob, plus metrics.

    python examples/otel_invoke.py

With OPENAI_API_KEY or OPENAI_BASE_URL set this calls that endpoint; otherwise it replays
recorded answers from a local server. With OTEL_EXPORTER_OTLP_ENDPOINT set (for example
http://127.0.0.1:4318, the collector of examples/jaeger), the telemetry also goes there.
"""

from __future__ import annotations

import os
from contextlib import ExitStack

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from logprobscope import ChatOpenAI
from logprobscope.otel import OpenTelemetryCallbackHandler, configure_telemetry
from logprobscope.testing import ReplayServer


def main() -> None:
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry = configure_telemetry(
        service_name="logprobscope-example", span_exporters=[spans], metric_readers=[metrics]
    )
    with ExitStack() as stack:
        base_url = None
        if not (os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")):
            base_url = stack.enter_context(ReplayServer()).base_url
            print(f"No OPENAI_API_KEY or OPENAI_BASE_URL: replaying from {base_url}")
        model = ChatOpenAI(
            model="gpt-4o",
            logprobs=True,
            base_url=base_url,
            callbacks=[OpenTelemetryCallbackHandler()],  # the global providers set up above
        )
        message = model.invoke("How are you today?")
        print(f"answer: {message.content!r}")

    telemetry.force_flush()
    [span] = spans.get_finished_spans()
    attributes = span.attributes or {}
    print(f"\nspan {span.name!r}, {len(span.events)} events")
    for key in ("logprobs.token_count", "logprobs.mean", "logprobs.perplexity", "logprobs.min"):
        print(f"  {key} = {attributes[key]}")
    index = attributes["logprobs.min_index"]
    print(f"  least likely token: #{index}")
    first = span.events[0]
    print(f"  first event: {first.name} {dict(first.attributes or {})}")
    names = sorted(
        m.name
        for rm in metrics.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    )
    print("\nmetrics: " + ", ".join(names))
    telemetry.shutdown()


if __name__ == "__main__":
    main()
