#!/usr/bin/env bash
# The unit tier on every other Python the package claims (pyproject's classifiers), each in a
# venv of its own under .venvs/py<version>. The end-to-end and reliability tiers run once, on
# the main interpreter (.ci/run). A claimed version whose interpreter is missing fails the run:
# a classifier CI does not test is a claim nobody checks.
#
#   bash .ci/other-pythons.sh [3.10 3.12 ...]   (default: every classifier but the main one's)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
main_version="$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

if (($#)); then
    versions=("$@")
else
    mapfile -t versions < <(sed -n 's/.*"Programming Language :: Python :: \(3\.[0-9]*\)".*/\1/p' pyproject.toml)
fi

status=0
for version in "${versions[@]}"; do
    [ "$version" = "$main_version" ] && continue
    started=$SECONDS
    python=""
    # A pyenv shim is on PATH for every installed version but runs only the active ones.
    for candidate in "$(command -v "python$version" || true)" \
        "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/"python$version"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c '' 2>/dev/null; then
            python="$candidate"
            break
        fi
    done
    if [ -z "$python" ]; then
        echo "python$version: not on PATH, but pyproject claims it" >&2
        status=1
        continue
    fi
    venv=".venvs/py$version"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -U pip
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
    echo "== Python $version: unit tier"
    if ! "$venv/bin/python" -m pytest -q -p no:cacheprovider tests \
        --ignore=tests/e2e --ignore=tests/reliability; then
        status=1
    fi
    echo "Python $version done in $((SECONDS - started)) s"
done
exit $status
