#!/usr/bin/env bash
# Install the real telemetry receivers used by the e2e tier (tests/e2e/receivers.py):
#   * Prometheus from Debian/Ubuntu (apt) -> /usr/bin/prometheus
#   * Arize Phoenix from PyPI in its own venv -> <venv>/bin/phoenix
#
# Usage: .ci/setup-receivers.sh [PHOENIX_VENV]   (default: <repo>/.venvs/phoenix)
# Env:   PYTHON        interpreter for the venv (default: first python3.13/3.12/3.11/python3 >= 3.11)
#        PHOENIX_SPEC  pip requirement (default: arize-phoenix)
#
# Idempotent: an installed prometheus package and a venv whose phoenix works are kept.
# The tests start their own Prometheus/Phoenix on free 127.0.0.1 ports; the Debian
# system service (port 9090) is not used, so a freshly installed one is stopped and
# disabled.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo_root/.venvs/phoenix}"
phoenix_spec="${PHOENIX_SPEC:-arize-phoenix}"
script_start=$EPOCHREALTIME

log() { printf '[setup-receivers] %s\n' "$*"; }
elapsed() { # elapsed <start> -> seconds with one decimal
  awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    log "need root (or sudo) for: $*" >&2
    return 1
  fi
}

# --------------------------------------------------------------------------- Prometheus

prometheus_installed() {
  [ -x /usr/bin/prometheus ] &&
    dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q 'install ok installed'
}

apt_candidate_known() {
  local candidate
  candidate="$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ { print $2 }')"
  [ -n "$candidate" ] && [ "$candidate" != "(none)" ]
}

apt_install_prometheus() {
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends prometheus
}

# Keep maintainer scripts from starting the daemon (policy-rc.d is honoured by
# invoke-rc.d and deb-systemd-invoke); only if the machine has no policy of its own.
policy_rc_d=/usr/sbin/policy-rc.d
policy_rc_d_ours=0
remove_policy_rc_d() {
  if [ "$policy_rc_d_ours" -eq 1 ]; then
    as_root rm -f "$policy_rc_d" || true
    policy_rc_d_ours=0
  fi
}
trap remove_policy_rc_d EXIT

stop_system_prometheus() {
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    log "systemd: prometheus.service disabled and stopped"
  else
    if [ -x /etc/init.d/prometheus ]; then
      as_root service prometheus stop >/dev/null 2>&1 || true
      as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
      log "sysvinit: prometheus service stopped and disabled (no systemd)"
    fi
  fi
  # Whatever else is left of the packaged daemon runs as user "prometheus"; ours never do.
  local pids
  pids="$(pgrep -u prometheus -x prometheus 2>/dev/null || true)"
  if [ -n "$pids" ]; then
    log "stopping leftover system prometheus pid(s): $pids"
    # shellcheck disable=SC2086
    as_root kill -TERM $pids 2>/dev/null || true
  fi
}

step_start=$EPOCHREALTIME
if prometheus_installed; then
  log "prometheus package already installed ($(/usr/bin/prometheus --version 2>&1 | head -n1))"
else
  if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get not found: install Prometheus yourself and set LOGPROBSCOPE_PROMETHEUS_BIN" >&2
    exit 1
  fi
  if [ ! -e "$policy_rc_d" ]; then
    printf '#!/bin/sh\n# temporary, from logprobscope .ci/setup-receivers.sh\nexit 101\n' |
      as_root tee "$policy_rc_d" >/dev/null
    as_root chmod 0755 "$policy_rc_d"
    policy_rc_d_ours=1
  fi
  if ! apt_candidate_known; then
    t=$EPOCHREALTIME
    as_root apt-get update
    log "apt-get update: $(elapsed "$t") s"
  fi
  t=$EPOCHREALTIME
  if ! apt_install_prometheus; then
    log "install failed; refreshing package lists and retrying once"
    as_root apt-get update
    apt_install_prometheus
  fi
  log "apt-get install prometheus: $(elapsed "$t") s"
  remove_policy_rc_d
  stop_system_prometheus
  log "installed $(/usr/bin/prometheus --version 2>&1 | head -n1)"
fi
log "prometheus step: $(elapsed "$step_start") s"

# --------------------------------------------------------------------------- Phoenix

phoenix_works() {
  [ -x "$venv/bin/phoenix" ] && [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" - <<'EOF' >/dev/null 2>&1
import importlib.metadata as m

# Cheap check (importing phoenix takes ~15 s): distribution and its entry point exist.
scripts = m.distribution("arize-phoenix").entry_points.select(group="console_scripts")
assert "phoenix" in scripts.names
EOF
}

pick_python() {
  if [ -n "${PYTHON:-}" ]; then
    printf '%s\n' "$PYTHON"
    return
  fi
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 15))' 2>/dev/null; then
      printf '%s\n' "$candidate"
      return
    fi
  done
  log "no Python 3.11-3.14 found (arize-phoenix needs one); set PYTHON" >&2
  return 1
}

step_start=$EPOCHREALTIME
if phoenix_works; then
  log "phoenix venv already works: $venv ($("$venv/bin/python" -c \
    'import importlib.metadata as m; print("arize-phoenix", m.version("arize-phoenix"))'))"
else
  python="$(pick_python)"
  log "creating venv $venv with $python ($("$python" --version 2>&1))"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  t=$EPOCHREALTIME
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input "$phoenix_spec"
  log "pip install $phoenix_spec: $(elapsed "$t") s"
  if ! phoenix_works; then
    log "phoenix is not usable in $venv after the install" >&2
    exit 1
  fi
  log "installed arize-phoenix $("$venv/bin/python" -c \
    'import importlib.metadata as m; print(m.version("arize-phoenix"))')"
fi
log "phoenix step: $(elapsed "$step_start") s"

log "done in $(elapsed "$script_start") s; binaries: /usr/bin/prometheus, $venv/bin/phoenix"
if [ "$venv" -ef "$repo_root/.venvs/phoenix" ]; then
  log "tests find $venv/bin/phoenix by themselves"
else
  log "for the tests: export LOGPROBSCOPE_PHOENIX_BIN=$venv/bin/phoenix"
fi
