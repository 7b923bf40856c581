#!/usr/bin/env python3
"""Fulcrum against HAProxy and nginx, and all three against going direct, in one run.

Starts the backends once (fulcrum-loadgen's echo servers, iperf3, nginx as an HTTP server,
redis-server), then Fulcrum, HAProxy (mode tcp) and nginx (stream, TCP and UDP) in front of
the same backends with matched settings (bench/peers/), and runs every metric against every
peer in interleaved rounds, rotating the order each round. Prints medians, ratios to direct
and the issue's targets. Every load is bounded in time or count.

  bench/compare_peers.py [--build build] [--rounds 3] [--seconds 3] [--json out.json]
  bench/compare_peers.py --smoke        # every peer and metric, tiny durations (CI)
"""

import argparse
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))

PEERS = ("direct", "fulcrum", "haproxy", "nginx")
PROXIES = ("fulcrum", "haproxy", "nginx")
# Listeners every proxy has: name -> protocol. Each fronts the backend of the same name.
LISTENERS = {"bulk": "tcp", "echo": "tcp", "close": "tcp", "http": "tcp", "redis": "tcp",
             "udp": "udp"}
WORKERS = 2  # Threads / workers of every proxy: one per core of the 2-core bench machine.
# What --only can choose, in the order a round runs them (memory runs first, once).
METRICS = ("memory", "bulk1", "bulk4", "rate", "wrk", "redis", "udp-rr", "udp-flood")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build"),
                   help="build folder holding fulcrum and bench/fulcrum-loadgen")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds; each metric's median is over them")
    p.add_argument("--seconds", type=float, default=3.0, help="duration of each timed load")
    p.add_argument("--requests", type=int, default=100000, help="redis-benchmark -n")
    p.add_argument("--idle", default="1000,9000",
                   help="comma-separated idle connection counts for the memory metric")
    p.add_argument("--json", help="also write every sample and median to this file")
    p.add_argument("--smoke", action="store_true",
                   help="one round, tiny durations and counts: checks that everything runs")
    p.add_argument("--only", default="",
                   help="comma-separated prefixes of the metrics to run: "
                        + ", ".join(METRICS))
    args = p.parse_args()
    args.only_list = [o.strip() for o in args.only.split(",") if o.strip()]
    unknown = [o for o in args.only_list if not any(m.startswith(o) for m in METRICS)]
    if unknown:
        p.error(f"--only {','.join(unknown)} matches no metric; metrics: {', '.join(METRICS)}")
    if args.smoke:
        args.rounds, args.seconds, args.requests, args.idle = 1, 1.0, 2000, "50,100"
    args.idle_counts = [int(n) for n in args.idle.split(",") if n]
    return args


# --- processes ---------------------------------------------------------------------------


def popen_lines(args, **kw):
    """A process with piped stdin/stdout whose stdout we read lines from; killed at exit."""
    import fulcrum_it
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, **kw)
    fulcrum_it._procs.append(p)
    return p


def read_line(p, pattern, timeout):
    """The first stdout line of p matching pattern, as a match object."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.time()))
        if not ready:
            break
        line = p.stdout.readline()
        if not line:
            break
        m = re.search(pattern, line)
        if m:
            return m
    err = p.stderr.read() if p.poll() is not None else ""
    raise RuntimeError(f"{p.args[0]}: no line matching {pattern!r} within {timeout}s {err}")


def proc_tree(pid):
    """pid and its direct children (nginx workers)."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def rss_kib(pid):
    total = 0
    for p in proc_tree(pid):
        with open(f"/proc/{p}/status") as f:
            total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    return total


def cpu_seconds(pid):
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in proc_tree(pid):
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


# --- backends and proxies ----------------------------------------------------------------


class Backends:
    """Every backend, each on a kernel-chosen or free port: name -> (host, port)."""

    def __init__(self, loadgen):
        from fulcrum_it import free_port, spawn, wait_port
        from real_servers import Nginx, Redis

        self.serve = popen_lines([loadgen, "serve", "--seconds", "3600"])
        m = read_line(self.serve, r"tcp_echo=(\d+) tcp_close=(\d+) udp_echo=(\d+)", 10)
        self.iperf_port = free_port()
        self.iperf = spawn(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(self.iperf_port)])
        wait_port("127.0.0.1", self.iperf_port)
        self.nginx = Nginx(lambda ports: "  access_log off;\n  keepalive_requests 1000000;\n"
                           "  server { listen 127.0.0.1:%d; "
                           "location / { return 200 \"ok\\n\"; } }" % ports[0])
        self.redis = Redis()
        self.ports = {"bulk": self.iperf_port, "echo": int(m.group(1)),
                      "close": int(m.group(2)), "udp": int(m.group(3)),
                      "http": self.nginx.ports[0], "redis": self.redis.port}

    def stop(self):
        from fulcrum_it import stop
        self.serve.stdin.close()
        self.serve.wait(timeout=10)
        stop(self.iperf)
        self.nginx.stop()
        self.redis.stop()


def fulcrum_toml(backend_ports):
    lines = ["[global]", f"workers = {WORKERS}", 'log_level = "warn"',
             'drain_timeout = "1s"', ""]
    for name, proto in LISTENERS.items():
        lines += ["[[listener]]", f'name = "{name}"', 'bind = "127.0.0.1:0"',
                  f'protocol = "{proto}"', f'pool = "{name}"', ""]
    for name in LISTENERS:
        lines += [f"[pool.{name}]", 'algorithm = "round_robin"',
                  f'backends = [ {{ address = "127.0.0.1:{backend_ports[name]}" }} ]', ""]
    return "\n".join(lines)


class Peer:
    """A proxy (or direct) with an address per listener name."""

    def __init__(self, name, pid, ports, proc=None, stopper=None):
        self.name, self.pid, self.ports, self.proc, self._stop = name, pid, ports, proc, stopper

    def stop(self):
        if self._stop:
            self._stop()


def start_fulcrum(build, backend_ports):
    import fulcrum_it
    fulcrum_it.FULCRUM_BIN = os.path.join(build, "fulcrum")
    # Fulcrum logs `listener started` at info; the bench runs at warn, so ask for info.
    text = fulcrum_toml(backend_ports).replace('log_level = "warn"', 'log_level = "info"')
    lb = fulcrum_it.Fulcrum(text)
    ports = {name: lb.addr(name)[1] for name in LISTENERS}
    return Peer("fulcrum", lb.proc.pid, ports, lb.proc, lb.stop)


def render_peer_config(template, listen_ports, backend_ports, workdir):
    with open(os.path.join(HERE, "peers", template)) as f:
        text = f.read()
    values = {"DIR": workdir, "WORKERS": str(WORKERS),
              "USER": "user root;" if os.geteuid() == 0 else ""}
    for name in LISTENERS:
        values[f"LISTEN_{name.upper()}"] = str(listen_ports[name])
        values[f"BACKEND_{name.upper()}"] = str(backend_ports[name])
    return re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], text)


def start_config_peer(name, template, command, backend_ports, tcp_only=False,
                      stop_signal=signal.SIGTERM):
    """HAProxy or nginx: neither reports kernel-chosen ports, so take free ones and retry when
    one was lost to a race."""
    from fulcrum_it import free_port, free_port_tcp_and_udp, spawn, stop, tmpdir, wait_port
    last = ""
    for _ in range(5):
        workdir = tmpdir(f"fulcrum-bench-{name}-")
        ports = {n: (free_port_tcp_and_udp() if proto == "udp" else free_port())
                 for n, proto in LISTENERS.items()}
        conf = os.path.join(workdir, template)
        with open(conf, "w") as f:
            f.write(render_peer_config(template, ports, backend_ports, workdir))
        log = os.path.join(workdir, "out.log")
        proc = spawn(command(conf, workdir), log)
        try:
            for n, proto in LISTENERS.items():
                if proto == "tcp":
                    wait_port("127.0.0.1", ports[n], timeout=5)
            if proc.poll() is None:
                if tcp_only:
                    ports.pop("udp")
                return Peer(name, proc.pid, ports, proc,
                            lambda p=proc: stop(p, stop_signal))
        except TimeoutError:
            pass
        with open(log, errors="replace") as f:
            last = f.read()[-2000:]
        stop(proc)
    raise RuntimeError(f"{name} did not start:\n{last}")


def start_haproxy(backend_ports):
    # SIGUSR1 is HAProxy's graceful stop (exit 0); SIGTERM makes it die of the signal.
    return start_config_peer("haproxy", "haproxy.cfg",
                             lambda conf, d: ["haproxy", "-db", "-f", conf], backend_ports,
                             tcp_only=True, stop_signal=signal.SIGUSR1)


def start_nginx(backend_ports):
    return start_config_peer("nginx", "nginx-stream.conf",
                             lambda conf, d: ["nginx", "-p", d, "-c", conf, "-e",
                                              os.path.join(d, "error.log")], backend_ports)


# --- metrics -----------------------------------------------------------------------------


class Bench:
    def __init__(self, args, backends, peers):
        self.args, self.backends, self.peers = args, backends, peers
        self.loadgen = os.path.join(args.build, "bench", "fulcrum-loadgen")
        self.samples = {}  # (metric, peer) -> [values]

    def add(self, metric, peer, value):
        self.samples.setdefault((metric, peer), []).append(value)

    def loadgen_result(self, args, timeout):
        out = subprocess.run([self.loadgen, *args], capture_output=True, text=True,
                             timeout=timeout, check=True).stdout
        m = re.search(r"^result (.*)$", out, re.M)
        return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split()
                                          if not kv.startswith("mode="))}

    def target(self, peer, listener):
        return f"127.0.0.1:{peer.ports[listener]}"

    def bulk(self, peer, streams):
        seconds = max(1, round(self.args.seconds))
        before = cpu_seconds(peer.pid) if peer.pid else 0.0
        out = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(peer.ports["bulk"]), "-t",
                              str(seconds), "-P", str(streams), "-J"], capture_output=True,
                             text=True, timeout=seconds + 30, check=True).stdout
        cpu = (cpu_seconds(peer.pid) - before) if peer.pid else None
        received = json.loads(out)["end"]["sum_received"]
        gbit = received["bits_per_second"] / 1e9
        self.add(f"bulk {streams} stream{'s' if streams > 1 else ''} Gbit/s", peer.name, gbit)
        if cpu is not None and received["bytes"] > 0:
            self.add(f"CPU s per GB, {streams} stream{'s' if streams > 1 else ''}", peer.name,
                     cpu / (received["bytes"] / 1e9))

    def conn_rate(self, peer):
        r = self.loadgen_result(["tcp-rate", "--target", self.target(peer, "close"),
                                 "--seconds", str(self.args.seconds), "--concurrency", "32"],
                                self.args.seconds + 30)
        self.add("new connections/s", peer.name, r["rate"])
        self.add("new connection p99 ms", peer.name, r["p99_us"] / 1000)
        self.add("new connection p99.9 ms", peer.name, r["p999_us"] / 1000)
        self.add("new connection errors", peer.name, r["errors"])

    def wrk(self, peer):
        seconds = max(1, round(self.args.seconds))
        out = subprocess.run(["wrk", "-t2", "-c50", f"-d{seconds}s", "--latency",
                              f"http://{self.target(peer, 'http')}/"], capture_output=True,
                             text=True, timeout=seconds + 60, check=True).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
        self.add("wrk keep-alive req/s", peer.name, rps)
        self.add("wrk keep-alive p99 ms", peer.name, float(p99.group(1)) * scale)

    def redis(self, peer):
        out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p",
                              str(peer.ports["redis"]), "-c", "50", "-n",
                              str(self.args.requests), "-t", "set,get", "--csv"],
                             capture_output=True, text=True, timeout=300, check=True).stdout
        for line in out.splitlines():
            cells = [c.strip('"') for c in line.split(",")]
            if cells[0] in ("SET", "GET"):
                # test, rps, avg, min, p50, p95, p99, max
                self.add(f"redis {cells[0]} req/s", peer.name, float(cells[1]))
                self.add(f"redis {cells[0]} p99 ms", peer.name, float(cells[6]))

    def udp_rr(self, peer):
        r = self.loadgen_result(["udp-rr", "--target", self.target(peer, "udp"), "--seconds",
                                 str(self.args.seconds), "--concurrency", "16"],
                                self.args.seconds + 30)
        self.add("UDP request/response per s", peer.name, r["rate"])
        self.add("UDP request/response p99 ms", peer.name, r["p99_us"] / 1000)

    def udp_flood(self, peer):
        r = self.loadgen_result(["udp-flood", "--target", self.target(peer, "udp"),
                                 "--seconds", str(self.args.seconds), "--concurrency", "4",
                                 "--window", "64"], self.args.seconds + 30)
        self.add("UDP flood echoed datagrams/s", peer.name, r["rate"])
        self.add("UDP flood p99 ms", peer.name, r["p99_us"] / 1000)

    def idle_memory(self, peer, count):
        """RSS growth of the proxy (all its processes) per proxied idle connection, with the
        connections held by a separate loadgen process (descriptor limits)."""
        base = rss_kib(peer.pid)
        p = popen_lines([self.loadgen, "tcp-idle", "--target", self.target(peer, "echo"),
                         "--connections", str(count), "--concurrency", "200", "--seconds",
                         "120"])
        m = read_line(p, r"ready connections=(\d+) errors=(\d+)", 125)
        time.sleep(0.5)
        grown = rss_kib(peer.pid) - base
        p.stdin.close()
        p.wait(timeout=30)
        opened = int(m.group(1))
        if opened != count:
            print(f"warning: {peer.name}: {opened} of {count} idle connections opened",
                  file=sys.stderr)
        self.add(f"memory per idle connection, {count} conns, bytes", peer.name,
                 grown * 1024 / max(1, opened))
        # Let the proxy see every close before the next measurement.
        time.sleep(1.0)


def metric_plan(bench):
    """(label, function(peer), peers it applies to) in the order each round runs them."""
    udp_peers = ("direct", "fulcrum", "nginx")
    plan = [("bulk1", lambda p: bench.bulk(p, 1), PEERS),
            ("bulk4", lambda p: bench.bulk(p, 4), PEERS),
            ("rate", bench.conn_rate, PEERS),
            ("wrk", bench.wrk, PEERS),
            ("redis", bench.redis, PEERS),
            ("udp-rr", bench.udp_rr, udp_peers),
            ("udp-flood", bench.udp_flood, udp_peers)]
    only = bench.args.only_list
    return [m for m in plan if not only or any(m[0].startswith(o) for o in only)]


# --- report ------------------------------------------------------------------------------


TARGETS = [
    # metric, peer compared with, bound, higher is better
    ("new connections/s", "haproxy", 1.3, True),
    ("bulk 1 stream Gbit/s", "haproxy", 1.3, True),
    ("bulk 4 streams Gbit/s", "haproxy", 1.3, True),
    ("redis SET p99 ms", "haproxy", 0.8, False),
    ("redis GET p99 ms", "haproxy", 0.8, False),
    ("UDP request/response per s", "nginx", 2.0, True),
    ("UDP flood echoed datagrams/s", "nginx", 2.0, True),
    ("memory per idle connection, 9000 conns, bytes", "haproxy", 0.5, False),
]


def medians(samples):
    return {key: statistics.median(values) for key, values in samples.items()}


def fmt_value(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"


def report(args, samples, load_before, load_after, started, versions):
    med = medians(samples)
    metrics = []
    for metric, _ in samples:
        if metric not in metrics:
            metrics.append(metric)

    lines = [f"{args.rounds} interleaved round(s), medians; every proxy with {WORKERS} "
             f"threads/workers; timed loads {args.seconds:g} s each; "
             f"redis-benchmark -c 50 -n {args.requests}; load average before "
             f"{load_before}, after {load_after}; run took {time.time() - started:.0f} s",
             "", "versions: " + "; ".join(versions), "",
             "| metric | direct | fulcrum | haproxy | nginx | fulcrum/direct | "
             "fulcrum/haproxy | fulcrum/nginx |", "|---|---|---|---|---|---|---|---|"]
    for metric in metrics:
        v = {p: med.get((metric, p)) for p in PEERS}

        def ratio(a, b):
            return f"{v[a] / v[b]:.2f}" if v[a] is not None and v[b] else "-"
        lines.append(f"| {metric} | " + " | ".join(fmt_value(v[p]) for p in PEERS) +
                     f" | {ratio('fulcrum', 'direct')} | {ratio('fulcrum', 'haproxy')} | "
                     f"{ratio('fulcrum', 'nginx')} |")

    lines += ["", "| target | fulcrum / peer | bound | met |", "|---|---|---|---|"]
    for metric, peer, bound, higher in TARGETS:
        f, o = med.get((metric, "fulcrum")), med.get((metric, peer))
        if f is None or not o:
            lines.append(f"| {metric} vs {peer} | - | {'>=' if higher else '<='} {bound} | "
                         "not measured |")
            continue
        r = f / o
        met = r >= bound if higher else r <= bound
        lines.append(f"| {metric} vs {peer} | {r:.2f} | {'>=' if higher else '<='} {bound} | "
                     f"{'yes' if met else 'no'} |")
    return "\n".join(lines)


def versions():
    out = []
    for cmd, pattern in ((["haproxy", "-v"], r"version (\S+)"), (["nginx", "-v"], r"nginx/(\S+)"),
                         (["iperf3", "-v"], r"iperf (\S+)"),
                         (["redis-server", "--version"], r"v=(\S+)")):
        p = subprocess.run(cmd, capture_output=True, text=True)
        m = re.search(pattern, p.stdout + p.stderr)
        out.append(f"{cmd[0]} {m.group(1) if m else '?'}")
    out.append(f"kernel {platform.release()}")
    out.append(f"{os.cpu_count()} CPUs")
    return out


def main():
    args = parse_args()
    for tool in ("haproxy", "nginx", "iperf3", "wrk", "redis-benchmark", "redis-server"):
        if shutil.which(tool) is None:
            print(f"compare_peers: {tool} is not installed; run scripts/install-deps.sh",
                  file=sys.stderr)
            return 2
    loadgen = os.path.join(args.build, "bench", "fulcrum-loadgen")
    if not os.access(loadgen, os.X_OK):
        print(f"compare_peers: {loadgen} is missing; build with scripts/build.sh",
              file=sys.stderr)
        return 2

    started = time.time()
    load_before = open("/proc/loadavg").read().split()[0]
    backends = Backends(loadgen)
    bp = backends.ports
    peers = {"direct": Peer("direct", None, dict(bp))}
    peers["fulcrum"] = start_fulcrum(args.build, bp)
    peers["haproxy"] = start_haproxy(bp)
    peers["nginx"] = start_nginx(bp)
    bench = Bench(args, backends, peers)

    # Idle memory first, while every proxy is fresh, so earlier loads do not inflate the
    # baseline; the proxies only, since direct has no proxy process to measure.
    only = args.only_list
    if not only or any("memory".startswith(o) for o in only):
        for count in args.idle_counts:
            for name in PROXIES:
                print(f"idle memory {name} {count}", file=sys.stderr, flush=True)
                bench.idle_memory(peers[name], count)

    plan = metric_plan(bench)
    for r in range(args.rounds):
        order = list(PEERS[r % len(PEERS):] + PEERS[:r % len(PEERS)])
        for label, fn, applies in plan:
            for name in order:
                if name in applies:
                    print(f"round {r + 1}/{args.rounds} {label} {name}", file=sys.stderr,
                          flush=True)
                    fn(peers[name])

    load_after = open("/proc/loadavg").read().split()[0]
    exit_codes = {}
    for name in PROXIES:
        peers[name].stop()
        exit_codes[name] = peers[name].proc.returncode
    backends.stop()

    text = report(args, bench.samples, load_before, load_after, started, versions())
    print(text)
    print(f"\nproxy exit codes after stopping (SIGTERM; HAProxy SIGUSR1): {exit_codes}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"samples": [{"metric": m, "peer": p, "values": v}
                                   for (m, p), v in bench.samples.items()],
                       "exit_codes": exit_codes}, f, indent=1)
    return 0 if exit_codes["fulcrum"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
