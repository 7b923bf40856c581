"""Timeouts and limits in Fulcrum: connect_timeout, idle_timeout and max_connections.

    client ──► fulcrum (127.0.0.1:0) ──► blackhole (listen backlog full, never accepts)
                                      └► Python echo backend
"""

import socket
import threading
import time

from backends import (Backend, check, connect, line_handler, recv_exact, recv_line, request,
                      tcp_config, try_connect, wait_closed)
from fulcrum_it import Fulcrum, run_tests


def blackhole():
    """A listener whose accept queue is full, so the kernel drops further SYNs: a connect to
    it neither succeeds nor fails until the connecting side gives up.

    Returns (backend, fillers); the fillers keep the queue full and must stay open.
    """
    hole = Backend(host="127.0.0.1", backlog=0, accept=False, name="blackhole")
    fillers = []
    for _ in range(3):
        f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", hole.port))
        fillers.append(f)
    time.sleep(0.1)
    probe = try_connect(("127.0.0.1", hole.port), timeout=0.5)
    if probe != "timeout":
        raise AssertionError(f"test set-up: a connect to the full listener gave '{probe}', "
                             "expected it to hang (SYN dropped)")
    return hole, fillers


def echo_reporting(conn, backend):
    """Echoes until the client side ends, then reports how it ended ('eof' or 'reset')."""
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                backend.report("eof")
                return
            conn.sendall(data)
    except ConnectionResetError:
        backend.report("reset")


def ping(s, i):
    msg = f"ping {i}\n".encode()
    s.sendall(msg)
    got = recv_exact(s, len(msg))
    if got != msg:
        raise AssertionError(f"sent {msg!r}, echoed {got!r}")


# A backend whose SYNs go unanswered is abandoned after connect_timeout and the request is
# retried on the good backend; the client only sees the delay.
def test_connect_timeout_then_retry():
    hole, fillers = blackhole()
    good = Backend(line_handler, name="good")
    fulcrum = Fulcrum(tcp_config([hole, good], retries=2,
                                 listener_opts={"connect_timeout": "300ms"}))
    timings = []
    # Round robin starts somewhere; within four connections at least one tries the hole first.
    for i in range(4):
        t0 = time.monotonic()
        try:
            s = connect(fulcrum.addr("front"), timeout=5)
            name = request(s, f"request {i}")
            s.close()
        except Exception as e:
            check(False, f"connection {i} failed instead of being retried on the good backend "
                  f"(timings so far {timings}): {e!r}", fulcrum)
        secs = time.monotonic() - t0
        timings.append(round(secs, 3))
        check(name == "good", f"connection {i} answered by {name}", fulcrum)
    print(f"  request times (s): {timings}")
    slow = [t for t in timings if t >= 0.3]
    check(slow, f"no request took >= connect_timeout (300 ms), so none went through the "
          f"blackhole first: {timings}", fulcrum)
    check(max(timings) < 1.0, f"a request took {max(timings):.2f}s: Fulcrum waited well past "
          f"connect_timeout=300ms before retrying ({timings})", fulcrum)
    good.check_no_errors()
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    for f in fillers:
        f.close()
    hole.kill()
    good.kill()


# With idle_timeout = 500ms an idle session is closed after about 0.5 s, while one that talks
# every 100 ms for 1.5 s stays open (and is closed once it falls silent too).
def test_idle_timeout():
    backend = Backend(echo_reporting)
    fulcrum = Fulcrum(tcp_config([backend], listener_opts={"idle_timeout": "500ms"}))
    addr = fulcrum.addr("front")

    idle = connect(addr, timeout=5)
    ping(idle, 0)
    idle_since = time.monotonic()
    idle_end = {}

    def watch_idle():
        idle_end["kind"], _ = wait_closed(idle, 5.0)
        idle_end["secs"] = time.monotonic() - idle_since

    watcher = threading.Thread(target=watch_idle)
    watcher.start()

    busy = connect(addr, timeout=5)
    t0 = busy_since = time.monotonic()
    i = 0
    try:
        while time.monotonic() - t0 < 1.5:
            ping(busy, i)
            busy_since = time.monotonic()
            i += 1
            time.sleep(0.1)
    except Exception as e:
        check(False, f"the busy session broke after {time.monotonic() - t0:.2f}s and {i} "
              f"exchanges despite talking every 100 ms: {e!r}", fulcrum)
    watcher.join(timeout=6)

    check(idle_end.get("kind") == "eof", f"idle session: the client saw "
          f"'{idle_end.get('kind')}' after {idle_end.get('secs', 0):.2f}s, expected EOF",
          fulcrum)
    check(0.45 <= idle_end["secs"] <= 1.2, f"idle session closed after "
          f"{idle_end['secs']:.2f}s; idle_timeout is 0.5 s", fulcrum)
    check(backend.result(what="idle session end") in ("eof", "reset"),
          "idle session: the backend side was not closed", fulcrum)

    kind, secs = wait_closed(busy, 5.0)
    secs = time.monotonic() - busy_since
    check(kind == "eof" and 0.45 <= secs <= 1.2, f"busy session after falling silent: "
          f"'{kind}' after {secs:.2f}s, expected EOF after about 0.5 s", fulcrum)
    idle.close()
    busy.close()
    backend.check_no_errors()
    print(f"  idle session closed after {idle_end['secs']:.2f}s; busy one survived {i} "
          f"exchanges over 1.5 s and closed {secs:.2f}s after its last")
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()


def one_way(conn, backend):
    """'push\n': sends a tick every 100 ms for 1.5 s. 'sink\n': reads and counts, silent."""
    mode = recv_line(conn)
    if mode == b"push\n":
        for i in range(15):
            conn.sendall(b"tick\n")
            time.sleep(0.1)
        backend.report(("push", "done"))
        return
    got = 0
    while data := conn.recv(65536):
        got += len(data)
    backend.report(("sink", got))


# Traffic in one direction only is not idleness: a session where only the backend sends, and
# one where only the client sends, each every 100 ms for 1.5 s, both survive idle_timeout.
def test_idle_timeout_one_way_traffic():
    backend = Backend(one_way)
    fulcrum = Fulcrum(tcp_config([backend], listener_opts={"idle_timeout": "500ms"}))
    addr = fulcrum.addr("front")

    push = connect(addr, timeout=5)
    push.sendall(b"push\n")
    sink = connect(addr, timeout=5)
    sink.sendall(b"sink\n")
    received = {}

    def read_push():
        data = b""
        try:
            while len(data) < 15 * 5:
                part = push.recv(4096)
                if not part:
                    break
                data += part
        except OSError as e:
            received["error"] = repr(e)
        received["data"] = data

    reader = threading.Thread(target=read_push)
    reader.start()
    sent = 0
    try:
        for i in range(15):
            sink.sendall(b"upload\n")
            sent += 7
            time.sleep(0.1)
    except OSError as e:
        check(False, f"client-to-backend-only session broke after {sent} bytes: {e!r}",
              fulcrum)
    reader.join(timeout=5)
    sink.shutdown(socket.SHUT_WR)
    results = dict(backend.result(what="one-way result") for _ in range(2))
    push.close()
    sink.close()
    check(received.get("data") == b"tick\n" * 15, f"backend-to-client-only session: the "
          f"client got {len(received.get('data', b''))} of {15 * 5} bytes "
          f"({received.get('error', 'then EOF')}); Fulcrum closed it as idle?", fulcrum)
    check(results.get("sink") == sent, f"client-to-backend-only session: backend counted "
          f"{results.get('sink')} of {sent} bytes; Fulcrum closed it as idle?", fulcrum)
    backend.check_no_errors()
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()


# max_connections = 5 (across two workers): a sixth concurrent connection is closed at once,
# the five keep working, and closing one makes room for a new one.
def test_max_connections():
    backend = Backend(line_handler, name="echo")
    fulcrum = Fulcrum(tcp_config([backend], workers=2,
                                 listener_opts={"max_connections": 5}))
    addr = fulcrum.addr("front")
    conns = []
    for i in range(5):
        s = connect(addr, timeout=5)
        try:
            request(s, f"open {i}")
        except Exception as e:
            check(False, f"connection {i + 1} of 5 (within max_connections) failed: {e!r}",
                  fulcrum)
        conns.append(s)

    def expect_refused(label):
        t0 = time.monotonic()
        extra = connect(addr, timeout=5)
        kind, _ = wait_closed(extra, 2.0)
        secs = time.monotonic() - t0
        extra.close()
        check(kind in ("eof", "reset") and secs < 0.5, f"{label}: with 5 connections open "
              f"and max_connections=5, a new one gave '{kind}' after {secs:.2f}s; expected "
              "Fulcrum to close it at once", fulcrum)

    expect_refused("6th connection")
    for i, s in enumerate(conns):
        try:
            request(s, f"still {i}")
        except Exception as e:
            check(False, f"connection {i + 1} broke after the 6th was refused: {e!r}", fulcrum)

    conns.pop(0).close()
    # The slot frees when Fulcrum has seen the close; give it a short, bounded moment.
    t0 = time.monotonic()
    replacement, last = None, None
    while replacement is None and time.monotonic() - t0 < 2.0:
        s = connect(addr, timeout=5)
        try:
            request(s, "replacement")
            replacement = s
        except Exception as e:
            last = e
            s.close()
            time.sleep(0.05)
    check(replacement is not None, f"after one of 5 connections closed, no new connection "
          f"was served within 2 s; last error {last!r}", fulcrum)
    conns.append(replacement)
    expect_refused("6th connection after the replacement")
    for s in conns:
        s.close()
    backend.check_no_errors()
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()


run_tests(globals())
