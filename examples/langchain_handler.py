"""LangChain users: one callback handler gives the logprob spans, events and metrics.

`LogprobsCallbackHandler` on a `langchain_openai.ChatOpenAI(logprobs=True, top_logprobs=k)`
emits, per model run (invoke, stream, ainvoke, astream, batch, inside chains), one span
`chat {model}` with one event per token and the logprob summary attributes, and the
`logprobs.*` / `gen_ai.client.*` metrics: the same as logprobscope's own ChatOpenAI.

With OPENAI_API_KEY or OPENAI_BASE_URL set this talks to that endpoint; otherwise it starts the
replay server from `logprobscope.testing` on 127.0.0.1 and says so. Spans are printed here from
an in-memory exporter; set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://127.0.0.1:6006 for
Phoenix) to also send them over OTLP.

    pip install 'logprobscope[langchain,otlp]'
    python examples/langchain_handler.py
"""

from __future__ import annotations

import os
from contextlib import ExitStack

from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from logprobscope.langchain import LogprobsCallbackHandler
from logprobscope.otel import configure_telemetry
from logprobscope.testing import ReplayServer


def main() -> None:
    with ExitStack() as stack:
        base_url = os.environ.get("OPENAI_BASE_URL")
        api_key = os.environ.get("OPENAI_API_KEY")
        if not (api_key or base_url):
            base_url = stack.enter_context(ReplayServer()).base_url
            api_key = "not-needed"
            print(
                f"No OPENAI_API_KEY or OPENAI_BASE_URL: replaying recorded answers from {base_url}"
            )

        spans = InMemorySpanExporter()
        telemetry = configure_telemetry(service_name="langchain-example", span_exporters=[spans])
        stack.callback(telemetry.shutdown)

        # The one line a LangChain user adds: the handler, on the model or on a call's config.
        handler = LogprobsCallbackHandler(
            tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        )
        model = ChatOpenAI(
            model=os.environ.get("LOGPROBSCOPE_MODEL", "gpt-4o"),
            base_url=base_url,
            api_key=api_key,  # type: ignore[arg-type]
            logprobs=True,
            top_logprobs=3,
            stream_usage=True,
            callbacks=[handler],
        )

        model.invoke("how are you today?")
        for _ in model.stream("How are you today?"):
            pass

        def ask(text: str) -> str:
            return f"Answer in five words: {text}"

        chain = RunnableLambda(ask) | model  # the model's run is traced inside the chain too
        chain.invoke("what is a logprob?")

        telemetry.force_flush()
        for span in spans.get_finished_spans():
            attrs = span.attributes or {}
            print(
                f"\n{span.name} (stream={attrs.get('gen_ai.request.stream')}): "
                f"{attrs.get('logprobs.token_count')} tokens, "
                f"perplexity {attrs.get('logprobs.perplexity', float('nan')):.3f}, "
                f"least likely token #{attrs.get('logprobs.min_index')} "
                f"(logprob {attrs.get('logprobs.min', float('nan')):.3f}), "
                f"{len(span.events)} events"
            )
            for event in span.events[:3]:
                print(f"   {event.name} {dict(event.attributes or {})}")


if __name__ == "__main__":
    main()
