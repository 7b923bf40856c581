"""Real third-party servers for integration tests: redis-server and nginx, each run by the test
in its own temp directory on a loopback port, plus the small clients the tests talk to them with.

Neither server can report a kernel-chosen port, so each takes free_port() and retries with a new
port when it loses the race for it. Every process goes through fulcrum_it.spawn, so it is killed
at exit even when a test fails; every directory comes from fulcrum_it.tmpdir.
"""

import json
import os
import shutil
import socket
import time

from fulcrum_it import free_port, spawn, stop, tmpdir


def require_tools(*names):
    """Fails (not skips) when a tool is missing: a skipped test would look like a passing one."""
    missing = [n for n in names if shutil.which(n) is None]
    assert not missing, f"required tools not installed: {', '.join(missing)}"


def _tail(path, lines=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return f"(no file {path})"


# --- Redis -------------------------------------------------------------------------------------


class RespError(Exception):
    """A Redis error reply ("-ERR ..."). Returned in pipelines, raised by call()."""


class RespConn:
    """A blocking RESP2 client connection, enough for SET/GET/INFO/CONFIG and pipelining."""

    def __init__(self, host, port, timeout=10.0, source=None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=source)
        self.reader = self.sock.makefile("rb")

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def read_reply(self):
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError(f"connection closed mid-reply (got {line!r})")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.reader.read(n + 2)
            if len(data) != n + 2 or not data.endswith(b"\r\n"):
                raise ConnectionError(f"short bulk reply: wanted {n + 2} bytes, got {len(data)}")
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read_reply() for _ in range(n)]
        raise ConnectionError(f"not a RESP reply: {line[:80]!r}")

    def call(self, *args):
        self.sock.sendall(self.encode(*args))
        reply = self.read_reply()
        if isinstance(reply, RespError):
            raise reply
        return reply

    def pipeline(self, commands):
        """Sends all commands in one write, then reads one reply per command."""
        self.sock.sendall(b"".join(self.encode(*c) for c in commands))
        return [self.read_reply() for _ in commands]

    def close(self):
        self.reader.close()
        self.sock.close()


class Redis:
    """A redis-server on 127.0.0.1 with no persistence, and a control connection to it."""

    def __init__(self, attempts=5):
        last_log = ""
        for _ in range(attempts):
            self.port = free_port()
            self.dir = tmpdir("fulcrum-redis-")
            self.log_path = os.path.join(self.dir, "redis.log")
            self.proc = spawn(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", self.dir],
                              self.log_path)
            if self._wait_ready():
                self.control = RespConn("127.0.0.1", self.port)
                return
            last_log = _tail(self.log_path)
            stop(self.proc)
        raise AssertionError(f"redis-server did not start after {attempts} tries:\n{last_log}")

    def _wait_ready(self, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                c = RespConn("127.0.0.1", self.port, timeout=1.0)
                ok = c.call("PING") == "PONG"
                c.close()
                if ok:
                    return True
            except (OSError, RespError):
                time.sleep(0.05)
        return False

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def info(self, section):
        text = self.control.call("INFO", section).decode()
        out = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep and not key.startswith("#"):
                out[key] = int(value) if value.lstrip("-").isdigit() else value
        return out

    def stats(self):
        """The counters the tests compare before and after a run."""
        s = self.info("stats")
        return {k: s[k] for k in ("total_connections_received", "total_commands_processed",
                                  "total_error_replies", "rejected_connections")}

    def connected_clients(self):
        return self.info("clients")["connected_clients"]

    def log(self):
        return _tail(self.log_path)

    def stop(self):
        self.control.close()
        return stop(self.proc)


# --- nginx -------------------------------------------------------------------------------------


class Nginx:
    """One nginx process (no master, one worker) with a hand-written config in a temp prefix.

    listen_hosts: one free port is taken per host ("127.0.0.1", "::1"); self.ports[i] belongs
    to listen_hosts[i]. server_block(ports) returns the text of the `server { }` block(s);
    http_extra goes into the http block before them (log_format and the like). The access log
    uses the format named by access_format, or nginx's default "combined" when None.
    """

    def __init__(self, server_block, listen_hosts=("127.0.0.1",), http_extra="",
                 access_format=None, attempts=5):
        last_log = ""
        for _ in range(attempts):
            self.dir = tmpdir("fulcrum-nginx-")
            self.ports = [free_port(h) for h in listen_hosts]
            self.hosts = list(listen_hosts)
            self.access_log = os.path.join(self.dir, "access.log")
            self.error_log = os.path.join(self.dir, "error.log")
            conf = self._config(server_block(self.ports), http_extra, access_format)
            conf_path = os.path.join(self.dir, "nginx.conf")
            with open(conf_path, "w") as f:
                f.write(conf)
            self.proc = spawn(["nginx", "-p", self.dir, "-c", conf_path, "-e", self.error_log],
                              os.path.join(self.dir, "stdout.log"))
            if self._wait_ready():
                return
            last_log = _tail(self.error_log) + _tail(os.path.join(self.dir, "stdout.log"))
            stop(self.proc)
        raise AssertionError(f"nginx did not start after {attempts} tries:\n{last_log}")

    def _config(self, servers, http_extra, access_format):
        d = self.dir
        temp = "\n".join(f"  {kind}_temp_path {d}/tmp_{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # Workers of a root master would drop to "nobody"; with no master there is nothing to
        # drop from, but say so explicitly so the config means the same either way.
        user = "user root;\n" if os.geteuid() == 0 else ""
        fmt = f" {access_format}" if access_format else ""
        return (f"{user}daemon off;\nmaster_process off;\nworker_processes 1;\n"
                f"pid {d}/nginx.pid;\nerror_log {self.error_log} warn;\n"
                f"events {{ worker_connections 1024; }}\n"
                f"http {{\n{temp}\n{http_extra}\n  access_log {self.access_log}{fmt};\n"
                f"{servers}\n}}\n")

    def _wait_ready(self, timeout=10.0):
        deadline = time.time() + timeout
        pending = list(zip(self.hosts, self.ports))
        while pending and time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            host, port = pending[0]
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                with socket.socket(family) as s:
                    s.settimeout(0.5)
                    s.connect((host, port))
                pending.pop(0)
            except OSError:
                time.sleep(0.05)
        return not pending

    def access_lines(self):
        try:
            with open(self.access_log, errors="replace") as f:
                return [line.rstrip("\n") for line in f]
        except FileNotFoundError:
            return []

    def log(self):
        return _tail(self.error_log)

    def stop(self):
        return stop(self.proc)


# --- Fulcrum config ----------------------------------------------------------------------------


def fulcrum_config(listeners, pools, workers=2, drain_timeout="2s"):
    """TOML for Fulcrum.

    listeners: (name, bind, pool) triples, e.g. ("redis", "127.0.0.1:0", "redis").
    pools: {name: {"algorithm": ..., "backends": [address or (address, weight)], and any
    other pool keys such as "hash_key" or "proxy_protocol"}}.
    """
    q = json.dumps  # TOML basic strings accept JSON's escapes for the ASCII we write.
    lines = ["[global]", f"workers = {workers}", 'log_level = "info"',
             f"drain_timeout = {q(drain_timeout)}", ""]
    for name, bind, pool in listeners:
        lines += ["[[listener]]", f"name = {q(name)}", f"bind = {q(bind)}", 'protocol = "tcp"',
                  f"pool = {q(pool)}", ""]
    for name, spec in pools.items():
        lines.append(f"[pool.{name}]")
        for key, value in spec.items():
            if key != "backends":
                lines.append(f"{key} = {q(value) if isinstance(value, str) else value}")
        lines.append("backends = [")
        for b in spec["backends"]:
            address, weight = (b, 1) if isinstance(b, str) else b
            lines.append(f"  {{ address = {q(address)}, weight = {weight} }},")
        lines += ["]", ""]
    return "\n".join(lines)


def log_tail(fulcrum, n=40):
    """The end of Fulcrum's log, for assertion messages."""
    lines = fulcrum.log().splitlines()[-n:]
    return (f"\n--- fulcrum log (last {len(lines)} lines, exit={fulcrum.proc.poll()}) ---\n"
            + "\n".join(lines))


def stop_checked(fulcrum):
    """SIGTERM; Fulcrum must drain and exit 0."""
    code = fulcrum.stop()
    assert code == 0, f"fulcrum exited with {code} after SIGTERM" + log_tail(fulcrum)
