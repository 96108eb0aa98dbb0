"""Fixtures of the e2e tier: real receivers (Phoenix, Prometheus) and the two llama.cpp servers.

Support code that is not a fixture lives beside this file: ``processes.py`` (child processes on
loopback, stopped by PID), ``receivers.py`` (Phoenix and Prometheus), ``llama_servers.py`` (the
llama.cpp servers) and ``tiny_gguf.py`` (the model they serve).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.llama_servers import (
    KINDS,
    Kind,
    LlamaServer,
    find_llama_python,
    find_llama_server,
    start_llama,
)
from tests.e2e.processes import assert_loopback_only, find_executable
from tests.e2e.receivers import (
    ENV_PHOENIX_BIN,
    ENV_PROMETHEUS_BIN,
    PHOENIX_DEFAULT_BINS,
    PROMETHEUS_DEFAULT_BINS,
    PhoenixHandle,
    StartPrometheus,
    start_phoenix,
)
from tests.e2e.tiny_gguf import write_tiny_gguf

# -- receivers ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhoenixHandle]:
    """Session-wide Phoenix on 127.0.0.1 (HTTP + gRPC on free ports), stopped at the end.

    The store is shared by all tests of the session: filter by project or trace id.
    """
    executable = find_executable(ENV_PHOENIX_BIN, PHOENIX_DEFAULT_BINS, "Arize Phoenix executable")
    process, handle = start_phoenix(executable, tmp_path_factory.mktemp("phoenix"))
    try:
        assert_loopback_only(process)
        yield handle
    finally:
        process.stop()
    assert process.returncode is not None, "phoenix still running after stop()"


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[StartPrometheus]:
    """Factory: ``start_prometheus(["127.0.0.1:<port>"]) -> PrometheusHandle``.

    Each call starts an own Prometheus on a free 127.0.0.1 port with a fresh TSDB and
    a 1 s scrape interval; all are stopped when the test ends.
    """
    executable = find_executable(
        ENV_PROMETHEUS_BIN, PROMETHEUS_DEFAULT_BINS, "Prometheus executable"
    )
    factory = StartPrometheus(executable, tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


# -- llama.cpp ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a freshly written tiny random-weight llama GGUF."""
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny-model") / "tiny.gguf")


def _serve(
    kind: Kind, executable: Path, model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    process, server = start_llama(kind, executable, model, tmp_path_factory.mktemp(kind))
    try:
        assert_loopback_only(process)
        yield server
    finally:
        process.stop()
    assert process.returncode is not None, f"{kind} still running after stop()"


@pytest.fixture(scope="session")
def llama_cpp_python(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    """llama-cpp-python's server on the tiny model (127.0.0.1, a free port) for the session."""
    yield from _serve("llama-cpp-python", find_llama_python(), tiny_model, tmp_path_factory)


@pytest.fixture(scope="session")
def llama_server(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    """llama.cpp's own llama-server on the tiny model (127.0.0.1, a free port) for the session."""
    yield from _serve("llama-server", find_llama_server(), tiny_model, tmp_path_factory)


@pytest.fixture(scope="session", params=KINDS)
def llama(request: pytest.FixtureRequest) -> LlamaServer:
    """Each llama.cpp server in turn: a test that takes it runs once against each."""
    fixture = "llama_cpp_python" if request.param == "llama-cpp-python" else "llama_server"
    server: LlamaServer = request.getfixturevalue(fixture)
    return server
