"""`configure_telemetry`: tracer and meter providers with exporters, in one call.

Exports never block a model call: spans go through a `BatchSpanProcessor` and OTLP/console
metrics through a `PeriodicExportingMetricReader`, both on background threads; an
unreachable collector costs the call nothing but the (cheap) enqueueing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricExporter

__all__ = ["OTLPProtocol", "TelemetryHandle", "configure_telemetry"]

logger = logging.getLogger("logprobscope.otel")

OTLPProtocol = Literal["grpc", "http/protobuf"]

_PROTOCOLS: tuple[str, ...] = ("grpc", "http/protobuf")
_TRACES_PATH = "/v1/traces"
_METRICS_PATH = "/v1/metrics"

_global_lock = threading.Lock()
_global_handle: TelemetryHandle | None = None


class TelemetryHandle:
    """What `configure_telemetry` set up: the providers and a way to stop them.

    Attributes:
        tracer_provider: the tracer provider (a no-op one when `OTEL_SDK_DISABLED=true`).
        meter_provider: the meter provider (likewise).
        prometheus_port: the port the Prometheus endpoint listens on, or None.
        is_global: whether these providers are the global OpenTelemetry ones.
        span_exporters: every span exporter attached (each behind a BatchSpanProcessor).
        metric_readers: every metric reader attached.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider,
        meter_provider: metrics.MeterProvider,
        prometheus_server: _PrometheusServer | None = None,
        is_global: bool = False,
        span_exporters: Sequence[SpanExporter] = (),
        metric_readers: Sequence[MetricReader] = (),
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.span_exporters: tuple[SpanExporter, ...] = tuple(span_exporters)
        self.metric_readers: tuple[MetricReader, ...] = tuple(metric_readers)
        self._prometheus = prometheus_server
        self.prometheus_port: int | None = (
            prometheus_server.port if prometheus_server is not None else None
        )
        self.is_global = is_global
        self._lock = threading.Lock()
        self._shut_down = False

    @property
    def is_shut_down(self) -> bool:
        """True once `shutdown` ran."""
        return self._shut_down

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export everything buffered now (spans and metrics); True if all went out."""
        ok = True
        for provider in (self.tracer_provider, self.meter_provider):
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                try:
                    ok = bool(flush(timeout_millis)) and ok
                except Exception:
                    logger.warning("flushing telemetry failed", exc_info=True)
                    ok = False
        return ok

    def shutdown(self, *, timeout: float | None = 5.0) -> bool:
        """Flush and stop the providers, exporters and the Prometheus endpoint (idempotent).

        Waits at most `timeout` seconds (None: as long as the SDK takes, which with a
        collector that is down or slow is its export timeout per queued batch, 10 s or
        more each). If it is not done by then, a warning is logged and the stopping goes
        on in a daemon thread: a dead collector never holds up the program's exit, and what
        was not exported when the program exits is lost. Returns True if everything
        stopped within the time.

        The providers stay installed as globals if they were (OpenTelemetry cannot replace
        them), but record nothing anymore.
        """
        global _global_handle
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 seconds or None, not {timeout!r}")
        with self._lock:
            if self._shut_down:
                return True
            self._shut_down = True
        with _global_lock:
            if _global_handle is self:
                _global_handle = None
        worker = threading.Thread(
            target=self._stop, name="logprobscope-telemetry-shutdown", daemon=True
        )
        worker.start()
        worker.join(timeout)  # None: as long as the SDK takes
        if self._prometheus is not None:
            self._prometheus.stop()  # the port is freed now, whatever the exporters do
        if worker.is_alive():
            logger.warning(
                "telemetry shutdown did not finish in %.3g s (the collector is slow or down); "
                "it goes on in the background, and what is not exported by exit is lost",
                timeout,
            )
            return False
        return True

    def _stop(self) -> None:
        for provider in (self.tracer_provider, self.meter_provider):
            stop = getattr(provider, "shutdown", None)
            if stop is not None:
                try:
                    stop()
                except Exception:
                    logger.warning("shutting down telemetry failed", exc_info=True)


class _PrometheusServer:
    """prometheus_client's HTTP endpoint, serving one registry, stoppable."""

    def __init__(self, host: str, port: int) -> None:
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
        except ImportError as exc:
            raise ImportError(
                "the Prometheus endpoint needs opentelemetry-exporter-prometheus and "
                "prometheus-client: pip install 'logprobscope[prometheus]'"
            ) from exc
        registry = CollectorRegistry()
        reader: MetricReader | None = None
        try:
            # Histogram buckets carry exemplars (trace and span ids) in the OpenMetrics format.
            from ._exemplars import ExemplarPrometheusReader

            reader = ExemplarPrometheusReader(registry=registry)
        except Exception:  # another exporter version: the stock reader, without exemplars
            logger.debug("the Prometheus endpoint serves no exemplars", exc_info=True)
            registry = CollectorRegistry()
        if reader is None:
            try:
                reader = PrometheusMetricReader(registry=registry)
            except TypeError:  # an exporter without `registry`: the process-wide registry
                registry = REGISTRY
                reader = PrometheusMetricReader()
        self.reader: MetricReader = reader
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port: int = int(self._server.server_port)

    def stop(self) -> None:
        try:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
        except Exception:
            logger.warning("stopping the Prometheus endpoint failed", exc_info=True)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def _env_list(name: str) -> list[str]:
    return [v.strip().lower() for v in os.environ.get(name, "").split(",") if v.strip()]


def _protocol(signal: str, explicit: str | None) -> str:
    value = (
        explicit
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if value not in _PROTOCOLS:
        raise ValueError(f"OTLP protocol must be one of {', '.join(_PROTOCOLS)}, not {value!r}")
    return value


def _endpoints(endpoint: str, protocol: str) -> tuple[str, str]:
    """(traces, metrics) endpoints from one: a base URL, or a signal's full URL."""
    base = endpoint.rstrip("/")
    for suffix in (_TRACES_PATH, _METRICS_PATH):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    if protocol == "grpc":
        return base, base
    return base + _TRACES_PATH, base + _METRICS_PATH


def _otlp_span_exporter(protocol: str, endpoint: str | None) -> SpanExporter:
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )

            return GrpcSpanExporter(endpoint=endpoint)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )

        return HttpSpanExporter(endpoint=endpoint)
    except ImportError as exc:
        raise ImportError(
            f"OTLP over {protocol} needs the OTLP exporters: pip install 'logprobscope[otlp]'"
        ) from exc


def _otlp_metric_exporter(protocol: str, endpoint: str | None) -> MetricExporter:
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetricExporter,
            )

            return GrpcMetricExporter(endpoint=endpoint)
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetricExporter,
        )

        return HttpMetricExporter(endpoint=endpoint)
    except ImportError as exc:
        raise ImportError(
            f"OTLP over {protocol} needs the OTLP exporters: pip install 'logprobscope[otlp]'"
        ) from exc


def _global_meter_provider_unset() -> bool:
    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider
    except ImportError:  # layout changed: assume unset and let the API decide
        return True
    return isinstance(metrics.get_meter_provider(), _ProxyMeterProvider)


def configure_telemetry(
    *,
    service_name: str | None = None,
    otlp_endpoint: str | None = None,
    otlp_protocol: OTLPProtocol | None = None,
    console: bool = False,
    prometheus_port: int | None = None,
    prometheus_host: str = "127.0.0.1",
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
    set_global: bool = True,
) -> TelemetryHandle:
    """Set up OpenTelemetry tracing and metrics for logprobscope (and the rest of the app).

    Creates an SDK `TracerProvider` and `MeterProvider` with a resource from `service_name`
    and the standard `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`, and attaches:

    - OTLP exporters (traces and metrics) when `otlp_endpoint` is given, when an
      `OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT` variable is set, or when nothing else
      is configured (then the OTel default, localhost:4318). `otlp_endpoint` is a base URL
      ("http://collector:4318") or a signal URL ending in /v1/traces. Protocol: the
      argument, else `OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]PROTOCOL`, else http/protobuf.
      Headers, timeouts, certificates and the export interval come from the standard
      `OTEL_EXPORTER_OTLP_*` / `OTEL_METRIC_EXPORT_INTERVAL` variables.
      `OTEL_TRACES_EXPORTER=none` / `OTEL_METRICS_EXPORTER=none` turn a signal's OTLP off.
    - console exporters when `console=True`;
    - a Prometheus endpoint (`/metrics`) on `prometheus_host:prometheus_port` (0 picks a
      free port, see `TelemetryHandle.prometheus_port`), also when
      `OTEL_METRICS_EXPORTER` names "prometheus" (then `OTEL_EXPORTER_PROMETHEUS_PORT`,
      default 9464, and `OTEL_EXPORTER_PROMETHEUS_HOST`, default 127.0.0.1);
    - your own `span_exporters` (each behind a BatchSpanProcessor) and `metric_readers`.

    With `set_global=True` the providers become the global ones, unless another global
    provider is installed already (OpenTelemetry allows setting them once; a warning is
    logged and the handle's providers are used only where passed explicitly). A second
    call with `set_global=True` while the first handle is alive returns that same handle
    (its arguments are ignored); call `shutdown()` on it first to configure anew.
    `set_global=False` always builds new, independent providers.

    `OTEL_SDK_DISABLED=true` gives a handle with no-op providers and nothing started.

    Raises:
        ValueError: an unknown OTLP protocol.
        ImportError: an exporter's optional dependency is missing (the message names the
            extra to install: `logprobscope[otlp]` or `logprobscope[prometheus]`).
        OSError: the Prometheus port cannot be bound.
    """
    global _global_handle
    if _env_true("OTEL_SDK_DISABLED"):
        logger.info("OTEL_SDK_DISABLED=true: telemetry is off")
        return TelemetryHandle(
            tracer_provider=trace.NoOpTracerProvider(),
            meter_provider=metrics.NoOpMeterProvider(),
        )
    if set_global:
        with _global_lock:
            existing = _global_handle
        if existing is not None and not existing.is_shut_down:
            logger.info("configure_telemetry: already configured; returning the existing handle")
            return existing

    resource = Resource.create({SERVICE_NAME: service_name} if service_name else {})
    traces_exporters = _env_list("OTEL_TRACES_EXPORTER")
    metrics_exporters = _env_list("OTEL_METRICS_EXPORTER")
    env_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    something_else = bool(
        console or prometheus_port is not None or span_exporters or metric_readers
    )
    otlp_traces = "none" not in traces_exporters and bool(
        otlp_endpoint
        or env_endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or "otlp" in traces_exporters
        or not something_else
    )
    otlp_metrics = "none" not in metrics_exporters and bool(
        otlp_endpoint
        or env_endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        or "otlp" in metrics_exporters
        or not something_else
    )

    exporters: list[SpanExporter] = []
    readers: list[MetricReader] = []
    prometheus: _PrometheusServer | None = None
    if otlp_traces:
        protocol = _protocol("TRACES", otlp_protocol)
        endpoint = _endpoints(otlp_endpoint, protocol)[0] if otlp_endpoint else None
        exporters.append(_otlp_span_exporter(protocol, endpoint))
    if otlp_metrics:
        protocol = _protocol("METRICS", otlp_protocol)
        endpoint = _endpoints(otlp_endpoint, protocol)[1] if otlp_endpoint else None
        readers.append(PeriodicExportingMetricReader(_otlp_metric_exporter(protocol, endpoint)))
    if console:
        exporters.append(ConsoleSpanExporter())
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    exporters.extend(span_exporters)
    readers.extend(metric_readers)
    if prometheus_port is None and "prometheus" in metrics_exporters:
        prometheus_port = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
        prometheus_host = os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", prometheus_host)
    if prometheus_port is not None:
        prometheus = _PrometheusServer(prometheus_host, prometheus_port)
        readers.append(prometheus.reader)

    tracer_provider = SDKTracerProvider(resource=resource)
    for exporter in exporters:
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = SDKMeterProvider(resource=resource, metric_readers=readers)

    is_global = False
    if set_global:
        is_global = _install_globals(tracer_provider, meter_provider)
    handle = TelemetryHandle(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        prometheus_server=prometheus,
        is_global=is_global,
        span_exporters=exporters,
        metric_readers=readers,
    )
    if set_global:
        with _global_lock:
            _global_handle = handle
    return handle


def _install_globals(tracer_provider: SDKTracerProvider, meter_provider: SDKMeterProvider) -> bool:
    installed = True
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(tracer_provider)
    else:
        installed = False
        logger.warning(
            "a global tracer provider is already set (OpenTelemetry allows one): the new "
            "one is not global; pass handle.tracer_provider explicitly where needed"
        )
    if _global_meter_provider_unset():
        metrics.set_meter_provider(meter_provider)
    else:
        installed = False
        logger.warning(
            "a global meter provider is already set (OpenTelemetry allows one): the new "
            "one is not global; pass handle.meter_provider explicitly where needed"
        )
    return installed and trace.get_tracer_provider() is tracer_provider
