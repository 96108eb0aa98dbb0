"""Shared fixtures: replay servers on 127.0.0.1, models pointed at them, recording handlers and
in-memory OpenTelemetry. Fixtures only: what tests import lives in tests/support/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import openai
import pytest

from logprobscope import ChatOpenAI
from logprobscope.instrument import uninstrument_openai
from logprobscope.testing import Completion, Deviations, Faults, ReplayServer
from tests.support.apis import APIS, Api
from tests.support.factories import ModelFactory, ServerFactory
from tests.support.otel import InMemoryOtel
from tests.support.recording import AsyncRecordingHandler, RecordingHandler

NO_DEVIATIONS = Deviations()
NO_FAULTS = Faults()

# -- servers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed_server() -> Iterator[ReplayServer]:
    """The seed completions, shared by a module's tests (read-only use: no faults)."""
    with ReplayServer() as server:
        yield server


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    """A fresh seed server for one test (its `requests` start empty)."""
    with ReplayServer() as srv:
        yield srv


@pytest.fixture
def make_server() -> Iterator[ServerFactory]:
    """Start servers with any settings; all are stopped after the test."""
    started: list[ReplayServer] = []

    def factory(
        completions: Sequence[Completion] | None = None,
        *,
        deviations: Deviations = NO_DEVIATIONS,
        faults: Faults = NO_FAULTS,
        chunk_tokens: int = 1,
    ) -> ReplayServer:
        srv = ReplayServer(
            completions, deviations=deviations, faults=faults, chunk_tokens=chunk_tokens
        )
        srv.start()
        started.append(srv)
        return srv

    yield factory
    for srv in reversed(started):
        srv.stop()


# -- models -------------------------------------------------------------------------------


@pytest.fixture
def clients() -> Iterator[Callable[[ReplayServer, int, float], openai.OpenAI]]:
    """Synchronous SDK clients pointed at a server, closed after the test."""
    made: list[openai.OpenAI] = []

    def factory(server: ReplayServer, max_retries: int = 0, timeout: float = 10.0) -> openai.OpenAI:
        client = openai.OpenAI(
            base_url=server.base_url, api_key="test-key", max_retries=max_retries, timeout=timeout
        )
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


@pytest.fixture
async def make_model() -> AsyncIterator[ModelFactory]:
    """ChatOpenAI models on a server with their own SDK clients, all closed after the test.

    Async fixture so the async clients are closed on the test's own event loop.
    """
    made: list[tuple[openai.OpenAI, openai.AsyncOpenAI]] = []

    def factory(
        server: ReplayServer,
        *,
        model: str = "gpt-4o",
        max_retries: int = 0,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> ChatOpenAI:
        common: dict[str, Any] = {
            "base_url": server.base_url,
            "api_key": "test-key",
            "max_retries": max_retries,
            "timeout": timeout,
        }
        client = openai.OpenAI(**common)
        async_client = openai.AsyncOpenAI(**common)
        made.append((client, async_client))
        return ChatOpenAI(model=model, client=client, async_client=async_client, **kwargs)

    yield factory
    for client, async_client in made:
        client.close()
        await async_client.close()


@pytest.fixture(params=APIS, ids=str)
def api(request: pytest.FixtureRequest) -> Api:
    """Chat Completions, then Responses: a test taking it runs through both APIs."""
    chosen: Api = request.param
    return chosen


@pytest.fixture
def recorder() -> Iterator[RecordingHandler]:
    """A synchronous recording handler; exactly one end per run is checked after the test."""
    handler = RecordingHandler()
    yield handler
    handler.assert_exactly_one_end_per_run()


@pytest.fixture
def async_recorder() -> Iterator[AsyncRecordingHandler]:
    """An asynchronous recording handler; exactly one end per run is checked after the test."""
    handler = AsyncRecordingHandler()
    yield handler
    handler.assert_exactly_one_end_per_run()


# -- OpenTelemetry ------------------------------------------------------------------------


@pytest.fixture
def otel() -> Iterator[InMemoryOtel]:
    """In-memory traces (SDK default limits) and metrics; `otel.new(...)` makes more pipelines.

    After the test, every handler made with `.handler()` has ended its calls, and every
    pipeline is shut down.
    """
    pipeline = InMemoryOtel()
    yield pipeline
    pipeline.close()


@pytest.fixture
def no_global_instrumentation() -> Iterator[None]:
    """Whatever a test does, the SDK's classes are left unpatched."""
    yield
    uninstrument_openai()
