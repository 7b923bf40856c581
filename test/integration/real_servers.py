"""Real third-party servers for integration tests: redis-server and nginx, each run by the test
in its own temp directory on a loopback port, plus the small clients the tests talk to them with.

Neither server can report a kernel-chosen port, so each takes free_port() and retries with a new
port when it loses the race for it. Every process goes through fulcrum_it.spawn, so it is killed
at exit even when a test fails; every directory comes from fulcrum_it.tmpdir.
"""

import datetime
import json
import os
import re
import shutil
import socket
import time

from fulcrum_it import free_port, free_port_tcp_and_udp, spawn, stop, tmpdir


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


# --- nsd (authoritative DNS) -------------------------------------------------------------------

DNS_TXT = 16


def dns_query(name, qid, qtype=DNS_TXT):
    """A DNS query datagram for one question, class IN, recursion not desired."""
    header = qid.to_bytes(2, "big") + b"\x00\x00" + b"\x00\x01" + b"\x00" * 6
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return header + labels + b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01"


def _skip_name(data, i):
    while True:
        n = data[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += n + 1


def dns_answer(data):
    """(id, rcode, [TXT strings of the answer section]) of a DNS response."""
    qid = int.from_bytes(data[0:2], "big")
    rcode = data[3] & 0x0F
    qdcount = int.from_bytes(data[4:6], "big")
    ancount = int.from_bytes(data[6:8], "big")
    i = 12
    for _ in range(qdcount):
        i = _skip_name(data, i) + 4
    texts = []
    for _ in range(ancount):
        i = _skip_name(data, i)
        rtype = int.from_bytes(data[i:i + 2], "big")
        rdlength = int.from_bytes(data[i + 8:i + 10], "big")
        rdata = data[i + 10:i + 10 + rdlength]
        i += 10 + rdlength
        if rtype == DNS_TXT:
            j = 0
            while j < len(rdata):
                n = rdata[j]
                texts.append(rdata[j + 1:j + 1 + n].decode())
                j += n + 1
    return qid, rcode, texts


class Nsd:
    """An nsd in the foreground on 127.0.0.1, authoritative for `zone`, where `who.<zone>`
    has a TXT record with this server's name. Its own pidfile, state files and log live in a
    temp directory; no database, no remote control, no privilege drop, no response rate
    limiting (which would otherwise throttle identical answers under load)."""

    def __init__(self, name, zone="fulcrum.test", attempts=5):
        self.name = name
        self.zone = zone
        last_log = ""
        for _ in range(attempts):
            self.port = free_port_tcp_and_udp()
            self.dir = tmpdir("fulcrum-nsd-")
            self._write_files()
            self.log_path = os.path.join(self.dir, "nsd.log")
            self.proc = spawn(["nsd", "-d", "-c", os.path.join(self.dir, "nsd.conf")],
                              os.path.join(self.dir, "stdout.log"))
            if self._wait_ready():
                return
            last_log = _tail(self.log_path) + _tail(os.path.join(self.dir, "stdout.log"))
            stop(self.proc)
        raise AssertionError(f"nsd did not start after {attempts} tries:\n{last_log}")

    def _write_files(self):
        d = self.dir
        with open(os.path.join(d, "zone.txt"), "w") as f:
            f.write(f"$ORIGIN {self.zone}.\n$TTL 60\n"
                    f"@ IN SOA ns.{self.zone}. admin.{self.zone}. 1 3600 600 86400 60\n"
                    f"@ IN NS ns.{self.zone}.\n"
                    f"ns IN A 127.0.0.1\n"
                    f'who IN TXT "{self.name}"\n')
        with open(os.path.join(d, "nsd.conf"), "w") as f:
            f.write("server:\n"
                    "  ip-address: 127.0.0.1\n"
                    f"  port: {self.port}\n"
                    '  username: ""\n'
                    '  chroot: ""\n'
                    f'  zonesdir: "{d}"\n'
                    '  database: ""\n'
                    f'  pidfile: "{d}/nsd.pid"\n'
                    f'  xfrdfile: "{d}/xfrd.state"\n'
                    f'  xfrdir: "{d}"\n'
                    f'  zonelistfile: "{d}/zone.list"\n'
                    f'  logfile: "{d}/nsd.log"\n'
                    "  server-count: 1\n"
                    "  verbosity: 1\n"
                    "  rrl-ratelimit: 0\n"
                    "remote-control:\n"
                    "  control-enable: no\n"
                    "zone:\n"
                    f'  name: "{self.zone}"\n'
                    '  zonefile: "zone.txt"\n')

    def _wait_ready(self, timeout=10.0):
        deadline = time.time() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    return False
                try:
                    s.sendto(dns_query(f"who.{self.zone}", 1), ("127.0.0.1", self.port))
                    data, _ = s.recvfrom(4096)
                    if dns_answer(data)[2] == [self.name]:
                        return True
                except (OSError, IndexError):
                    time.sleep(0.05)
        return False

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def log(self):
        return _tail(self.log_path)

    def stop(self):
        return stop(self.proc)


# --- Health checks -----------------------------------------------------------------------------


def _toml(value):
    """A TOML value for a Python str, bool, int or list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # TOML basic strings accept JSON's escapes (\r, \n, \", \u....).


def _inline_table(spec):
    return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in spec.items()) + " }"


def health_config(listeners, pools, workers=1, drain_timeout="2s", log_level="info"):
    """TOML for Fulcrum with health-checked pools.

    listeners: (name, bind, pool) or (name, bind, pool, protocol) tuples.
    pools: {name: {pool keys..., "backends": [...], "health": {health keys...}}}; a backend is
    an address string or a dict of backend keys such as {"address": ..., "health": {...}}.
    The "health" dict becomes the [pool.NAME.health] table, written as given.
    """
    lines = ["[global]", f"workers = {workers}", f"log_level = {_toml(log_level)}",
             f"drain_timeout = {_toml(drain_timeout)}", ""]
    for listener in listeners:
        name, bind, pool = listener[:3]
        protocol = listener[3] if len(listener) > 3 else "tcp"
        lines += ["[[listener]]", f"name = {_toml(name)}", f"bind = {_toml(bind)}",
                  f"protocol = {_toml(protocol)}", f"pool = {_toml(pool)}", ""]
    for name, spec in pools.items():
        lines.append(f"[pool.{name}]")
        for key, value in spec.items():
            if key not in ("backends", "health"):
                lines.append(f"{key} = {_toml(value)}")
        lines.append("backends = [")
        for b in spec["backends"]:
            lines.append(f"  {_inline_table(b if isinstance(b, dict) else {'address': b})},")
        lines += ["]", ""]
        if "health" in spec:
            lines.append(f"[pool.{name}.health]")
            lines += [f"{k} = {_toml(v)}" for k, v in spec["health"].items()]
            lines.append("")
    return "\n".join(lines)


def detection_bound(health, slack, phase="fall"):
    """Seconds within which a settled backend's change must be seen, plus slack.

    Probes keep a fixed cadence from start to start, but a probe never starts before the
    previous one ended. So after the change the first telling probe starts within interval,
    each of the other (count - 1) within max(fast_interval, timeout) of the one before, the
    last ends within timeout, and every wait may be stretched by jitter. count is fall
    (going down) or rise (coming up). With fast_interval = interval >= timeout this is
    count x interval + timeout.
    """
    interval = parse_duration(health["interval"])
    fast = parse_duration(health.get("fast_interval", health["interval"]))
    timeout = parse_duration(health["timeout"])
    jitter = parse_duration(health.get("jitter", "0s"))
    count = health.get(phase, 3 if phase == "fall" else 2)
    return interval + (count - 1) * max(fast, timeout) + timeout + count * jitter + slack


def parse_duration(text):
    """Seconds in a Fulcrum duration such as "250ms", "2s" or "1m"."""
    for unit, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit) and text[:-len(unit)].replace(".", "", 1).isdigit():
            return float(text[:-len(unit)]) * scale
    raise ValueError(f"not a duration: {text!r}")


_HEALTH_LINE = re.compile(r"^(\S+) \S+ backend (up|down) pool=(\S+) backend=(\S+)(.*)$")


def log_time(line):
    """Epoch seconds of a Fulcrum log line (its UTC timestamp, millisecond precision)."""
    stamp = line.split(" ", 1)[0]
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


class HealthEvent:
    """One `backend up` / `backend down` log line: when, state, pool, backend and fields."""

    def __init__(self, match):
        self.line = match.group(0)
        self.time = log_time(self.line)
        self.state = match.group(2)
        self.pool = match.group(3)
        self.backend = match.group(4)
        self.fields = dict(kv.split("=", 1) for kv in match.group(5).split() if "=" in kv)

    def __repr__(self):
        return self.line


def health_events(fulcrum, backend=None, state=None, since=0.0):
    """Health transitions Fulcrum logged, oldest first, optionally filtered."""
    out = []
    for line in fulcrum.log().splitlines():
        m = _HEALTH_LINE.match(line)
        if not m:
            continue
        event = HealthEvent(m)
        if backend and event.backend != backend:
            continue
        if state and event.state != state:
            continue
        if event.time < since:
            continue
        out.append(event)
    return out


# Fulcrum logs a transition just before it publishes the pool snapshot that applies it; a
# client reacting to the line at once can, on a busy machine, still meet the old snapshot
# (seen: a UDP flow opened to a backend 1 ms after its down line). Traffic checks start this
# long after the line.
PUBLISH_SETTLE = 0.05


def wait_health(fulcrum, backend, state, since, timeout):
    """The first `backend <state>` line for backend logged at or after `since` (epoch
    seconds, as time.time()); fails with Fulcrum's log after `timeout` seconds. Returns
    PUBLISH_SETTLE after seeing the line; the event's time is the line's own stamp."""
    # Log stamps have millisecond precision, truncated.
    since_ms = since - 0.001
    fulcrum.wait_for(lambda: health_events(fulcrum, backend, state, since_ms), timeout,
                     f"backend {state} backend={backend}")
    time.sleep(PUBLISH_SETTLE)
    return health_events(fulcrum, backend, state, since_ms)[0]


def restart_redis(redis, attempts=50):
    """Starts redis-server again on the port and directory of a stopped Redis helper, as an
    operator restarting a crashed server would; the object then controls the new process."""
    redis.proc = spawn(["redis-server", "--port", str(redis.port), "--bind", "127.0.0.1",
                        "--save", "", "--appendonly", "no", "--dir", redis.dir],
                       redis.log_path + ".restart")
    for _ in range(attempts):
        if redis._wait_ready(timeout=0.2):
            redis.control = RespConn("127.0.0.1", redis.port)
            return
    raise AssertionError(f"redis-server did not restart on {redis.port}:\n{redis.log()}")


def restart_nsd(nsd):
    """Starts nsd again with the config (same port and zone) of a stopped Nsd helper."""
    nsd.proc = spawn(["nsd", "-d", "-c", os.path.join(nsd.dir, "nsd.conf")],
                     os.path.join(nsd.dir, "stdout-restart.log"))
    if not nsd._wait_ready():
        raise AssertionError(f"nsd did not restart on {nsd.port}:\n{nsd.log()}")


def timed_transition(fulcrum, backend, state, action, phase, what, health, slack,
                     detail=None):
    """Runs action() and waits for `backend <state>`; checks it came within the detection
    bound for phase ("fall" or "rise") and, if given, with that detail. Prints the figure.
    Returns (event, seconds from the action to Fulcrum's own log stamp)."""
    bound = detection_bound(health, slack, phase)
    t0 = time.time()
    action()
    event = wait_health(fulcrum, backend, state, t0, timeout=bound + 10)
    seconds = event.time - t0
    print(f"  {what}: {seconds * 1000:.0f} ms (bound {bound * 1000:.0f} ms) [{event.line}]",
          flush=True)
    if seconds > bound:
        raise AssertionError(f"{what}: seen after {seconds:.3f}s, bound {bound:.3f}s\n"
                             + fulcrum.log())
    if detail and event.fields.get("detail") != detail:
        raise AssertionError(f"{what}: detail {event.fields.get('detail')!r}, expected "
                             f"{detail!r}\n" + fulcrum.log())
    return event, seconds
