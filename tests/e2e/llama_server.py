"""Pytest fixtures that run a real llama.cpp server (llama-cpp-python) on a tiny random model.

The server lives in its own venv (built by `.ci/setup-llama.sh`, since llama-cpp-python compiles
llama.cpp) and runs as a subprocess; the tests talk to it over HTTP only, so the test venv never
needs llama_cpp. Import the fixtures into a conftest.py (or a test module) to use them.

Where the server's python comes from, first match wins:
1. $LOGPROBSCOPE_LLAMA_PYTHON (an explicit choice: if it is unusable the tests fail),
2. <repo>/.venvs/llama/bin/python (the default of `.ci/setup-llama.sh`),
3. /work/venvs/llama/bin/python (the development machine's shared venv).
With none usable the e2e tests are skipped, unless LOGPROBSCOPE_REQUIRE_E2E=1 (set in CI) turns
the skip into a failure, so a missing server can never make CI pass silently.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from tests.e2e.tiny_gguf import write_tiny_gguf

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_ENV = "LOGPROBSCOPE_LLAMA_PYTHON"
REQUIRE_ENV = "LOGPROBSCOPE_REQUIRE_E2E"
FALLBACK_PYTHONS = (
    REPO_ROOT / ".venvs" / "llama" / "bin" / "python",
    Path("/work/venvs/llama/bin/python"),
)

MODEL_ALIAS = "tiny"
STARTUP_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class LlamaServer:
    """A running llama-cpp-python server: where to reach it and where it logs."""

    base_url: str  # OpenAI-style, ends in /v1
    model: str
    pid: int
    log_path: Path


def _skip_or_fail(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def _has_llama_server(python: Path) -> bool:
    # A venv whose build is still running (or failed) has a python but no llama_cpp.
    probe = subprocess.run(
        [str(python), "-c", "import llama_cpp.server"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return probe.returncode == 0


@pytest.fixture(scope="session")
def llama_python() -> Path:
    """The python executable of the venv that has llama-cpp-python[server]."""
    configured = os.environ.get(PYTHON_ENV)
    if configured:
        python = Path(configured)
        if not (python.is_file() and _has_llama_server(python)):
            pytest.fail(f"{PYTHON_ENV}={configured} cannot import llama_cpp.server", pytrace=False)
        return python
    for python in FALLBACK_PYTHONS:
        if python.is_file() and _has_llama_server(python):
            return python
    tried = ", ".join(str(p) for p in FALLBACK_PYTHONS)
    _skip_or_fail(
        f"no python with llama_cpp.server (set {PYTHON_ENV} or run .ci/setup-llama.sh); "
        f"tried {tried}"
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a freshly written tiny random-weight llama GGUF."""
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny-model") / "tiny.gguf")


def _free_port() -> int:
    # The kernel picks an unused port; the tiny window until the server binds it is accepted.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_command(python: Path, model: Path, port: int) -> list[str]:
    return [
        str(python),
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        # Without this a new request cuts off a running stream, which breaks concurrent tests.
        "--interrupt_requests",
        "False",
    ]


def _log_tail(log_path: Path) -> str:
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _answers(models_url: str) -> bool:
    try:
        with urllib.request.urlopen(models_url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _wait_until_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"llama server exited with {process.returncode} on startup; log tail:\n"
                f"{_log_tail(log_path)}",
                pytrace=False,
            )
        if _answers(f"{base_url}/models"):
            return
        time.sleep(0.1)
    pytest.fail(
        f"llama server not ready after {STARTUP_TIMEOUT_S:.0f} s; log tail:\n{_log_tail(log_path)}",
        pytrace=False,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    # Signal only the PID we started; SIGKILL if uvicorn's graceful shutdown hangs.
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


@pytest.fixture(scope="session")
def llama_server(
    llama_python: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    """Start the llama.cpp server on the tiny model (127.0.0.1, a free port) for the session."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            _server_command(llama_python, tiny_model, port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own process group: a Ctrl-C in the terminal reaches pytest, which then stops the
            # server in teardown, instead of racing it.
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        _wait_until_ready(process, base_url, log_path)
        yield LlamaServer(base_url=base_url, model=MODEL_ALIAS, pid=process.pid, log_path=log_path)
    finally:
        _stop(process)
