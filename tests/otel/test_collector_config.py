"""otel-collector.yaml, the Jaeger compose example, its configurations and README agree.

Docker does not run in CI: the files are parsed and cross-checked instead (pipelines only
reference defined components; ports, hosts and paths line up across the files).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR = ROOT / "otel-collector.yaml"
EXAMPLE = ROOT / "examples" / "jaeger"
COMPOSE = EXAMPLE / "docker-compose.yml"
PROMETHEUS = EXAMPLE / "prometheus.yml"
README = EXAMPLE / "README.md"
JAEGER_CONFIG = EXAMPLE / "jaeger.yaml"
JAEGER_UI_CONFIG = EXAMPLE / "jaeger-ui.json"


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return _load(COLLECTOR)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(COMPOSE)


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def _published(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """container port -> (host address, host port)."""
    out: dict[int, tuple[str, int]] = {}
    for spec in service.get("ports", []):
        host, host_port, container = str(spec).split(":")
        out[int(container)] = (host, int(host_port))
    return out


def test_pipelines_reference_defined_components(collector: dict[str, Any]) -> None:
    pipelines = collector["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics"}
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            defined = set(collector.get(kind) or {})
            used = pipeline.get(kind) or []
            assert used or kind == "processors", f"{name} has no {kind}"
            missing = set(used) - defined
            assert not missing, f"pipeline {name} uses undefined {kind}: {missing}"
        assert pipeline["processors"][0] == "memory_limiter", "memory_limiter must come first"
        assert "batch" in pipeline["processors"]
    assert "otlp/jaeger" in pipelines["traces"]["exporters"]
    assert "prometheus" in pipelines["metrics"]["exporters"]
    # every defined component is either used or deliberately documented as optional
    for kind in ("receivers", "processors", "exporters"):
        used = {c for p in pipelines.values() for c in p.get(kind) or []}
        assert set(collector[kind]) == used, kind


def test_receivers_and_exporters(collector: dict[str, Any]) -> None:
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert _port(protocols["grpc"]["endpoint"]) == 4317
    assert _port(protocols["http"]["endpoint"]) == 4318
    jaeger = collector["exporters"]["otlp/jaeger"]
    assert jaeger["endpoint"] == "jaeger:4317" and jaeger["tls"]["insecure"] is True
    assert _port(collector["exporters"]["prometheus"]["endpoint"]) == 8889
    assert collector["exporters"]["debug"]["verbosity"] in ("basic", "normal", "detailed")
    file_exporter = collector["exporters"]["file/traces"]
    assert file_exporter["format"] == "json"  # the report reads plain OTLP JSON lines


def test_compose_services_images_and_mounts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"jaeger", "otel-collector", "prometheus", "grafana"}
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert re.fullmatch(r"jaegertracing/jaeger:2\.\d+\.\d+", services["jaeger"]["image"])
    assert services["otel-collector"]["image"].startswith("otel/opentelemetry-collector-contrib:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    collector = services["otel-collector"]
    mounts = dict(str(v).split(":")[:2] for v in collector["volumes"])
    config_source, config_target = next(
        (s, t) for s, t in mounts.items() if s.endswith("otel-collector.yaml")
    )
    assert (COMPOSE.parent / config_source).resolve() == COLLECTOR
    assert any(f"--config={config_target}" == arg for arg in collector["command"])
    prometheus = services["prometheus"]
    prom_mounts = dict(str(v).split(":")[:2] for v in prometheus["volumes"])
    [(source, target)] = prom_mounts.items()
    assert (COMPOSE.parent / source).resolve() == PROMETHEUS
    assert f"--config.file={target}" in prometheus["command"]


def test_jaeger_runs_with_the_shipped_configurations(
    collector: dict[str, Any], compose: dict[str, Any]
) -> None:
    jaeger = compose["services"]["jaeger"]
    # useOpenTelemetryTerms needs a UI of 2.14 or later (Jaeger 2.19.0 bundles UI 2.19.0).
    minor = int(jaeger["image"].split(":")[1].split(".")[1])
    assert minor >= 14
    mounts = dict(str(v).split(":")[:2] for v in jaeger["volumes"])
    targets = {(COMPOSE.parent / source).resolve(): target for source, target in mounts.items()}
    assert set(targets) == {JAEGER_CONFIG, JAEGER_UI_CONFIG}
    command = jaeger["command"]
    assert command[command.index("--config") + 1] == targets[JAEGER_CONFIG]
    config = _load(JAEGER_CONFIG)
    assert config["extensions"]["jaeger_query"]["ui"]["config_file"] == targets[JAEGER_UI_CONFIG]
    storage = config["extensions"]["jaeger_query"]["storage"]["traces"]
    assert storage in config["extensions"]["jaeger_storage"]["backends"]
    assert config["exporters"]["jaeger_storage_exporter"]["trace_storage"] == storage
    assert set(config["service"]["extensions"]) == set(config["extensions"])
    [pipeline] = config["service"]["pipelines"].values()
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) == set(config[kind]), kind
    # The collector's exporter reaches this receiver.
    _, _, port = collector["exporters"]["otlp/jaeger"]["endpoint"].partition(":")
    assert _port(config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]) == int(port)
    ui = json.loads(JAEGER_UI_CONFIG.read_text())
    assert ui["useOpenTelemetryTerms"] is True and ui["topTagPrefixes"]


def test_file_exporter_writes_into_a_mounted_directory(
    collector: dict[str, Any], compose: dict[str, Any]
) -> None:
    path = Path(collector["exporters"]["file/traces"]["path"])
    targets = [str(v).split(":")[1] for v in compose["services"]["otel-collector"]["volumes"]]
    assert str(path.parent) in targets


def test_ports_published_on_loopback_only_and_consistent(
    collector: dict[str, Any], compose: dict[str, Any]
) -> None:
    services = compose["services"]
    for name, service in services.items():
        for host, _ in _published(service).values():
            assert host == "127.0.0.1", f"{name} publishes on {host}"
    published = _published(services["otel-collector"])
    protocols = collector["receivers"]["otlp"]["protocols"]
    for protocol in ("grpc", "http"):
        port = _port(protocols[protocol]["endpoint"])
        assert published[port] == ("127.0.0.1", port), protocol
    assert 8889 in published
    assert 16686 in _published(services["jaeger"])
    assert 4317 not in _published(services["jaeger"])  # the collector owns the host's 4317
    assert 9090 in _published(services["prometheus"])
    # the collector reaches Jaeger by its service name
    host, _, port = collector["exporters"]["otlp/jaeger"]["endpoint"].partition(":")
    assert host in services and int(port) == 4317


def test_prometheus_scrapes_the_collector(
    collector: dict[str, Any], compose: dict[str, Any]
) -> None:
    config = _load(PROMETHEUS)
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    exporter_port = _port(collector["exporters"]["prometheus"]["endpoint"])
    assert targets == [f"otel-collector:{exporter_port}"]
    assert "otel-collector" in compose["services"]


def test_readme_agrees(compose: dict[str, Any]) -> None:
    text = README.read_text()
    assert "docker compose -f examples/jaeger/docker-compose.yml up" in text
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318" in text
    published = {
        host_port
        for service in compose["services"].values()
        for _, host_port in _published(service).values()
    }
    table = {int(p) for p in re.findall(r"^\| (\d+) \|", text, flags=re.MULTILINE)}
    assert table == published
    for port in published:
        assert str(port) in text
    assert "http://127.0.0.1:16686" in text and "http://127.0.0.1:9090" in text
    assert "logprobs_token_probability_bucket" in text


def test_exemplars_from_the_collector_to_prometheus(
    collector: dict[str, Any], compose: dict[str, Any]
) -> None:
    # The collector serves OpenMetrics (the only format with exemplars); Prometheus keeps them.
    assert collector["exporters"]["prometheus"]["enable_open_metrics"] is True
    command = compose["services"]["prometheus"]["command"]
    features = {
        feature
        for arg in command
        if arg.startswith("--enable-feature=")
        for feature in arg.partition("=")[2].split(",")
    }
    assert "exemplar-storage" in features
