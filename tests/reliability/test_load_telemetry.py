"""Load, seen from the telemetry: many concurrent calls through one model and one
OpenTelemetry handler, with random early exits and user errors.

Every span holds only its own call's tokens, in order; every span is started and ended
exactly once (counted by a span processor, and the SDK's "ended span" warning never shows);
afterwards no span is open, the handler holds no call, and no per-call object is alive.
The metrics add up to the spans. Content capture is on here so each token event names its
token: that is how a span is checked against its own call.

`LOGPROBSCOPE_LOAD_SCALE=K` (default 1) multiplies the number of calls, for a longer soak by
hand (K=10: 10,000 async calls and 5,120 sync ones, a few minutes).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import random
import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from logprobscope import AsyncChatStream, ChatOpenAI, ChatStream
from logprobscope._callbacks import RunCallbacks
from logprobscope.otel import CallTelemetry, OpenTelemetryCallbackHandler
from logprobscope.testing import ReplayServer
from tests.support.otel import InMemoryOtel

from .test_load import TOKENS, VARIANTS, UserError, _choose, _tokens

SCALE = int(os.environ.get("LOGPROBSCOPE_LOAD_SCALE", "1"))
PROMPT = re.compile(r"\bp(\d+)\b")


class _Counting(SpanProcessor):
    """Counts every start and end the SDK sees, per span id, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: Counter[int] = Counter()
        self.ended: Counter[int] = Counter()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        with self.lock:
            self.started[span.get_span_context().span_id] += 1

    def on_end(self, span: ReadableSpan) -> None:
        assert span.context is not None
        with self.lock:
            self.ended[span.context.span_id] += 1


@dataclass
class Pipeline:
    handler: OpenTelemetryCallbackHandler
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    counting: _Counting

    def check(self, expected: Counter[str]) -> None:
        """Every span is one run, ended once, with its own tokens; `expected` counts plans."""
        assert self.handler.active_calls == 0
        counting = self.counting
        assert set(counting.started) == set(counting.ended), "spans left open"
        assert set(counting.started.values()) == {1}
        assert set(counting.ended.values()) == {1}
        spans = self.exporter.get_finished_spans()
        assert len(spans) == sum(expected.values()) == len(counting.ended)
        seen: Counter[str] = Counter()
        tokens_total = 0
        for span in spans:
            attributes = span.attributes or {}
            prompt = PROMPT.search(str(attributes["gen_ai.input.messages"]))
            assert prompt is not None
            own = _tokens(int(prompt.group(1)))
            events = [e for e in span.events if e.name == "logprobs.token"]
            indexes = [(e.attributes or {})["logprobs.token.index"] for e in events]
            texts = [(e.attributes or {})["logprobs.token.text"] for e in events]
            assert indexes == list(range(len(events))), "token events out of order"
            assert texts == own[: len(texts)], "tokens of another call"
            assert attributes["logprobs.token_count"] == len(events)
            tokens_total += len(events)
            completed = attributes.get("logprobs.stream.completed")
            if span.status.status_code is StatusCode.ERROR:
                assert attributes["error.type"] == f"{UserError.__module__}.UserError"
                assert completed is False
                seen["raise"] += 1
            elif completed is False:
                seen["break"] += 1
            else:
                assert completed in (True, None)  # None: a non-streamed call
                assert texts == own
                output = json.loads(str(attributes["gen_ai.output.messages"]))
                assert "".join(own) in json.dumps(output)
                seen["full" if completed else "invoke"] += 1
        assert seen == expected, (seen, expected)
        self._check_metrics(len(spans), tokens_total)

    def _check_metrics(self, calls: int, tokens: int) -> None:
        data = self.reader.get_metrics_data()
        assert data is not None
        counts: dict[str, int] = {}
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.data.data_points:
                        if isinstance(point, HistogramDataPoint):
                            counts[metric.name] = counts.get(metric.name, 0) + point.count
        assert counts["gen_ai.client.operation.duration"] == calls
        assert counts["logprobs.token.probability"] == tokens


@pytest.fixture
def pipeline(otel: InMemoryOtel) -> Pipeline:
    counting = _Counting()
    otel.tracer_provider.add_span_processor(counting)
    handler = otel.handler(capture_content=True)
    return Pipeline(handler, otel.exporter, otel.reader, counting)


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer(_choose) as srv:
        yield srv


def _live(*kinds: type[object]) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) in kinds)


@pytest.fixture
def ended_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The SDK logs this when a span is ended twice: it must never show."""
    caplog.set_level(logging.WARNING, logger="opentelemetry.sdk.trace")
    yield
    twice = [r for r in caplog.get_records("call") if "ended span" in r.getMessage()]
    assert not twice, twice[0].getMessage()


@pytest.mark.usefixtures("ended_warnings")
async def test_a_thousand_concurrent_async_calls(server: ReplayServer, pipeline: Pipeline) -> None:
    # A burst of 1,000 connects overflows the server's listen backlog: TCP retries the
    # dropped SYNs after a second or more, so allow connects longer than the SDK's 5 s.
    model = ChatOpenAI(
        "gpt-4o",
        logprobs=True,
        top_logprobs=2,
        base_url=server.base_url,
        callbacks=[pipeline.handler],
        timeout=120,
    )
    rng = random.Random(11)
    kinds = ["full", "break", "raise", "invoke"]
    calls = 1000 * SCALE
    plans = [
        (rng.randrange(VARIANTS), rng.choice(kinds), rng.randrange(TOKENS)) for _ in range(calls)
    ]

    async def one(variant: int, plan: str, stop_at: int) -> None:
        if plan == "invoke":
            await model.ainvoke(f"p{variant}")
            return
        stream = model.astream(f"p{variant}")
        try:
            async with stream:
                i = 0
                async for _chunk in stream:
                    if plan == "break" and i == stop_at:
                        break
                    if plan == "raise" and i == stop_at:
                        raise UserError
                    i += 1
        except UserError:
            pass

    async with model:
        await asyncio.gather(*(one(v, plan, stop) for v, plan, stop in plans))
    pipeline.check(Counter(plan for _, plan, _ in plans))
    assert _live(AsyncChatStream, CallTelemetry, RunCallbacks) == 0


@pytest.mark.usefixtures("ended_warnings")
def test_sixty_four_threads_of_sync_calls(server: ReplayServer, pipeline: Pipeline) -> None:
    model = ChatOpenAI(
        "gpt-4o",
        logprobs=True,
        top_logprobs=2,
        base_url=server.base_url,
        callbacks=[pipeline.handler],
    )
    lock = threading.Lock()
    planned: Counter[str] = Counter()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(8 * SCALE):
            variant = rng.randrange(VARIANTS)
            plan = rng.choice(["full", "break", "drop", "raise", "invoke"])
            stop_at = rng.randrange(TOKENS)
            with lock:
                planned["break" if plan == "drop" else plan] += 1
            if plan == "invoke":
                model.invoke(f"p{variant}")
            elif plan == "raise":
                with pytest.raises(UserError), model.stream(f"p{variant}") as stream:
                    for i, _ in enumerate(stream):
                        if i == stop_at:
                            raise UserError
            else:
                for i, _ in enumerate(model.stream(f"p{variant}")):
                    if plan in ("break", "drop") and i == stop_at:
                        break  # the dropped iterator ends its run when collected

    with model, ThreadPoolExecutor(max_workers=64) as pool:
        list(pool.map(worker, range(64)))
    gc.collect()  # the dropped iterators end their runs here
    pipeline.check(planned)
    assert _live(ChatStream, CallTelemetry, RunCallbacks) == 0
