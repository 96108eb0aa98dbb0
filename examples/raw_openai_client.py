"""Raw `openai` SDK users: one line gives the logprob spans, events and metrics.

`instrument_openai(client)` wraps that client's `chat.completions.create` (sync or async,
streamed or not; `instrument_openai()` does it for every client). Your code and the SDK's
objects stay as they are: a `ChatCompletion` is returned untouched, a stream yields the SDK's
own chunks. Each call emits one span `chat {model}` with one event per token and the logprob
summary attributes, and the `logprobs.*` / `gen_ai.client.*` metrics: the same as
logprobscope's own ChatOpenAI. `uninstrument_openai(client)` undoes it.

With OPENAI_API_KEY or OPENAI_BASE_URL set this talks to that endpoint; otherwise it starts the
replay server from `logprobscope.testing` on 127.0.0.1 and says so. The metrics are served for
Prometheus on 127.0.0.1 (a free port, printed) while it runs; spans are printed from an
in-memory exporter (set OTEL_EXPORTER_OTLP_ENDPOINT to also send them over OTLP).

    pip install 'logprobscope[prometheus]'
    python examples/raw_openai_client.py
"""

from __future__ import annotations

import asyncio
import os
from contextlib import ExitStack

import openai
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from logprobscope.instrument import instrument_openai, uninstrument_openai
from logprobscope.otel import LogprobTelemetry, configure_telemetry
from logprobscope.testing import ReplayServer

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "how are you today?"}]


async def async_calls(client: openai.AsyncOpenAI, model: str) -> None:
    await client.chat.completions.create(
        model=model, messages=MESSAGES, logprobs=True, top_logprobs=3
    )
    stream = await client.chat.completions.create(
        model=model, messages=MESSAGES, logprobs=True, top_logprobs=3, stream=True
    )
    async for _ in stream:
        pass


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
        model = os.environ.get("LOGPROBSCOPE_MODEL", "gpt-4o")

        spans = InMemorySpanExporter()
        telemetry = configure_telemetry(
            service_name="raw-client-example", span_exporters=[spans], prometheus_port=0
        )
        stack.callback(telemetry.shutdown)
        recorder = LogprobTelemetry(
            tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        )

        client = stack.enter_context(openai.OpenAI(base_url=base_url, api_key=api_key))
        instrument_openai(client, telemetry=recorder)  # <- the one line

        completion = client.chat.completions.create(
            model=model, messages=MESSAGES, logprobs=True, top_logprobs=3
        )
        print(f"\n{type(completion).__name__}: {completion.choices[0].message.content!r}")
        with client.chat.completions.create(
            model=model,
            messages=MESSAGES,
            logprobs=True,
            top_logprobs=3,
            stream=True,
            stream_options={"include_usage": True},
        ) as stream:
            for count, _chunk in enumerate(stream):
                if count == 5:
                    break  # left early: the span says logprobs.stream.completed = false
        uninstrument_openai(client)

        async def run_async() -> None:
            async with openai.AsyncOpenAI(base_url=base_url, api_key=api_key) as aclient:
                instrument_openai(aclient, telemetry=recorder)
                await async_calls(aclient, model)

        asyncio.run(run_async())

        telemetry.force_flush()
        for span in spans.get_finished_spans():
            attrs = span.attributes or {}
            print(
                f"{span.name} (stream={attrs.get('gen_ai.request.stream')}, "
                f"completed={attrs.get('logprobs.stream.completed', '-')}): "
                f"{attrs.get('logprobs.token_count')} tokens, "
                f"mean logprob {attrs.get('logprobs.mean', float('nan')):.3f}, "
                f"{attrs.get('logprobs.low_confidence.count', 0)} below p=0.5"
            )
        print(f"\nmetrics were served at http://127.0.0.1:{telemetry.prometheus_port}/metrics")


if __name__ == "__main__":
    main()
