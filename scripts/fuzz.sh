#!/usr/bin/env bash
# Builds the libFuzzer targets with clang in build-fuzz/ and runs each for
# SECONDS (default 60) from its seed corpus in fuzz/corpus/<name>/; new
# inputs found are kept in build-fuzz/corpus/<name>/. A crash stops the run
# with the input saved as build-fuzz/crash-*. Needs clang and libclang-rt
# (Debian: clang, libclang-rt-14-dev).
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
names=(policy_request smtp_reply queue_file dns_answer report config envelope login_log dovecot_policy token_answer)
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRELAYGUARD_FUZZ=ON \
  -DBUILD_TESTING=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${names[@]/#/fuzz_}"
for name in "${names[@]}"; do
  mkdir -p "build-fuzz/corpus/$name"
  echo "=== fuzz_$name for ${seconds}s"
  log="build-fuzz/fuzz_$name.log"
  if ! (cd build-fuzz && ASAN_OPTIONS=detect_leaks=1 ./fuzz/fuzz_$name -max_total_time="$seconds" -timeout=10 \
          -max_len=65536 -print_final_stats=1 "corpus/$name" "../fuzz/corpus/$name" >"fuzz_$name.log" 2>&1); then
    tail -60 "$log"
    echo "fuzz_$name FAILED: the input is saved as build-fuzz/crash-* (add it to fuzz/corpus/$name/ once fixed)" >&2
    exit 1
  fi
  tail -4 "$log"
done
