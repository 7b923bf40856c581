"""UDP backends, clients and config for the UDP integration tests (test_udp_*.py).

A UdpBackend is an in-process UDP server on loopback: one thread reads datagrams and answers
each with whatever the test's handler returns (no reply, one, or several). It records which
source addresses (Fulcrum's per-session sockets) sent it how many datagrams. kill() closes
its socket, so later datagrams to its port draw ICMP port unreachable, as a crashed server
would.
"""

import collections
import json
import os
import re
import select
import socket
import threading
import time
import traceback

from backends import fd_count  # noqa: F401 (re-exported for the UDP tests)

MAX_DATAGRAM = 65507

_backends = []


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def format_addr(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class UdpBackend:
    """handler(backend, data, source) returns a list of reply payloads (may be empty)."""

    def __init__(self, handler, host="127.0.0.1", name=None):
        self.handler = handler
        self.host = host
        self.sock = socket.socket(family(host), socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.name = name or format_addr(host, self.port)
        self.sources = collections.Counter()  # source (host, port) -> datagrams received
        self.received = 0
        self.sent = 0
        self.errors = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        _backends.append(self)

    @property
    def address(self):
        return format_addr(self.host, self.port)

    def _loop(self):
        while not self._stop:
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.1)
                if not ready:
                    continue
                data, source = self.sock.recvfrom(65535)
            except (OSError, ValueError):
                return
            with self._lock:
                self.received += 1
                self.sources[source[:2]] += 1
            try:
                replies = self.handler(self, data, source)
            except Exception:
                self.errors.append(traceback.format_exc())
                continue
            for reply in replies:
                try:
                    self.sock.sendto(reply, source)
                    with self._lock:
                        self.sent += 1
                except OSError as e:
                    self.errors.append(f"sendto {source}: {e}")

    def kill(self):
        """Closes the socket: the port answers ICMP unreachable from now on."""
        self._stop = True
        self._thread.join(timeout=5)
        self.sock.close()

    def check_no_errors(self):
        assert not self.errors, f"backend {self.name} handler failed:\n" + "\n".join(self.errors)


def stop_all_backends():
    for b in _backends:
        if not b._stop:
            b.kill()


def echo(_backend, data, _source):
    """Answers every datagram with itself, byte for byte."""
    return [data]


def named(_backend, data, _source):
    """Answers with the backend's name, a '|' and the request."""
    return [_backend.name.encode() + b"|" + data]


def udp_config(backends, listener="front", bind="127.0.0.1:0", algorithm="round_robin",
               workers=2, drain_timeout="2s", listener_opts=None, pool_opts=None,
               health_opts=None, log_level="info"):
    """TOML for one UDP listener in front of one pool of backends.

    backends: addresses or UdpBackends, or (backend, "extra inline keys") pairs such as
    (b, "health = { port = 8008 }"). health_opts fills [pool.<listener>.health].
    """
    q = json.dumps
    lines = ["[global]", f"workers = {workers}", f"log_level = {q(log_level)}",
             f"drain_timeout = {q(drain_timeout)}", "",
             "[[listener]]", f"name = {q(listener)}", f"bind = {q(bind)}",
             'protocol = "udp"', f"pool = {q(listener)}"]
    for k, v in (listener_opts or {}).items():
        lines.append(f"{k} = {q(v) if isinstance(v, str) else v}")
    lines += ["", f"[pool.{listener}]", f"algorithm = {q(algorithm)}"]
    for k, v in (pool_opts or {}).items():
        lines.append(f"{k} = {q(v) if isinstance(v, str) else v}")
    lines.append("backends = [")
    for b in backends:
        b, extra = b if isinstance(b, tuple) else (b, "")
        address = b.address if isinstance(b, UdpBackend) else b
        lines.append(f"  {{ address = {q(address)}{', ' + extra if extra else ''} }},")
    lines += ["]", ""]
    if health_opts:
        lines.append(f"[pool.{listener}.health]")
        for k, v in health_opts.items():
            lines.append(f"{k} = {q(v) if isinstance(v, str) else v}")
        lines.append("")
    return "\n".join(lines)


class Client:
    """A UDP client socket on loopback talking to one address."""

    def __init__(self, target, host=None, timeout=3.0):
        self.target = target
        self.sock = socket.socket(family(target[0]), socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((host or target[0], 0))
        self.sock.settimeout(timeout)

    @property
    def address(self):
        return self.sock.getsockname()[:2]

    def send(self, data):
        self.sock.sendto(data, self.target)

    def recv(self):
        """(payload, source) of the next datagram; raises socket.timeout."""
        data, source = self.sock.recvfrom(65535)
        return data, source[:2]

    def request(self, data):
        self.send(data)
        return self.recv()

    def close(self):
        self.sock.close()


_totals = re.compile(r"udp listener totals listener=(\S+) (.*)")


def totals(fulcrum, listener):
    """The counters Fulcrum printed for a listener when it stopped, as a dict of ints."""
    for line in fulcrum.log().splitlines():
        m = _totals.search(line)
        if m and m.group(1) == listener:
            return {k: int(v) for k, v in (kv.split("=") for kv in m.group(2).split())}
    raise AssertionError(f"no 'udp listener totals' line for {listener}:\n" + fulcrum.log())


def wait_until(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
