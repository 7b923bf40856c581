#!/usr/bin/env bash
# Installs, from Debian's packages, everything Fulcrum needs to build, run and test.
# Non-interactive; does nothing for packages already present. Run as root (or with sudo).
set -euo pipefail

packages=(
  # Build.
  build-essential cmake ninja-build pkg-config git
  # XDP fast path: libbpf to load it, clang (BPF target) and bpftool to build it.
  libbpf-dev bpftool clang
  libuv1-dev libfmt-dev libspdlog-dev libtoml11-dev libcli11-dev libxxhash-dev libhttp-parser-dev libsystemd-dev catch2 nlohmann-json3-dev
  # Real servers and clients the tests and demos start.
  python3 redis-server redis-tools nginx libnginx-mod-stream wrk curl netcat-openbsd procps iproute2 ethtool
  nsd bind9-dnsutils dnsperf systemd prometheus chromium
  # Benchmarks: HAProxy and iperf3 as peers and load (bench/compare_peers.py and the failover
  # bench, both run in CI), PostgreSQL for the postgres-primary failover scenario, and the
  # profilers that guide data-path work.
  haproxy iperf3 postgresql linux-perf valgrind
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
