#!/usr/bin/env bash
# Installs what relayguard needs from Debian's packages, only what is missing.
#   scripts/install-deps.sh          build dependencies
#   scripts/install-deps.sh --test   also the real servers the test suite starts
#   scripts/install-deps.sh --bench  also the peers the benchmarks measure
#                                    relayguard against (bench/README.md)
set -euo pipefail

build_pkgs=(cmake g++ pkg-config libmilter-dev libhiredis-dev libc-ares-dev libre2-dev libspdlog-dev libfmt-dev
            catch2 libssl-dev libtomlplusplus-dev nlohmann-json3-dev libcpp-httplib-dev libcurl4-openssl-dev prometheus-cpp-dev dpkg-dev file)
test_pkgs=(python3 postfix postfix-lmdb swaks miltertest dnsmasq-base redis-server redis-sentinel dovecot-pop3d
           dovecot-core procps iproute2 m4 fail2ban openssl adduser clang libclang-rt-14-dev)
bench_pkgs=(postfwd policyd-rate-limit rspamd)

pkgs=("${build_pkgs[@]}")
case "${1:-}" in
  --test) pkgs+=("${test_pkgs[@]}") ;;
  --bench) pkgs+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  "") ;;
  *) echo "usage: install-deps.sh [--test|--bench]" >&2; exit 64 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
# Packages with services (postfix, dovecot, redis) must not start them: the
# tests run private instances on their own ports.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
# Postfix asks how to configure itself; "No configuration" leaves the system alone.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
