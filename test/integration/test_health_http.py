"""The http health check against real nginx servers whose /health answer the test flips with
flag files, as an operator's maintenance switch would:

    client ──► fulcrum (round_robin, http GET /health, body "healthy") ──► nginx a
                                                                       └► nginx b

    a/down present      → /health answers 503                → a down (status_503)
    a/degraded present  → /health answers 200 "degraded"     → a down (body_not_found)
    neither             → /health answers 200 "healthy"      → a up

Traffic (GET / answered with the server's name) must follow: only b while a is down, both
once a is back. Detection and recovery times are printed against the configured bound.
"""

import os
import socket

from backends import check
from fulcrum_it import Fulcrum, run_tests, tmpdir
from real_servers import (Nginx, health_config, health_events, require_tools,
                          stop_checked, timed_transition, wait_health)

SLACK = 0.25  # Seconds beyond the bound: process wake-ups and logging on 2 busy cores.

HEALTH = {
    "type": "http",
    "interval": "400ms",
    "fast_interval": "100ms",
    "timeout": "250ms",
    "rise": 2,
    "fall": 2,
    "method": "GET",
    "path": "/health",
    "body": "healthy",
}


def flagged_nginx(name):
    """An nginx whose /health follows flag files in its own flag directory."""
    flags = tmpdir("fulcrum-flags-")

    def server(ports):
        return (f"  server {{\n    listen 127.0.0.1:{ports[0]};\n"
                f"    location = /health {{\n"
                f"      if (-f {flags}/down) {{ return 503 \"down\"; }}\n"
                f"      if (-f {flags}/degraded) {{ return 200 \"degraded\"; }}\n"
                f"      return 200 \"healthy\";\n    }}\n"
                f"    location / {{ return 200 \"{name}\"; }}\n  }}\n")

    nginx = Nginx(server)
    nginx.flags = flags
    nginx.address = f"127.0.0.1:{nginx.ports[0]}"
    return nginx


def set_flag(nginx, flag, on):
    path = os.path.join(nginx.flags, flag)
    if on:
        open(path, "w").close()
    else:
        os.unlink(path)


def served_by(fulcrum, n):
    """Names of the nginx servers answering n requests through Fulcrum."""
    names = []
    for _ in range(n):
        with socket.create_connection(fulcrum.addr("front"), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                part = s.recv(65536)
                if not part:
                    break
                data += part
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), f"unexpected answer {data[:200]!r}"
        names.append(body.decode())
    return names


def transition(fulcrum, backend, state, action, phase, what, detail=None):
    return timed_transition(fulcrum, backend, state, action, phase, what, HEALTH, SLACK,
                            detail)[0]


# a goes down on 503 and on a 200 without the body marker, comes back when healthy again, and
# the traffic follows each change.
def test_http_check_follows_nginx():
    require_tools("nginx")
    a, b = flagged_nginx("nginx-a"), flagged_nginx("nginx-b")
    fulcrum = Fulcrum(health_config(
        [("front", "127.0.0.1:0", "web")],
        {"web": {"algorithm": "round_robin", "backends": [a.address, b.address],
                 "health": HEALTH}}))
    try:
        for backend in (a, b):
            event = wait_health(fulcrum, backend.address, "up", 0, timeout=5)
            check(event.fields.get("detail") == "status_200", f"first probe: {event.line}",
                  fulcrum)
        check(set(served_by(fulcrum, 6)) == {"nginx-a", "nginx-b"}, "both serve at start",
              fulcrum)

        transition(fulcrum, a.address, "down", lambda: set_flag(a, "down", True), "fall",
                   "503 detected", detail="status_503")
        names = served_by(fulcrum, 10)
        check(set(names) == {"nginx-b"}, f"a is down; traffic went to {names}", fulcrum)

        event = transition(fulcrum, a.address, "up", lambda: set_flag(a, "down", False), "rise",
                           "recovery from 503")
        check(event.fields.get("passes") == str(HEALTH["rise"]), event.line, fulcrum)
        check(set(served_by(fulcrum, 6)) == {"nginx-a", "nginx-b"}, "both serve again",
              fulcrum)

        transition(fulcrum, a.address, "down", lambda: set_flag(a, "degraded", True), "fall",
                   "body marker missing detected", detail="body_not_found")
        names = served_by(fulcrum, 10)
        check(set(names) == {"nginx-b"}, f"a is degraded; traffic went to {names}", fulcrum)

        transition(fulcrum, a.address, "up", lambda: set_flag(a, "degraded", False), "rise",
                   "recovery from degraded")
        check(set(served_by(fulcrum, 6)) == {"nginx-a", "nginx-b"}, "both serve at the end",
              fulcrum)

        # Every probe request reached nginx as the check describes it.
        probes = [line for line in a.access_lines() if '"GET /health HTTP/1.1"' in line]
        check(len(probes) >= 8 and all('"fulcrum-health"' in line for line in probes),
              f"nginx a logged {len(probes)} probe requests: {probes[:3]}", fulcrum)
        check(len(health_events(fulcrum, b.address)) == 1, "b never changed state", fulcrum)
        stop_checked(fulcrum)
    finally:
        fulcrum.stop()
        a.stop()
        b.stop()


if __name__ == "__main__":
    run_tests(globals())
