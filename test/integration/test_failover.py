"""Failover through Fulcrum: dead backends are skipped by retrying, and a pool with none left
closes clients at once and says so once.

    client ──► fulcrum (127.0.0.1:0, round_robin, retries = 2) ──► dead  (nothing listening)
                                                                 ├► live1 (killed mid-run)
                                                                 └► live2

One test walks through the phases in order, because each phase starts from the state the
previous one left: one backend down at start, a second killed under load, all down, one back.
"""

import time

from backends import (Backend, check, connect, line_handler, request, tcp_config,
                      unused_address, wait_closed)
from fulcrum_it import Fulcrum, run_tests

NO_BACKEND = r"no backend available"
CLOSE_AT_ONCE = 0.100  # Seconds within which a client must be closed when no backend is up.


def one_request(fulcrum, i):
    """One new connection with one request/response; returns the backend name or raises."""
    s = connect(fulcrum.addr("front"), timeout=5)
    try:
        return request(s, f"request {i}")
    finally:
        s.close()


def run_sequential(fulcrum, count=None, seconds=None, at=None, action=None):
    """Opens new connections one after another, each doing one request.

    Stops after `count` connections or `seconds`; calls action() once between two
    connections as soon as `at` seconds have passed. Returns (served, failures, after) where
    served maps backend name -> count, after the names that served once action() ran.
    """
    served, failures, after = {}, [], {}
    acted = action is None
    t0 = time.monotonic()
    i = 0
    while (count is None or i < count) and (seconds is None or time.monotonic() - t0 < seconds):
        if not acted and time.monotonic() - t0 >= at:
            action()
            acted = True
        try:
            name = one_request(fulcrum, i)
            served[name] = served.get(name, 0) + 1
            if acted and action is not None:
                after[name] = after.get(name, 0) + 1
        except Exception as e:
            failures.append(f"connection {i}: {e!r}")
        i += 1
    return served, failures, after


def expect_closed_at_once(fulcrum, n, label):
    """n new connections while no backend is up: each must be closed within CLOSE_AT_ONCE."""
    slow = []
    worst = 0.0
    for i in range(n):
        t0 = time.monotonic()
        s = connect(fulcrum.addr("front"), timeout=5)
        kind, _ = wait_closed(s, 3.0)
        secs = time.monotonic() - t0
        s.close()
        worst = max(worst, secs)
        if kind not in ("eof", "reset") or secs > CLOSE_AT_ONCE:
            slow.append(f"#{i}: {kind} after {secs * 1000:.0f} ms")
    print(f"  {label}: {n} connections closed, slowest after {worst * 1000:.1f} ms")
    check(not slow, f"{label}: with no backend up, clients must be closed (EOF or RST) within "
          f"{CLOSE_AT_ONCE * 1000:.0f} ms; these were not: {', '.join(slow)}", fulcrum)


def wait_recovered(fulcrum, timeout=10.0):
    """Seconds until a new connection gets an answer again; fails after `timeout`."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        try:
            one_request(fulcrum, -1)
            return time.monotonic() - t0
        except Exception as e:
            last = e
            time.sleep(0.1)
    check(False, f"no successful connection within {timeout}s after a backend came back; "
          f"last error {last!r}", fulcrum)


def settle_log(fulcrum, pattern, expected, timeout=5.0):
    """Waits until `expected` lines match (or timeout), then a little longer, and counts."""
    deadline = time.monotonic() + timeout
    while fulcrum.count_log(pattern) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # Let any duplicate line arrive before counting.
    return fulcrum.count_log(pattern)


# One dead backend at start, one killed under load, all dead, one back, all dead again.
def test_failover_phases():
    dead = unused_address()
    live1 = Backend(line_handler, name="live1")
    live2 = Backend(line_handler, name="live2")
    fulcrum = Fulcrum(tcp_config([dead, live1, live2], retries=2,
                                 listener_opts={"connect_timeout": "1s"}))

    # Phase 1: one of three addresses has nothing listening; retries hide it completely.
    served, failures, _ = run_sequential(fulcrum, count=300)
    print(f"  phase 1: 300 connections served by {served}")
    check(not failures, f"phase 1: {len(failures)} of 300 connections failed with one backend "
          f"down at start: {failures[:5]}", fulcrum)
    check(set(served) == {"live1", "live2"} and min(served.values()) >= 60,
          f"phase 1: round_robin should share 300 connections between live1 and live2, "
          f"got {served}", fulcrum)

    # Phase 2: live1 dies while new connections keep coming; none of them may fail.
    served, failures, after = run_sequential(fulcrum, seconds=3.0, at=1.0,
                                             action=lambda: live1.kill())
    total = sum(served.values()) + len(failures)
    print(f"  phase 2: {total} connections in 3 s, served by {served}, after the kill {after}")
    check(not failures, f"phase 2: {len(failures)} of {total} new connections failed after "
          f"live1 was killed: {failures[:5]}", fulcrum)
    check(set(after) == {"live2"} and after["live2"] >= 10,
          f"phase 2: after the kill only live2 can answer, got {after}", fulcrum)
    check(fulcrum.count_log(NO_BACKEND) == 0, "phases 1-2: 'no backend available' logged "
          "although a backend was always up", fulcrum)

    # Phase 3: all down. Clients are closed at once; the transition is logged once.
    live2.kill()
    expect_closed_at_once(fulcrum, 20, "phase 3")
    lines = settle_log(fulcrum, NO_BACKEND, 1)
    check(lines == 1, f"phase 3: 20 connections while all backends were down gave {lines} "
          f"lines matching /{NO_BACKEND}/; expected exactly 1 (one per transition)", fulcrum)

    # Phase 4: a backend comes back on live1's address; Fulcrum uses it again.
    revived = Backend(line_handler, port=live1.port, name="revived")
    secs = wait_recovered(fulcrum)
    served, failures, _ = run_sequential(fulcrum, count=20)
    print(f"  phase 4: recovered after {secs:.2f}s; then served by {served}")
    check(not failures and served == {"revived": 20},
          f"phase 4: after recovery 20 connections gave {served}, failures {failures[:5]}",
          fulcrum)

    # Phase 5: down again; that is a second transition and a second line, no more.
    revived.kill()
    expect_closed_at_once(fulcrum, 20, "phase 5")
    lines = settle_log(fulcrum, NO_BACKEND, 2)
    check(lines == 2, f"phase 5: after a second all-down transition, {lines} lines match "
          f"/{NO_BACKEND}/; expected exactly 2", fulcrum)

    for b in (live1, live2, revived):
        b.check_no_errors()
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)


run_tests(globals())
