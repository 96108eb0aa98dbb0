"""Callback handlers that record every hook call, and check the exactly-once end contract."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from logprobscope import (
    AIMessage,
    AIMessageChunk,
    AsyncCallbackHandler,
    BaseCallbackHandler,
    BaseMessage,
    Run,
)

Hook = Literal["start", "token", "end", "error"]
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
