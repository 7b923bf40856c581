#!/usr/bin/env bash
# Builds Fulcrum, starts three demo backends on 127.0.0.1:9001-9003 and runs Fulcrum on
# conf/fulcrum.toml in front of them. Ctrl-C (or SIGTERM to this script) drains Fulcrum,
# then stops the backends: everything this script started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build.sh release fulcrum fulcrum-demo-backend

backend_pids=()
fulcrum_pid=""

stop_all() {
  trap - INT TERM EXIT
  # Exactly one SIGTERM: Fulcrum drains open sessions, then exits.
  if [ -n "$fulcrum_pid" ]; then
    kill -TERM "$fulcrum_pid" 2>/dev/null || true
    wait "$fulcrum_pid" 2>/dev/null || true
  fi
  for pid in "${backend_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap stop_all INT TERM EXIT

for i in 1 2 3; do
  build/bench/fulcrum-demo-backend --name "backend-$i" \
    --tcp "127.0.0.1:900$i" --udp "127.0.0.1:900$i" &
  backend_pids+=($!)
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
# Its own session, so the terminal's Ctrl-C reaches only this script, which then sends
# Fulcrum a single SIGTERM (a second signal would mean "close everything now").
setsid build/fulcrum run -c conf/fulcrum.toml &
fulcrum_pid=$!
wait "$fulcrum_pid"
