#!/usr/bin/env bash
# Entrypoint of the trainserve image.
#   api [FLAGS]        the job API          (python -m trainserve.api)
#   dispatch [FLAGS]   the dispatcher       (python -m trainserve.dispatch)
#   console [FLAGS]    the web console      (python -m trainserve.console)
#   ray [ARGS]         a Ray node           (e.g. ray start --head --block ...)
#   trainserve [ARGS]  the CLI
#   anything else      run as given (KubeRay sets its own command and skips this script)
set -euo pipefail
cmd=${1:-api}
shift || true
case "$cmd" in
  api) exec python -m trainserve.api "$@" ;;
  dispatch|dispatcher) exec python -m trainserve.dispatch "$@" ;;
  console) exec python -m trainserve.console "$@" ;;
  ray) exec ray "$@" ;;
  trainserve) exec trainserve "$@" ;;
  *) exec "$cmd" "$@" ;;
esac
