"""Real telemetry receivers for the end-to-end tier: Arize Phoenix and Prometheus.

Both run as :class:`tests.e2e.processes.ChildProcess` children of the test session (own process
group, 127.0.0.1 only, log file, stopped by PID); the fixtures that start them, ``phoenix`` and
``start_prometheus``, are in ``tests/e2e/conftest.py``.

Executables: ``LOGPROBSCOPE_PHOENIX_BIN``, else ``<repo>/.venvs/phoenix/bin/phoenix`` (made by
``.ci/setup-receivers.sh``); ``LOGPROBSCOPE_PROMETHEUS_BIN``, else ``/usr/bin/prometheus``.
A missing executable skips the test, unless ``LOGPROBSCOPE_REQUIRE_E2E=1``: then it fails.
A binary that is present but does not come up is always a failure.  Phoenix gets
90 s to answer ``/healthz`` (``LOGPROBSCOPE_PHOENIX_STARTUP_TIMEOUT`` overrides).
The fixtures fail if a receiver listens on anything but loopback.
"""

from __future__ import annotations

import functools
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.processes import (
    OPENER,
    REPO_ROOT,
    ChildProcess,
    assert_loopback_only,
    clean_env,
    free_port,
    http_ok,
    lost_port,
)

__all__ = [
    "PHOENIX_DEFAULT_BINS",
    "PROMETHEUS_DEFAULT_BINS",
    "HttpStatusError",
    "PhoenixHandle",
    "PrometheusHandle",
    "StartPrometheus",
    "http_get_json",
    "start_phoenix",
]

ENV_PHOENIX_BIN = "LOGPROBSCOPE_PHOENIX_BIN"
ENV_PROMETHEUS_BIN = "LOGPROBSCOPE_PROMETHEUS_BIN"

ENV_PHOENIX_STARTUP_TIMEOUT = "LOGPROBSCOPE_PHOENIX_STARTUP_TIMEOUT"

# Phoenix imports for ~15 s and migrates its SQLite DB: 17-25 s on an idle 2-CPU box,
# 48-65 s on a fresh venv or a loaded machine.  Override with the env variable above.
PHOENIX_STARTUP_TIMEOUT = 90.0
PROMETHEUS_STARTUP_TIMEOUT = 30.0
HTTP_TIMEOUT = 10.0
_START_ATTEMPTS = 3  # free_port() is racy: retry if the child lost its port


# --------------------------------------------------------------------------- HTTP


class HttpStatusError(RuntimeError):
    """A receiver answered with a non-2xx status."""

    def __init__(self, url: str, status: int, body: str) -> None:
        super().__init__(f"GET {url} -> HTTP {status}: {body[:2000]}")
        self.url = url
        self.status = status
        self.body = body


def http_get_json(
    url: str,
    params: Mapping[str, str | Sequence[str]] | None = None,
    *,
    timeout: float = HTTP_TIMEOUT,
) -> object:
    """GET ``url`` (with query ``params``, lists become repeated keys) and decode JSON.

    Raises :class:`HttpStatusError` on a non-2xx answer (its body is kept, Prometheus
    and Phoenix explain errors there) and ``urllib.error.URLError`` when nothing
    answers.
    """
    if params:
        url = f"{url}?{urllib.parse.urlencode(params, doseq=True)}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError owns the response socket: close it
            body = exc.read().decode("utf-8", "replace")
        raise HttpStatusError(url, exc.code, body) from None


# --------------------------------------------------------------------------- Phoenix

# Phoenix binds its OTLP/gRPC receiver to "[::]:<grpc port>" (hard-coded in
# phoenix/server/grpc_server.py; only --read-only disables it, and that also
# rejects OTLP/HTTP).  This sitecustomize, put first on the child's PYTHONPATH,
# rewrites the host of every grpc.aio server port to 127.0.0.1.
_PHOENIX_SITECUSTOMIZE = '''\
"""Loaded by the logprobscope e2e fixture: keep Phoenix's gRPC port on loopback."""
try:
    import grpc.aio as _grpc_aio
except ImportError:
    pass
else:
    _original_server = _grpc_aio.server

    def _loopback(address):
        _host, sep, port = str(address).rpartition(":")
        return "127.0.0.1:" + port if sep else address

    def _loopback_server(*args, **kwargs):
        server = _original_server(*args, **kwargs)
        insecure, secure = server.add_insecure_port, server.add_secure_port
        server.add_insecure_port = lambda address: insecure(_loopback(address))
        server.add_secure_port = lambda address, creds: secure(_loopback(address), creds)
        return server

    _grpc_aio.server = _loopback_server
'''


@dataclass(frozen=True)
class PhoenixHandle:
    """A running Phoenix server (OTLP/HTTP trace receiver + REST API)."""

    base_url: str
    otlp_traces_endpoint: str
    pid: int
    port: int
    grpc_port: int
    working_dir: Path
    log_path: Path
    startup_seconds: float

    def projects(self) -> list[str]:
        """Names of all projects (a project appears with its first span)."""
        names: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, str] = {"limit": "100"}
            if cursor:
                params["cursor"] = cursor
            page = _as_dict(http_get_json(f"{self.base_url}/v1/projects", params))
            names.extend(str(_as_dict(p)["name"]) for p in _as_list(page.get("data")))
            cursor = _next_cursor(page)
            if cursor is None:
                return names

    def fetch_spans(
        self,
        project: str = "default",
        *,
        trace_id: str | None = None,
        name: str | None = None,
        page_size: int = 1000,
    ) -> list[dict[str, object]]:
        """One read of all spans of ``project`` (all pages), oldest first.

        ``GET /v1/projects/{project}/spans`` with ``sort=id&order=asc`` and the
        ``next_cursor`` pagination; an unknown project reads as ``[]``.
        """
        url = f"{self.base_url}/v1/projects/{urllib.parse.quote(project, safe='')}/spans"
        spans: list[dict[str, object]] = []
        cursor: str | None = None
        while True:
            params: dict[str, str] = {"limit": str(page_size), "sort": "id", "order": "asc"}
            if cursor:
                params["cursor"] = cursor
            if trace_id:
                params["trace_id"] = trace_id
            if name:
                params["name"] = name
            try:
                page = _as_dict(http_get_json(url, params))
            except HttpStatusError as exc:
                if exc.status == 404 and not spans:
                    return []  # project not created yet: no span of it arrived
                raise
            spans.extend(_as_dict(s) for s in _as_list(page.get("data")))
            cursor = _next_cursor(page)
            if cursor is None:
                return spans

    def spans(
        self,
        project: str = "default",
        *,
        timeout: float = 30,
        min_count: int = 1,
        trace_id: str | None = None,
        name: str | None = None,
        interval: float = 0.25,
    ) -> list[dict[str, object]]:
        """Poll the REST API until ``project`` holds at least ``min_count`` spans.

        Phoenix ingests OTLP asynchronously (a bulk inserter), so a flushed span
        shows up with a short delay.  Optional ``trace_id``/``name`` filters are
        applied by the server.  Returns all matching spans (oldest first); raises
        ``TimeoutError`` if fewer than ``min_count`` arrived within ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        while True:
            spans = self.fetch_spans(project, trace_id=trace_id, name=name)
            if len(spans) >= min_count:
                return spans
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Phoenix project {project!r} has {len(spans)} matching span(s) after "
                    f"{timeout} s, expected at least {min_count}; projects: {self.projects()}"
                )
            time.sleep(interval)


PHOENIX_DEFAULT_BINS = (("repo venv", REPO_ROOT / ".venvs" / "phoenix" / "bin" / "phoenix"),)
PROMETHEUS_DEFAULT_BINS = (("Debian package", Path("/usr/bin/prometheus")),)


def start_phoenix(executable: Path, base_dir: Path) -> tuple[ChildProcess, PhoenixHandle]:
    site_dir = base_dir / "site"
    site_dir.mkdir(parents=True, exist_ok=True)
    (site_dir / "sitecustomize.py").write_text(_PHOENIX_SITECUSTOMIZE)
    for attempt in range(1, _START_ATTEMPTS + 1):
        port, grpc_port = free_port(), free_port()
        working_dir = base_dir / f"working-dir-{attempt}"
        working_dir.mkdir()
        env = clean_env(["PHOENIX_", "OTEL_"])
        env.update(
            {
                "PYTHONPATH": str(site_dir),
                "PYTHONUNBUFFERED": "1",
                "PHOENIX_HOST": "127.0.0.1",
                "PHOENIX_PORT": str(port),
                "PHOENIX_GRPC_PORT": str(grpc_port),
                "PHOENIX_WORKING_DIR": str(working_dir),  # fresh SQLite DB per start
                "PHOENIX_TELEMETRY_ENABLED": "false",
                "PHOENIX_LOG_MIGRATIONS": "false",
                # Hermetic: no downloads (WASM sandbox), no docs MCP client, no assistant.
                "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
                "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
                "PHOENIX_ENABLE_PROMETHEUS": "false",  # would bind [::]:9090
            }
        )
        process = ChildProcess(
            "phoenix",
            [str(executable), "serve"],
            env=env,
            cwd=base_dir,
            log_path=base_dir / f"phoenix-{attempt}.log",
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            seconds = process.wait_until(
                functools.partial(http_ok, f"{base_url}/healthz"),
                timeout=float(
                    os.environ.get(ENV_PHOENIX_STARTUP_TIMEOUT) or PHOENIX_STARTUP_TIMEOUT
                ),
            )
        except (RuntimeError, TimeoutError) as exc:
            process.stop()
            if attempt < _START_ATTEMPTS and lost_port(process):
                continue
            pytest.fail(f"{exc}; log {process.log_path}:\n{process.log_tail()}")
        return process, PhoenixHandle(
            base_url=base_url,
            otlp_traces_endpoint=f"{base_url}/v1/traces",
            pid=process.pid,
            port=port,
            grpc_port=grpc_port,
            working_dir=working_dir,
            log_path=process.log_path,
            startup_seconds=seconds,
        )
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- Prometheus


@dataclass(frozen=True)
class PrometheusHandle:
    """A running Prometheus scraping ``targets``; HTTP API helpers."""

    base_url: str
    pid: int
    port: int
    targets: tuple[str, ...]
    scrape_interval: float
    config_path: Path
    data_dir: Path
    log_path: Path
    startup_seconds: float

    def _api(self, path: str, params: Mapping[str, str | Sequence[str]]) -> object:
        try:
            body = _as_dict(http_get_json(f"{self.base_url}/api/v1/{path}", params))
        except HttpStatusError as exc:
            raise RuntimeError(f"Prometheus API error: {exc}") from None
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus API error: {body}")
        return body.get("data")

    def query(self, promql: str) -> list[dict[str, object]]:
        """Instant query (``/api/v1/query``); returns ``data.result``."""
        data = _as_dict(self._api("query", {"query": promql}))
        return [_as_dict(r) for r in _as_list(data.get("result"))]

    def wait_for(
        self, promql: str, *, timeout: float = 30, interval: float = 0.5
    ) -> list[dict[str, object]]:
        """Poll :meth:`query` until the result is non-empty; ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"PromQL {promql!r} still empty after {timeout} s; "
                    f"targets: {self.target_health()}"
                )
            time.sleep(interval)

    def query_exemplars(self, promql: str, *, start: float, end: float) -> list[dict[str, object]]:
        """Exemplars of the series ``promql`` selects between two Unix times.

        ``/api/v1/query_exemplars``: one entry per series, ``seriesLabels`` and
        ``exemplars`` (each with ``labels``, ``value``, ``timestamp``). Needs Prometheus
        started with the ``exemplar-storage`` feature.
        """
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        return [_as_dict(r) for r in _as_list(self._api("query_exemplars", params))]

    def series(self, match: str) -> list[dict[str, object]]:
        """Label sets of the series matching the selector ``match`` (``/api/v1/series``)."""
        return [_as_dict(s) for s in _as_list(self._api("series", {"match[]": [match]}))]

    def metric_names(self) -> list[str]:
        """All metric names Prometheus knows (``/api/v1/label/__name__/values``)."""
        return [str(n) for n in _as_list(self._api("label/__name__/values", {}))]

    def target_health(self) -> list[dict[str, object]]:
        """``scrapeUrl``, ``health`` and ``lastError`` of each active target."""
        data = _as_dict(self._api("targets", {"state": "active"}))
        return [
            {k: _as_dict(t).get(k) for k in ("scrapeUrl", "health", "lastError")}
            for t in _as_list(data.get("activeTargets"))
        ]


_PROMETHEUS_CONFIG = """\
# Written by the logprobscope e2e fixture.
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: logprobscope
    static_configs:
      - targets: {targets}
"""


def _prometheus_duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _start_prometheus(
    executable: Path,
    base_dir: Path,
    targets: Sequence[str],
    scrape_interval: float,
    features: Sequence[str] = (),
) -> tuple[ChildProcess, PrometheusHandle]:
    base_dir.mkdir(parents=True)
    config_path = base_dir / "prometheus.yml"
    config_path.write_text(
        _PROMETHEUS_CONFIG.format(
            interval=_prometheus_duration(scrape_interval),
            targets=json.dumps(list(targets)),  # a JSON list is a YAML flow sequence
        )
    )
    for attempt in range(1, _START_ATTEMPTS + 1):
        port = free_port()
        data_dir = base_dir / f"data-{attempt}"
        process = ChildProcess(
            "prometheus",
            [
                str(executable),
                f"--config.file={config_path}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.path={data_dir}",
                *([f"--enable-feature={','.join(features)}"] if features else []),
            ],
            env=clean_env([]),
            cwd=base_dir,
            log_path=base_dir / f"prometheus-{attempt}.log",
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            seconds = process.wait_until(
                functools.partial(http_ok, f"{base_url}/-/ready"),
                timeout=PROMETHEUS_STARTUP_TIMEOUT,
                interval=0.05,
            )
        except (RuntimeError, TimeoutError) as exc:
            process.stop()
            if attempt < _START_ATTEMPTS and lost_port(process):
                continue
            pytest.fail(f"{exc}; log {process.log_path}:\n{process.log_tail()}")
        return process, PrometheusHandle(
            base_url=base_url,
            pid=process.pid,
            port=port,
            targets=tuple(targets),
            scrape_interval=scrape_interval,
            config_path=config_path,
            data_dir=data_dir,
            log_path=process.log_path,
            startup_seconds=seconds,
        )
    raise AssertionError("unreachable")


class StartPrometheus:
    """Factory behind the ``start_prometheus`` fixture."""

    def __init__(self, executable: Path, base_dir: Path) -> None:
        self._executable = executable
        self._base_dir = base_dir
        self._processes: list[ChildProcess] = []

    def __call__(
        self,
        targets: Sequence[str],
        *,
        scrape_interval: float = 1.0,
        features: Sequence[str] = (),
    ) -> PrometheusHandle:
        """Start Prometheus scraping ``targets`` (``"127.0.0.1:<port>"``, path /metrics).

        ``features`` are passed as ``--enable-feature`` (e.g. ``exemplar-storage``).
        """
        if isinstance(targets, str):
            raise TypeError("targets must be a list of 'host:port' strings")
        base_dir = self._base_dir / f"prometheus-{len(self._processes) + 1}"
        process, handle = _start_prometheus(
            self._executable, base_dir, list(targets), scrape_interval, features
        )
        self._processes.append(process)
        assert_loopback_only(process)
        return handle

    def stop_all(self) -> None:
        """Stop every instance started by this factory (newest first)."""
        errors: list[BaseException] = []
        while self._processes:
            process = self._processes.pop()
            try:
                process.stop()
            except Exception as exc:  # stop the others anyway
                errors.append(exc)
        if errors:
            raise errors[0]


# --------------------------------------------------------------------------- JSON access


def _as_dict(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}: {value!r:.200}")
    return {str(k): v for k, v in value.items()}


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"expected a JSON array, got {type(value).__name__}: {value!r:.200}")
    return list(value)


def _next_cursor(page: Mapping[str, object]) -> str | None:
    cursor = page.get("next_cursor")
    return str(cursor) if cursor else None
