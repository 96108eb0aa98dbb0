"""End to end, with no code: `opentelemetry-instrument` apps exporting OTLP into a real Phoenix.

A raw-`openai` app and a LangChain app, neither of which imports logprobscope, run in a
subprocess under `opentelemetry-instrument` with the exporters chosen by OTEL_* variables only
(OTLP/HTTP to Phoenix and the console, as a user sets them), against the replay server. Every
logprob each app saw must come back from Phoenix's REST API on that call's span, and the
console exporter must have printed the same spans.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from logprobscope import _contract as n
from logprobscope.testing import ReplayServer
from tests.e2e.receivers import PhoenixHandle
from tests.support.zero_code import LANGCHAIN_APP, RAW_APP, event_logprobs, run_instrumented

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _phoenix_logprobs(span: dict[str, Any]) -> list[float]:
    return [
        float(e["attributes"]["logprobs.token.logprob"])
        for e in span["events"]
        if e["name"] == "logprobs.token"
    ]


@pytest.mark.parametrize("app", [RAW_APP, LANGCHAIN_APP], ids=["raw-openai", "langchain"])
def test_every_logprob_reaches_phoenix(
    phoenix: PhoenixHandle,
    server: ReplayServer,
    tmp_path: Path,
    app: Path,
) -> None:
    project = f"zero-code-{uuid.uuid4().hex[:8]}"
    run = run_instrumented(
        app,
        base_url=server.base_url,
        workdir=tmp_path,
        env={
            "OTEL_TRACES_EXPORTER": "otlp,console",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": phoenix.otlp_traces_endpoint,
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
        },
    )
    calls = run.calls
    assert len(calls) == 4 and all(c["logprobs"] for c in calls)

    stored = phoenix.spans(project, min_count=len(calls), timeout=60)
    chats = sorted(
        (s for s in stored if s["name"] == "chat gpt-4o"), key=lambda s: str(s["start_time"])
    )
    assert len(stored) == len(chats) == len(calls), [s["name"] for s in stored]
    printed = run.spans("chat gpt-4o")
    for call, chat, console in zip(calls, chats, printed, strict=True):
        assert _phoenix_logprobs(chat) == call["logprobs"], call["call"]
        assert event_logprobs(console) == call["logprobs"], call["call"]
        attributes = chat["attributes"]
        assert isinstance(attributes, dict)
        assert attributes[n.GEN_AI_OPERATION_NAME] == "chat"
        assert attributes[n.LOGPROBS_TOKEN_COUNT] == len(call["logprobs"])
        assert attributes[n.LOGPROBS_MIN] == min(call["logprobs"])
        assert chat["context"]["trace_id"] == console["context"]["trace_id"].removeprefix("0x")  # type: ignore[index]
