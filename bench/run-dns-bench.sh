#!/usr/bin/env bash
# Starts a private dnsmasq on a free loopback port, runs dns_bench against
# it, and stops it. Usage: bench/run-dns-bench.sh BUILD_DIR [dns_bench options]
set -euo pipefail
build=${1:?usage: run-dns-bench.sh BUILD_DIR [options]}
shift
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
dnsmasq --keep-in-foreground --pid-file= --port="$port" --listen-address=127.0.0.1 --bind-interfaces \
  --no-resolv --no-hosts --user=root --local=/in-addr.arpa/ --local=/bench.test/ --local-ttl=300 \
  --address=/bench.test/127.0.0.1 --log-facility="$dir/log" &
pid=$!
trap 'kill $pid; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
sleep 0.3
"$build/bench/dns_bench" --server "127.0.0.1:$port" "$@"
