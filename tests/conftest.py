"""Shared fixtures: replay servers on 127.0.0.1, models pointed at them, recording handlers."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from uuid import UUID

import openai
import pytest

from logprobscope import (
    AIMessage,
    AIMessageChunk,
    AsyncCallbackHandler,
    BaseCallbackHandler,
    BaseMessage,
    ChatOpenAI,
    Run,
)
from logprobscope.testing import Completion, Deviations, Faults, ReplayServer

Hook = Literal["start", "token", "end", "error"]
NO_DEVIATIONS = Deviations()
NO_FAULTS = Faults()
ENDS: frozenset[str] = frozenset({"end", "error"})


@dataclass(frozen=True)
class HookCall:
    """One recorded hook call."""

    hook: Hook
    run: Run
    payload: Any  # messages, (token, chunk), message or error

    @property
    def run_id(self) -> UUID:
        return self.run.run_id


class _Recorder:
    """Records every hook call with its run; checks the exactly-once end contract."""

    def __init__(self) -> None:
        self.calls: list[HookCall] = []
        self._lock = threading.Lock()

    def _record(self, hook: Hook, run: Run, payload: object) -> None:
        with self._lock:
            self.calls.append(HookCall(hook, run, payload))

    # -- queries ----------------------------------------------------------------------

    def run_ids(self) -> list[UUID]:
        """Run ids in order of first appearance."""
        seen: dict[UUID, None] = {}
        for call in self.calls:
            seen.setdefault(call.run_id, None)
        return list(seen)

    def for_run(self, run_id: UUID) -> list[HookCall]:
        return [c for c in self.calls if c.run_id == run_id]

    def hooks(self, run_id: UUID | None = None) -> list[str]:
        return [c.hook for c in self.calls if run_id is None or c.run_id == run_id]

    def ends(self) -> list[HookCall]:
        return [c for c in self.calls if c.hook in ENDS]

    def only_run(self) -> UUID:
        ids = self.run_ids()
        assert len(ids) == 1, f"expected one run, got {len(ids)}"
        return ids[0]

    def end_of(self, run_id: UUID | None = None) -> HookCall:
        """The single end (or error) of the run (of the only run when None)."""
        rid = self.only_run() if run_id is None else run_id
        ends = [c for c in self.for_run(rid) if c.hook in ENDS]
        assert len(ends) == 1, f"run {rid} ended {len(ends)} times: {self.hooks(rid)}"
        return ends[0]

    def message(self, run_id: UUID | None = None) -> AIMessage:
        call = self.end_of(run_id)
        assert call.hook == "end", f"run ended with {call.hook}: {call.payload!r}"
        assert isinstance(call.payload, AIMessage)
        return call.payload

    def error(self, run_id: UUID | None = None) -> BaseException:
        call = self.end_of(run_id)
        assert call.hook == "error", f"run ended with {call.hook}, not an error"
        assert isinstance(call.payload, BaseException)
        return call.payload

    def tokens(self, run_id: UUID | None = None) -> list[str]:
        rid = self.only_run() if run_id is None else run_id
        return [c.payload[0] for c in self.for_run(rid) if c.hook == "token"]

    def assert_exactly_one_end_per_run(self) -> None:
        """Every run: one start first, exactly one end or error, and it comes last."""
        for rid in self.run_ids():
            hooks = self.hooks(rid)
            assert hooks[0] == "start", f"run {rid} did not start first: {hooks}"
            assert hooks.count("start") == 1, f"run {rid} started twice: {hooks}"
            n_ends = sum(h in ENDS for h in hooks)
            assert n_ends == 1, f"run {rid} has {n_ends} ends: {hooks}"
            assert hooks[-1] in ENDS, f"run {rid} had hooks after its end: {hooks}"


class RecordingHandler(_Recorder, BaseCallbackHandler):
    """A synchronous handler recording every hook call."""

    def on_chat_model_start(self, messages: Sequence[BaseMessage], *, run: Run) -> None:
        self._record("start", run, list(messages))

    def on_llm_new_token(self, token: str, *, chunk: AIMessageChunk, run: Run) -> None:
        self._record("token", run, (token, chunk))

    def on_llm_end(self, message: AIMessage, *, run: Run) -> None:
        self._record("end", run, message)

    def on_llm_error(self, error: BaseException, *, run: Run) -> None:
        self._record("error", run, error)


class AsyncRecordingHandler(_Recorder, AsyncCallbackHandler):
    """An asynchronous handler recording every hook call."""

    async def on_chat_model_start(self, messages: Sequence[BaseMessage], *, run: Run) -> None:
        self._record("start", run, list(messages))

    async def on_llm_new_token(self, token: str, *, chunk: AIMessageChunk, run: Run) -> None:
        self._record("token", run, (token, chunk))

    async def on_llm_end(self, message: AIMessage, *, run: Run) -> None:
        self._record("end", run, message)

    async def on_llm_error(self, error: BaseException, *, run: Run) -> None:
        self._record("error", run, error)


# -- servers ------------------------------------------------------------------------------


class ServerFactory(Protocol):
    def __call__(
        self,
        completions: Sequence[Completion] | None = None,
        *,
        deviations: Deviations = ...,
        faults: Faults = ...,
        chunk_tokens: int = ...,
    ) -> ReplayServer: ...


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


class ModelFactory(Protocol):
    def __call__(
        self,
        server: ReplayServer,
        *,
        model: str = ...,
        max_retries: int = ...,
        timeout: float = ...,
        **kwargs: Any,
    ) -> ChatOpenAI: ...


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
