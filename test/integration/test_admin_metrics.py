"""GET /metrics: promtool accepts it, and the figures match the traffic the test made.

Topology: TCP listener "front" -> pool "web" = [dead (nothing listens; passive detection off,
so it stays in rotation and every pick of it is a refused connect), live (Python line
server)]; UDP listener "dns" -> pool "udp" = [a Python UDP echo server]. Admin on a
kernel-chosen loopback port with a token.
"""

import re
import shutil
import socket
import subprocess
import threading

from admin_helpers import AdminFulcrum, admin_config, curl, wait_until
from backends import Backend, check, connect, line_handler, request, unused_address
from fulcrum_it import run_tests

REQUESTS = 10
DATAGRAMS = 5

_state = {}


class UdpEcho:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                data, peer = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            self.sock.sendto(data, peer)

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=2)
        self.sock.close()


def setup():
    if _state:
        return _state
    live = Backend(line_handler, name="live")
    dead = unused_address()
    echo = UdpEcho()
    config = admin_config(
        {"web": {"backends": [(dead, ""), (live.address, "")],
                 "extra": 'algorithm = "round_robin"\nretries = 2',
                 "health": "passive_failures = 0"},
         "udp": {"backends": [(echo.address, "")]}},
        listeners=[("front", "web", "tcp"), ("dns", "udp", "udp")])
    f = AdminFulcrum(config)
    _state.update(f=f, live=live, dead=dead, echo=echo)
    return _state


def parse_metrics(text):
    """{(name, frozenset(labels)): value} for every sample line."""
    samples = {}
    rx = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = rx.match(line)
        assert m, f"unparsable sample line {line!r}"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}"
    return samples[key]


def metrics(f):
    r = curl(f, "/metrics")
    check(r.status == 200, f"/metrics: {r}", f)
    check(r.headers["content-type"].startswith("text/plain; version=0.0.4"),
          f"content type {r.headers}")
    return r.body


# promtool, the Prometheus project's own checker, accepts the exposition without a warning,
# with traffic on both a TCP and a UDP listener so every family has samples.
def test_promtool_accepts_metrics():
    s = setup()
    f = s["f"]
    check(shutil.which("promtool") is not None, "promtool missing (Debian package prometheus)")
    for i in range(REQUESTS):
        c = connect(f.addr("front"), timeout=5)
        check(request(c, f"m{i}") == "live", "served by the dead backend?")
        c.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    for i in range(DATAGRAMS):
        u.sendto(b"ping%d" % i, f.addr("dns"))
        check(u.recv(100) == b"ping%d" % i, "udp echo")
    u.close()

    text = metrics(f)
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=60)
    out = (p.stdout + p.stderr).decode()
    check(p.returncode == 0 and out.strip() == "", f"promtool said ({p.returncode}):\n{out}")


# The figures: sessions, refused connects by reason, the connect-latency histogram's
# internal consistency, states, listener counters and UDP datagrams.
def test_metrics_match_traffic():
    s = setup()
    f = s["f"]
    live = s["live"].address
    wait_until(lambda: value(parse_metrics(metrics(f)), "fulcrum_backend_sessions_active",
                             pool="web", backend=live) == 0, what="sessions to end")
    m = parse_metrics(metrics(f))

    sessions = value(m, "fulcrum_backend_sessions_total", pool="web", backend=live)
    check(sessions == REQUESTS, f"live sessions_total {sessions}")
    refused = value(m, "fulcrum_backend_connect_failures_total", pool="web", backend=s["dead"],
                    reason="refused")
    # Round robin alternates, so about half the flows tried the dead backend first.
    check(refused >= REQUESTS // 2 - 1, f"refused connects to the dead backend: {refused}")
    check(value(m, "fulcrum_backend_connect_failures_total", pool="web", backend=s["dead"],
                reason="timeout") == 0, "timeouts counted for a refusing backend")
    check(value(m, "fulcrum_listener_sessions_total", listener="front", protocol="tcp") ==
          REQUESTS, "listener accepted")
    check(value(m, "fulcrum_listener_errors_total", listener="front", reason="no_backend") == 0,
          "no_backend errors")

    hist = "fulcrum_backend_connect_duration_seconds"
    count = value(m, hist + "_count", pool="web", backend=live)
    check(count == sessions, f"histogram count {count} != sessions {sessions}")
    buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in m.items()
                      if k[0] == hist + "_bucket" and dict(k[1]).get("backend") == live),
                     key=lambda x: x[0])
    check(len(buckets) == 13 and buckets[-1][0] == float("inf"), f"buckets {buckets}")
    check(all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), f"not cumulative {buckets}")
    check(buckets[-1][1] == count, "+Inf bucket != count")
    # A loopback connect takes well under a second in total for ten of them.
    total = value(m, hist + "_sum", pool="web", backend=live)
    check(0 < total < 1.0, f"histogram sum {total}")

    for state in ("up", "down", "draining", "disabled"):
        check(value(m, "fulcrum_backend_state", pool="web", backend=live, state=state) ==
              (1 if state == "up" else 0), f"state {state}")
    r = curl(f, f"/api/v1/pools/web/backends/{live}/drain", method="POST")
    check(r.status == 200, f"drain {r}")
    m = parse_metrics(metrics(f))
    check(value(m, "fulcrum_backend_state", pool="web", backend=live, state="draining") == 1 and
          value(m, "fulcrum_backend_state", pool="web", backend=live, state="up") == 0,
          "drained backend's state gauge")
    check(value(m, "fulcrum_pool_backends_up", pool="web") == 1, "pool up count after drain")
    curl(f, f"/api/v1/pools/web/backends/{live}/enable", method="POST")

    check(value(m, "fulcrum_udp_datagrams_total", listener="dns", direction="from_client") ==
          DATAGRAMS, "udp datagrams from client")
    check(value(m, "fulcrum_udp_datagrams_total", listener="dns", direction="to_client") ==
          DATAGRAMS, "udp datagrams to client")
    check(value(m, "fulcrum_listener_info", listener="front", protocol="tcp",
                address="%s:%d" % f.addr("front"), pool="web") == 1, "listener info")

    check(f.stop() == 0, "fulcrum exit code", f)
    s["echo"].stop()


if __name__ == "__main__":
    run_tests(globals())
