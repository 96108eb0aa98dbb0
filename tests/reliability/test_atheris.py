"""Runs the coverage-guided fuzzer (fuzz/fuzz_decode.py) for a bounded number of inputs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNS = 100_000


def test_atheris_finds_no_crash_in_the_decoder(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        if os.environ.get("LOGPROBSCOPE_REQUIRE_E2E") == "1":
            pytest.fail("atheris is not installed (the dev extra installs it)")
        pytest.skip("atheris is not installed")
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "fuzz" / "corpus", corpus)  # the fuzzer adds to it: work on a copy
    result = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "fuzz_decode.py"), f"-runs={RUNS}", str(corpus)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Done {RUNS} runs" in result.stderr
