#!/usr/bin/env bash
# The bench's own venv, .venvs/bench: logprobscope (editable, from this checkout) with the
# `bench` extra, which adds the other instrumentations that bench/run.py measures next to ours.
# They must not go into the dev venv (.venv): its zero-code tests load every installed
# `opentelemetry_instrumentor` entry point.
#
#   bash bench/setup.sh && .venvs/bench/bin/python bench/run.py
#
# Env: PYTHON     interpreter for the venv (default: python3)
#      BENCH_VENV where to make it (default: <repo>/.venvs/bench)
#
# Idempotent and quiet; a rerun with the same pyproject.toml and checkout does nothing.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
venv="${BENCH_VENV:-$repo_root/.venvs/bench}"
python="${PYTHON:-python3}"
stamp="$venv/.logprobscope-bench"
want="$repo_root $(sha256sum pyproject.toml | cut -d' ' -f1)"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -U pip
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$repo_root[bench]"
printf '%s\n' "$want" >"$stamp"
echo "bench venv ready: $venv"
