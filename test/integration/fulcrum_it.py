"""Shared helpers for Fulcrum's integration tests.

Each test_*.py file is one ctest test. It starts real servers and a real fulcrum process on
loopback, with ports taken from the kernel, and cleans up every process it started (by PID)
and every temp directory, even when an assertion fails.

Environment (set by ctest): FULCRUM_BIN, FULCRUM_BUILD_DIR, FULCRUM_SOURCE_DIR.
"""

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

FULCRUM_BIN = os.environ.get("FULCRUM_BIN", "fulcrum")
BUILD_DIR = os.environ.get("FULCRUM_BUILD_DIR", ".")
SOURCE_DIR = os.environ.get("FULCRUM_SOURCE_DIR", ".")
DEMO_BACKEND = os.path.join(BUILD_DIR, "bench", "fulcrum-demo-backend")

_procs = []
_tmpdirs = []


def _cleanup():
    # SIGTERM first, so servers with children (nginx's master) take their workers down with
    # them; SIGKILL whatever is still there after a short grace.
    alive = [p for p in reversed(_procs) if p.poll() is None]
    for p in alive:
        try:
            p.terminate()
        except Exception:
            pass
    deadline = time.monotonic() + 2
    for p in alive:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:
                pass
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def tmpdir(prefix="fulcrum-it-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


def free_port(host="127.0.0.1", kind=socket.SOCK_STREAM):
    """A port the kernel just handed out; free again when returned (tiny reuse race)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_tcp_and_udp(host="127.0.0.1", attempts=50):
    """A port free for both TCP and UDP, for servers that bind both (nsd).

    The TCP side is chosen by the kernel without SO_REUSEADDR, so it also avoids ports held
    by connections in TIME_WAIT, which a busy test run leaves by the thousand across the
    ephemeral range; the UDP side is then checked on the same number."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(attempts):
        with socket.socket(family, socket.SOCK_STREAM) as t:
            t.bind((host, 0))
            port = t.getsockname()[1]
            with socket.socket(family, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((host, port))
                except OSError:
                    continue
                return port
    raise AssertionError(f"no port free for both TCP and UDP on {host} after {attempts} tries")


def spawn(args, log_path=None, **kw):
    """Starts a process that is killed at exit; its stdout+stderr go to log_path."""
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         **kw)
    _procs.append(p)
    return p


def wait_port(host, port, timeout=10.0):
    deadline = time.time() + timeout
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def stop(p, sig=signal.SIGTERM, timeout=10.0):
    """Signals a process we started and waits; returns its exit code."""
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


class Fulcrum:
    """A fulcrum process running the given TOML config.

    Listeners should bind port 0; addr(name) returns the port the kernel chose, read from the
    `listener started` line that fulcrum logs once a listener is ready.
    """

    _started = re.compile(r"listener started listener=(\S+) address=(\S+)")

    def __init__(self, config_text, extra_args=(), wait=True, timeout=15.0):
        self.dir = tmpdir("fulcrum-run-")
        self.config_path = os.path.join(self.dir, "fulcrum.toml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.lines = []
        self.addresses = {}
        self._cv = threading.Condition()
        self.proc = subprocess.Popen([FULCRUM_BIN, "run", "-c", self.config_path, *extra_args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        _procs.append(self.proc)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if wait:
            expected = len(re.findall(r"^\s*\[\[listener\]\]", config_text, re.M))
            self.wait_for(lambda: len(self.addresses) >= expected, timeout,
                          f"{expected} listener(s) to start")

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if os.environ.get("FULCRUM_IT_VERBOSE"):
                print("fulcrum| " + line, flush=True)
            with self._cv:
                self.lines.append(line)
                m = self._started.search(line)
                if m:
                    self.addresses[m.group(1)] = m.group(2)
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_for(self, predicate, timeout=10.0, what="condition"):
        deadline = time.time() + timeout
        with self._cv:
            while not predicate():
                left = deadline - time.time()
                if left <= 0 or (self.proc.poll() is not None and not predicate()):
                    raise AssertionError(f"fulcrum: timed out waiting for {what}; "
                                         f"exit={self.proc.poll()}\n" + self.log())
                self._cv.wait(min(left, 0.2))

    def wait_log(self, pattern, timeout=10.0):
        """Waits for a log line matching the regex; returns the match."""
        rx = re.compile(pattern)
        found = []

        def pred():
            for line in self.lines:
                m = rx.search(line)
                if m:
                    found.append(m)
                    return True
            return False

        self.wait_for(pred, timeout, f"log line /{pattern}/")
        return found[0]

    def count_log(self, pattern):
        rx = re.compile(pattern)
        with self._cv:
            return sum(1 for line in self.lines if rx.search(line))

    def addr(self, listener):
        """(host, port) of a started listener; host without brackets."""
        a = self.addresses[listener]
        host, port = a.rsplit(":", 1)
        return host.strip("[]"), int(port)

    def log(self):
        with self._cv:
            return "\n".join(self.lines)

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        code = stop(self.proc, sig, timeout)
        self._reader.join(timeout=5)
        return code


def split_addr(text):
    """("127.0.0.1", 80) from "127.0.0.1:80"; ("::1", 80) from "[::1]:80"."""
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


class DemoBackend:
    """A fulcrum-demo-backend process (bench/demo_backend.cpp).

    tcp and udp list addresses such as "127.0.0.1:0" or "[::1]:0" (port 0: the kernel picks);
    after start, self.tcp and self.udp hold the (host, port) pairs really bound, in that order,
    read from the backend's ready line.
    """

    _ready = re.compile(r"demo backend (\S+) listening tcp=(\S+) udp=(\S+)")

    def __init__(self, name, tcp=(), udp=(), timeout=10.0):
        self.name = name
        self.dir = tmpdir("fulcrum-demo-")
        self.log_path = os.path.join(self.dir, "backend.log")
        args = [DEMO_BACKEND, "--name", name]
        for a in tcp:
            args += ["--tcp", a]
        for a in udp:
            args += ["--udp", a]
        self.proc = spawn(args, self.log_path)

        deadline = time.time() + timeout
        while True:
            m = self._ready.search(self.log())
            if m:
                break
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"demo backend {name} did not start "
                                     f"(exit={self.proc.poll()}):\n{self.log()}")
            time.sleep(0.02)
        self.tcp = [] if m.group(2) == "-" else [split_addr(a) for a in m.group(2).split(",")]
        self.udp = [] if m.group(3) == "-" else [split_addr(a) for a in m.group(3).split(",")]

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        return stop(self.proc, sig, timeout)


def run_tests(namespace):
    """Runs every test_* function in namespace in order; exits 1 if any failed."""
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    failed = 0
    for name, fn in tests:
        t0 = time.time()
        try:
            fn()
            print(f"PASS {name} ({time.time() - t0:.2f}s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {name} ({time.time() - t0:.2f}s)", flush=True)
            traceback.print_exc()
    print(f"{len(tests) - failed} passed, {failed} failed", flush=True)
    _cleanup()
    sys.exit(1 if failed or not tests else 0)
