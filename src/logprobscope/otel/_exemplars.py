"""The Prometheus endpoint's exemplars: each histogram bucket's last trace and span id.

OpenTelemetry's Prometheus reader (opentelemetry-exporter-prometheus) drops the exemplars the
SDK samples (with the default `trace_based` filter: one per bucket, from the span current when
the value was recorded; our per-call histograms record with the call's span). This reader
keeps them: every histogram bucket sample of the exposition carries its latest exemplar,
`{trace_id="...", span_id="..."}`, which Prometheus stores when it scrapes the OpenMetrics
format with `--enable-feature=exemplar-storage`, and Grafana links to the trace. The plain
text format (what a scraper gets unless it asks for OpenMetrics) has no exemplars and is
unchanged.

Samples are matched to the OpenTelemetry data points they come from by metric name,
instrumentation scope and attributes, as the exporter turns them into names and labels.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.exporter.prometheus._mapping import sanitize_attribute, sanitize_full_name
from opentelemetry.sdk.metrics.export import Histogram, MetricsData
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.samples import Exemplar

__all__ = ["ExemplarPrometheusReader"]

logger = logging.getLogger("logprobscope.otel")

_SCOPE_LABEL = "otel_scope_name"
_SCOPE_PREFIX = "otel_scope_"
_BUCKET = "_bucket"

# (metric name as exposed, scope name, the point's labels)
_Key = tuple[str, str, frozenset[tuple[str, str]]]


@dataclass
class _Buckets:
    """A histogram point's bucket bounds and the latest exemplar of each bucket."""

    bounds: list[float]
    exemplars: list[Exemplar | None]


def _label_value(value: object) -> str:
    # As the exporter writes attribute values into labels.
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _labels(attributes: Mapping[str, object]) -> frozenset[tuple[str, str]]:
    # Empty values are left out on both sides: the exporter fills a label a point lacks
    # with "", so "" cannot tell an empty attribute from a missing one.
    items = ((sanitize_attribute(k), _label_value(v)) for k, v in attributes.items())
    return frozenset((k, v) for k, v in items if v != "")


class _Collector:
    """The exporter's collector, with the exemplars put on the histogram bucket samples."""

    def __init__(self, inner: Any, exemplars: dict[_Key, _Buckets]) -> None:
        self._inner = inner
        self._exemplars = exemplars

    def collect(self) -> Iterable[Metric]:
        for family in self._inner.collect():
            try:
                if family.type == "histogram":
                    self._annotate(family)
            except Exception:  # the exposition goes out, without exemplars
                logger.debug("adding exemplars to %s failed", family.name, exc_info=True)
            yield family

    def _annotate(self, family: Metric) -> None:
        names = {family.name}
        if family.unit and family.name.endswith("_" + family.unit):
            names.add(family.name[: -len(family.unit) - 1])
        bucket_name = family.name + _BUCKET
        for i, sample in enumerate(family.samples):
            if sample.name != bucket_name:
                continue
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            scope = labels.get(_SCOPE_LABEL, "")
            point = frozenset(
                (k, v) for k, v in labels.items() if not k.startswith(_SCOPE_PREFIX) and v != ""
            )
            buckets = next(
                (b for name in names if (b := self._exemplars.get((name, scope, point)))), None
            )
            if buckets is None:
                continue
            le = sample.labels.get("le", "")
            try:
                index = len(buckets.bounds) if le == "+Inf" else buckets.bounds.index(float(le))
            except ValueError:
                continue
            exemplar = buckets.exemplars[index]
            if exemplar is not None:
                family.samples[i] = sample._replace(exemplar=exemplar)


class ExemplarPrometheusReader(PrometheusMetricReader):
    """OpenTelemetry's Prometheus reader, whose histogram buckets carry exemplars.

    Registers itself with `registry` (a `prometheus_client.CollectorRegistry`) as the stock
    reader does; `shutdown()` unregisters it.
    """

    def __init__(self, *, registry: CollectorRegistry) -> None:
        super().__init__(registry=registry)
        self._lock = threading.Lock()
        self._exemplars: dict[_Key, _Buckets] = {}
        registry.unregister(self._collector)
        self._outer = _Collector(self._collector, self._exemplars)
        registry.register(self._outer)

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        if metrics_data is not None:
            try:
                self._keep_exemplars(metrics_data)
            except Exception:
                logger.debug("reading exemplars failed", exc_info=True)
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)

    def _keep_exemplars(self, metrics_data: MetricsData) -> None:
        for resource_metrics in metrics_data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                scope = scope_metrics.scope.name
                for metric in scope_metrics.metrics:
                    if not isinstance(metric.data, Histogram):
                        continue
                    name = sanitize_full_name(metric.name)
                    for point in metric.data.data_points:
                        if not point.exemplars:
                            continue
                        key = (name, scope, _labels(point.attributes or {}))
                        bounds = list(point.explicit_bounds)
                        with self._lock:
                            buckets = self._exemplars.get(key)
                            if buckets is None or buckets.bounds != bounds:
                                buckets = _Buckets(bounds, [None] * (len(bounds) + 1))
                                self._exemplars[key] = buckets
                            for exemplar in point.exemplars:
                                if not exemplar.trace_id or not exemplar.span_id:
                                    continue
                                index = bisect.bisect_left(bounds, exemplar.value)
                                buckets.exemplars[index] = Exemplar(
                                    {
                                        "trace_id": format(exemplar.trace_id, "032x"),
                                        "span_id": format(exemplar.span_id, "016x"),
                                    },
                                    exemplar.value,
                                    exemplar.time_unix_nano / 1e9,
                                )

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Unregister from the registry."""
        self._registry.unregister(self._outer)
