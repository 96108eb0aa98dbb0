"""The two llama.cpp servers of the e2e tier, on a tiny random model: where they are, how to start.

- ``llama-cpp-python``: llama-cpp-python's Python server, run from its own venv (made by
  ``.ci/setup-llama.sh``; llama-cpp-python compiles llama.cpp, so the test venv never needs it).
  The python: ``$LOGPROBSCOPE_LLAMA_PYTHON``, else ``<repo>/.venvs/llama/bin/python``.
- ``llama-server``: llama.cpp's own C++ server, one static binary built from the same
  llama-cpp-python sdist (``.ci/setup-llama-server.sh``). The binary:
  ``$LOGPROBSCOPE_LLAMA_SERVER_BIN``, else ``<repo>/.venvs/llama-server/bin/llama-server``.

Both run as :class:`tests.e2e.processes.ChildProcess` children (own process group, 127.0.0.1
only, a log file, stopped by PID); the fixtures that start them are in ``tests/e2e/conftest.py``.
A variable that is set is the only candidate, and an unusable one fails the test; with nothing
usable the tests skip, unless ``LOGPROBSCOPE_REQUIRE_E2E=1`` turns the skip into a failure.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from logprobscope.testing import Deviations
from tests.e2e.processes import (
    REPO_ROOT,
    ChildProcess,
    clean_env,
    find_executable,
    free_port,
    http_ok,
    lost_port,
)

__all__ = [
    "KINDS",
    "MODEL_ALIAS",
    "Kind",
    "LlamaServer",
    "find_llama_python",
    "find_llama_server",
    "start_llama",
]

Kind = Literal["llama-cpp-python", "llama-server"]
KINDS: tuple[Kind, ...] = ("llama-cpp-python", "llama-server")

ENV_LLAMA_PYTHON = "LOGPROBSCOPE_LLAMA_PYTHON"
ENV_LLAMA_SERVER_BIN = "LOGPROBSCOPE_LLAMA_SERVER_BIN"
LLAMA_PYTHON_DEFAULTS = (("repo venv", REPO_ROOT / ".venvs" / "llama" / "bin" / "python"),)
LLAMA_SERVER_DEFAULTS = (
    ("repo build", REPO_ROOT / ".venvs" / "llama-server" / "bin" / "llama-server"),
)

MODEL_ALIAS = "tiny"
N_CTX = 4096
# llama-server splits its context between its slots (parallel sequences): 4 x 1024 tokens.
# More requests than slots wait in its queue, so 16 concurrent streams still all complete.
PARALLEL_SLOTS = 4
STARTUP_TIMEOUT = 60.0
_START_ATTEMPTS = 3  # free_port() is racy: retry if the child lost its port


@dataclass(frozen=True)
class LlamaServer:
    """A running llama.cpp server: which one, where to reach it and where it logs."""

    kind: Kind
    base_url: str  # OpenAI-style, ends in /v1
    model: str
    pid: int
    log_path: Path
    startup_seconds: float

    @property
    def deviations(self) -> Deviations:
        """The replay server's preset of this server: the deviations the e2e tier pins."""
        return Deviations.LLAMA_CPP if self.kind == "llama-cpp-python" else Deviations.LLAMA_SERVER

    @property
    def port(self) -> int:
        """The TCP port it listens on (on 127.0.0.1)."""
        return int(self.base_url.rsplit(":", 1)[1].split("/", 1)[0])


def _find(env_var: str, defaults: tuple[tuple[str, Path], ...], what: str) -> Path:
    configured = os.environ.get(env_var)
    if configured and not os.access(configured, os.X_OK):
        # An explicit choice that cannot work is a mistake, not a missing server.
        pytest.fail(f"{env_var}={configured} is not an executable", pytrace=False)
    return find_executable(env_var, defaults, what)


def find_llama_python() -> Path:
    """The python of a venv that can import ``llama_cpp.server``; skip or fail without one."""
    python = _find(ENV_LLAMA_PYTHON, LLAMA_PYTHON_DEFAULTS, "llama-cpp-python's python")
    # A venv whose build is still running (or failed) has a python but no llama_cpp.
    probe = subprocess.run(
        [str(python), "-c", "import llama_cpp.server"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if probe.returncode != 0:
        pytest.fail(f"{python} cannot import llama_cpp.server (run .ci/setup-llama.sh)")
    return python


def find_llama_server() -> Path:
    """The ``llama-server`` executable; skip or fail without one."""
    return _find(
        ENV_LLAMA_SERVER_BIN,
        LLAMA_SERVER_DEFAULTS,
        "llama.cpp's llama-server (run .ci/setup-llama-server.sh)",
    )


def _command(kind: Kind, executable: Path, model: Path, port: int) -> list[str]:
    if kind == "llama-cpp-python":
        return [
            str(executable),
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
    return [
        str(executable),
        "--model",
        str(model),
        "--alias",
        MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ctx-size",
        str(N_CTX),
        "--parallel",
        str(PARALLEL_SLOTS),
        "--threads",
        "2",
        "--no-webui",
    ]


def _ready_url(kind: Kind, base_url: str) -> str:
    # llama-server answers /health with 503 until the model is loaded.
    return f"{base_url}/models" if kind == "llama-cpp-python" else f"{base_url[:-3]}/health"


def start_llama(
    kind: Kind, executable: Path, model: Path, base_dir: Path
) -> tuple[ChildProcess, LlamaServer]:
    """Start the ``kind`` server on ``model`` at a free 127.0.0.1 port; return it once it answers.

    Fails the test if it exits or does not answer within 60 s (the log's tail says why).
    """
    base_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, _START_ATTEMPTS + 1):
        port = free_port()
        base_url = f"http://127.0.0.1:{port}/v1"
        process = ChildProcess(
            kind,
            _command(kind, executable, model, port),
            env={**clean_env(["LLAMA_ARG_"]), "PYTHONUNBUFFERED": "1"},
            cwd=base_dir,
            log_path=base_dir / f"{kind}-{attempt}.log",
        )
        try:
            seconds = process.wait_until(
                functools.partial(http_ok, _ready_url(kind, base_url)),
                timeout=STARTUP_TIMEOUT,
                interval=0.05,
            )
        except (RuntimeError, TimeoutError) as exc:
            process.stop()
            if attempt < _START_ATTEMPTS and lost_port(process):
                continue
            pytest.fail(f"{exc}; log {process.log_path}:\n{process.log_tail()}", pytrace=False)
        return process, LlamaServer(
            kind=kind,
            base_url=base_url,
            model=MODEL_ALIAS,
            pid=process.pid,
            log_path=process.log_path,
            startup_seconds=seconds,
        )
    raise AssertionError("unreachable")
