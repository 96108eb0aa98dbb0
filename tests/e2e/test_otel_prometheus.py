"""End to end: configure_telemetry's Prometheus endpoint scraped by a real Prometheus.

The series names checked here are what users' dashboards and alerts query.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from logprobscope import ChatOpenAI
from logprobscope.otel import OpenTelemetryCallbackHandler, TelemetryHandle, configure_telemetry
from logprobscope.testing import SEED_TOP_LOGPROBS, ReplayServer
from tests.e2e.receivers import StartPrometheus

pytestmark = pytest.mark.e2e

PROBABILITY_BUCKETS: tuple[str, ...] = (
    "0.01",
    "0.05",
    "0.1",
    "0.2",
    "0.3",
    "0.4",
    "0.5",
    "0.6",
    "0.7",
    "0.8",
)
PROBABILITY_BUCKETS += ("0.9", "0.95", "0.99", "0.999", "+Inf")
PERPLEXITY_BUCKETS: tuple[str, ...] = (
    "1.0",
    "1.01",
    "1.05",
    "1.1",
    "1.25",
    "1.5",
    "2.0",
    "3.0",
    "5.0",
    "10.0",
)
PERPLEXITY_BUCKETS += ("20.0", "50.0", "100.0", "+Inf")

SERIES = {
    "up",
    "target_info",
    "logprobs_token_probability_bucket",
    "logprobs_token_probability_count",
    "logprobs_token_probability_sum",
    "logprobs_response_perplexity_bucket",
    "logprobs_response_perplexity_count",
    "logprobs_response_perplexity_sum",
    "logprobs_response_min_probability_bucket",
    "logprobs_response_min_probability_count",
    "logprobs_response_min_probability_sum",
    "logprobs_response_entropy_nat_bucket",
    "logprobs_response_entropy_nat_count",
    "logprobs_response_entropy_nat_sum",
    "logprobs_token_low_confidence_total",
    "gen_ai_client_token_usage_bucket",
    "gen_ai_client_token_usage_count",
    "gen_ai_client_token_usage_sum",
    "gen_ai_client_operation_duration_seconds_bucket",
    "gen_ai_client_operation_duration_seconds_count",
    "gen_ai_client_operation_duration_seconds_sum",
    "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
    "gen_ai_client_operation_time_to_first_chunk_seconds_count",
    "gen_ai_client_operation_time_to_first_chunk_seconds_sum",
    "gen_ai_client_operation_time_per_output_chunk_seconds_bucket",
    "gen_ai_client_operation_time_per_output_chunk_seconds_count",
    "gen_ai_client_operation_time_per_output_chunk_seconds_sum",
}


@pytest.fixture
def telemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[TelemetryHandle]:
    for variable in ("OTEL_METRICS_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    handle = configure_telemetry(
        service_name="logprobscope-e2e", prometheus_port=0, set_global=False
    )
    yield handle
    handle.shutdown()


def _value(result: list[dict[str, Any]]) -> float:
    [sample] = result
    return float(sample["value"][1])


def test_prometheus_scrapes_the_logprob_metrics(
    start_prometheus: StartPrometheus,
    telemetry: TelemetryHandle,
) -> None:
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    with ReplayServer() as server:
        model = ChatOpenAI(
            model="gpt-4o", logprobs=True, top_logprobs=3, base_url=server.base_url, api_key="k"
        )
        list(model.stream("hi", callbacks=[handler]))
        model.invoke("hi", callbacks=[handler])
    target = f"127.0.0.1:{telemetry.prometheus_port}"
    prometheus = start_prometheus([target])

    buckets = prometheus.wait_for("logprobs_token_probability_bucket", timeout=60)
    assert sorted(r["metric"]["le"] for r in buckets) == sorted(PROBABILITY_BUCKETS)  # type: ignore[index]
    metric = buckets[0]["metric"]
    assert isinstance(metric, dict)
    labels: dict[str, object] = dict(metric)
    for key in ("__name__", "le", "instance", "job"):
        labels.pop(key)
    assert labels == {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o",
        "gen_ai_response_model": "gpt-4o-2024-08-06",
        "server_address": "127.0.0.1",
        "otel_scope_name": "logprobscope",
        "otel_scope_version": labels["otel_scope_version"],
    }
    names = {
        str(s["__name__"])
        for s in prometheus.series('{job="logprobscope"}')
        if not str(s["__name__"]).startswith("scrape_")
    }
    assert names == SERIES

    entries: list[dict[str, Any]] = SEED_TOP_LOGPROBS["choices"][0]["logprobs"]["content"]  # type: ignore[index]
    assert _value(prometheus.query("logprobs_token_probability_count")) == 2 * len(entries)
    low = sum(math.exp(e["logprob"]) < 0.5 for e in entries)
    assert _value(prometheus.query("logprobs_token_low_confidence_total")) == 2 * low
    perplexity_les = {
        r["metric"]["le"]  # type: ignore[index]
        for r in prometheus.query("logprobs_response_perplexity_bucket")
    }
    assert perplexity_les == set(PERPLEXITY_BUCKETS)
    median = _value(
        prometheus.query("histogram_quantile(0.5, sum by (le) (logprobs_token_probability_bucket))")
    )
    assert 0.0 <= median <= 1.0
    usage = prometheus.query("sum by (gen_ai_token_type) (gen_ai_client_token_usage_sum)")
    assert {r["metric"]["gen_ai_token_type"]: float(r["value"][1]) for r in usage} == {  # type: ignore[index]
        "input": 26.0,
        "output": 50.0,
    }
