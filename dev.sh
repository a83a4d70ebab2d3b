#!/usr/bin/env bash
# The project's single entry point.
#   ./dev.sh demo    bring up the local stack, train digits_lenet5 on 2 workers, deploy, query
#   ./dev.sh test    run the whole test suite (unit + integration, real servers)
#   ./dev.sh bench   run the benchmarks
#   ./dev.sh build   install everything and generate the protobuf stubs
# Each installs what is missing first: Debian's redis-server, prometheus and chromium, a virtualenv
# in .venv with the Python packages, and the generated stubs.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
VENV=${VENV:-.venv}

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }

ensure_system() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v prometheus >/dev/null || missing+=(prometheus)
  # The web console's browser tests (tests/e2e) drive Debian's chromium.
  command -v chromium >/dev/null || missing+=(chromium)
  command -v "$PY" >/dev/null || { command -v python3 >/dev/null && PY=python3; }
  "$PY" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  ((${#missing[@]} == 0)) && return
  log "installing Debian packages: ${missing[*]}"
  local sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian package starts a system-wide Prometheus; the project runs its own.
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || $sudo service prometheus stop >/dev/null 2>&1 || true
  fi
}

ensure_venv() {
  local stamp="$VENV/.installed"
  local want; want=$(cat pyproject.toml setup.py | sha256sum | cut -c1-16)
  if [[ ! -x $VENV/bin/python ]]; then
    log "creating virtualenv $VENV"
    "$PY" -m venv "$VENV"
  fi
  if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    log "installing Python packages (torch CPU, ray[train,tune,serve], grpc, ...)"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    # torch first, pinned, so nothing drags in a CUDA build.
    "$VENV/bin/pip" install -q torch==2.13.0
    "$VENV/bin/pip" install -q -e '.[test]'
    echo "$want" > "$stamp"
  fi
  "$VENV/bin/python" scripts/gen_protos.py >/dev/null
}

# The chart tests render helm/ with Helm's library (helm-sdkpy, Python >= 3.12) from a venv of
# their own, .venv-chart; without a Python >= 3.12 those tests skip and say why.
ensure_chart_tools() {
  "$VENV/bin/python" tests/chart/ensure_tools.py >/dev/null || log "chart tests will be skipped"
}

setup() { ensure_system; ensure_venv; ensure_chart_tools; export PATH="$PWD/$VENV/bin:$PATH"; }

cmd=${1:-help}; shift || true
case "$cmd" in
  build) setup ;;
  test)
    setup
    log "running the test suite"
    set +e
    "$VENV/bin/python" -m pytest -ra --durations=15 "$@"
    rc=$?
    set -e
    [[ $rc == 5 ]] && { echo "no tests collected"; exit 1; }
    exit $rc ;;
  demo) setup; exec "$VENV/bin/python" scripts/demo.py "$@" ;;
  bench) setup; exec "$VENV/bin/python" bench/run.py "$@" ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
