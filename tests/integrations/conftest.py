"""Fixtures of the integration tests: in-memory OpenTelemetry pipelines and LangChain models."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import openai
import pytest
from langchain_openai import ChatOpenAI as LangChainChatOpenAI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from logprobscope.instrument import uninstrument_openai
from logprobscope.otel import LogprobTelemetry
from logprobscope.testing import ReplayServer
from tests.integrations.helpers import Otel

OtelFactory = Callable[..., Otel]


@pytest.fixture
def make_otel() -> Iterator[OtelFactory]:
    """Fresh in-memory pipelines (one per entry point when telemetry is compared)."""
    made: list[Otel] = []

    def factory(**options: Any) -> Otel:
        exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader])
        telemetry = LogprobTelemetry(
            tracer_provider=tracer_provider, meter_provider=meter_provider, **options
        )
        otel = Otel(tracer_provider, meter_provider, exporter, reader, telemetry)
        made.append(otel)
        return otel

    yield factory
    for otel in made:
        otel.tracer_provider.shutdown()
        otel.meter_provider.shutdown()


@pytest.fixture
def otel(make_otel: OtelFactory) -> Otel:
    """One in-memory pipeline."""
    return make_otel()


@pytest.fixture
def no_global_instrumentation() -> Iterator[None]:
    """Whatever a test does, the SDK's classes are left unpatched."""
    yield
    uninstrument_openai()


LangChainFactory = Callable[..., LangChainChatOpenAI]


@pytest.fixture
async def make_lc_model() -> AsyncIterator[LangChainFactory]:
    """langchain_openai.ChatOpenAI models on a server with their own HTTP clients.

    LangChain otherwise shares one cached async HTTP client per base URL across event loops;
    the clients are closed after the test, on the test's own loop.
    """
    made: list[tuple[Any, Any]] = []

    def factory(server: ReplayServer, **kwargs: Any) -> LangChainChatOpenAI:
        sync_http = openai.DefaultHttpxClient()
        async_http = openai.DefaultAsyncHttpxClient()
        made.append((sync_http, async_http))
        options: Mapping[str, Any] = {
            "model": "gpt-4o",
            "base_url": server.base_url,
            "api_key": "test-key",
            "max_retries": 0,
            "timeout": 10.0,
            "http_client": sync_http,
            "http_async_client": async_http,
            **kwargs,
        }
        return LangChainChatOpenAI(**options)

    yield factory
    for sync_http, async_http in made:
        sync_http.close()
        await async_http.aclose()
