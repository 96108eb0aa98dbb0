"""The logprobscope.testing package: its public names and its `python -m` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import logprobscope
import logprobscope.testing

PUBLIC = [
    "Completion",
    "CompletionChooser",
    "DEFAULT_MODEL",
    "Deviations",
    "Faults",
    "ReplayServer",
    "SEED_INVOKE",
    "SEED_STREAM",
    "SEED_STRUCTURED",
    "SEED_TOOL_ANSWER",
    "SEED_TOOL_CALL",
    "SEED_TOP_LOGPROBS",
    "ToolCallSpec",
    "main",
    "make_completion",
    "seed_completions",
]


def test_all_is_the_public_names_sorted_and_each_resolves() -> None:
    assert logprobscope.testing.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(logprobscope.testing, name) is not None, name


def test_module_entry_point_runs_without_warnings() -> None:
    # Were the package to import its __main__ module, runpy would warn (an error here).
    package_root = Path(logprobscope.__file__).parent.parent  # the dir holding logprobscope/
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(package_root), *filter(None, [env.get("PYTHONPATH")])])
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "logprobscope.testing", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("usage: python -m logprobscope.testing ")
    for flag in ("--host", "--port", "--llama-cpp", "--llama-server", "--chunk-delay"):
        assert flag in result.stdout
