"""The admin API over curl and raw sockets: the status document, the operator actions
(drain, disable, enable, weight) and what happens to traffic, every refusal with its status
code and message, malformed HTTP, and the endpoint's limits (body, headers, time,
connections). Fulcrum must still answer afterwards.

Topology: one TCP listener "front" -> pool "web" of three Python line servers, two on
127.0.0.1 and one on [::1], each with a tcp health check; the admin endpoint on a
kernel-chosen 127.0.0.1 port (token) and a unix socket (no token).
"""

import os
import socket
import subprocess
import time

from admin_helpers import (TOKEN, AdminFulcrum, admin_config, backend_status, curl,
                           raw_request, wait_until)
from backends import Backend, check, connect, line_handler, request
from fulcrum_it import FULCRUM_BIN, Fulcrum, run_tests, tmpdir

MAX_BODY = 4096
MAX_CONNECTIONS = 4

_state = {}


def setup():
    if _state:
        return _state
    a = Backend(line_handler, name="a")
    b = Backend(line_handler, name="b")
    c = Backend(line_handler, host="::1", name="c")
    health = 'type = "tcp"\ninterval = "200ms"\ntimeout = "100ms"\nrise = 1\nfall = 1'
    config = admin_config(
        {"web": {"backends": [(a.address, ""), (b.address, ""), (c.address, "weight = 2")],
                 "health": health, "extra": 'algorithm = "round_robin"'}},
        listeners=[("front", "web", "tcp")],
        admin_extra={"max_body": MAX_BODY, "max_connections": MAX_CONNECTIONS,
                     "request_timeout": "700ms"})
    f = AdminFulcrum(config)
    _state.update(f=f, a=a, b=b, c=c)
    # Every backend has its first probe result before the tests look at states.
    wait_until(lambda: all(x["checked"] for x in
                           curl(f, "/api/v1/status", unix=True).json()["pools"][0]["backends"]),
               what="first health results")
    return _state


def one(f, text):
    s = connect(f.addr("front"), timeout=5)
    try:
        return request(s, text)
    finally:
        s.close()


def action(f, backend, verb, **kw):
    return curl(f, f"/api/v1/pools/web/backends/{backend}/{verb}", method="POST", **kw)


def put_weight(f, backend, body, **kw):
    return curl(f, f"/api/v1/pools/web/backends/{backend}/weight", method="PUT", body=body, **kw)


# The status document names every listener, pool and backend with state, weights, counters
# and recent health results, identically over TCP (with token) and the unix socket.
def test_status_lists_listeners_pools_backends():
    s = setup()
    f = s["f"]
    tcp = curl(f, "/api/v1/status")
    check(tcp.status == 200, f"status over TCP: {tcp}", f)
    check(tcp.headers["content-type"] == "application/json", f"content type {tcp.headers}")
    doc = tcp.json()
    unix = curl(f, "/api/v1/status", unix=True, token=None).json()
    check([b["address"] for b in unix["pools"][0]["backends"]] ==
          [b["address"] for b in doc["pools"][0]["backends"]], "unix socket and TCP disagree")

    host, port = f.addr("front")
    check([l["name"] for l in doc["listeners"]] == ["front"], f"listeners {doc['listeners']}")
    listener = doc["listeners"][0]
    check(listener["address"] == f"{host}:{port}" and listener["pool"] == "web" and
          listener["protocol"] == "tcp", f"listener {listener}")

    pool = doc["pools"][0]
    check(pool["name"] == "web" and pool["algorithm"] == "round_robin" and
          pool["check"] == "tcp" and pool["backends_up"] == 3, f"pool {pool}")
    addresses = [b["address"] for b in pool["backends"]]
    check(addresses == [s["a"].address, s["b"].address, s["c"].address], f"{addresses}")
    for b in pool["backends"]:
        check(b["state"] == "up" and b["admin"] == "enabled" and b["health"] == "up",
              f"backend {b}")
        check(len(b["recent_checks"]) >= 1 and b["recent_checks"][-1]["ok"] is True,
              f"recent checks {b}")
        for key in ("active_sessions", "sessions_total", "bytes_to_backend_total",
                    "bytes_from_backend_total", "connect_failures_total"):
            check(isinstance(b[key], int), f"{key} missing in {b}")
    check(pool["backends"][2]["weight"] == 2 and pool["backends"][2]["effective_weight"] == 2,
          f"weight of c: {pool['backends'][2]}")


# Sessions and bytes each way are counted per backend once the sessions end.
def test_traffic_is_counted_per_backend():
    s = setup()
    f = s["f"]
    before = {b["address"]: b for b in curl(f, "/api/v1/status").json()["pools"][0]["backends"]}
    served = {}
    for i in range(12):
        name = one(f, f"hello-{i:02d}")
        served[name] = served.get(name, 0) + 1
    check(set(served) == {"a", "b", "c"}, f"round robin spread {served}")

    def settled():
        now = curl(f, "/api/v1/status").json()["pools"][0]["backends"]
        return all(b["active_sessions"] == 0 for b in now) and sum(
            b["sessions_total"] - before[b["address"]]["sessions_total"] for b in now) == 12

    wait_until(settled, what="sessions to end")
    now = {b["address"]: b for b in curl(f, "/api/v1/status").json()["pools"][0]["backends"]}
    for backend, name in ((s["a"], "a"), (s["b"], "b"), (s["c"], "c")):
        n = served[name]
        after, was = now[backend.address], before[backend.address]
        check(after["sessions_total"] - was["sessions_total"] == n, f"{name}: {after}")
        # Each request line is "hello-NN\n" (9 bytes); the answer is "<name> " plus it.
        check(after["bytes_to_backend_total"] - was["bytes_to_backend_total"] == 9 * n,
              f"{name} bytes to backend: {after}")
        check(after["bytes_from_backend_total"] - was["bytes_from_backend_total"] ==
              (9 + len(name) + 1) * n, f"{name} bytes from backend: {after}")


# drain, disable and enable change the admin state idempotently (changed says whether this
# call changed it), and new sessions follow: a drained or disabled backend gets none.
def test_drain_disable_enable_change_traffic():
    s = setup()
    f = s["f"]
    a = s["a"].address

    r = action(f, a, "drain")
    check(r.status == 200, f"drain: {r}", f)
    doc = r.json()
    check(doc["changed"] is True and doc["backend"]["admin"] == "draining" and
          doc["backend"]["state"] == "draining", f"drain answer {doc}")
    again = action(f, a, "drain").json()
    check(again["changed"] is False and again["backend"]["state"] == "draining", f"{again}")
    names = {one(f, f"d{i}") for i in range(9)}
    check("a" not in names and names == {"b", "c"}, f"drained backend served: {names}")

    r = action(f, a, "disable")
    check(r.status == 200 and r.json()["backend"]["state"] == "disabled", f"disable: {r}")
    names = {one(f, f"x{i}") for i in range(9)}
    check("a" not in names, f"disabled backend served: {names}")

    r = action(f, a, "enable")
    check(r.status == 200 and r.json()["changed"] is True, f"enable: {r}")
    # Enabling probes the backend at once; it is up again within a probe or two.
    wait_until(lambda: backend_status(f, "web", a)["state"] == "up", what="a up again")
    names = {one(f, f"e{i}") for i in range(9)}
    check("a" in names, f"enabled backend not served: {names}")
    check(action(f, a, "enable").json()["changed"] is False, "enable twice changed")


# Weight changes are visible in the status and steer traffic; IPv6 backends are named with
# brackets, raw or percent-encoded.
def test_weight_and_ipv6_keys():
    s = setup()
    f = s["f"]
    c = s["c"].address  # "[::1]:port"
    encoded = c.replace("[", "%5B").replace("]", "%5D").replace(":", "%3A")

    r = put_weight(f, encoded, '{"weight": 5}')
    check(r.status == 200, f"weight via encoded key: {r}", f)
    doc = r.json()
    check(doc["changed"] is True and doc["backend"]["weight"] == 5 and
          doc["backend"]["address"] == c, f"{doc}")
    r = put_weight(f, c, '{"weight": 5}')
    check(r.status == 200 and r.json()["changed"] is False, f"same weight, raw key: {r}")
    r = curl(f, f"/api/v1/pools/web/backends/{c}", unix=True)
    check(r.status == 200 and r.json()["backend"]["weight"] == 5, f"GET backend: {r}")

    # Weight 0 takes no new flows.
    r = put_weight(f, s["b"].address, '{"weight": 0}')
    check(r.status == 200 and r.json()["backend"]["effective_weight"] == 0, f"weight 0: {r}")
    names = [one(f, f"w{i}") for i in range(14)]
    check("b" not in names, f"weight-0 backend served: {names}")
    check(names.count("c") > names.count("a"), f"weight 5 vs 1 not reflected: {names}")
    put_weight(f, s["b"].address, '{"weight": 1}')
    put_weight(f, c, '{"weight": 2}')


# Every refusal: the status code and a message that says what was wrong.
def test_refusals_have_codes_and_messages():
    s = setup()
    f = s["f"]
    a = s["a"].address
    cases = [
        (action(f, a, "drain", token=None), 401, "missing token"),
        (action(f, a, "drain", token="wrong-token-0000000000"), 401, "does not match"),
        (curl(f, "/api/v1/status", token=None, headers=["Authorization: Basic eDp5"]), 401,
         "Bearer scheme"),
        (curl(f, "/nope"), 404, "no such path: /nope"),
        (curl(f, "/metrics/"), 404, "no such path"),
        (curl(f, "/api/v1/status", method="POST"), 405, "POST is not allowed"),
        (curl(f, f"/api/v1/pools/web/backends/{a}/drain"), 405, "use POST"),
        (action(f, a, "explode"), 404, "no backend action \"explode\""),
        (action(f, "127.0.0.1:1", "drain"), 404, "has no backend 127.0.0.1:1"),
        (curl(f, "/api/v1/pools/nope/backends/127.0.0.1:1/drain", method="POST"), 404,
         "no pool named \"nope\"; pools: web"),
        (action(f, "not-an-address", "drain"), 400, "is not an address"),
        (curl(f, "/api/v1/pools/web/backends/%ZZ/drain", method="POST"), 400,
         "malformed percent-encoding"),
        (put_weight(f, a, '{"weight": -1}'), 422, "weight -1 is out of range"),
        (put_weight(f, a, '{"weight": 1001}'), 422, "weight 1001 is out of range"),
        (put_weight(f, a, '{"weight": "5"}'), 422, "weight is \"5\"; expected an integer"),
        (put_weight(f, a, '{"weight": 2.5}'), 422, "expected an integer"),
        (put_weight(f, a, '{"wieght": 2}'), 422, "unknown key \"wieght\""),
        (put_weight(f, a, '{}'), 422, "has no \"weight\""),
        (put_weight(f, a, '[5]'), 422, "the body is a JSON array"),
        (put_weight(f, a, '{"weight": 5'), 400, "the body is not valid JSON"),
        (put_weight(f, a, ''), 400, "the body is empty"),
        (put_weight(f, a, '{"weight": 3}', token=None), 401, "missing token"),
        (put_weight(f, a, "x" * (MAX_BODY + 1)), 413, f"at most {MAX_BODY} are accepted"),
        (curl(f, f"/api/v1/pools/web/backends/{a}/weight", method="POST", body="{}"), 405,
         "use PUT"),
    ]
    for reply, status, message in cases:
        check(reply.status == status, f"expected {status} ({message}), got {reply}", f)
        check(message in reply.error(), f"expected message with {message!r}: {reply}")
    check(cases[0][0].headers.get("www-authenticate", "").startswith("Bearer"),
          f"401 without WWW-Authenticate: {cases[0][0].headers}")
    check(cases[5][0].headers.get("allow") == "GET, HEAD", f"405 Allow: {cases[5][0].headers}")
    # None of the refused weights landed.
    check(backend_status(f, "web", a)["weight"] == 1, "a refused weight was applied")

    # The token may come in the query only to open the page (a browser cannot set a header);
    # elsewhere it stays out of URLs. The unix socket needs none.
    check(curl(f, f"/?token={TOKEN}", token=None).status == 200, "query token opens the page")
    check(curl(f, "/?token=nope", token=None).status == 401, "wrong query token")
    check(curl(f, f"/api/v1/status?token={TOKEN}", token=None).status == 401,
          "the API does not take the token from the query")
    check(curl(f, f"/api/v1/pools/web/backends/{a}/drain?token={TOKEN}", method="POST",
               token=None).status == 401, "nor do actions")
    check(curl(f, "/api/v1/status", unix=True, token=None).status == 200, "unix without token")


# Requests curl would not send: garbage, oversized headers, a request cut short, a stalled
# request, bad chunking, pipelining, 100-continue. Each gets its status and message.
def test_malformed_http_over_raw_sockets():
    s = setup()
    f = s["f"]
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    a = s["a"].address.encode()

    r = raw_request(f, b"HELLO WORLD\r\n\r\n")
    check(r is not None and r.status == 400 and "malformed HTTP request" in r.error(),
          f"garbage: {r}", f)
    r = raw_request(f, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    check(r.status == 431 and "over 16384 bytes" in r.error(), f"big header: {r}")
    r = raw_request(f, b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(70))
                    + b"\r\n")
    check(r.status == 431 and "more than 64 headers" in r.error(), f"many headers: {r}")
    r = raw_request(f, b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n", shut=True)
    check(r.status == 400 and "ended before it was complete" in r.error(), f"cut short: {r}")

    t0 = time.monotonic()
    r = raw_request(f, b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
    took = time.monotonic() - t0
    check(r.status == 408 and "no complete request within 700 ms" in r.error(),
          f"stalled request: {r}")
    check(0.6 < took < 5, f"408 after {took:.2f}s, configured 0.7s")

    r = raw_request(f, b"PUT /api/v1/pools/web/backends/" + a + b"/weight HTTP/1.1\r\n" + auth +
                    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")
    check(r.status == 400 and "chunk size" in r.error(), f"bad chunk: {r}")
    r = raw_request(f, b"PUT /api/v1/pools/web/backends/" + a + b"/weight HTTP/1.1\r\n" + auth +
                    b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"wei\r\n8\r\nght\": 4}\r\n0\r\n\r\n")
    check(r.status == 200 and r.json()["backend"]["weight"] == 4, f"chunked weight: {r}")
    r = raw_request(f, b"PUT /api/v1/pools/web/backends/" + a + b"/weight HTTP/1.1\r\n" + auth +
                    b"Transfer-Encoding: chunked\r\n\r\n" + b"1000\r\n" + b"x" * 4096 +
                    b"\r\n1\r\nx\r\n0\r\n\r\n")
    check(r.status == 413 and "over 4096 bytes" in r.error(), f"chunked too big: {r}")

    # Only the first of two pipelined requests is served; the answer closes the connection.
    r = raw_request(f, b"GET /api/v1/status HTTP/1.1\r\n" + auth + b"\r\nGET /nope HTTP/1.1\r\n"
                    + auth + b"\r\n")
    check(r.status == 200 and r.headers["connection"] == "close" and
          r.json()["pools"], f"pipelined: {r}")
    # HTTP/1.0 and HEAD.
    r = raw_request(f, b"HEAD /metrics HTTP/1.0\r\n" + auth + b"\r\n")
    check(r.status == 200 and r.body == "" and int(r.headers["content-length"]) > 100,
          f"HEAD: {r}")
    # Expect: 100-continue gets the interim answer, then the real one.
    s2 = socket.create_connection(("127.0.0.1", f.admin_port), timeout=10)
    s2.sendall(b"PUT /api/v1/pools/web/backends/" + a + b"/weight HTTP/1.1\r\n" + auth +
               b"Content-Length: 13\r\nExpect: 100-continue\r\n\r\n")
    interim = s2.recv(100)
    check(interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), f"interim {interim!r}")
    s2.sendall(b'{"weight": 1}')
    final = b""
    while True:
        part = s2.recv(65536)
        if not part:
            break
        final += part
    s2.close()
    check(b"HTTP/1.1 200 OK" in final, f"after 100-continue: {final[:200]!r}")
    r = raw_request(f, b"GET / HTTP/1.1\r\nExpect: magic\r\n\r\n", unix=True)
    check(r.status == 400 and "Expect: magic is not supported" in r.error(), f"Expect: {r}")
    check(backend_status(f, "web", s["a"].address)["weight"] == 1, "weight not restored")


# Past max_connections an admin client gets 503, and the endpoint recovers once they close.
def test_connection_limit():
    s = setup()
    f = s["f"]
    idle = [socket.create_connection(("127.0.0.1", f.admin_port), timeout=5)
            for _ in range(MAX_CONNECTIONS)]
    try:
        # Idle connections are answered 408 after request_timeout (0.7 s); the backlog is
        # accepted in order, so this one arrives while all of them are still open.
        r = raw_request(f, f"GET /api/v1/status HTTP/1.1\r\nAuthorization: Bearer {TOKEN}"
                        f"\r\n\r\n".encode())
        check(r is not None and r.status == 503 and "too many admin connections" in r.error(),
              f"over the limit: {r}", f)
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: curl(f, "/api/v1/status").status == 200, what="recovery after 503")


# A second Fulcrum cannot take over the live admin socket; a stale socket file is replaced.
def test_socket_ownership():
    s = setup()
    f = s["f"]
    d = tmpdir("fulcrum-admin-second-")
    config_path = os.path.join(d, "second.toml")
    with open(config_path, "w") as fh:
        fh.write(f"""[admin]
socket = "{f.socket_path}"

[[listener]]
name = "x"
bind = "127.0.0.1:0"
pool = "x"

[pool.x]
backends = [{{ address = "{s['a'].address}" }}]
""")
    p = subprocess.run([FULCRUM_BIN, "run", "-c", config_path], capture_output=True, timeout=30)
    out = (p.stdout + p.stderr).decode()
    check(p.returncode == 3 and "another process" in out and f.socket_path in out,
          f"second fulcrum on the live socket: exit {p.returncode}\n{out}")
    check(curl(f, "/api/v1/status", unix=True).status == 200, "first fulcrum lost its socket")

    stale = os.path.join(d, "stale.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(stale)
    sock.close()  # The file stays; nobody accepts on it.
    g = Fulcrum(f"""[admin]
socket = "{stale}"

[[listener]]
name = "x"
bind = "127.0.0.1:0"
pool = "x"

[pool.x]
backends = [{{ address = "{s['a'].address}" }}]
""")
    g.wait_log(r"admin listening socket=")
    mode = os.stat(stale).st_mode & 0o777
    check(mode == 0o600, f"socket mode {oct(mode)}")
    check(g.stop() == 0, "second fulcrum exit code")
    check(not os.path.exists(stale), "socket file left behind at exit")


# After everything above Fulcrum still serves admin and data traffic and stops cleanly.
def test_still_serving_and_clean_exit():
    s = setup()
    f = s["f"]
    check(curl(f, "/api/v1/status").status == 200, "status after the abuse", f)
    check(one(f, "final") in {"a", "b", "c"}, "data path after the abuse")
    check(f.stop() == 0, "fulcrum exit code", f)
    check(not os.path.exists(f.socket_path), "admin socket left behind")
    for line in f.log().splitlines():
        check("ERROR: AddressSanitizer" not in line and "runtime error:" not in line,
              f"sanitizer report: {line}")


if __name__ == "__main__":
    run_tests(globals())
