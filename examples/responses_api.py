"""The Responses API (`POST /v1/responses`) with every token's logprob, in results and spans.

`ChatOpenAI(..., use_responses_api=True)` sends its calls to the Responses API and returns the
same typed results as a chat call: the tokens in `response_metadata.logprobs.content`, usage,
the response id (for `previous_response_id`) and a finish reason. A stream's tokens have no
`bytes`: the API's stream events do not carry them. Then a raw `openai` client, instrumented:
`client.responses.stream(...)` gives the SDK's own events, and a span with every token.

With OPENAI_API_KEY or OPENAI_BASE_URL set this talks to that endpoint; otherwise it starts the
replay server from `logprobscope.testing` on 127.0.0.1 (which answers `/v1/responses` from its
recorded completions) and says so.

    python examples/responses_api.py
"""

from __future__ import annotations

import os
from contextlib import ExitStack

import openai
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from logprobscope import AIMessage, AIMessageChunk, ChatOpenAI
from logprobscope.instrument import instrument_openai, uninstrument_openai
from logprobscope.testing import ReplayServer


def _tokens(message: AIMessage, n: int = 5) -> str:
    logprobs = message.response_metadata.logprobs
    tokens = (logprobs.content or []) if logprobs else []
    return ", ".join(f"{t.token!r} {t.logprob:.3f} bytes={t.bytes}" for t in tokens[:n])


def main() -> None:
    with ExitStack() as stack:
        base_url = None
        if not (os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")):
            server = stack.enter_context(ReplayServer())
            base_url = server.base_url
            print(f"No OPENAI_API_KEY or OPENAI_BASE_URL: replaying answers from {base_url}")
        name = os.environ.get("LOGPROBSCOPE_MODEL", "gpt-4o-mini")
        model = ChatOpenAI(
            model=name,
            logprobs=True,
            top_logprobs=2,
            use_responses_api=True,
            instructions="You are a helpful assistant.",
            base_url=base_url,
        )
        stack.callback(model.close)

        print("\n1. one call")
        first = model.invoke("What is the capital of Minas Gerais?")
        meta = first.response_metadata
        print(f"   {first.content!r}")
        print(f"   id {meta.id}, finish reason {meta.finish_reason}, {first.usage_metadata}")
        print(f"   tokens: {_tokens(first)}")

        print("\n2. the next call continues that response (previous_response_id)")
        second = model.invoke("And of Bahia?", previous_response_id=meta.id)
        print(f"   {second.content!r}")

        print("\n3. streamed: the chunks add up; the events carry no bytes")
        agg: AIMessageChunk | None = None
        for chunk in model.stream("What is the capital of Minas Gerais?"):
            agg = chunk if agg is None else agg + chunk
        assert agg is not None
        print(f"   {agg.content!r}")
        print(f"   tokens: {_tokens(agg)}")

        print("\n4. a raw openai client, instrumented: the SDK's events, and a span")
        exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        client = openai.OpenAI(
            base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY") or "none"
        )
        stack.callback(client.close)
        instrument_openai(client, tracer_provider=tracer_provider)
        with client.responses.stream(
            model=name,
            input="What is the capital of Minas Gerais?",
            include=["message.output_text.logprobs"],
            top_logprobs=2,
        ) as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_response()
        uninstrument_openai(client)
        print(f"   {len(kinds)} events, from {kinds[0]} to {kinds[-1]}: {final.output_text!r}")
        [span] = exporter.get_finished_spans()
        attrs = span.attributes or {}
        print(
            f"   span {span.name!r}: openai.api.type={attrs['openai.api.type']}, "
            f"{attrs['logprobs.token_count']} tokens, perplexity {attrs['logprobs.perplexity']:.3f}"
        )


if __name__ == "__main__":
    main()
