#!/usr/bin/env bash
# Configures and builds Fulcrum. Usage: scripts/build.sh [release|asan] [target...]
# (no target: everything, tests included)
#   release (default): build/      optimised, with debug info
#   asan:              build-asan/ AddressSanitizer + UndefinedBehaviorSanitizer
set -euo pipefail
cd "$(dirname "$0")/.."

kind="${1:-release}"
shift || true
case "$kind" in
  release) dir=build; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  asan) dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=Debug -DFULCRUM_SANITIZE=ON) ;;
  *) echo "usage: scripts/build.sh [release|asan]" >&2; exit 2 ;;
esac

cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
ninja -C "$dir" -j"$(nproc)" "$@"
