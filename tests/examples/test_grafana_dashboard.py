"""The Grafana dashboard: well-formed, provisioned, and every query names what we emit."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.dashboard import (
    GRAFANA,
    emitted_prometheus_names,
    label_names,
    load_dashboard,
    metric_names,
    queries,
)


@pytest.fixture(scope="module")
def emitted() -> tuple[set[str], set[str]]:
    return emitted_prometheus_names()


def test_parser_helpers() -> None:
    expr = (
        "histogram_quantile(0.5, sum by (le, gen_ai_request_model) "
        '(rate(logprobs_response_perplexity_bucket{gen_ai_request_model=~"$model"}[1m])))'
    )
    assert metric_names(expr) == {"logprobs_response_perplexity_bucket"}
    assert label_names(expr) == {"le", "gen_ai_request_model"}
    assert metric_names("label_values(logprobs_token_probability_count, x)") == {
        "logprobs_token_probability_count"
    }


def test_every_query_names_a_metric_the_handler_emits(
    emitted: tuple[set[str], set[str]],
) -> None:
    metrics, labels = emitted
    found = queries(load_dashboard())
    assert len(found) >= 15
    used: set[str] = set()
    for where, expr in found:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= metrics, f"{where}: {sorted(names - metrics)} not emitted"
        assert label_names(expr) <= labels, f"{where}: {sorted(label_names(expr) - labels)}"
        used |= names
    # The panels the dashboard promises.
    for needed in (
        "logprobs_token_probability_bucket",
        "logprobs_response_perplexity_bucket",
        "logprobs_token_low_confidence_total",
        "gen_ai_client_operation_duration_seconds_bucket",
        "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
    ):
        assert needed in used


def test_dashboard_shape() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "logprobscope"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    heatmaps = [p for p in dashboard["panels"] if p["type"] == "heatmap"]
    assert heatmaps and heatmaps[0]["targets"][0]["format"] == "heatmap"
    assert "logprobs_token_probability_bucket" in heatmaps[0]["targets"][0]["expr"]
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"]
        x, w = panel["gridPos"]["x"], panel["gridPos"]["w"]
        assert 0 <= x and x + w <= 24, panel["title"]


def test_provisioning_files() -> None:
    datasources: dict[str, Any] = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers: dict[str, Any] = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "dashboards.yml").read_text()
    )
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_exemplars_link_the_histogram_panels_to_jaeger() -> None:
    dashboard = load_dashboard()
    with_exemplars = {
        metric
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target.get("exemplar") is True
        for metric in metric_names(target["expr"])
    }
    assert with_exemplars == {
        "logprobs_response_perplexity_bucket",
        "logprobs_response_min_probability_bucket",
        "gen_ai_client_operation_duration_seconds_bucket",
    }
    sources = GRAFANA / "provisioning" / "datasources"
    [prometheus] = yaml.safe_load((sources / "prometheus.yml").read_text())["datasources"]
    [jaeger] = yaml.safe_load((sources / "jaeger.yml").read_text())["datasources"]
    assert jaeger["type"] == "jaeger" and jaeger["url"] == "http://jaeger:16686"
    [destination] = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    # the label our exemplars carry (and the collector's), opened in the Jaeger data source
    assert destination == {"name": "trace_id", "datasourceUid": jaeger["uid"]}
