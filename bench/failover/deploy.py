"""Processes a failover run needs: backends (demo, Redis, PostgreSQL), Fulcrum or HAProxy in
front of them, and (as root, for blackhole and slow) one network namespace per backend.

Every process is started here and stopped here by its own PID; every namespace and temp
directory made here is removed by close(), which the runner calls even when a run fails.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from . import protocols


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel had free a moment ago (bind to 0, read it, close)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def mono_ns() -> int:
    return time.monotonic_ns()


def _process_tree(root: int) -> list[int]:
    """root and its descendants, parents before children, from /proc."""
    out, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        out.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    queue += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return out


class Proc:
    """A child process whose output lines are read by a thread and stamped on arrival with
    CLOCK_MONOTONIC, the clock Fulcrum's failover record uses too."""

    def __init__(self, name: str, argv: list[str], log_path: Path, user: str | None = None):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.lines: list[tuple[int, str]] = []
        self._cond = threading.Condition()
        self._log = open(log_path, "a", buffering=1)
        preexec = None
        if user:
            import pwd
            pw = pwd.getpwnam(user)

            def preexec():  # noqa: F811 - runs in the child before exec
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, text=True, bufsize=1,
                                      preexec_fn=preexec, start_new_session=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.popen.stdout:
            stamp = mono_ns()
            line = line.rstrip("\n")
            self._log.write(f"{stamp} {line}\n")
            with self._cond:
                self.lines.append((stamp, line))
                self._cond.notify_all()

    def wait_line(self, pattern: str, timeout: float, start: int = 0) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.lines):
                    m = regex.search(self.lines[i][1])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.popen.poll() is not None:
                    tail = "\n".join(l for _, l in self.lines[-10:])
                    raise RuntimeError(f"{self.name}: no line matching {pattern!r} within "
                                       f"{timeout}s (exit code {self.popen.poll()}); last "
                                       f"output:\n{tail}")
                self._cond.wait(left)

    def signal(self, signum: int):
        """Signals the child and every process below it, parent first (a stopped parent
        forks no more). PostgreSQL serves each session from a process of its own that
        leaves the postmaster's process group (setsid), so a group signal would miss them."""
        if self.popen.poll() is not None:
            return
        for pid in _process_tree(self.popen.pid):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 3.0):
        if self.popen.poll() is None:
            try:
                self.signal(signal.SIGCONT)  # A hung server cannot take SIGTERM.
                os.kill(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(timeout)
            except ProcessLookupError:
                pass
        self._thread.join(1.0)
        self._log.close()


class Netns:
    """One namespace per backend, joined to the host by a veth pair addressed from
    198.18.0.0/15 (host 198.18.N.1, backend 198.18.N.2). Needs root."""

    def __init__(self, tag: str, index: int):
        self.name = f"fb{tag}n{index}"
        self.host_if = f"fb{tag}h{index}"
        self.ns_if = f"fb{tag}b{index}"
        self.host_ip = f"198.18.{index}.1"
        self.ip = f"198.18.{index}.2"
        run = self._run
        run(["ip", "netns", "add", self.name])
        self.made = True
        run(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if])
        run(["ip", "link", "set", self.ns_if, "netns", self.name])
        run(["ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if])
        run(["ip", "link", "set", self.host_if, "up"])
        run(["ip", "-n", self.name, "addr", "add", f"{self.ip}/24", "dev", self.ns_if])
        run(["ip", "-n", self.name, "link", "set", self.ns_if, "up"])
        run(["ip", "-n", self.name, "link", "set", "lo", "up"])

    @staticmethod
    def _run(argv):
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=10)

    def blackhole(self, on: bool):
        """Drops everything the backend sends to the host (SYN-ACKs, replies) with a
        blackhole route for the host's address inside the namespace; arriving packets still
        reach the backend, as when a return path fails. No qdisc needed."""
        verb = "add" if on else "del"
        self._run(["ip", "-n", self.name, "route", verb, "blackhole", f"{self.host_ip}/32"])

    def netem(self, spec: list[str] | None):
        """Adds (spec) or removes (None) a netem qdisc on the backend side of the pair, so
        everything the backend sends (SYN-ACKs, replies) is delayed or dropped."""
        if spec is None:
            subprocess.run(["ip", "netns", "exec", self.name, "tc", "qdisc", "del", "dev",
                            self.ns_if, "root"], capture_output=True, timeout=10)
            return
        self._run(["ip", "netns", "exec", self.name, "tc", "qdisc", "replace", "dev",
                   self.ns_if, "root", "netem", *spec])

    def close(self):
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)


def netem_available() -> bool:
    """Whether this kernel has the netem qdisc, tried on a veth pair in a throwaway
    namespace (some kernels are built without sch_netem and cannot load it)."""
    name = f"fbprobe{os.getpid() % 100000}"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True,
                       timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "p0", "type", "veth", "peer", "name",
                        "p1"], check=True, capture_output=True, timeout=10)
        probe = subprocess.run(["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "p0",
                                "root", "netem", "delay", "1ms"], capture_output=True,
                               timeout=10)
        return probe.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


class Backend:
    """One backend server that faults can be applied to and healed."""

    def __init__(self, kind: str, index: int, workdir: Path, tools: dict, udp: bool,
                 netns: Netns | None):
        self.kind, self.index, self.workdir, self.tools, self.udp = kind, index, workdir, tools, udp
        self.name = f"b{index}"
        self.netns = netns
        self.host = netns.ip if netns else "127.0.0.1"
        self.port = free_port(self.host) if netns is None else 7000 + index
        self.udp_port = 0
        self.proc: Proc | None = None
        self.prepared = False
        self.start()

    def _wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns.name, *argv] if self.netns else argv

    def start(self):
        log = self.workdir / f"{self.name}.log"
        if self.kind == "demo":
            argv = [self.tools["demo"], "--name", self.name, "--tcp", f"{self.host}:{self.port}"]
            if self.udp:
                argv += ["--udp", f"{self.host}:{self.udp_port}"]
            self.proc = Proc(self.name, self._wrap(argv), log)
            m = self.proc.wait_line(r"listening tcp=\S+:(\d+) udp=(\S+)", 10)
            if self.udp:
                self.udp_port = int(m.group(2).rsplit(":", 1)[1])
        elif self.kind == "redis":
            argv = ["redis-server", "--port", str(self.port), "--bind", self.host, "--save", "",
                    "--appendonly", "no", "--dir", str(self.workdir)]
            self.proc = Proc(self.name, self._wrap(argv), log)
            self.proc.wait_line(r"Ready to accept connections", 10)
            protocols.redis_set_name(self.host, self.port, self.name)
        elif self.kind == "postgres":
            data = self.workdir / f"pg-{self.name}"
            if not self.prepared:
                data.mkdir()
                shutil.chown(data, "postgres", "postgres")
                os.chmod(self.workdir, 0o755)
                subprocess.run(["su", "postgres", "-c",
                                f"{self.tools['pg_bin']}/initdb -A trust -U postgres "
                                f"-D {data} >/dev/null"], check=True, timeout=120)
            argv = [f"{self.tools['pg_bin']}/postgres", "-D", str(data), "-p", str(self.port),
                    "-k", str(data), "-c", f"listen_addresses={self.host}", "-c", "fsync=off",
                    "-c", "max_connections=300"]
            self.proc = Proc(self.name, self._wrap(argv), log, user="postgres")
            self.proc.wait_line(r"ready to accept connections", 60)
        self.prepared = True

    # Faults: each apply has a matching heal.
    def apply(self, fault: str, slow_delay_s: float):
        if fault == "kill":
            self.proc.signal(signal.SIGKILL)
            self.proc.popen.wait(5)
        elif fault == "hang":
            self.proc.signal(signal.SIGSTOP)
        elif fault == "refuse":
            self.proc.signal(signal.SIGUSR1)
        elif fault == "blackhole":
            self.netns.blackhole(True)
        elif fault == "slow":
            self.netns.netem(["delay", f"{int(slow_delay_s * 1000)}ms"])

    def heal(self, fault: str):
        if fault == "kill":
            self.proc.stop()
            # The port was the kernel's choice, from the ephemeral range, so while the server
            # was dead an outgoing connection (the balancer's, to another backend) may have
            # taken it as its source port; such a connection is short, so try again briefly.
            for attempt in range(5):
                try:
                    self.start()
                    return
                except RuntimeError:
                    if attempt == 4:
                        raise
                    self.proc.stop()
                    time.sleep(0.2)
        elif fault == "hang":
            self.proc.signal(signal.SIGCONT)
        elif fault == "refuse":
            self.proc.signal(signal.SIGUSR2)
        elif fault == "blackhole":
            self.netns.blackhole(False)
        elif fault == "slow":
            self.netns.netem(None)

    def stop(self):
        if self.proc:
            self.proc.stop()


def _health_bytes(kind: str) -> tuple[bytes, bytes]:
    """What a health probe sends and what a healthy answer contains, per backend kind."""
    if kind == "demo":
        return b"PING\n", b"PING"
    if kind == "redis":
        return b"PING\r\n", b"+PONG"
    return protocols.PG_SSL_REQUEST, b"N"


class Fulcrum:
    def __init__(self, scenario, backends: list[Backend], workdir: Path, tools: dict):
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.admin = None
        send, expect = _health_bytes(scenario.backend_kind)
        lines = [
            "[global]", "workers = 1", 'log_level = "info"', 'drain_timeout = "1s"', "",
            "[admin]", 'listen = "127.0.0.1:0"', f'token = "{self.token}"', "",
            "[[listener]]", 'name = "bench"', f'bind = "127.0.0.1:{self.port}"',
            f'protocol = "{"udp" if scenario.load == "udp_rr" else "tcp"}"', 'pool = "bench"',
        ]
        if scenario.load != "udp_rr":
            lines.append(f'connect_timeout = "{int(scenario.connect_timeout_s * 1000)}ms"')
        lines += [
            "", "[pool.bench]", f'algorithm = "{scenario.algorithm}"',
            f'hash_key = "{"source_ip" if scenario.hashing else "source_ip_port"}"',
            f"retries = {scenario.retries}", f'on_down = "{scenario.on_down}"',
            "backends = [",
        ]
        port_of = (lambda b: b.udp_port) if scenario.load == "udp_rr" else (lambda b: b.port)
        lines += [f'  {{ address = "{b.host}:{port_of(b)}" }},' for b in backends]
        lines += ["]", "", "[pool.bench.health]"]
        if scenario.load == "udp_rr":
            lines += ['type = "udp_expect"', 'send = "PING"', f'expect = "b"']
        else:
            # Hex, so binary probes (PostgreSQL's SSLRequest) survive as bytes.
            lines += ['type = "tcp_expect"', f'send_hex = "{send.hex()}"',
                      f'expect_hex = "{expect.hex()}"']
        lines += [
            f'interval = "{int(scenario.interval_s * 1000)}ms"',
            f'timeout = "{int(scenario.timeout_s * 1000)}ms"',
            f"rise = {scenario.rise}", f"fall = {scenario.fall}",
            f"passive_failures = {scenario.passive_failures}",
        ]
        self.config = workdir / "fulcrum.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.proc = Proc("fulcrum", [tools["fulcrum"], "run", "-c", str(self.config)],
                         workdir / "fulcrum.log")
        m = self.proc.wait_line(r"admin listening address=(\S+)", 15)
        self.admin = m.group(1)
        self.proc.wait_line(r"listener started", 15)

    def failovers(self) -> dict:
        import json
        import urllib.request
        request = urllib.request.Request(f"http://{self.admin}/api/v1/failovers",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.load(answer)

    def events(self, backend_key: str) -> list[tuple[int, str, str]]:
        """(mono_ns, "down"|"up", reason) for the backend, from Fulcrum's failover record."""
        out = []
        for record in self.failovers()["failovers"]:
            if record["backend"] != backend_key:
                continue
            out.append((record["down_mono_ns"], "down", record["reason"]))
            if record["up_mono_ns"]:
                out.append((record["up_mono_ns"], "up", record["up_reason"]))
        return out

    def stop(self):
        self.proc.stop()


class Haproxy:
    """HAProxy with the same backends and the closest health settings: tcp-check with the
    same bytes, inter = fastinter = interval, timeout check = timeout, the same rise and
    fall, observe layer4 for passive detection, redispatch for retries."""

    def __init__(self, scenario, backends: list[Backend], workdir: Path, tools: dict):
        self.port = free_port()
        send, expect = _health_bytes(scenario.backend_kind)
        balance = {"round_robin": "roundrobin", "least_conn": "leastconn",
                   "random_two": "random(2)"}.get(scenario.algorithm, "source")
        ms = lambda s: f"{int(s * 1000)}ms"  # noqa: E731
        passive = (f" observe layer4 error-limit {scenario.passive_failures} on-error mark-down"
                   if scenario.passive_failures else "")
        cfg = [
            "global", "  maxconn 4096", "",
            "defaults", "  mode tcp", f"  timeout connect {ms(scenario.connect_timeout_s)}",
            "  timeout client 60s", "  timeout server 60s", f"  retries {scenario.retries}",
            "  option redispatch 1", "",
            "frontend fe", f"  bind 127.0.0.1:{self.port}", "  default_backend be", "",
            "backend be", f"  balance {balance}",
        ]
        if scenario.hashing:
            cfg.append("  hash-type consistent")
        if scenario.on_down == "close":
            cfg.append("  default-server on-marked-down shutdown-sessions")
        cfg += ["  option tcp-check", f"  tcp-check send-binary {send.hex()}",
                f"  tcp-check expect binary {expect.hex()}",
                f"  timeout check {ms(scenario.timeout_s)}"]
        for b in backends:
            cfg.append(f"  server {b.name} {b.host}:{b.port} check inter {ms(scenario.interval_s)}"
                       f" fastinter {ms(scenario.interval_s)} downinter "
                       f"{ms(scenario.interval_s)} rise {scenario.rise} fall {scenario.fall}"
                       f"{passive}")
        self.config = workdir / "haproxy.cfg"
        self.config.write_text("\n".join(cfg) + "\n")
        self.proc = Proc("haproxy", [tools["haproxy"], "-db", "-f", str(self.config)],
                         workdir / "haproxy.log")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)

    def events(self, backend_name: str) -> list[tuple[int, str, str]]:
        """(mono_ns, "down"|"up", reason) from HAProxy's warnings, stamped when the line
        arrived. reason: "passive" for observe layer4 ("Health analyze"), else "probe"."""
        out = []
        for stamp, line in self.proc.lines:
            reason = "passive" if "Health analyze" in line else "probe"
            if f"be/{backend_name} is DOWN" in line:
                out.append((stamp, "down", reason))
            elif f"be/{backend_name} is UP" in line:
                out.append((stamp, "up", reason))
        return out

    def stop(self):
        self.proc.stop()


class Deployment:
    """Backends plus one target for one run; close() undoes everything made."""

    def __init__(self, scenario, target: str, tools: dict, use_netns: bool,
                 logs_dir: Path | None = None):
        self.workdir = Path(tempfile.mkdtemp(prefix=f"fulcrum-failover-{target}-"))
        self.backends: list[Backend] = []
        self.namespaces: list[Netns] = []
        self.front = None
        try:
            tag = str(os.getpid() % 100000)
            for i in range(scenario.backend_count):
                ns = None
                if use_netns:
                    ns = Netns(tag, i)
                    self.namespaces.append(ns)
                self.backends.append(Backend(scenario.backend_kind, i, self.workdir, tools,
                                             scenario.load == "udp_rr", ns))
            front = Fulcrum if target == "fulcrum" else Haproxy
            self.front = front(scenario, self.backends, self.workdir, tools)
        except BaseException:
            self.close(keep_logs_in=logs_dir)
            raise

    @property
    def vip(self) -> tuple[str, int]:
        return ("127.0.0.1", self.front.port)

    def close(self, keep_logs_in: Path | None = None):
        if self.front:
            self.front.stop()
        for b in self.backends:
            b.stop()
        for ns in self.namespaces:
            ns.close()
        if keep_logs_in:
            keep_logs_in.mkdir(parents=True, exist_ok=True)
            for log in self.workdir.glob("*.log"):
                shutil.copy(log, keep_logs_in / log.name)
        shutil.rmtree(self.workdir, ignore_errors=True)
