"""Load: many concurrent streams through one model and one handler.

Every run must see only its own call's tokens, in order; every run ends exactly once;
afterwards nothing is left open; memory stays flat over many calls.
"""

from __future__ import annotations

import asyncio
import gc
import random
import resource
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from uuid import UUID

import pytest

from logprobscope import (
    AIMessage,
    AIMessageChunk,
    AsyncChatStream,
    BaseCallbackHandler,
    BaseMessage,
    ChatOpenAI,
    ChatStream,
    Run,
)
from logprobscope.testing import Completion, ReplayServer, make_completion

VARIANTS = 25
TOKENS = 12


class UserError(Exception):
    """Raised by the 'user' inside a stream loop."""


def _tokens(variant: int) -> list[str]:
    return [f"v{variant}t{j} " for j in range(TOKENS)]


COMPLETIONS = [make_completion(_tokens(v), k=2, seed=v) for v in range(VARIANTS)]


def _choose(body: Mapping[str, object]) -> Completion:
    messages = body["messages"]
    assert isinstance(messages, list)
    prompt = messages[-1]["content"]
    return COMPLETIONS[int(str(prompt).removeprefix("p"))]


@dataclass
class RunRecord:
    variant: int
    tokens: list[str] = field(default_factory=list)
    ends: int = 0
    errors: list[type[BaseException]] = field(default_factory=list)
    incomplete: bool | None = None


class Ledger(BaseCallbackHandler):
    """Records every hook per run_id, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[UUID, RunRecord] = {}
        self.open: set[UUID] = set()

    def on_chat_model_start(self, messages: Sequence[BaseMessage], *, run: Run) -> None:
        variant = int(str(messages[-1].content).removeprefix("p"))
        with self.lock:
            assert run.run_id not in self.runs
            self.runs[run.run_id] = RunRecord(variant)
            self.open.add(run.run_id)

    def on_llm_new_token(self, token: str, *, chunk: AIMessageChunk, run: Run) -> None:
        logprobs = chunk.response_metadata.logprobs
        if logprobs is not None and logprobs.content:
            self.runs[run.run_id].tokens.extend(t.token for t in logprobs.content)

    def on_llm_end(self, message: AIMessage, *, run: Run) -> None:
        with self.lock:
            record = self.runs[run.run_id]
            record.ends += 1
            record.incomplete = message.response_metadata.incomplete
            self.open.discard(run.run_id)

    def on_llm_error(self, error: BaseException, *, run: Run) -> None:
        with self.lock:
            record = self.runs[run.run_id]
            record.ends += 1
            record.errors.append(type(error))  # not the error: its traceback pins frames
            self.open.discard(run.run_id)

    def check(self, expected_runs: int) -> None:
        assert len(self.runs) == expected_runs
        assert not self.open, f"{len(self.open)} runs never ended"
        for record in self.runs.values():
            assert record.ends == 1
            expected = _tokens(record.variant)
            assert record.tokens == expected[: len(record.tokens)], "tokens of another call"
            if record.incomplete is False:
                assert record.tokens == expected


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer(_choose) as srv:
        yield srv


def _live(kind: type[object]) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


async def test_a_thousand_concurrent_async_streams(server: ReplayServer) -> None:
    ledger = Ledger()
    # A burst of 1,000 connects overflows the server's listen backlog: TCP retries the
    # dropped SYNs after a second or more, so allow connects longer than the SDK's 5 s.
    model = ChatOpenAI(
        "gpt-4o",
        logprobs=True,
        top_logprobs=2,
        base_url=server.base_url,
        callbacks=[ledger],
        timeout=120,
    )
    rng = random.Random(7)
    plans = [(rng.randrange(VARIANTS), rng.choice(["full", "break", "raise"])) for _ in range(1000)]

    async def one(variant: int, plan: str, stop_at: int) -> str:
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
            return "raised"
        return plan

    outcomes = await asyncio.gather(*(one(v, plan, rng.randrange(1, TOKENS)) for v, plan in plans))
    assert outcomes.count("raised") == sum(1 for _, p in plans if p == "raise")
    ledger.check(1000)
    user_errors = [r for r in ledger.runs.values() if r.errors]
    assert all(r.errors == [UserError] for r in user_errors)
    assert len(user_errors) == outcomes.count("raised")
    assert _live(AsyncChatStream) == 0


def test_sixty_four_threads_of_sync_streams(server: ReplayServer) -> None:
    ledger = Ledger()
    model = ChatOpenAI(
        "gpt-4o", logprobs=True, top_logprobs=2, base_url=server.base_url, callbacks=[ledger]
    )

    def worker(seed: int) -> int:
        rng = random.Random(seed)
        done = 0
        for _ in range(8):
            variant = rng.randrange(VARIANTS)
            plan = rng.choice(["full", "break", "drop", "raise"])
            stop_at = rng.randrange(1, TOKENS)
            if plan == "raise":
                with pytest.raises(UserError), model.stream(f"p{variant}") as stream:
                    for i, _ in enumerate(stream):
                        if i == stop_at:
                            raise UserError
            else:
                for i, _ in enumerate(model.stream(f"p{variant}")):
                    if plan in ("break", "drop") and i == stop_at:
                        break  # the dropped iterator ends its run when collected
            done += 1
        return done

    with model, ThreadPoolExecutor(max_workers=64) as pool:
        assert sum(pool.map(worker, range(64))) == 64 * 8
    gc.collect()
    ledger.check(64 * 8)
    assert _live(ChatStream) == 0


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.fixture
def server_process() -> Iterator[str]:
    """The replay server in its own process, so it does not share the client's GIL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "logprobscope.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:"), base_url
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _ours() -> Counter[str]:
    """Live objects of the library's own types, by type (after a collection)."""
    gc.collect()
    counts: Counter[str] = Counter()
    for o in gc.get_objects():
        module = type(o).__module__  # not a str for a few metaclasses' instances
        if isinstance(module, str) and module.startswith("logprobscope"):
            counts[type(o).__qualname__] += 1
    return counts


async def test_memory_is_flat_over_ten_thousand_calls(server_process: str) -> None:
    """No object outlives its call; live Python memory and RSS stay flat.

    50 workers take the calls in turn: 50 in flight, as with a semaphore, but without
    10,000 tasks waiting at once. Those (task, coroutine, context, weakrefs: ~1 KB each)
    would be the test's memory, and the RSS they raise stays after they are freed (the
    allocators keep it), which is what the earlier version of this test measured. The
    ledger is checked and emptied every 1,000 calls for the same reason.
    """
    ledger = Ledger()
    model = ChatOpenAI("gpt-4o", logprobs=True, top_logprobs=2, base_url=server_process)

    async def one(i: int) -> None:
        if i % 2:
            await model.ainvoke(f"p{i % VARIANTS}", callbacks=[ledger])
        else:
            async for _ in model.astream(f"p{i % VARIANTS}", callbacks=[ledger]):
                pass

    async def calls(start: int, stop: int) -> None:
        pending = iter(range(start, stop))

        async def worker() -> None:
            for i in pending:
                await one(i)

        await asyncio.gather(*(worker() for _ in range(50)))
        await asyncio.sleep(0)  # the loop's running handle still holds the gather's future
        assert not ledger.open
        assert all(record.ends == 1 for record in ledger.runs.values())
        assert len(ledger.runs) == stop - start
        ledger.runs.clear()

    async with model:
        await calls(0, 1000)  # warm-up: the pool's connections, caches
        gc.collect()
        rss_before, blocks_before, ours_before = _rss_kib(), sys.getallocatedblocks(), _ours()
        for start in range(1000, 11000, 1000):
            await calls(start, start + 1000)
        gc.collect()
        rss_after, blocks_after, ours_after = _rss_kib(), sys.getallocatedblocks(), _ours()
    print(
        f"over 10,000 calls: RSS {rss_before} -> {rss_after} KiB, "
        f"allocated blocks {blocks_after - blocks_before:+d}, "
        f"objects of ours {sum(ours_after.values()) - sum(ours_before.values()):+d}"
    )
    assert not ours_after - ours_before, "objects of ours outlived their calls"
    for kind in ("AsyncChatStream", "RunCallbacks", "Run", "StreamAccumulator", "AIMessage"):
        assert ours_after[kind] == 0, kind
    # A leak of one small object per call would be +10,000 blocks.
    assert blocks_after - blocks_before < 1000, "live Python memory grew"
    assert rss_after - rss_before < 8 * 1024, f"RSS grew by {rss_after - rss_before} KiB"
