#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, builds twice
# (normal, and with AddressSanitizer + UBSan), and runs every test in both
# builds: unit tests of the engine and end-to-end tests through real servers.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --test
jobs=$(nproc)

for type in RelWithDebInfo Sanitize; do
  dir="build-test-${type,,}"
  echo "=== ${type}: build in ${dir}"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" >/dev/null
  cmake --build "$dir" -j"$jobs"
  echo "=== ${type}: test"
  (cd "$dir" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure --timeout 600)
done
