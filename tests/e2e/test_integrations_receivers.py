"""A LangChain user and a raw-SDK user see in Phoenix and Prometheus what our model's users see.

Three apps, one per entry point, each with its own `configure_telemetry` (spans over OTLP to
Phoenix, in its own project; metrics on its own Prometheus endpoint), make the same calls
(invoke and stream, `logprobs=True, top_logprobs=2`) to the replay server's seed completion.
Phoenix must then hold the same spans with the same token events in the three projects, and
Prometheus the same series with the same values for the three targets (timing values aside).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest
from langchain_openai import ChatOpenAI as LangChainChatOpenAI
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

from logprobscope import ChatOpenAI
from logprobscope.instrument import instrument_openai
from logprobscope.langchain import LogprobsCallbackHandler
from logprobscope.otel import (
    LogprobTelemetry,
    OpenTelemetryCallbackHandler,
    TelemetryHandle,
    configure_telemetry,
)
from logprobscope.testing import ReplayServer
from tests.e2e.receivers import PhoenixHandle, StartPrometheus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PROMPT = "how are you today?"
TOP_K = 2
APPS = ("ours", "langchain", "raw")
# Values that depend on time (compared by presence or count only).
TIMED_ATTRIBUTES = frozenset({"gen_ai.response.time_to_first_chunk"})
TIMED_METRICS = ("duration", "time_to_first_chunk", "time_per_output_chunk")


@dataclass
class App:
    name: str
    project: str
    handle: TelemetryHandle

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.handle.prometheus_port}"


@pytest.fixture
def apps(monkeypatch: pytest.MonkeyPatch, phoenix: PhoenixHandle) -> Iterator[dict[str, App]]:
    run = uuid.uuid4().hex[:8]
    made: dict[str, App] = {}
    try:
        for name in APPS:
            project = f"logprobscope-{name}-{run}"
            # Phoenix files spans by this resource attribute; the SDK reads it from the env.
            monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={project}")
            handle = configure_telemetry(
                service_name=f"app-{name}",
                span_exporters=[OTLPSpanExporter(endpoint=phoenix.otlp_traces_endpoint)],
                prometheus_port=0,
                set_global=False,
            )
            made[name] = App(name, project, handle)
        yield made
    finally:
        for app in made.values():
            app.handle.shutdown()


def _use_ours(handle: TelemetryHandle, server: ReplayServer) -> None:
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider
    )
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        model = ChatOpenAI(
            model="gpt-4o", client=client, logprobs=True, top_logprobs=TOP_K, callbacks=[handler]
        )
        model.invoke(PROMPT)
        for _ in model.stream(PROMPT):
            pass


def _use_langchain(handle: TelemetryHandle, server: ReplayServer) -> None:
    # What a LangChain user adds: one handler.
    handler = LogprobsCallbackHandler(
        tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider
    )
    with openai.DefaultHttpxClient() as http:
        model = LangChainChatOpenAI(
            model="gpt-4o",
            base_url=server.base_url,
            api_key="k",  # type: ignore[arg-type]
            max_retries=0,
            http_client=http,
            logprobs=True,
            top_logprobs=TOP_K,
            stream_usage=True,
            callbacks=[handler],
        )
        model.invoke(PROMPT)
        for _ in model.stream(PROMPT):
            pass


def _use_raw(handle: TelemetryHandle, server: ReplayServer) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        # What a raw-SDK user adds: one line.
        instrument_openai(
            client,
            telemetry=LogprobTelemetry(
                tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider
            ),
        )
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]
        client.chat.completions.create(
            model="gpt-4o",
            messages=messages,
            logprobs=True,
            top_logprobs=TOP_K,
        )
        for _ in client.chat.completions.create(
            model="gpt-4o",
            messages=messages,
            logprobs=True,
            top_logprobs=TOP_K,
            stream=True,
            stream_options={"include_usage": True},
        ):
            pass


USES = {"ours": _use_ours, "langchain": _use_langchain, "raw": _use_raw}


def _span_view(span: dict[str, object], *, drop_id: bool) -> dict[str, object]:
    attributes = dict(span["attributes"])  # type: ignore[call-overload]
    # Their values differ from run to run: compared by presence (kept in the view), not value.
    timed = sorted(name for name in TIMED_ATTRIBUTES if attributes.pop(name, None) is not None)
    if drop_id:
        attributes.pop("gen_ai.response.id", None)
        attributes.pop("output.value", None)  # Phoenix's summary of the response: has the id
    events = span["events"]
    assert isinstance(events, list)
    return {
        "name": span["name"],
        "span_kind": span["span_kind"],
        "status_code": span["status_code"],
        "attributes": attributes,
        "timed_attributes": timed,
        "events": [(e["name"], e["attributes"]) for e in events],
    }


def _series(values: list[dict[str, object]]) -> dict[str, dict[tuple[object, ...], float]]:
    """Per instance: (metric name, labels without job/instance) -> value."""
    out: dict[str, dict[tuple[object, ...], float]] = {}
    for result in values:
        labels = dict(result["metric"])  # type: ignore[call-overload]
        name = str(labels.pop("__name__"))
        instance = str(labels.pop("instance"))
        labels.pop("job", None)
        if name in ("up", "target_info") or name.startswith("scrape_"):
            continue
        if any(t in name for t in TIMED_METRICS) and not name.endswith("_count"):
            continue  # durations and chunk times differ from run to run: counts only
        key = (name, *sorted(labels.items()))
        out.setdefault(instance, {})[key] = float(result["value"][1])  # type: ignore[index]
    return out


def test_langchain_and_raw_sdk_users_see_what_our_users_see(
    apps: dict[str, App],
    phoenix: PhoenixHandle,
    start_prometheus: StartPrometheus,
) -> None:
    with ReplayServer() as server:
        for name, app in apps.items():
            USES[name](app.handle, server)
            assert app.handle.force_flush(30_000)

    # -- Phoenix: the same two spans, with the same token events, in each project ---------
    views: dict[str, list[dict[str, object]]] = {}
    for name, app in apps.items():
        spans = phoenix.spans(app.project, min_count=2, name="chat gpt-4o")
        assert len(spans) == 2
        invoked, streamed = sorted(
            spans,
            key=lambda s: bool(s["attributes"]["gen_ai.request.stream"]),  # type: ignore[index]
        )
        # langchain-openai drops a stream's response id: compared on the other spans only.
        views[name] = [
            _span_view(invoked, drop_id=False),
            _span_view(streamed, drop_id=True),
        ]
        assert str(invoked["span_kind"]) == "LLM"  # Phoenix reads the GenAI attributes
        assert views[name][0]["timed_attributes"] == []  # no first chunk in a plain call
        assert views[name][1]["timed_attributes"] == sorted(TIMED_ATTRIBUTES)
        assert len(invoked["events"]) == 25  # type: ignore[arg-type]
    for name in ("langchain", "raw"):
        for got, want in zip(views[name], views["ours"], strict=True):
            got_attrs, want_attrs = got["attributes"], want["attributes"]
            assert isinstance(got_attrs, dict) and isinstance(want_attrs, dict)
            diff = {
                k: (got_attrs.get(k), want_attrs.get(k))
                for k in got_attrs.keys() | want_attrs.keys()
                if got_attrs.get(k) != want_attrs.get(k)
            }
            assert diff == {}, name
            assert got == want, name

    # -- Prometheus: the same series and values for the three apps --------------------------
    targets = {app.target: name for name, app in apps.items()}
    prometheus = start_prometheus(list(targets))
    prometheus.wait_for('count(logprobs_token_probability_count{job="logprobscope"}) == 3')
    by_instance = _series(prometheus.query('{job="logprobscope"}'))
    assert set(by_instance) == set(targets)
    ours = by_instance[apps["ours"].target]
    [tokens] = [v for k, v in ours.items() if k[0] == "logprobs_token_probability_count"]
    assert tokens == 50  # 25 tokens, invoked and streamed
    assert any(str(k[0]).startswith("gen_ai_client_operation_time_to_first_chunk") for k in ours)
    for name in ("langchain", "raw"):
        assert by_instance[apps[name].target] == ours, name
