#!/usr/bin/env bash
# The test suite in two lanes (`swift test` runs both):
#   scripts/test-lanes.sh unit      unit tests: codecs, store, work queue, scheduler cache and
#                                   plugins — no server, no child process, no peer tool; seconds
#   scripts/test-lanes.sh cluster   everything else: real servers over TLS, `cox` processes (the
#                                   store's SIGKILL test too), PKI with openssl and kubectl, peers
# Extra arguments go to `swift test` (e.g. --skip-build).
set -euo pipefail
cd "$(dirname "$0")/.."
unit='APITests|StoreTests\.(?!CrashTests)|ControllerRuntimeTests\.(WorkQueueTests|RateLimiterTests)|SchedulerTests\.(CacheTests|FrameworkTests)'
lane="${1:-}"
shift || true
case "$lane" in
  unit) exec swift test --filter "$unit" "$@" ;;
  cluster) exec swift test --skip "$unit" "$@" ;;
  *) echo "usage: scripts/test-lanes.sh unit|cluster [swift test options]" >&2; exit 2 ;;
esac
