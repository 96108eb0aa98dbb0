"""Real telemetry receivers for the end-to-end tier: Arize Phoenix and Prometheus.

Both receivers run as child processes of the test session, each in its own process
group, bound to 127.0.0.1 only, with logs in a file under pytest's temporary
directory.  Teardown stops them by PID (SIGTERM, bounded wait, SIGKILL) and checks
that nothing of the process group is left.

Fixtures (import them into a conftest.py or a test module):

``phoenix``
    Session-scoped; yields a :class:`PhoenixHandle`.  Binary from
    ``LOGPROBSCOPE_PHOENIX_BIN``, else ``<repo>/.venvs/phoenix/bin/phoenix``, else
    ``/work/venvs/phoenix/bin/phoenix``.

``start_prometheus``
    Function-scoped factory ``start_prometheus(targets) -> PrometheusHandle``: the
    scrape target (the app's metrics endpoint) is only known inside the test.
    Binary from ``LOGPROBSCOPE_PROMETHEUS_BIN``, else ``/usr/bin/prometheus``.

A missing binary skips the test, unless ``LOGPROBSCOPE_REQUIRE_E2E=1``: then it fails.
A binary that is present but does not come up is always a failure.  Phoenix gets
90 s to answer ``/healthz`` (``LOGPROBSCOPE_PHOENIX_STARTUP_TIMEOUT`` overrides).
Both fixtures fail if the receiver listens on anything but loopback.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn

import pytest

__all__ = [
    "PhoenixHandle",
    "PrometheusHandle",
    "ReceiverProcess",
    "StartPrometheus",
    "free_port",
    "http_get_json",
    "listening_addresses",
    "phoenix",
    "start_prometheus",
]

REPO_ROOT = Path(__file__).resolve().parents[2]

ENV_REQUIRE_E2E = "LOGPROBSCOPE_REQUIRE_E2E"
ENV_PHOENIX_BIN = "LOGPROBSCOPE_PHOENIX_BIN"
ENV_PROMETHEUS_BIN = "LOGPROBSCOPE_PROMETHEUS_BIN"

ENV_PHOENIX_STARTUP_TIMEOUT = "LOGPROBSCOPE_PHOENIX_STARTUP_TIMEOUT"

# Phoenix imports for ~15 s and migrates its SQLite DB: 17-25 s on an idle 2-CPU box,
# 48-65 s on a fresh venv or a loaded machine.  Override with the env variable above.
PHOENIX_STARTUP_TIMEOUT = 90.0
PROMETHEUS_STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
HTTP_TIMEOUT = 10.0
_START_ATTEMPTS = 3  # free_port() is racy: retry if the child lost its port

# Never use a proxy for our loopback receivers, whatever http_proxy says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
        with _OPENER.open(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError owns the response socket: close it
            body = exc.read().decode("utf-8", "replace")
        raise HttpStatusError(url, exc.code, body) from None


def _http_ok(url: str, *, timeout: float = 2.0) -> bool:
    request = urllib.request.Request(url)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()
            status: int = response.status
            return 200 <= status < 300
    except urllib.error.HTTPError as exc:
        exc.close()
        return False
    except (urllib.error.URLError, OSError):
        return False


def _missing(what: str) -> NoReturn:
    if os.environ.get(ENV_REQUIRE_E2E) == "1":
        pytest.fail(f"{what} (required because {ENV_REQUIRE_E2E}=1)")
    pytest.skip(what)


def _find_executable(env_var: str, defaults: Sequence[tuple[str, Path]], what: str) -> Path:
    """First executable candidate; ``$env_var``, when set, is the only candidate."""
    configured = os.environ.get(env_var)
    candidates = [(f"${env_var}", Path(configured))] if configured else list(defaults)
    for _origin, path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    tried = ", ".join(f"{path} ({origin})" for origin, path in candidates)
    _missing(f"{what} not found; tried {tried}")


def _process_group_pids(pgid: int) -> list[int]:
    """PIDs of all live processes in process group ``pgid`` (Linux /proc)."""
    pids: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return pids
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # comm may contain spaces and parentheses: fields after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            pids.append(int(entry.name))
    return sorted(pids)


def _decode_proc_address(hex_address: str) -> tuple[str, int]:
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    # /proc/net/tcp{,6} prints each 32-bit word in host (little-endian) order.
    host = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(host)), int(port_hex, 16)


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """``(address, port)`` of every listening TCP socket held by ``pid`` (Linux only).

    Returns an empty list where /proc is not available.
    """
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return []
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found: list[tuple[str, int]] = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A == TCP_LISTEN
                found.append(_decode_proc_address(fields[1]))
    return sorted(found)


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _assert_loopback_only(process: ReceiverProcess) -> None:
    for pid in _process_group_pids(process.pid) or [process.pid]:
        exposed = [a for a in listening_addresses(pid) if not _is_loopback(a[0])]
        if exposed:
            process.stop()
            pytest.fail(f"{process.name} (pid {pid}) listens outside loopback: {exposed}")


# --------------------------------------------------------------------------- processes


class ReceiverProcess:
    """A receiver child process in its own process group, logging to a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        try:
            self._popen = subprocess.Popen(
                self.argv,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session => own process group, pgid == pid
            )
        except BaseException:
            self._log.close()
            raise
        self.pid: int = self._popen.pid

    def poll(self) -> int | None:
        """Return the exit code, or ``None`` while running."""
        return self._popen.poll()

    def log_tail(self, max_chars: int = 4000) -> str:
        """Return the end of the log file."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<cannot read {self.log_path}: {exc}>"
        return text[-max_chars:]

    def wait_until(
        self, ready: Callable[[], bool], *, timeout: float, interval: float = 0.2
    ) -> float:
        """Poll ``ready()`` until true; return the seconds it took.

        Raises ``RuntimeError`` if the process exits first and ``TimeoutError`` after
        ``timeout`` seconds.
        """
        start = time.monotonic()
        deadline = start + timeout
        while True:
            if ready():
                return time.monotonic() - start
            code = self.poll()
            if code is not None:
                raise RuntimeError(f"{self.name} exited with code {code} before it was ready")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name} not ready within {timeout:.0f} s")
            time.sleep(interval)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the process group, wait, SIGKILL if needed; check nothing is left."""
        try:
            if self._popen.poll() is None:
                _signal_group(self.pid, signal.SIGTERM)
                try:
                    self._popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(self.pid, signal.SIGKILL)
                    self._popen.wait(timeout=timeout)
            # The leader is reaped; take down anything it left in its group.
            deadline = time.monotonic() + timeout
            if _process_group_pids(self.pid):
                _signal_group(self.pid, signal.SIGTERM)
            while (left := _process_group_pids(self.pid)) and time.monotonic() < deadline:
                time.sleep(0.1)
            if left:
                _signal_group(self.pid, signal.SIGKILL)
                time.sleep(0.5)
                left = _process_group_pids(self.pid)
            if left:
                raise RuntimeError(f"{self.name}: processes {left} of group {self.pid} survive")
        finally:
            self._log.close()

    @property
    def returncode(self) -> int | None:
        """Exit code once the process has been reaped."""
        return self._popen.returncode


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _lost_port(process: ReceiverProcess) -> bool:
    tail = process.log_tail(20000).lower()
    return any(s in tail for s in ("address already in use", "failed to bind"))


def _clean_env(drop_prefixes: Sequence[str]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop_prefixes))}


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


PHOENIX_DEFAULT_BINS = (
    ("repo venv", REPO_ROOT / ".venvs" / "phoenix" / "bin" / "phoenix"),
    ("shared venv", Path("/work/venvs/phoenix/bin/phoenix")),
)
PROMETHEUS_DEFAULT_BINS = (("Debian package", Path("/usr/bin/prometheus")),)


def _start_phoenix(executable: Path, base_dir: Path) -> tuple[ReceiverProcess, PhoenixHandle]:
    site_dir = base_dir / "site"
    site_dir.mkdir(parents=True, exist_ok=True)
    (site_dir / "sitecustomize.py").write_text(_PHOENIX_SITECUSTOMIZE)
    for attempt in range(1, _START_ATTEMPTS + 1):
        port, grpc_port = free_port(), free_port()
        working_dir = base_dir / f"working-dir-{attempt}"
        working_dir.mkdir()
        env = _clean_env(["PHOENIX_", "OTEL_"])
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
        process = ReceiverProcess(
            "phoenix",
            [str(executable), "serve"],
            env=env,
            cwd=base_dir,
            log_path=base_dir / f"phoenix-{attempt}.log",
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            seconds = process.wait_until(
                functools.partial(_http_ok, f"{base_url}/healthz"),
                timeout=float(
                    os.environ.get(ENV_PHOENIX_STARTUP_TIMEOUT) or PHOENIX_STARTUP_TIMEOUT
                ),
            )
        except (RuntimeError, TimeoutError) as exc:
            process.stop()
            if attempt < _START_ATTEMPTS and _lost_port(process):
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


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhoenixHandle]:
    """Session-wide Phoenix on 127.0.0.1 (HTTP + gRPC on free ports), stopped at the end.

    The store is shared by all tests of the session: filter by project or trace id.
    """
    executable = _find_executable(ENV_PHOENIX_BIN, PHOENIX_DEFAULT_BINS, "Arize Phoenix executable")
    process, handle = _start_phoenix(executable, tmp_path_factory.mktemp("phoenix"))
    try:
        _assert_loopback_only(process)
        yield handle
    finally:
        process.stop()
    assert process.returncode is not None, "phoenix still running after stop()"


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
) -> tuple[ReceiverProcess, PrometheusHandle]:
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
        process = ReceiverProcess(
            "prometheus",
            [
                str(executable),
                f"--config.file={config_path}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.path={data_dir}",
                *([f"--enable-feature={','.join(features)}"] if features else []),
            ],
            env=_clean_env([]),
            cwd=base_dir,
            log_path=base_dir / f"prometheus-{attempt}.log",
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            seconds = process.wait_until(
                functools.partial(_http_ok, f"{base_url}/-/ready"),
                timeout=PROMETHEUS_STARTUP_TIMEOUT,
                interval=0.05,
            )
        except (RuntimeError, TimeoutError) as exc:
            process.stop()
            if attempt < _START_ATTEMPTS and _lost_port(process):
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
        self._processes: list[ReceiverProcess] = []

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
        _assert_loopback_only(process)
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


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[StartPrometheus]:
    """Factory: ``start_prometheus(["127.0.0.1:<port>"]) -> PrometheusHandle``.

    Each call starts an own Prometheus on a free 127.0.0.1 port with a fresh TSDB and
    a 1 s scrape interval; all are stopped when the test ends.
    """
    executable = _find_executable(
        ENV_PROMETHEUS_BIN, PROMETHEUS_DEFAULT_BINS, "Prometheus executable"
    )
    factory = StartPrometheus(executable, tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


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
