#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what is missing, then:
#   1. AddressSanitizer + UBSan: every test (unit tests of the engine,
#      end-to-end tests through real servers, fault injection, SMTP abuse);
#   2. the normal build: the unit tests, and the end-to-end tests labelled
#      "release" (the package, fault injection, abuse, durability);
#   3. ThreadSanitizer: the threaded programs, and the tests labelled
#      "threads" (the ones that drive their threads hardest);
#   4. each libFuzzer target for a short run from its seed corpus
#      (scripts/fuzz.sh; longer runs: scripts/fuzz.sh 600).
# The 10-minute soak is separate: scripts/soak.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --test
jobs=$(nproc)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
export TSAN_OPTIONS="second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp"

build() {  # build TYPE [TARGET...]
  local type=$1 dir="build-test-${1,,}"
  shift
  echo "=== ${type}: build in ${dir}"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" >/dev/null
  cmake --build "$dir" -j"$jobs" ${1:+--target "$@"}
}

build Sanitize
echo "=== Sanitize: test (everything)"
(cd build-test-sanitize && ctest --output-on-failure --timeout 600)

build RelWithDebInfo
echo "=== RelWithDebInfo: test (unit tests, and label release)"
(cd build-test-relwithdebinfo && ctest --output-on-failure --timeout 600 -LE e2e &&
   ctest --output-on-failure --timeout 600 -L release)

build Tsan relayguard relayguard-relayd relayguard-sendmail relayguardctl store_tests
echo "=== Tsan: test (labels threads, redis: the store's pool)"
# setarch -R: gcc 12's ThreadSanitizer cannot map its shadow memory under the
# address-space randomisation of recent kernels.
(cd build-test-tsan && setarch "$(uname -m)" -R ctest --output-on-failure --timeout 600 -L 'threads|redis')

echo "=== fuzz: each target for 10 s"
scripts/fuzz.sh 10
