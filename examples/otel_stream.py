"""Trace a stream under your own request span: one `logprobs.token` event per token, on the
stream's timeline.

    python examples/otel_stream.py

With OPENAI_API_KEY or OPENAI_BASE_URL set this calls that endpoint; otherwise it replays
recorded answers from a local server. With OTEL_EXPORTER_OTLP_ENDPOINT set (for example
http://127.0.0.1:4318, the collector of examples/jaeger), the telemetry also goes there:
open Jaeger, find the trace `handle request` and its child `chat gpt-4o`.
"""

from __future__ import annotations

import os
from contextlib import ExitStack

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from logprobscope import ChatOpenAI
from logprobscope.otel import OpenTelemetryCallbackHandler, configure_telemetry
from logprobscope.testing import ReplayServer


def main() -> None:
    spans = InMemorySpanExporter()
    telemetry = configure_telemetry(service_name="logprobscope-example", span_exporters=[spans])
    tracer = trace.get_tracer("example")
    with ExitStack() as stack:
        base_url = None
        if not (os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")):
            base_url = stack.enter_context(ReplayServer()).base_url
            print(f"No OPENAI_API_KEY or OPENAI_BASE_URL: replaying from {base_url}")
        model = ChatOpenAI(
            model="gpt-4o",
            logprobs=True,
            base_url=base_url,
            callbacks=[OpenTelemetryCallbackHandler()],
        )
        with tracer.start_as_current_span("handle request"):
            text = "".join(chunk.content for chunk in model.stream("How are you today?"))
        print(f"answer: {text!r}")

    telemetry.force_flush()
    chat = next(s for s in spans.get_finished_spans() if s.name.startswith("chat"))
    parent = chat.parent.span_id if chat.parent else None
    request = next(s for s in spans.get_finished_spans() if s.name == "handle request")
    print(f"\n{chat.name!r} is a child of 'handle request': {parent == request.context.span_id}")
    attributes = chat.attributes or {}
    print(f"  time to first chunk: {attributes['gen_ai.response.time_to_first_chunk']:.4f} s")
    print(f"  stream completed: {attributes['logprobs.stream.completed']}")
    start = chat.events[0].timestamp
    for event in chat.events[:6]:
        attrs = event.attributes or {}
        offset_ms = (event.timestamp - start) / 1e6
        print(
            f"  +{offset_ms:7.3f} ms  token #{attrs['logprobs.token.index']}"
            f"  logprob {attrs['logprobs.token.logprob']:.6f}"
        )
    print(f"  ... {len(chat.events)} events, mode {attributes['logprobs.events.mode']!r}")
    telemetry.shutdown()


if __name__ == "__main__":
    main()
