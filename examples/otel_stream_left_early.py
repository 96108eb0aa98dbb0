"""A stream left early still ends its span: `logprobs.stream.completed = false`, and the
summary covers the tokens that were read.

    python examples/otel_stream_left_early.py

With OPENAI_API_KEY or OPENAI_BASE_URL set this calls that endpoint; otherwise it replays
recorded answers from a local server.
"""

from __future__ import annotations

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
        model = ChatOpenAI(
            model="gpt-4o",
            logprobs=True,
            base_url=base_url,
            callbacks=[OpenTelemetryCallbackHandler()],
        )
        # `with` closes the stream when the block is left, so the span ends right here.
        with model.stream("How are you today?") as stream:
            for count, chunk in enumerate(stream):
                print(f"chunk {count}: {chunk.content!r}")
                if count == 4:
                    break

    telemetry.force_flush()
    [span] = spans.get_finished_spans()
    attributes = span.attributes or {}
    print(f"\n{span.name!r}: stream completed = {attributes['logprobs.stream.completed']}")
    print(f"  tokens seen: {attributes['logprobs.token_count']}, events: {len(span.events)}")
    print(f"  status: {span.status.status_code.name} (leaving early is not an error)")
    telemetry.shutdown()


if __name__ == "__main__":
    main()
