#!/usr/bin/env bash
# Soak test (not part of ctest: too long for CI): MINUTES (default 10) of
# steady SMTP load through a private Postfix into one relayguard daemon, as
# milter and policy service, counting in a private Redis; samples the daemon's
# RSS, fds and threads and Redis's memory and keys every 10 s, and fails on
# any unexpected SMTP reply, a missed rate, or growth past its bound.
#   scripts/soak.sh [MINUTES]
# Env: RELAYGUARD_BUILD_DIR (default build/, must already be built),
#      RG_SOAK_RATE (messages/s, default 20), RG_SOAK_THREADS (senders, default 6).
# Further arguments go to the script: scripts/soak.sh 10 --csv /tmp/soak.csv --seed 7
# (python3 tests/soak/soak.py --help lists them).
# Needs root (private Postfix) and postfix, redis-server installed.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
build=${RELAYGUARD_BUILD_DIR:-build}
build=$(cd "$build" 2>/dev/null && pwd) || { echo "soak: build dir '${RELAYGUARD_BUILD_DIR:-build}' not found; build first (cmake -S . -B build && cmake --build build)" >&2; exit 2; }
for bin in relayguard relayguardctl relayguard-relayd relayguard-sendmail; do
  if [[ ! -x "$build/$bin" ]]; then
    echo "soak: $build/$bin is missing; build first (cmake --build $build)" >&2
    exit 2
  fi
done
export RELAYGUARD_BUILD_DIR="$build"
export RELAYGUARD_BIN="$build/relayguard"
export RELAYGUARDCTL="$build/relayguardctl"
export RELAYGUARD_RELAYD="$build/relayguard-relayd"
export RELAYGUARD_SENDMAIL="$build/relayguard-sendmail"
export RELAYGUARD_SOURCE_DIR="$PWD"
exec python3 tests/soak/soak.py --minutes "$minutes" "${@:2}"
