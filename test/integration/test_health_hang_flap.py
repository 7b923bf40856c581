"""Active health checks against backends that fail the ways real ones do: a process that hangs
(SIGSTOP: the kernel still accepts, nobody answers), one that dies (SIGKILL: refused), a
listener that goes away while the process lives, and a backend that flaps.

    client ──► fulcrum (round_robin, tcp_expect PING → +PONG) ──► a (the one we break)
                                                              └► b (always healthy)

Each phase measures how long Fulcrum took to log the transition, from the moment the test
broke or repaired the backend, and compares it with the bound the config implies
(real_servers.detection_bound). The figures are printed for the record.
"""

import os
import signal
import socket
import threading
import time

from backends import Backend, check, recv_line
from fulcrum_it import Fulcrum, run_tests
from real_servers import (Redis, RespConn, detection_bound, health_config, health_events,
                          require_tools, restart_redis, stop_checked, wait_health)

SLACK = 0.25  # Seconds allowed beyond the bound: process wake-ups and logging on 2 busy cores.

HEALTH = {
    "type": "tcp_expect",
    "interval": "400ms",
    "fast_interval": "100ms",
    "timeout": "250ms",
    "rise": 3,
    "fall": 2,
    "send": "PING\r\n",
    "expect": "+PONG",
    "match": "prefix",
}

FIGURES = []


def record(what, seconds, bound):
    FIGURES.append((what, seconds, bound))
    print(f"  {what}: {seconds * 1000:.0f} ms (bound {bound * 1000:.0f} ms)", flush=True)


def redis_port_via(fulcrum):
    """The tcp_port of the redis-server a new connection through Fulcrum reaches."""
    conn = RespConn(*fulcrum.addr("front"), timeout=5)
    try:
        text = conn.call("INFO", "server").decode()
    finally:
        conn.close()
    for line in text.splitlines():
        if line.startswith("tcp_port:"):
            return int(line.split(":", 1)[1])
    raise AssertionError(f"INFO server without tcp_port: {text[:200]!r}")


def measure(fulcrum, backend, state, action, phase, what, detail=None):
    """Runs action(), waits for the transition and checks its delay against the bound."""
    bound = detection_bound(HEALTH, SLACK, phase)
    t0 = time.time()
    action()
    event = wait_health(fulcrum, backend, state, t0, timeout=bound + 10)
    record(what, event.time - t0, bound)
    check(event.time - t0 <= bound,
          f"{what}: Fulcrum saw it after {event.time - t0:.3f}s, bound {bound:.3f}s "
          f"({event.line})", fulcrum)
    if detail is not None:
        check(event.fields.get("detail") in detail,
              f"{what}: detail {event.fields.get('detail')!r}, expected one of {detail}",
              fulcrum)
    return event


# A redis-server stopped with SIGSTOP still completes handshakes (the kernel does that) but
# never answers: only an answer-checking probe can see it. Killed, it refuses; restarted, it
# comes back; every transition within the bound, and traffic avoids it while it is down.
def test_redis_hang_and_kill():
    require_tools("redis-server")
    a, b = Redis(), Redis()
    fulcrum = Fulcrum(health_config(
        [("front", "127.0.0.1:0", "redis")],
        {"redis": {"algorithm": "round_robin", "backends": [a.address, b.address],
                   "health": HEALTH}}))
    try:
        ports = {redis_port_via(fulcrum) for _ in range(4)}
        check(ports == {a.port, b.port}, f"both backends should take traffic, got {ports}",
              fulcrum)

        measure(fulcrum, a.address, "down", lambda: os.kill(a.proc.pid, signal.SIGSTOP),
                "fall", "hang (SIGSTOP) detected", detail=("timeout",))
        ports = [redis_port_via(fulcrum) for _ in range(6)]
        check(set(ports) == {b.port}, f"a hung backend must get no new sessions: {ports}",
              fulcrum)

        measure(fulcrum, a.address, "up", lambda: os.kill(a.proc.pid, signal.SIGCONT),
                "rise", "hang recovery (SIGCONT)")
        check(health_events(fulcrum, a.address, "up")[-1].fields.get("passes") ==
              str(HEALTH["rise"]), "a backend comes back after exactly rise passes", fulcrum)

        a.control.close()
        measure(fulcrum, a.address, "down", lambda: os.kill(a.proc.pid, signal.SIGKILL),
                "fall", "kill (SIGKILL) detected", detail=("refused", "reset"))
        a.proc.wait(timeout=5)
        ports = [redis_port_via(fulcrum) for _ in range(6)]
        check(set(ports) == {b.port}, f"a dead backend must get no new sessions: {ports}",
              fulcrum)

        measure(fulcrum, a.address, "up", lambda: restart_redis(a), "rise",
                "kill recovery (restart)")
        deadline = time.time() + 5
        ports = set()
        while ports != {a.port, b.port} and time.time() < deadline:
            ports.add(redis_port_via(fulcrum))
        check(ports == {a.port, b.port}, f"a recovered backend takes traffic again: {ports}",
              fulcrum)
        stop_checked(fulcrum)
    finally:
        fulcrum.stop()
        if a.proc.poll() is None:
            os.kill(a.proc.pid, signal.SIGCONT)  # A stopped process would ignore SIGTERM.
        a.stop()
        b.stop()


class Flapper:
    """A tcp_expect target whose probe answer the test scripts: "pass", "fail", or "alternate"
    (pass, fail, pass, ... per probe). Client connections (anything but PING) get the
    backend's name, so the test sees where traffic went."""

    def __init__(self, name):
        self.name = name
        self.mode = "pass"
        self.answers = []  # True/False per probe answered.
        self.clients = 0
        self._lock = threading.Lock()
        self.backend = Backend(self._handle, name=name)

    @property
    def address(self):
        return self.backend.address

    def probes(self):
        with self._lock:
            return len(self.answers)

    def _handle(self, conn, _backend):
        line = recv_line(conn)
        if line.strip() != b"PING":
            with self._lock:
                self.clients += 1
            conn.sendall(self.name.encode() + b"\n")
            return
        with self._lock:
            if self.mode == "alternate":
                ok = len(self.answers) % 2 == 0
            else:
                ok = self.mode == "pass"
            self.answers.append(ok)
        conn.sendall(b"+PONG\r\n" if ok else b"-ERR flapping\r\n")
        try:
            conn.recv(1)  # Keep the connection until the prober closes it.
        except OSError:
            pass


def client_names(fulcrum, n):
    names = []
    for _ in range(n):
        with socket.create_connection(fulcrum.addr("front"), timeout=5) as s:
            s.sendall(b"HELLO\r\n")
            names.append(recv_line(s).strip().decode())
    return names


def wait_probes(flapper, count, timeout=20.0):
    target = flapper.probes() + count
    deadline = time.time() + timeout
    while flapper.probes() < target:
        assert time.time() < deadline, f"{flapper.name}: fewer than {count} probes in {timeout}s"
        time.sleep(0.02)


# A backend whose probes alternate pass/fail must neither come up (it never passes rise
# times in a row) nor, once up, go down (it never fails fall times in a row); traffic never
# reaches it while it is held down, and it returns after exactly rise passes.
def test_flapping_backend_is_held_down():
    flapper, steady = Flapper("flapper"), Flapper("steady")
    flapper.mode = "fail"
    fulcrum = Fulcrum(health_config(
        [("front", "127.0.0.1:0", "pool")],
        {"pool": {"algorithm": "round_robin", "backends": [flapper.address, steady.address],
                  "health": HEALTH}}))
    try:
        wait_health(fulcrum, flapper.address, "down", 0, timeout=5)

        t_flap = time.time()
        flapper.mode = "alternate"
        wait_probes(flapper, 2)
        names = client_names(fulcrum, 20)
        wait_probes(flapper, 12)
        check(set(names) == {"steady"}, f"a flapping backend held down took traffic: {names}",
              fulcrum)
        check(flapper.clients == 0, "no client connection may reach the flapper", fulcrum)
        check(not health_events(fulcrum, flapper.address, "up", t_flap),
              "alternating passes must not bring the backend up", fulcrum)
        with flapper._lock:
            flips = sum(1 for x, y in zip(flapper.answers, flapper.answers[1:]) if x != y)
        check(flips >= 10, f"the probes should have alternated; answers={flapper.answers}",
              fulcrum)

        probes_before = flapper.probes()
        event = measure(fulcrum, flapper.address, "up", lambda: setattr(flapper, "mode", "pass"),
                        "rise", "flapper steady again, up")
        check(event.fields.get("passes") == str(HEALTH["rise"]),
              f"up after exactly rise passes: {event.line}", fulcrum)
        with flapper._lock:
            held = flapper.answers[:probes_before]
        runs = [len(r) for r in "".join("p" if x else "f" for x in held).split("f")]
        check(max(runs) < HEALTH["rise"], f"the flapper passed rise times in a row while "
              f"held down: {held}", fulcrum)
        names = set(client_names(fulcrum, 10))
        check(names == {"flapper", "steady"}, f"both take traffic again: {names}", fulcrum)

        t_up_flap = time.time()
        flapper.mode = "alternate"
        wait_probes(flapper, 12)
        check(not health_events(fulcrum, flapper.address, "down", t_up_flap),
              "single failures between passes must not take an up backend down", fulcrum)

        event = measure(fulcrum, flapper.address, "down",
                        lambda: setattr(flapper, "mode", "fail"), "fall", "flapper fails, down")
        check(event.fields.get("failures") == str(HEALTH["fall"]),
              f"down after exactly fall failures: {event.line}", fulcrum)
        stop_checked(fulcrum)
    finally:
        fulcrum.stop()
        flapper.backend.kill()
        steady.backend.kill()


# A listener that goes away while its process lives (refused), and comes back on the same
# port: the plain tcp check sees both within the bound.
def test_refused_listener():
    health = dict(HEALTH, type="tcp")
    for key in ("send", "expect", "match"):
        health.pop(key)
    a = Backend(lambda conn, b: conn.recv(1))
    port = a.port
    b = Backend(lambda conn, b: conn.recv(1))
    fulcrum = Fulcrum(health_config(
        [("front", "127.0.0.1:0", "pool")],
        {"pool": {"algorithm": "round_robin", "backends": [a.address, b.address],
                  "health": health}}))
    try:
        wait_health(fulcrum, a.address, "up", 0, timeout=5)
        bound = detection_bound(health, SLACK, "fall")
        t0 = time.time()
        a.kill()
        event = wait_health(fulcrum, a.address, "down", t0, timeout=bound + 10)
        record("refuse (listener closed) detected", event.time - t0, bound)
        check(event.time - t0 <= bound and event.fields.get("detail") == "refused",
              f"refusal seen late or wrongly: {event.line}", fulcrum)

        bound = detection_bound(health, SLACK, "rise")
        t0 = time.time()
        again = Backend(lambda conn, b: conn.recv(1), port=port)
        event = wait_health(fulcrum, again.address, "up", t0, timeout=bound + 10)
        record("refuse recovery (listener back)", event.time - t0, bound)
        check(event.time - t0 <= bound, f"recovery seen late: {event.line}", fulcrum)
        again.kill()
        stop_checked(fulcrum)
    finally:
        fulcrum.stop()
        b.kill()


def test_zz_print_figures():
    print("health detection figures (measured vs bound):")
    for what, seconds, bound in FIGURES:
        print(f"  {what:40s} {seconds * 1000:6.0f} ms   bound {bound * 1000:6.0f} ms")


if __name__ == "__main__":
    run_tests(globals())
