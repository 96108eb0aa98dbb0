"""Token lists wait a few chunks before they are processed: nothing is lost or reordered."""

from __future__ import annotations

from collections import UserList
from typing import Any

import pytest

from logprobscope.otel import ResponseFacts
from logprobscope.otel import _call as call_module
from tests.support.otel import InMemoryOtel, reassemble

T0 = 1_700_000_000_000_000_000


def _entry(i: int) -> dict[str, Any]:
    return {"token": f"t{i}", "logprob": -0.01 * i, "top_logprobs": []}


def test_lists_iterators_and_a_changed_list_keep_their_order_and_times(otel: InMemoryOtel) -> None:
    call = otel.telemetry_with(capture_content=True).start_call(model="m", stream=True, params={})
    call.set_response(ResponseFacts(model="m"))
    mine = [_entry(0)]
    call.add_tokens(mine, time_ns=T0)
    mine[0] = _entry(99)  # the caller's list changes after the call: the copy counts
    call.add_tokens([_entry(1)], time_ns=T0 + 1)
    # Another kind of sequence: read at once, after what waits.
    call.add_tokens(UserList([_entry(2)]), time_ns=T0 + 2)
    for i in range(3, 3 + 2 * call_module._DEFER):
        call.add_tokens((_entry(i),), time_ns=T0 + i)
    assert call.token_count == 3 + 2 * call_module._DEFER  # counts what waits too
    call.end(completed=True)
    tokens = reassemble(otel.span().events)
    assert [t.text for t in tokens] == [f"t{i}" for i in range(3 + 2 * call_module._DEFER)]
    assert [t.timestamp for t in tokens] == [T0 + i for i in range(len(tokens))]


def test_a_list_that_fails_to_process_costs_only_itself(
    otel: InMemoryOtel, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = otel.telemetry_with().start_call(model="m", stream=True, params={})
    original = call_module.CallTelemetry._process

    def failing(self: Any, tokens: Any, *args: Any) -> None:
        if tokens and tokens[0]["token"] == "t1":
            raise RuntimeError("boom")
        original(self, tokens, *args)

    monkeypatch.setattr(call_module.CallTelemetry, "_process", failing)
    for i in range(3):
        call.add_tokens([_entry(i)], time_ns=T0 + i)
    call.end(completed=True)
    span = otel.span()
    assert [t.index for t in reassemble(span.events)] == [0, 1]  # t0 and t2: t1 is lost alone
    assert (span.attributes or {})["logprobs.token_count"] == 2
