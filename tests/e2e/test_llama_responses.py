"""llama.cpp's `llama-server` through the Responses API, as logprobscope calls it.

`llama-server` serves `POST /v1/responses`, JSON and SSE, but sends `"logprobs": []` on every
text part however logprobs are asked for (and no `logprobs` key on its stream's deltas): see
`test_llama_wire.py`. Through our model and through the instrumented raw client, sync and
async, streamed and not, that is an answer without tokens, never an error: the text, the usage
and the finish reason come through, the span has `logprobs.token_count` 0. The replay server's
`Deviations.LLAMA_SERVER` gives our model the same results. (llama-cpp-python has no
`/v1/responses`.) Its stream events also lack `output_index`, `content_index` and
`sequence_number`, which our model does without; the SDK's `responses.stream()` helper does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import reduce
from typing import Any

import openai
import pytest

from logprobscope import AIMessage, AIMessageChunk, ChatOpenAI
from logprobscope.instrument import instrument_openai
from logprobscope.otel import OpenTelemetryCallbackHandler
from logprobscope.testing import Deviations, ReplayServer
from tests.e2e.llama_servers import LlamaServer
from tests.support.otel import InMemoryOtel

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PROMPT = "Say hello to the world."
MAX_TOKENS = 8


@pytest.fixture
def pipeline() -> Iterator[InMemoryOtel]:
    otel = InMemoryOtel()
    yield otel
    otel.close()


def _model(base_url: str, model: str, otel: InMemoryOtel) -> ChatOpenAI:
    # logprobs=True without top_logprobs: llama-server refuses top_logprobs without its own
    # non-standard `logprobs: true` in the body (a 400).
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    return ChatOpenAI(
        model,
        base_url=base_url,
        api_key="none",
        max_retries=0,
        timeout=120,
        logprobs=True,
        max_tokens=MAX_TOKENS,
        temperature=0,
        use_responses_api=True,
        callbacks=[handler],
    )


def _check_spans(otel: InMemoryOtel, streams: list[bool]) -> None:
    """One span per call, in order; each a Responses call with zero tokens, not an error."""
    spans = otel.spans()
    assert [(s.attributes or {})["gen_ai.request.stream"] for s in spans] == streams
    for span in spans:
        attrs = span.attributes or {}
        assert attrs["openai.api.type"] == "responses"
        assert attrs["logprobs.enabled"] is True
        assert attrs["logprobs.token_count"] == 0
        assert attrs["gen_ai.usage.output_tokens"] > 0  # type: ignore[operator]
        assert "error.type" not in attrs
        assert not [e for e in span.events if e.name.startswith("logprobs.token")]


def _check_answer(message: AIMessage, *, stream: bool) -> None:
    assert message.content  # the tiny model's nonsense, but text
    meta = message.response_metadata
    assert meta.finish_reason in ("stop", "length")
    assert meta.id and meta.model_name
    assert message.usage_metadata is not None and message.usage_metadata.output_tokens > 0
    if stream:
        assert meta.logprobs is None  # its deltas have no `logprobs` key at all
    else:
        assert meta.logprobs is not None and meta.logprobs.content == []


async def test_our_model(llama_server: LlamaServer, pipeline: InMemoryOtel) -> None:
    model = _model(llama_server.base_url, llama_server.model, pipeline)
    async with model:
        _check_answer(model.invoke(PROMPT), stream=False)
        _check_answer(await model.ainvoke(PROMPT), stream=False)
        streamed = reduce(lambda a, b: a + b, list(model.stream(PROMPT)))
        chunks: list[AIMessageChunk] = [c async for c in model.astream(PROMPT)]
        _check_answer(streamed, stream=True)
        _check_answer(reduce(lambda a, b: a + b, chunks), stream=True)
    _check_spans(pipeline, [False, False, True, True])


def test_the_raw_client(llama_server: LlamaServer, pipeline: InMemoryOtel) -> None:
    with openai.OpenAI(base_url=llama_server.base_url, api_key="none", max_retries=0) as client:
        instrument_openai(client, telemetry=pipeline.telemetry)
        args: dict[str, Any] = {
            "model": llama_server.model,
            "input": PROMPT,
            "include": ["message.output_text.logprobs"],
            "max_output_tokens": MAX_TOKENS,
            "temperature": 0,
        }
        response = client.responses.create(**args)
        assert response.output_text
        events = list(client.responses.create(stream=True, **args))
        assert events[-1].type == "response.completed"
        _check_spans(pipeline, [False, True])
        # Its events have no output_index, content_index nor sequence_number: the SDK's own
        # stream() helper fails on them, instrumented or not; the span still ends, once.
        with pytest.raises(TypeError), client.responses.stream(**args) as stream:
            stream.get_final_response()
    [*_, helper] = pipeline.spans()
    assert (helper.attributes or {})["logprobs.stream.completed"] is False
    with openai.OpenAI(base_url=llama_server.base_url, api_key="none", max_retries=0) as bare:
        with pytest.raises(TypeError), bare.responses.stream(**args) as stream:
            stream.get_final_response()
    assert all(getattr(e, "content_index", None) is None for e in events if "delta" in e.type)


def test_the_replay_servers_preset_gives_our_model_the_same(pipeline: InMemoryOtel) -> None:
    with ReplayServer(deviations=Deviations.LLAMA_SERVER) as server:
        model = _model(server.base_url, "tiny", pipeline)
        with model:
            _check_answer(model.invoke(PROMPT), stream=False)
            _check_answer(reduce(lambda a, b: a + b, list(model.stream(PROMPT))), stream=True)
    _check_spans(pipeline, [False, True])
