"""HTTP through Fulcrum: three real nginx instances behind one round_robin listener, loaded with
wrk (keep-alive, then one connection per request) and counted with http.client.

    wrk / http.client ──► fulcrum "web" (127.0.0.1:0, 2 workers) ──► nginx name1 (127.0.0.1:free)
                                                                  ├► nginx name2
                                                                  └► nginx name3

Each nginx answers `nameN` and logs, per request, the serial number of the connection it came
on, so the tests can count both the requests and the connections each nginx received.
"""

import http.client
import re
import subprocess
import time

from fulcrum_it import Fulcrum, run_tests
from real_servers import Nginx, fulcrum_config, log_tail, require_tools, stop_checked

require_tools("nginx", "wrk")

WRK_THREADS = 2
WRK_CONNECTIONS = 50
WRK_SECONDS = 3


def start_nginx(name):
    def server(ports):
        return (f"  server {{\n    listen 127.0.0.1:{ports[0]};\n"
                f"    location / {{ default_type text/plain; return 200 \"{name}\\n\"; }}\n  }}")
    # nginx closes a keep-alive connection after 1000 requests by default; lift that so one wrk
    # connection stays one connection for the whole run.
    return Nginx(server, http_extra="  log_format conn '$connection $status';\n"
                                    "  keepalive_requests 1000000;",
                 access_format="conn")


NAMES = ["name1", "name2", "name3"]
NGINX = [start_nginx(n) for n in NAMES]


def start_fulcrum():
    backends = [f"127.0.0.1:{n.ports[0]}" for n in NGINX]
    pools = {"web": {"algorithm": "round_robin", "backends": backends}}
    return Fulcrum(fulcrum_config([("web", "127.0.0.1:0", "web")], pools))


def access_counts():
    """Per nginx: access-log lines so far."""
    return [len(n.access_lines()) for n in NGINX]


def new_entries(before):
    """Per nginx: (requests, distinct connections, statuses) logged since `before`."""
    out = []
    for n, skip in zip(NGINX, before):
        lines = n.access_lines()[skip:]
        conns = {line.split()[0] for line in lines}
        statuses = {line.split()[1] for line in lines}
        out.append((len(lines), len(conns), statuses))
    return out


def run_wrk(fulcrum, *extra):
    """Runs wrk through Fulcrum for WRK_SECONDS; returns (requests completed, raw output) after
    checking wrk saw no socket error and no non-2xx/3xx answer."""
    host, port = fulcrum.addr("web")
    args = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{WRK_SECONDS}s", *extra,
            f"http://{host}:{port}/"]
    r = subprocess.run(args, capture_output=True, timeout=WRK_SECONDS + 60)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    report = f"\n{' '.join(args)} exit={r.returncode}:\n{out}" + log_tail(fulcrum)

    assert r.returncode == 0, "wrk failed" + report
    m = re.search(r"^\s*(\d+) requests in ", out, re.M)
    assert m, "no request count in wrk's output" + report
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    assert errors is None or all(int(x) == 0 for x in errors.groups()), \
        f"wrk saw socket errors: {errors.group(0)}" + report
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert non_2xx is None, f"wrk saw {non_2xx.group(1)} non-2xx/3xx responses" + report

    requests = int(m.group(1))
    # A few hundred per second is far below what even a sanitizer build serves.
    assert requests >= 300 * WRK_SECONDS, f"only {requests} requests completed" + report
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    print(f"  wrk {' '.join(extra) or '(keep-alive)'}: {requests} requests, "
          f"{rate.group(1) if rate else '?'} req/s", flush=True)
    return requests, report


def check_logged(requests, before, report):
    """Every request wrk completed reached exactly one nginx, and got 200 there."""
    # nginx writes a log line just after the response, or after a lingering close, so the last
    # lines may land after wrk has exited: read once the logs stop growing.
    counts, deadline = None, time.time() + 5
    while counts != access_counts() and time.time() < deadline:
        counts = access_counts()
        time.sleep(0.3)
    entries = new_entries(before)
    logged = sum(e[0] for e in entries)
    # nginx also logs requests still in flight when wrk stopped: at most one per connection.
    assert requests <= logged <= requests + WRK_CONNECTIONS, \
        f"wrk completed {requests} requests but nginx logged {logged}: {entries}" + report
    statuses = set().union(*(e[2] for e in entries))
    assert statuses == {"200"}, f"nginx logged statuses {statuses}" + report
    return entries


# Keep-alive: 50 long connections are dealt round robin (17/17/16), each keeping its nginx.
def test_wrk_keep_alive():
    fulcrum = start_fulcrum()
    try:
        before = access_counts()
        requests, report = run_wrk(fulcrum)
        entries = check_logged(requests, before, report)
        conns = [e[1] for e in entries]
        assert sum(conns) == WRK_CONNECTIONS and max(conns) - min(conns) <= 1, \
            f"{WRK_CONNECTIONS} keep-alive connections reached nginx as {conns}, expected " \
            f"an even split" + report
    finally:
        stop_checked(fulcrum)


# Connection: close: every request is a new connection through Fulcrum, thousands of them,
# and round robin gives each nginx a third of them.
def test_wrk_connection_close():
    fulcrum = start_fulcrum()
    try:
        before = access_counts()
        requests, report = run_wrk(fulcrum, "-H", "Connection: close")
        entries = check_logged(requests, before, report)
        conns = [e[1] for e in entries]
        assert all(e[0] == e[1] for e in entries), \
            f"with Connection: close each request needs its own connection: {entries}" + report
        shares = [c / sum(conns) for c in conns]
        assert all(abs(s - 1 / 3) <= 0.02 for s in shares), \
            f"round robin over {sum(conns)} connections gave {conns}" + report
    finally:
        stop_checked(fulcrum)


# 300 sequential Connection: close requests: each name answers 100 (+- 5) of them, and a
# keep-alive connection stays on one nginx for all its requests.
def test_round_robin_names():
    fulcrum = start_fulcrum()
    try:
        host, port = fulcrum.addr("web")
        counts = dict.fromkeys(NAMES, 0)
        for i in range(300):
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", f"/{i}", headers={"Connection": "close"})
            resp = conn.getresponse()
            body = resp.read().decode().strip()
            conn.close()
            assert resp.status == 200 and body in counts, \
                f"request {i}: {resp.status} {body!r}" + log_tail(fulcrum)
            counts[body] += 1
        assert all(abs(c - 100) <= 5 for c in counts.values()), \
            f"300 requests spread as {counts}, expected about 100 each" + log_tail(fulcrum)

        conn = http.client.HTTPConnection(host, port, timeout=10)
        seen = set()
        for i in range(20):
            conn.request("GET", f"/keep/{i}")
            resp = conn.getresponse()
            seen.add(resp.read().decode().strip())
        conn.close()
        assert len(seen) == 1, f"one keep-alive connection was answered by {seen}"
    finally:
        stop_checked(fulcrum)


run_tests(globals())
