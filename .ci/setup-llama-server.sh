#!/usr/bin/env bash
# Build (or reuse) llama.cpp's own C++ `llama-server` for the e2e tests.
#
# Usage: .ci/setup-llama-server.sh [DEST_DIR]     (default: <repo>/.venvs/llama-server)
# Then:  LOGPROBSCOPE_LLAMA_SERVER_BIN=DEST_DIR/bin/llama-server pytest -m e2e
#
# It is built from the llama-cpp-python sdist that .ci/setup-llama.sh installs from (the sdist
# vendors llama.cpp), so both servers run the same llama.cpp. The binary is built once per machine
# and kept in a cache keyed by the version and the cmake flags:
#   ${LOGPROBSCOPE_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/logprobscope}/llama-server-<version>-<flags>
# A warm run only copies it (seconds); from nothing it downloads the sdist (77 MB, from PyPI
# through pip) and compiles the one cmake target (8 CPU-minutes: 12-19 min measured on a busy
# two-core machine, about 6.5 min on an idle one). The build is static (one binary, no shared
# libraries beside it), portable (no -march=native) and downloads nothing (no web UI, no curl).
set -euo pipefail

ci_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$ci_dir/.." && pwd)"
# shellcheck source=llama-cpp-version
source "$ci_dir/llama-cpp-version"
dest_dir="${1:-$repo_root/.venvs/llama-server}"
python="${PYTHON:-python3}"
jobs="${LLAMA_SERVER_BUILD_JOBS:-2}"
started=$SECONDS

cmake_flags=(
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=OFF      # one self-contained binary that can be cached and copied
    -DGGML_NATIVE=OFF            # portable: a cached binary works on any x86-64 runner
    -DLLAMA_CURL=OFF             # no model downloads, no libcurl needed
    -DLLAMA_OPENSSL=OFF          # loopback HTTP only: no libssl needed
    -DLLAMA_USE_PREBUILT_UI=OFF  # else the build downloads the web UI from Hugging Face
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_SERVER=ON
)
flags_key="$(printf '%s\n' "${cmake_flags[@]}" | sha256sum | cut -c1-12)"
cache_root="${LOGPROBSCOPE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/logprobscope}"
cached="$cache_root/llama-server-$LLAMA_CPP_PYTHON_VERSION-$flags_key"

works() { "$1" --version >/dev/null 2>&1; }

work=""
build() {
    local sdist src
    mkdir -p "$cache_root"
    work="$(mktemp -d "$cache_root/.build.XXXXXX")"
    # The build tree is large (hundreds of MB); only the binary is kept.
    trap '[[ -z "$work" ]] || rm -rf "$work"' EXIT
    sdist="$cache_root/sdist"
    if ! compgen -G "$sdist/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" >/dev/null; then
        echo "downloading the llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist"
        "$python" -m pip download -q --disable-pip-version-check --no-input --no-deps \
            --no-binary :all: --dest "$sdist" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
    fi
    tar -xzf "$sdist/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" -C "$work"
    src="$work/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
    local generator=()
    command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
    echo "configuring llama.cpp (${cmake_flags[*]})"
    cmake -S "$src" -B "$work/build" "${generator[@]}" "${cmake_flags[@]}" >"$work/configure.log" ||
        { tail -n 40 "$work/configure.log" >&2; exit 1; }
    echo "building llama-server with $jobs jobs"
    cmake --build "$work/build" --target llama-server -j "$jobs" >"$work/build.log" ||
        { tail -n 60 "$work/build.log" >&2; exit 1; }
    local binary="$work/build/bin/llama-server"
    works "$binary" || { echo "the built $binary does not run" >&2; exit 1; }
    mkdir -p "$work/out/bin"
    cp "$binary" "$work/out/bin/llama-server"
    printf 'llama-cpp-python %s\ncmake %s\nbuilt in %s s\n' \
        "$LLAMA_CPP_PYTHON_VERSION" "${cmake_flags[*]}" "$((SECONDS - started))" \
        >"$work/out/BUILD_INFO"
    # Atomic: a concurrent or interrupted run never sees a half-written cache entry.
    rm -rf "$cached"
    mv "$work/out" "$cached"
}

if [[ -x "$cached/bin/llama-server" ]] && works "$cached/bin/llama-server"; then
    echo "llama-server $LLAMA_CPP_PYTHON_VERSION found in the cache $cached"
else
    build
fi

mkdir -p "$dest_dir/bin"
cp "$cached/bin/llama-server" "$dest_dir/bin/llama-server.new"
mv "$dest_dir/bin/llama-server.new" "$dest_dir/bin/llama-server"
works "$dest_dir/bin/llama-server"
echo "llama-server ready in $dest_dir/bin after $((SECONDS - started)) s"
