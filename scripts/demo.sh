#!/usr/bin/env bash
# Builds Fulcrum, starts three demo backends on 127.0.0.1:9001-9003 and runs Fulcrum on
# conf/fulcrum.toml in front of them. Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build.sh release >/dev/null

pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for i in 1 2 3; do
  build/bench/fulcrum-demo-backend --name "backend-$i" \
    --tcp "127.0.0.1:900$i" --udp "127.0.0.1:900$i" &
  pids+=($!)
done
sleep 0.3

cat <<'MSG'

Fulcrum is starting on conf/fulcrum.toml in front of backend-1..3 (127.0.0.1:9001-9003).
Try it from another terminal:
  curl http://127.0.0.1:8080/          # each request names the backend that served it
  for i in $(seq 6); do curl -s http://127.0.0.1:8080/; done
  echo hello | nc -q1 127.0.0.1 8080   # line mode: the backend echoes with its name
Stop with Ctrl-C (Fulcrum drains open sessions, then exits).

MSG
build/fulcrum run -c conf/fulcrum.toml &
pids+=($!)
wait "${pids[-1]}"
