#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (unit tests and
# integration tests with real redis-server, nginx, wrk, redis-benchmark and curl).
# Usage: scripts/test.sh [release|asan]
set -euo pipefail
cd "$(dirname "$0")/.."

kind="${1:-release}"
scripts/install-deps.sh
scripts/build.sh "$kind"

dir=build
if [ "$kind" = asan ]; then
  dir=build-asan
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fi

cd "$dir"
ctest -j"$(nproc)" --output-on-failure --timeout 600
