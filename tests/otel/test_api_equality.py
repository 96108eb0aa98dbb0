"""One answer, two APIs, the same telemetry, through every entry point.

The replay server answers `/v1/chat/completions` and `/v1/responses` from the same
completion (25 tokens with 3 alternatives each; 2 asked for). Through each entry point,
our model with the OpenTelemetry handler and the instrumented raw client, sync and async,
streamed and not, the two APIs must give the same token events, the same span attributes
(but the response id, which each API spells its own way, and `openai.api.type`, set on
Responses calls) and the same metrics. The one expected difference is the number of chunks
of a stream, which is the wire's: a chat stream has a role chunk, the tokens, a finish
chunk (and a usage chunk when asked), a Responses stream `response.created`, the tokens
and `response.completed`; `time_per_output_chunk` counts the gaps between them.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import pytest

from logprobscope.instrument import instrument_openai
from logprobscope.otel import OpenTelemetryCallbackHandler
from logprobscope.testing import SEED_TOP_LOGPROBS, ReplayServer
from tests.support.apis import APIS, Api
from tests.support.entry_points import (
    TIMED_METRICS,
    assert_chat_span,
    assert_same_metrics,
    attributes,
    events,
    metric_summary,
    token_logprobs,
)
from tests.support.factories import ModelFactory, ServerFactory
from tests.support.otel import InMemoryOtel

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_global_instrumentation")]

TOP = 2
LOGPROBS = [e["logprob"] for e in SEED_TOP_LOGPROBS["choices"][0]["logprobs"]["content"]]  # type: ignore[index]
PER_CHUNK = "gen_ai.client.operation.time_per_output_chunk"
Entry = Callable[[ReplayServer, Api, InMemoryOtel, ModelFactory], Awaitable[int | None]]
"""One call through an entry point; returns how many chunks its stream had (None: no stream)."""


def _model(server: ReplayServer, api: Api, otel: InMemoryOtel, make_model: ModelFactory) -> Any:
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    return make_model(
        server,
        logprobs=True,
        top_logprobs=TOP,
        use_responses_api=api.responses,
        callbacks=[handler],
    )


async def model_invoke(s: ReplayServer, api: Api, o: InMemoryOtel, m: ModelFactory) -> int | None:
    _model(s, api, o, m).invoke("hi")
    return None


async def model_ainvoke(s: ReplayServer, api: Api, o: InMemoryOtel, m: ModelFactory) -> int | None:
    await _model(s, api, o, m).ainvoke("hi")
    return None


async def model_stream(s: ReplayServer, api: Api, o: InMemoryOtel, m: ModelFactory) -> int | None:
    return len(list(_model(s, api, o, m).stream("hi")))


async def model_astream(s: ReplayServer, api: Api, o: InMemoryOtel, m: ModelFactory) -> int | None:
    return len([c async for c in _model(s, api, o, m).astream("hi")])


def _body(api: Api, *, stream: bool = False) -> dict[str, Any]:
    if api.responses:  # a Responses stream always ends with the usage
        return {"input": "hi", "include": ["message.output_text.logprobs"], "top_logprobs": TOP}
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "logprobs": True}
    body["top_logprobs"] = TOP
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _chunks(events: list[Any], api: Api) -> int:
    # What our model makes chunks of, and the telemetry counts: see _traced_responses.
    if not api.responses:
        return len(events)
    kinds = ("response.created", "response.output_text.delta", "response.completed")
    return sum(e.type in kinds for e in events)


def _client(server: ReplayServer, otel: InMemoryOtel) -> openai.OpenAI:
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    instrument_openai(client, telemetry=otel.telemetry)
    return client


async def raw_create(s: ReplayServer, api: Api, o: InMemoryOtel, m: ModelFactory) -> int | None:
    with _client(s, o) as client:
        endpoint: Any = client.responses if api.responses else client.chat.completions
        endpoint.create(model="gpt-4o", **_body(api))
    return None


async def raw_stream(s: ReplayServer, api: Api, o: InMemoryOtel, m: ModelFactory) -> int | None:
    with _client(s, o) as client:
        endpoint: Any = client.responses if api.responses else client.chat.completions
        events = list(endpoint.create(model="gpt-4o", stream=True, **_body(api, stream=True)))
    return _chunks(events, api)


async def raw_helper(s: ReplayServer, api: Api, o: InMemoryOtel, m: ModelFactory) -> int | None:
    with _client(s, o) as client:
        endpoint: Any = client.responses if api.responses else client.chat.completions
        with endpoint.stream(model="gpt-4o", **_body(api, stream=True)) as stream:
            events = [e for e in stream if e.type.startswith(("response.", "chunk"))]
    if not api.responses:
        return len([e for e in events if e.type == "chunk"])
    return _chunks(events, api)


async def raw_async(s: ReplayServer, api: Api, o: InMemoryOtel, m: ModelFactory) -> int | None:
    async with openai.AsyncOpenAI(base_url=s.base_url, api_key="k", max_retries=0) as client:
        instrument_openai(client, telemetry=o.telemetry)
        endpoint: Any = client.responses if api.responses else client.chat.completions
        await endpoint.create(model="gpt-4o", **_body(api))
    return None


async def raw_astream(s: ReplayServer, api: Api, o: InMemoryOtel, m: ModelFactory) -> int | None:
    async with openai.AsyncOpenAI(base_url=s.base_url, api_key="k", max_retries=0) as client:
        instrument_openai(client, telemetry=o.telemetry)
        endpoint: Any = client.responses if api.responses else client.chat.completions
        body = _body(api, stream=True)
        events = [e async for e in await endpoint.create(model="gpt-4o", stream=True, **body)]
    return _chunks(events, api)


ENTRIES: dict[str, Entry] = {
    "model.invoke": model_invoke,
    "model.ainvoke": model_ainvoke,
    "model.stream": model_stream,
    "model.astream": model_astream,
    "raw.create": raw_create,
    "raw.create(stream)": raw_stream,
    "raw.stream()": raw_helper,
    "raw.async create": raw_async,
    "raw.async create(stream)": raw_astream,
}


@pytest.mark.parametrize("entry", sorted(ENTRIES))
async def test_both_apis_give_the_same_telemetry(
    make_server: ServerFactory, make_model: ModelFactory, otel: InMemoryOtel, entry: str
) -> None:
    server = make_server([SEED_TOP_LOGPROBS])
    pipelines = {api.name: otel.new() for api in APIS}
    chunks: dict[str, int | None] = {}
    for api in APIS:
        chunks[api.name] = await ENTRIES[entry](server, api, pipelines[api.name], make_model)
    assert server.request_paths == ["/v1/chat/completions", "/v1/responses"]
    chat, responses = (pipelines[api.name].span() for api in APIS)
    stream = chunks["chat"] is not None
    for span in (chat, responses):
        assert_chat_span(span, stream=stream)
        assert token_logprobs(span) == LOGPROBS  # every token, bit for bit: not merely equal
        assert [len(e.attributes["logprobs.token.top_logprobs"]) for e in span.events] == [TOP] * 25  # type: ignore[index,arg-type]
    assert events(responses) == events(chat)
    assert (responses.attributes or {})["openai.api.type"] == "responses"
    assert "openai.api.type" not in (chat.attributes or {})
    ids = ("gen_ai.response.id", "openai.api.type")
    assert attributes(responses, drop=ids) == attributes(chat, drop=ids)
    assert (chat.attributes or {})["logprobs.enabled"] is True
    # The metrics, the timing ones by count; a stream's gaps between chunks, per its wire.
    got, want = metric_summary(pipelines["responses"]), metric_summary(pipelines["chat"])
    count, total = want["logprobs.token.probability"]
    assert count == 25 and total == pytest.approx(sum(math.exp(x) for x in LOGPROBS))
    if stream:
        assert chunks["chat"] is not None and chunks["responses"] is not None
        assert want[PER_CHUNK][0] == chunks["chat"] - 1
        assert got[PER_CHUNK][0] == chunks["responses"] - 1 == 25 + 2 - 1
        del got[PER_CHUNK], want[PER_CHUNK]
    assert PER_CHUNK in TIMED_METRICS
    assert_same_metrics(got, want)
