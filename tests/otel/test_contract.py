"""The exported telemetry matches TELEMETRY.md: every name, type, unit, bucket and parentage.

The contract's tables are restated here on purpose: a change of a name in the code must
break a test, because users' dashboards are built on these names.
"""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import Histogram, Sum
from opentelemetry.trace import SpanKind, StatusCode

from logprobscope.otel import LogprobTelemetry
from logprobscope.otel._call import _DEFER
from logprobscope.otel._metrics import FLUSH_AT
from logprobscope.testing import SEED_TOP_LOGPROBS, ReplayServer, make_completion
from tests.support.factories import ModelFactory, ServerFactory
from tests.support.otel import InMemoryOtel, histogram_points, number_points, reassemble

PROBABILITY_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)
PERPLEXITY_BUCKETS = (1, 1.01, 1.05, 1.1, 1.25, 1.5, 2, 3, 5, 10, 20, 50, 100)
ENTROPY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3)
DURATION_BUCKETS: tuple[float, ...] = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
DURATION_BUCKETS += (5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS: tuple[float, ...] = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144)
TOKEN_BUCKETS += (1048576, 4194304, 16777216, 67108864)

# name -> (instrument, unit, buckets)
METRICS: dict[str, tuple[str, str, tuple[float, ...] | None]] = {
    "gen_ai.client.token.usage": ("histogram", "{token}", TOKEN_BUCKETS),
    "gen_ai.client.operation.duration": ("histogram", "s", DURATION_BUCKETS),
    "gen_ai.client.operation.time_to_first_chunk": ("histogram", "s", DURATION_BUCKETS),
    "gen_ai.client.operation.time_per_output_chunk": ("histogram", "s", DURATION_BUCKETS),
    "logprobs.token.probability": ("histogram", "1", PROBABILITY_BUCKETS),
    "logprobs.response.perplexity": ("histogram", "1", PERPLEXITY_BUCKETS),
    "logprobs.response.min_probability": ("histogram", "1", PROBABILITY_BUCKETS),
    "logprobs.response.entropy": ("histogram", "nat", ENTROPY_BUCKETS),
    "logprobs.token.low_confidence": ("counter", "{token}", None),
}
METRIC_ATTRIBUTES = {
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "server.address",
    "error.type",
    "gen_ai.token.type",  # token.usage only, required by the conventions
}

SPAN_TYPES: dict[str, type | tuple[type, ...]] = {
    "gen_ai.operation.name": str,
    "gen_ai.provider.name": str,
    "gen_ai.request.model": str,
    "gen_ai.request.stream": bool,
    "gen_ai.request.temperature": float,
    "gen_ai.request.top_p": float,
    "gen_ai.request.max_tokens": int,
    "gen_ai.request.seed": int,
    "gen_ai.request.choice.count": int,
    "gen_ai.response.id": str,
    "gen_ai.response.model": str,
    "gen_ai.response.finish_reasons": tuple,
    "gen_ai.usage.input_tokens": int,
    "gen_ai.usage.output_tokens": int,
    "gen_ai.response.time_to_first_chunk": float,
    "server.address": str,
    "server.port": int,
    "error.type": str,
    "gen_ai.input.messages": str,
    "gen_ai.output.messages": str,
    "logprobs.enabled": bool,
    "logprobs.top_logprobs": int,
    "logprobs.token_count": int,
    "logprobs.sum": float,
    "logprobs.mean": float,
    "logprobs.perplexity": float,
    "logprobs.min": float,
    "logprobs.min_index": int,
    "logprobs.entropy.mean": float,
    "logprobs.margin.mean": float,
    "logprobs.low_confidence.threshold": float,
    "logprobs.low_confidence.count": int,
    "logprobs.stream.completed": bool,
    "logprobs.events.mode": str,
    "logprobs.events.dropped": int,
}
TOKEN_EVENT_TYPES: dict[str, type] = {
    "logprobs.token.index": int,
    "logprobs.token.line": str,
    "logprobs.token.logprob": float,
    "logprobs.token.probability": float,
    "logprobs.token.top_logprobs": tuple,
    "logprobs.token.text": str,
    "logprobs.token.bytes": tuple,
    "logprobs.token.top_tokens": tuple,
}
BATCH_EVENT_TYPES: dict[str, type] = {
    "logprobs.tokens.first_index": int,
    "logprobs.tokens.last_index": int,
    "logprobs.tokens.lines": tuple,
    "logprobs.tokens.start_index": int,
    "logprobs.tokens.logprobs": tuple,
    "logprobs.tokens.top_logprobs": tuple,
    "logprobs.tokens.texts": tuple,
    "logprobs.tokens.top_tokens": tuple,
}


def _entries(completion: dict[str, Any]) -> list[dict[str, Any]]:
    return completion["choices"][0]["logprobs"]["content"]  # type: ignore[no-any-return]


def _check_types(attributes: Any, types: dict[str, type | tuple[type, ...]]) -> None:
    for key, value in attributes.items():
        assert key in types, f"{key} is not in the contract"
        assert isinstance(value, types[key]), f"{key}: {type(value).__name__}"
        if types[key] is int:
            assert not isinstance(value, bool), key


def test_stream_span_names_types_and_values(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    handler = otel.handler()
    model = make_model(
        server, logprobs=True, top_logprobs=3, temperature=0.5, top_p=0.9, max_tokens=64, seed=7
    )
    text = "".join(c.content for c in model.stream("hi", callbacks=[handler]))
    span = otel.span()
    assert span.name == "chat gpt-4o"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attrs = dict(span.attributes or {})
    _check_types(attrs, SPAN_TYPES)
    entries = _entries(SEED_TOP_LOGPROBS)
    logprobs = [e["logprob"] for e in entries]
    expected = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.request.stream": True,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.seed": 7,
        "gen_ai.response.id": "chatcmpl-seed-top-logprobs",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 13,
        "gen_ai.usage.output_tokens": 25,
        "server.address": "127.0.0.1",
        "server.port": server.port,
        "logprobs.enabled": True,
        "logprobs.top_logprobs": 3,
        "logprobs.token_count": 25,
        "logprobs.min": min(logprobs),
        "logprobs.min_index": logprobs.index(min(logprobs)),
        "logprobs.low_confidence.threshold": 0.5,
        "logprobs.low_confidence.count": sum(math.exp(lp) < 0.5 for lp in logprobs),
        "logprobs.stream.completed": True,
        "logprobs.events.mode": "tokens",
    }
    for key, value in expected.items():
        assert attrs.pop(key) == value, key
    assert attrs.pop("logprobs.sum") == pytest.approx(math.fsum(logprobs), rel=1e-12)
    mean = math.fsum(logprobs) / len(logprobs)
    assert attrs.pop("logprobs.mean") == pytest.approx(mean, rel=1e-12)
    assert attrs.pop("logprobs.perplexity") == pytest.approx(math.exp(-mean), rel=1e-12)
    entropy = [
        -sum(math.exp(t["logprob"]) * t["logprob"] for t in e["top_logprobs"]) for e in entries
    ]
    assert attrs.pop("logprobs.entropy.mean") == pytest.approx(sum(entropy) / 25, rel=1e-9)
    margins = [
        math.exp(e["top_logprobs"][0]["logprob"]) - math.exp(e["top_logprobs"][1]["logprob"])
        for e in entries
    ]
    assert attrs.pop("logprobs.margin.mean") == pytest.approx(sum(margins) / 25, rel=1e-9)
    ttfc = attrs.pop("gen_ai.response.time_to_first_chunk")
    assert isinstance(ttfc, float) and 0 < ttfc < 30
    assert attrs == {}, f"unexpected attributes: {attrs}"  # no content, no dropped count

    # one event per token, in order, with the contract's names and types
    assert all(e.name == "logprobs.token" for e in span.events)
    for event in span.events:
        _check_types(event.attributes, TOKEN_EVENT_TYPES)  # type: ignore[arg-type]
        assert set(event.attributes or {}) == {
            "logprobs.token.index",
            "logprobs.token.line",
            "logprobs.token.logprob",
            "logprobs.token.probability",
            "logprobs.token.top_logprobs",
        }
    tokens = reassemble(span.events)
    assert [(e.attributes or {})["logprobs.token.probability"] for e in span.events] == [
        round(math.exp(lp), 4) for lp in logprobs
    ]
    assert [t.logprob for t in tokens] == logprobs
    assert [t.top_logprobs for t in tokens] == [
        tuple(a["logprob"] for a in e["top_logprobs"]) for e in entries
    ]
    assert text == "".join(e["token"] for e in entries)


def test_metrics_names_kinds_units_buckets_and_attributes(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    handler = otel.handler()
    model = make_model(server, logprobs=True, top_logprobs=3)
    list(model.stream("hi", callbacks=[handler]))
    model.invoke("hi", callbacks=[handler])
    metrics = otel.metrics()
    assert set(metrics) == set(METRICS)
    for name, (kind, unit, buckets) in METRICS.items():
        metric = metrics[name]
        assert metric.unit == unit, name
        if kind == "histogram":
            assert isinstance(metric.data, Histogram), name
            for histogram_point in histogram_points(metric):
                assert histogram_point.explicit_bounds == pytest.approx(buckets), name
        else:
            assert isinstance(metric.data, Sum) and metric.data.is_monotonic, name
        for point in metric.data.data_points:
            assert set(point.attributes or {}) <= METRIC_ATTRIBUTES, name
            assert point.attributes["gen_ai.request.model"] == "gpt-4o"  # type: ignore[index]
            assert point.attributes["gen_ai.response.model"] == "gpt-4o-2024-08-06"  # type: ignore[index]
            assert point.attributes["gen_ai.operation.name"] == "chat"  # type: ignore[index]
            assert point.attributes["gen_ai.provider.name"] == "openai"  # type: ignore[index]
            assert point.attributes["server.address"] == "127.0.0.1"  # type: ignore[index]
            assert "error.type" not in (point.attributes or {})

    [probability] = histogram_points(metrics["logprobs.token.probability"])
    assert probability.count == 50  # once per token, both calls
    entries = _entries(SEED_TOP_LOGPROBS)
    assert probability.sum == pytest.approx(2 * sum(math.exp(e["logprob"]) for e in entries))
    assert probability.min == pytest.approx(min(math.exp(e["logprob"]) for e in entries))
    for name in (
        "logprobs.response.perplexity",
        "logprobs.response.min_probability",
        "logprobs.response.entropy",
        "gen_ai.client.operation.duration",
    ):
        [point] = histogram_points(metrics[name])
        assert point.count == 2, name  # once per call
    # stream-only timings
    [ttfc] = histogram_points(metrics["gen_ai.client.operation.time_to_first_chunk"])
    assert ttfc.count == 1
    [per_chunk] = histogram_points(metrics["gen_ai.client.operation.time_per_output_chunk"])
    assert per_chunk.count == 1 + 25 + 1 + 1 - 1  # role, tokens, finish, usage; after the first
    usage = {
        p.attributes["gen_ai.token.type"]: p  # type: ignore[index]
        for p in histogram_points(metrics["gen_ai.client.token.usage"])
    }
    assert set(usage) == {"input", "output"}
    assert usage["input"].sum == 26 and usage["output"].sum == 50
    [low] = number_points(metrics["logprobs.token.low_confidence"])
    assert low.value == 2 * sum(math.exp(e["logprob"]) < 0.5 for e in entries)


def test_invoke_attributes_and_events(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    handler = otel.handler()
    model = make_model(server, logprobs=True)
    message = model.invoke("how are you?", callbacks=[handler])
    span = otel.span()
    attrs = span.attributes or {}
    assert attrs["gen_ai.request.stream"] is False
    assert "logprobs.stream.completed" not in attrs  # streams only
    assert "gen_ai.response.time_to_first_chunk" not in attrs
    assert attrs["logprobs.top_logprobs"] == 0
    assert attrs["logprobs.token_count"] == 37
    assert "logprobs.entropy.mean" not in attrs and "logprobs.margin.mean" not in attrs  # k=0
    tokens = reassemble(span.events)
    assert [t.logprob for t in tokens] == [
        t.logprob
        for t in message.response_metadata.logprobs.content  # type: ignore[union-attr]
    ]
    assert all(t.top_logprobs == () for t in tokens)
    for event in span.events:
        assert "logprobs.token.top_logprobs" not in (event.attributes or {})
    names = set(otel.metrics())
    assert "gen_ai.client.operation.time_to_first_chunk" not in names
    assert "gen_ai.client.operation.time_per_output_chunk" not in names
    assert "logprobs.response.entropy" not in names  # no alternatives, no entropy


def test_logprobs_not_requested(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    handler = otel.handler()
    model = make_model(server)
    list(model.stream("hi", callbacks=[handler]))
    attrs = otel.span().attributes or {}
    assert attrs["logprobs.enabled"] is False
    assert attrs["logprobs.token_count"] == 0
    for key in ("logprobs.sum", "logprobs.mean", "logprobs.perplexity", "logprobs.min"):
        assert key not in attrs
    assert otel.span().events == ()
    names = set(otel.metrics())
    assert "logprobs.token.probability" not in names
    assert "logprobs.response.perplexity" not in names
    assert "gen_ai.client.operation.duration" in names


def test_choice_count_only_when_not_one(otel: InMemoryOtel) -> None:
    core = LogprobTelemetry(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    for n in (1, 3):
        call = core.start_call(model="m", stream=False, params={"n": n})
        call.end()
    one, three = otel.spans()
    assert "gen_ai.request.choice.count" not in (one.attributes or {})
    assert (three.attributes or {})["gen_ai.request.choice.count"] == 3


# -- parentage --------------------------------------------------------------------------------


def test_parent_is_the_context_current_when_the_call_starts(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    handler = otel.handler()
    model = make_model(server, logprobs=True)
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        model.invoke("hi", callbacks=[handler])
        stream = model.stream("hi", callbacks=[handler])  # created here ...
    with tracer.start_as_current_span("elsewhere"):
        list(stream)  # ... consumed under another current span
    request_id = request.get_span_context().span_id
    chats = otel.spans("chat gpt-4o")
    assert len(chats) == 2
    for chat in chats:
        assert chat.parent is not None and chat.parent.span_id == request_id
        assert chat.context.trace_id == request.get_span_context().trace_id


def test_parent_kept_for_streams_consumed_in_another_thread(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    handler = otel.handler()
    model = make_model(server, logprobs=True)
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        stream = model.stream("hi", callbacks=[handler])
    worker = threading.Thread(target=lambda: list(stream))
    worker.start()
    worker.join(timeout=30)
    [chat] = otel.spans("chat gpt-4o")
    assert chat.parent is not None
    assert chat.parent.span_id == request.get_span_context().span_id


def test_batch_calls_are_children_of_the_caller(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    handler = otel.handler()
    model = make_model(server, logprobs=True)
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        model.batch(["a", "b", "c"], callbacks=[handler])
    chats = otel.spans("chat gpt-4o")
    assert len(chats) == 3
    # Every call's parent, one by one: a root span among them must fail the test.
    assert [c.parent.span_id if c.parent else None for c in chats] == [
        request.get_span_context().span_id
    ] * 3


async def test_async_parent_kept_across_tasks(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    handler = otel.handler()
    model = make_model(server, logprobs=True)
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        stream = model.astream("hi", callbacks=[handler])
        await model.ainvoke("hi", callbacks=[handler])
        await model.abatch(["a", "b"], callbacks=[handler])

    async def consume() -> int:
        with tracer.start_as_current_span("consumer"):
            return len([c async for c in stream])

    assert await asyncio.create_task(consume()) > 0
    chats = otel.spans("chat gpt-4o")
    assert len(chats) == 4
    assert [c.parent.span_id if c.parent else None for c in chats] == [
        request.get_span_context().span_id
    ] * 4


def test_no_parent_gives_a_root_span(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    handler = otel.handler()
    make_model(server, logprobs=True).invoke("hi", callbacks=[handler])
    assert otel.span().parent is None


def test_chunks_of_several_tokens_share_their_arrival_time(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    completion = make_completion([f" t{i}" for i in range(9)], k=2, seed=3)
    server = make_server([completion], chunk_tokens=3)
    handler = otel.handler()
    model = make_model(server, logprobs=True, top_logprobs=2)
    chunks = list(model.stream("hi", callbacks=[handler]))
    span = otel.span()
    tokens = reassemble(span.events)
    assert len(tokens) == 9
    stamps = [t.timestamp for t in tokens]
    assert stamps == sorted(stamps)  # the stream's timeline
    for group in range(3):
        assert len(set(stamps[group * 3 : group * 3 + 3])) == 1
    assert span.start_time is not None and span.end_time is not None
    assert span.start_time <= stamps[0] and stamps[-1] <= span.end_time
    assert sum(bool(c.content) for c in chunks) == 3


def test_token_and_chunk_observations_are_recorded_in_batches_during_a_long_stream(
    otel: InMemoryOtel, make_server: ServerFactory, make_model: ModelFactory
) -> None:
    # A long stream's observations reach the SDK while it runs, FLUSH_AT at a time (its
    # tokens processed a few chunks at a time, _DEFER); the rest when it ends. None is lost,
    # none recorded twice.
    total = FLUSH_AT + 40
    completion = make_completion([f" t{i}" for i in range(total)], k=2, seed=5)
    handler = otel.handler()
    model = make_model(make_server([completion]), logprobs=True, top_logprobs=2)

    def counts() -> tuple[int, int]:
        metrics = otel.metrics()
        out = []
        for name in ("logprobs.token.probability", "gen_ai.client.operation.time_per_output_chunk"):
            metric = metrics.get(name)
            out.append(sum(p.count for p in histogram_points(metric)) if metric else 0)
        return out[0], out[1]

    seen: list[tuple[int, int, int]] = []
    tokens = 0
    for chunk in model.stream("hi", callbacks=[handler]):
        logprobs = chunk.response_metadata.logprobs
        tokens += len(logprobs.content) if logprobs is not None and logprobs.content else 0
        seen.append((tokens, *counts()))
    for tokens_so_far, probabilities, _ in seen:
        # Never ahead of the stream, never more than one batch behind it.
        assert tokens_so_far - FLUSH_AT - _DEFER < probabilities <= tokens_so_far, seen
    assert any(0 < probabilities < total for _, probabilities, _ in seen)  # mid-stream
    assert any(0 < gaps for _, _, gaps in seen[:-1])
    # The end: every token and every gap between the stream's chunks (role, tokens, finish).
    chunks = len(seen)
    assert counts() == (total, chunks - 1)


def test_one_handler_many_models(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    handler = otel.handler()
    make_model(server, model="a", logprobs=True).invoke("x", callbacks=[handler])
    make_model(server, model="b", logprobs=True).invoke("y", callbacks=[handler])
    assert sorted(s.name for s in otel.spans()) == ["chat a", "chat b"]
    duration = otel.metrics()["gen_ai.client.operation.duration"]
    models = {p.attributes["gen_ai.request.model"] for p in histogram_points(duration)}  # type: ignore[index]
    assert models == {"a", "b"}


def test_exemplars_point_at_the_call_span(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer
) -> None:
    handler = otel.handler()
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request"):
        list(make_model(server, logprobs=True, top_logprobs=3).stream("hi", callbacks=[handler]))
    [chat] = otel.spans("chat gpt-4o")
    metrics = otel.metrics()
    for name in ("gen_ai.client.operation.duration", "logprobs.response.perplexity"):
        [point] = histogram_points(metrics[name])
        assert [e.span_id for e in point.exemplars] == [chat.context.span_id], name
    # Per-token and per-chunk observations skip the exemplar reservoir (a fifth of a record).
    for name in ("logprobs.token.probability", "gen_ai.client.operation.time_per_output_chunk"):
        [point] = histogram_points(metrics[name])
        assert point.exemplars == [] or point.exemplars == (), name


# -- the Responses API (docs/telemetry.md, "The Responses API") -------------------------------

RESPONSES_SPAN_TYPES: dict[str, type | tuple[type, ...]] = {
    **SPAN_TYPES,
    "openai.api.type": str,
    "gen_ai.system_instructions": str,
}


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_responses_span_names_types_and_values(
    otel: InMemoryOtel, make_model: ModelFactory, server: ReplayServer, stream: bool
) -> None:
    handler = otel.handler(capture_content=True)
    model = make_model(
        server,
        use_responses_api=True,
        logprobs=True,
        top_logprobs=3,
        temperature=0.5,
        top_p=0.9,
        max_tokens=64,
        instructions="Be brief.",
        callbacks=[handler],
    )
    if stream:
        list(model.stream("hi"))
    else:
        model.invoke("hi")
    span = otel.span()
    assert span.name == "chat gpt-4o"
    assert span.kind is SpanKind.CLIENT
    attrs = dict(span.attributes or {})
    _check_types(attrs, RESPONSES_SPAN_TYPES)
    expected = {
        "gen_ai.operation.name": "chat",
        "openai.api.type": "responses",
        "gen_ai.request.stream": stream,
        "gen_ai.request.max_tokens": 64,
        "gen_ai.response.id": "resp_seed-top-logprobs",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 13,
        "gen_ai.usage.output_tokens": 25,
        "gen_ai.system_instructions": '[{"type": "text", "content": "Be brief."}]',
        "logprobs.enabled": True,
        "logprobs.top_logprobs": 3,
        "logprobs.token_count": 25,
    }
    assert {key: attrs[key] for key in expected} == expected
    assert "gen_ai.request.seed" not in attrs
    for event in span.events:
        _check_types(event.attributes or {}, dict(TOKEN_EVENT_TYPES))
        # the seed's bytes are its texts' UTF-8 (then not written); a stream's events have none
        assert "logprobs.token.bytes" not in (event.attributes or {})
    metric_attrs = set()
    for points in otel.metric_points().values():
        for point in points:
            metric_attrs |= set(point.attributes or {})
    assert metric_attrs <= METRIC_ATTRIBUTES  # openai.api.type is not a metric attribute
