"""The Grafana dashboard's queries, and the Prometheus names the handler really emits."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest

from logprobscope import ChatOpenAI
from logprobscope.otel import OpenTelemetryCallbackHandler
from logprobscope.testing import Faults, ReplayServer

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "examples" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "logprobscope.json"

# Grafana's variables, as a test evaluates the queries.
VARIABLES = {"$__rate_interval": "1m", "$__range": "5m", "$model": ".*"}

_FUNCTIONS = {
    "sum", "rate", "increase", "histogram_quantile", "vector", "label_values", "by", "or",
    "and", "unless", "without", "on", "ignoring", "group_left", "group_right", "avg", "max",
    "min", "count", "topk", "bottomk", "irate", "delta", "clamp_min", "clamp_max", "abs",
}  # fmt: skip


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    found: list[tuple[str, str]] = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append((f"variable {variable['name']}", variable["definition"]))
    return found


def substitute(promql: str) -> str:
    """The query as plain PromQL: Grafana's variables and `label_values` replaced."""
    for name, value in VARIABLES.items():
        promql = promql.replace(name, value)
    return re.sub(
        r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*(\w+)\s*\)", r"count by (\2) (\1)", promql
    )


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression selects (a small, sufficient parser)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(?:by|without)\s*\([^)]*\)", "", text)  # grouping labels
    text = re.sub(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*\w+\s*\)", r"\1", text)
    names = set(re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)", text))
    return {n for n in names if n not in _FUNCTIONS}


def label_names(promql: str) -> set[str]:
    """The label names a PromQL expression matches on or groups by."""
    labels: set[str] = set()
    for matchers in re.findall(r"\{([^}]*)\}", promql):
        labels.update(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", promql):
        labels.update(x.strip() for x in group.split(",") if x.strip())
    for label in re.findall(r"label_values\(\s*[a-zA-Z_:][\w:]*\s*,\s*(\w+)\s*\)", promql):
        labels.add(label)
    return labels


def emitted_prometheus_names() -> tuple[set[str], set[str]]:
    """Metric and label names the handler's metrics get in Prometheus, from a real run."""
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    meter_provider = MeterProvider(metric_readers=[reader])
    handler = OpenTelemetryCallbackHandler(
        tracer_provider=TracerProvider(), meter_provider=meter_provider
    )
    with ReplayServer() as server:
        model = ChatOpenAI(
            model="gpt-4o",
            logprobs=True,
            top_logprobs=3,
            base_url=server.base_url,
            max_retries=0,
            callbacks=[handler],
        )
        model.invoke("how are you today?")
        for _ in model.stream("How are you today?"):
            pass
        server.set_faults(Faults(status=500))
        try:
            model.invoke("fails")
        except Exception as error:  # the error's metrics are what this call is for
            assert type(error).__name__ == "InternalServerError"
    text = generate_latest(registry).decode()
    meter_provider.shutdown()
    metrics = set(re.findall(r"^([a-zA-Z_:][\w:]*)(?:\{| )", text, re.M))
    labels = set(re.findall(r"[{,]([a-zA-Z_]\w*)=", text)) | {"le"}
    return metrics, labels
