#!/usr/bin/env bash
# Create (or reuse) the venv that runs llama-cpp-python's server for the e2e tests.
#
# Usage: .ci/setup-llama.sh [VENV_DIR]     (default: <repo>/.venvs/llama)
# Then:  LOGPROBSCOPE_LLAMA_PYTHON=VENV_DIR/bin/python pytest -m e2e
#
# llama-cpp-python ships only an sdist on PyPI, so pip compiles llama.cpp: ~7-10 min on two
# cores from nothing, seconds once pip's wheel cache holds the built wheel. Everything comes from
# PyPI (through pip's configured indexes); no prebuilt-wheel index or model is downloaded.
# The server runs from its own venv so the test venv never needs a C++ toolchain.
set -euo pipefail

ci_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$ci_dir/.." && pwd)"
# shellcheck source=llama-cpp-version
source "$ci_dir/llama-cpp-version"
venv_dir="${1:-$repo_root/.venvs/llama}"
base_python="${PYTHON:-python3}"
started=$SECONDS

if [[ ! -x "$venv_dir/bin/python" ]]; then
    echo "creating venv $venv_dir"
    "$base_python" -m venv "$venv_dir"
fi

if "$venv_dir/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
    echo "llama_cpp.server already importable in $venv_dir; skipping install"
else
    echo "installing llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION into $venv_dir"
    # GGML_NATIVE=OFF: a portable build (no -march=native), so a cached wheel works on any x86-64
    # runner. LLAVA_BUILD=OFF: the multimodal helper is not needed and costs build time.
    # Two parallel compile jobs: the measured setting on two-core machines, modest in memory.
    # Note: pip's wheel cache ignores CMAKE_ARGS, so a wheel built earlier with other flags is
    # silently reused; clear ~/.cache/pip to force a rebuild with these.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" \
        CMAKE_BUILD_PARALLEL_LEVEL=2 \
        "$venv_dir/bin/python" -m pip install --no-input \
        "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION"
    # Fail here, not in the tests, if the build produced something unusable.
    "$venv_dir/bin/python" -c "import llama_cpp.server"
fi

echo "llama venv ready in $((SECONDS - started)) s"
