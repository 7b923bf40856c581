"""Redis through Fulcrum: three real redis-server instances behind one TCP listener.

    redis-benchmark ─┐                                         ┌► redis A (127.0.0.1:free)
    RespConn ────────┴► fulcrum "redis" (127.0.0.1:0, 2 workers)┼► redis B
                                                               └► redis C

For each algorithm: redis-benchmark (50 clients, 50000 requests, SET and GET) must finish with
no error; the connections each redis received (INFO stats, before and after) must be spread
as the algorithm says; and keys SET through Fulcrum must GET back through Fulcrum intact,
stored on exactly the one redis their connection reached.
"""

import os
import random
import re
import selectors
import socket
import struct
import subprocess
import time

from fulcrum_it import Fulcrum, run_tests
from real_servers import (Redis, RespConn, fulcrum_config, log_tail, require_tools,
                          stop_checked)

require_tools("redis-server", "redis-benchmark")

BENCH_CLIENTS = 50
BENCH_REQUESTS = 50000
BENCH_TESTS = ("SET", "GET")

REDIS = [Redis() for _ in range(3)]
PORT_TO_INDEX = {r.port: i for i, r in enumerate(REDIS)}


def start_fulcrum(algorithm, weights=(1, 1, 1), **pool_keys):
    backends = [(r.address, w) for r, w in zip(REDIS, weights)]
    pools = {"redis": {"algorithm": algorithm, **pool_keys, "backends": backends}}
    return Fulcrum(fulcrum_config([("redis", "127.0.0.1:0", "redis")], pools))


def snapshot():
    return [r.stats() for r in REDIS]


def deltas(before, after, key):
    return [a[key] - b[key] for b, a in zip(before, after)]


def run_benchmark(fulcrum):
    """Runs redis-benchmark through Fulcrum and checks it reported no error of any kind."""
    host, port = fulcrum.addr("redis")
    args = ["redis-benchmark", "-h", host, "-p", str(port), "-c", str(BENCH_CLIENTS),
            "-n", str(BENCH_REQUESTS), "-t", ",".join(t.lower() for t in BENCH_TESTS), "-q"]
    r = subprocess.run(args, capture_output=True, timeout=180)
    # -q rewrites a progress line with \r; the final figure of each test ends with \n. An error
    # reply or a dropped connection makes redis-benchmark 7 stop with a message and status 1.
    out = r.stdout.decode(errors="replace").replace("\r", "\n")
    err = r.stderr.decode(errors="replace")
    finished = dict(re.findall(r"^(SET|GET): ([\d.]+) requests per second", out, re.M))
    errors = [line for line in (out + "\n" + err).splitlines() if "error" in line.lower()]
    report = (f"\nredis-benchmark exit={r.returncode}\nstdout:\n{out[-2000:]}\n"
              f"stderr:\n{err[-2000:]}")
    assert r.returncode == 0, "redis-benchmark failed" + report + log_tail(fulcrum)
    assert not errors, f"redis-benchmark reported errors: {errors[:5]}" + report + log_tail(fulcrum)
    assert set(finished) == set(BENCH_TESTS), \
        f"missing final figures, got {finished}" + report + log_tail(fulcrum)
    return {k: float(v) for k, v in finished.items()}


def benchmark_and_count(fulcrum):
    """Runs the benchmark; checks every request reached a redis and none was refused; returns
    the new connections each redis received meanwhile."""
    before = snapshot()
    rates = run_benchmark(fulcrum)
    after = snapshot()

    commands = sum(deltas(before, after, "total_commands_processed"))
    expected = BENCH_REQUESTS * len(BENCH_TESTS)
    # Beyond the benchmark's own requests: its CONFIG GETs at start and our INFO calls.
    assert expected <= commands <= expected + 20, \
        f"redis servers processed {commands} commands, expected {expected} (+ a few)" \
        + log_tail(fulcrum)
    assert sum(deltas(before, after, "total_error_replies")) == 0, \
        f"redis sent error replies: {deltas(before, after, 'total_error_replies')}"
    assert sum(deltas(before, after, "rejected_connections")) == 0, "redis rejected connections"

    conns = deltas(before, after, "total_connections_received")
    # Every benchmark client opens one connection per test, plus one for its config queries.
    assert sum(conns) >= BENCH_CLIENTS * len(BENCH_TESTS), \
        f"only {sum(conns)} connections reached redis: {conns}" + log_tail(fulcrum)
    print(f"  benchmark {rates}, connections per redis {conns}", flush=True)
    return conns


def backend_of(conn):
    """Which redis a connection through Fulcrum reached, asked through that connection."""
    reply = conn.call("CONFIG", "GET", "port")
    return PORT_TO_INDEX[int(reply[1])]


def check_data_round_trip(fulcrum, label, connections=3):
    """SETs keys on several connections through Fulcrum and GETs them back on the same one:
    values (binary, up to 512 KiB) must come back byte for byte, and each connection's keys
    must live on exactly the redis that connection reached."""
    host, port = fulcrum.addr("redis")
    rng = random.Random(label)
    for c in range(connections):
        conn = RespConn(host, port)
        try:
            index = backend_of(conn)
            prefix = f"it:{label}:{os.getpid()}:{c}:"
            sizes = [rng.randrange(0, 300) for _ in range(400)] + [64 * 1024, 512 * 1024]
            values = {f"{prefix}{i}": rng.randbytes(n) for i, n in enumerate(sizes)}

            replies = conn.pipeline([("SET", k, v) for k, v in values.items()])
            bad = [r for r in replies if r != "OK"]
            assert not bad, f"SET through fulcrum answered {bad[:3]}" + log_tail(fulcrum)

            got = conn.pipeline([("GET", k) for k in values])
            wrong = [k for k, g in zip(values, got) if g != values[k]]
            assert not wrong, f"{len(wrong)} of {len(values)} values came back different, " \
                              f"first {wrong[:3]}" + log_tail(fulcrum)
        finally:
            conn.close()

        keys = list(values)
        held = [r.control.call("EXISTS", *keys) for r in REDIS]
        want = [len(keys) if i == index else 0 for i in range(len(REDIS))]
        assert held == want, f"connection {c} reached redis {index}, but its keys are held " \
                             f"{held} across redis A/B/C (expected {want})"
        for r in REDIS:
            r.control.call("DEL", *keys)


def assert_even(conns, fulcrum, tolerance=4):
    mean = sum(conns) / len(conns)
    assert all(abs(c - mean) <= tolerance for c in conns), \
        f"connections per redis {conns} are not even (mean {mean:.1f} +- {tolerance})" \
        + log_tail(fulcrum)


def assert_shares(counts, weights, tolerance, what, fulcrum):
    total = sum(counts)
    shares = [c / total for c in counts]
    want = [w / sum(weights) for w in weights]
    assert all(abs(s - w) <= tolerance for s, w in zip(shares, want)), \
        f"{what}: counts {counts} give shares {[round(s, 3) for s in shares]}, weights " \
        f"{list(weights)} want {[round(w, 3) for w in want]} (+- {tolerance})" + log_tail(fulcrum)


def rst_close(sock):
    """Closes with a reset, so no TIME_WAIT blocks reusing the same source address and port."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def pick_from(fulcrum, source):
    """Opens one connection from source (ip, port), asks which redis it reached, resets it."""
    conn = RespConn(*fulcrum.addr("redis"), source=source)
    try:
        return backend_of(conn)
    finally:
        conn.reader.close()
        rst_close(conn.sock)


def count_short_connections(fulcrum, n, sources=("127.0.0.1",)):
    """n new connections, each from a kernel-chosen port on one of the source IPs in turn."""
    counts = [0] * len(REDIS)
    for i in range(n):
        counts[pick_from(fulcrum, (sources[i % len(sources)], 0))] += 1
    return counts


# Round robin over equal weights gives each redis the same number of benchmark connections.
def test_round_robin():
    fulcrum = start_fulcrum("round_robin")
    try:
        assert_even(benchmark_and_count(fulcrum), fulcrum)
        check_data_round_trip(fulcrum, "round_robin")
    finally:
        stop_checked(fulcrum)


# Weights 1:2:3 split the benchmark's connections 1:2:3.
def test_round_robin_weights():
    weights = (1, 2, 3)
    fulcrum = start_fulcrum("round_robin", weights)
    try:
        conns = benchmark_and_count(fulcrum)
        assert_shares(conns, weights, 0.05, "round_robin 1:2:3 benchmark", fulcrum)
        check_data_round_trip(fulcrum, "round_robin_weights")
    finally:
        stop_checked(fulcrum)


def open_clients():
    """Client connections open on each redis now, without our control connection."""
    return [r.connected_clients() - 1 for r in REDIS]


def open_burst(addr, n):
    """n connections started at once (non-blocking connects, then wait for all), the way a
    client pool starts, so their SYNs reach Fulcrum together."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.setblocking(False)
        s.connect_ex(addr)
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_WRITE)
        pending, deadline = len(socks), time.time() + 10
        while pending and time.time() < deadline:
            for key, _ in sel.select(timeout=0.5):
                sel.unregister(key.fileobj)
                pending -= 1
    errors = [s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) for s in socks]
    assert pending == 0 and not any(errors), f"burst connects: {pending} pending, errors {errors}"
    return socks


def wait_open_clients(predicate, what, fulcrum, timeout=10.0):
    deadline = time.time() + timeout
    while not predicate(open_clients()):
        assert time.time() < deadline, f"timed out waiting for {what}: open connections per " \
                                       f"redis {open_clients()}" + log_tail(fulcrum)
        time.sleep(0.02)
    # Redis counts a connection gone as soon as it closes it; Fulcrum ends the session (and
    # its active count) just after, when it sees that close.
    time.sleep(0.3)


# least_conn: the benchmark runs clean and no redis is starved; a burst of connections opened
# at once from zero is split evenly (every flow must count from the moment it is assigned, not
# once its backend connect completes); and new connections go to the redis with the fewest.
def test_least_conn():
    fulcrum = start_fulcrum("least_conn")
    try:
        # Each benchmark phase opens its 50 clients while the previous phase's sessions are
        # still closing, so leftovers may tilt a phase; a fair share is 1/3, a starved one less
        # than 1/5.
        conns = benchmark_and_count(fulcrum)
        assert all(c >= 0.2 * sum(conns) for c in conns), \
            f"least_conn starved a redis in the benchmark: connections {conns}" \
            + log_tail(fulcrum)
        check_data_round_trip(fulcrum, "least_conn")
        host, port = fulcrum.addr("redis")

        wait_open_clients(lambda o: o == [0, 0, 0], "all sessions to end", fulcrum)
        burst = open_burst((host, port), 60)
        wait_open_clients(lambda o: sum(o) == 60, "60 burst connections to reach redis", fulcrum)
        per = open_clients()
        for s in burst:
            s.close()
        assert all(abs(n - 20) <= 2 for n in per), \
            f"60 connections opened at once were split {per} across redis A/B/C, expected " \
            f"20 each (+- 2)" + log_tail(fulcrum)

        wait_open_clients(lambda o: o == [0, 0, 0], "the burst sessions to end", fulcrum)
        # From here on one connection at a time, each used before the next is opened.
        held, where = [], []
        for _ in range(9):
            held.append(RespConn(host, port))
            where.append(backend_of(held[-1]))
        per = [where.count(i) for i in range(3)]
        assert per == [3, 3, 3], f"9 connections opened one by one landed {per}, expected 3 " \
                                 f"each" + log_tail(fulcrum)

        # Empty redis A: it now has 0 open connections against 3 and 3.
        for c, i in zip(held, where):
            if i == 0:
                c.close()
        wait_open_clients(lambda o: o == [0, 3, 3], "redis A's sessions to end", fulcrum)

        fresh, landed = [], []
        for _ in range(3):
            fresh.append(RespConn(host, port))
            landed.append(backend_of(fresh[-1]))
        assert landed == [0, 0, 0], f"with open connections A=0 B=3 C=3, three new ones went " \
                                    f"to {['ABC'[i] for i in landed]}, expected A A A" \
                                    + log_tail(fulcrum)
        for c in fresh + [c for c, i in zip(held, where) if i != 0]:
            c.close()
    finally:
        stop_checked(fulcrum)


# Maglev on source ip:port: the benchmark runs clean and reaches every redis; short
# connections from many ports spread evenly; one source ip:port always lands on the same
# redis, also in a freshly started Fulcrum (same config, so the same table on every node).
def test_maglev():
    fulcrum = start_fulcrum("maglev", hash_key="source_ip_port")
    try:
        conns = benchmark_and_count(fulcrum)
        assert all(c >= 0.15 * sum(conns) for c in conns), \
            f"maglev left a redis nearly idle in the benchmark: {conns}" + log_tail(fulcrum)
        check_data_round_trip(fulcrum, "maglev")

        # Shares of 1/3 over 900 hashed flows have a standard deviation of 0.016: +- 0.07 is
        # over 4 of them, so only a skewed table fails this.
        counts = count_short_connections(fulcrum, 900, [f"127.0.0.{i}" for i in range(1, 21)])
        assert_shares(counts, (1, 1, 1), 0.07, "maglev 900 short connections", fulcrum)

        sources = []
        for i in range(30):
            with socket.socket() as s:
                s.bind((f"127.0.1.{i + 1}", 0))
                sources.append(s.getsockname())
        first = [pick_from(fulcrum, s) for s in sources]
        again = [pick_from(fulcrum, s) for s in sources]
        assert first == again, f"same source ip:port, different redis:\n{first}\n{again}" \
            + log_tail(fulcrum)
        assert len(set(first)) > 1, f"30 sources all went to redis {first[0]}: hash ignored"
    finally:
        stop_checked(fulcrum)

    restarted = start_fulcrum("maglev", hash_key="source_ip_port")
    try:
        after = [pick_from(restarted, s) for s in sources]
        assert after == first, f"a restarted fulcrum maps the same sources differently:\n" \
                               f"{first}\n{after}" + log_tail(restarted)
    finally:
        stop_checked(restarted)


# Maglev weights 1:2:3 give table shares, hence connection shares, of 1:2:3.
def test_maglev_weights():
    weights = (1, 2, 3)
    fulcrum = start_fulcrum("maglev", weights, hash_key="source_ip_port")
    try:
        # Over 1500 hashed flows the shares' standard deviations are at most 0.013.
        counts = count_short_connections(fulcrum, 1500, [f"127.0.2.{i}" for i in range(1, 31)])
        assert_shares(counts, weights, 0.05, "maglev 1:2:3 over 1500 short connections", fulcrum)
        check_data_round_trip(fulcrum, "maglev_weights", connections=2)
    finally:
        stop_checked(fulcrum)


run_tests(globals())
