#!/usr/bin/env bash
# Starts a private redis-server on a free loopback port, runs store_bench
# against it, and stops it. Usage: bench/run-store-bench.sh BUILD_DIR [store_bench options]
set -euo pipefail
build=${1:?usage: run-store-bench.sh BUILD_DIR [options]}
shift
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" --daemonize no >"$dir/log" &
pid=$!
trap 'kill $pid; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$build/bench/store_bench" --redis "127.0.0.1:$port" "$@"
