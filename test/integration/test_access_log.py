"""The access log: one line per finished session, with the right numbers, in logfmt or JSON,
and reopened on SIGUSR1 the way logrotate needs (rename, signal, new file)."""

import json
import os
import re
import signal
import socket
import time

from backends import Backend, check, connect, recv_exact, tcp_config
from fulcrum_it import Fulcrum, run_tests, tmpdir
from udp_helpers import Client, UdpBackend, echo, udp_config


def echo_handler(conn, backend):
    while True:
        data = conn.recv(65536)
        if not data:
            conn.shutdown(socket.SHUT_WR)
            return
        conn.sendall(data)


def session(fulcrum, payload):
    s = connect(fulcrum.addr("front"))
    s.sendall(payload)
    got = recv_exact(s, len(payload))
    s.shutdown(socket.SHUT_WR)
    rest = s.recv(100)
    s.close()
    assert got == payload and rest == b""
    return s


def wait_lines(path, n, timeout=5.0):
    deadline = time.time() + timeout
    lines = []
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                lines = [line for line in f.read().splitlines() if line]
            if len(lines) >= n:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"{path}: wanted {n} lines, have {lines}")


def test_json_file_and_reopen():
    backend = Backend(echo_handler)
    d = tmpdir()
    path = os.path.join(d, "access.log")
    config = tcp_config([backend]) + f'\n[access_log]\npath = "{path}"\nformat = "json"\n'
    f = Fulcrum(config)
    session(f, b"x" * 1000)
    first = wait_lines(path, 1)
    record = json.loads(first[0])
    check(list(record) == ["time", "listener", "protocol", "client", "backend", "bytes_up",
                           "bytes_down", "duration_ms", "reason"], f"fields: {list(record)}", f)
    check(record["listener"] == "front" and record["protocol"] == "tcp", str(record), f)
    check(record["backend"] == backend.address, str(record), f)
    check(record["bytes_up"] == 1000 and record["bytes_down"] == 1000, str(record), f)
    check(record["reason"] == "done", str(record), f)
    check(re.fullmatch(r"127\.0\.0\.1:\d+", record["client"]) is not None, str(record), f)
    check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"]) is not None,
          str(record), f)

    # logrotate: rename, then SIGUSR1; the next line lands in a new file at the old path.
    os.rename(path, path + ".1")
    f.proc.send_signal(signal.SIGUSR1)
    f.wait_log(rf"access log reopened path={re.escape(path)}")
    session(f, b"y" * 10)
    new = wait_lines(path, 1)
    check(json.loads(new[0])["bytes_up"] == 10, f"new file holds the new session: {new}", f)
    with open(path + ".1") as old:
        check(len(old.read().splitlines()) == 1, "the rotated file keeps its line", f)
    f.stop()
    backend.kill()


def test_logfmt_counts_every_session():
    backend = Backend(echo_handler)
    d = tmpdir()
    path = os.path.join(d, "access.log")
    config = tcp_config([backend]) + f'\n[access_log]\npath = "{path}"\n'
    f = Fulcrum(config)
    for i in range(20):
        session(f, b"z" * (i + 1))
    # A client that resets mid-session is logged with its reason.
    s = connect(f.addr("front"))
    s.sendall(b"abc")
    recv_exact(s, 3)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
    lines = wait_lines(path, 21)
    rx = re.compile(r"time=\S+ listener=front protocol=tcp client=127\.0\.0\.1:\d+ "
                    rf"backend={re.escape(backend.address)} bytes_up=(\d+) bytes_down=(\d+) "
                    r"duration_ms=\d+ reason=(\w+)$")
    parsed = [rx.match(line) for line in lines]
    check(all(parsed), f"every line is logfmt with all fields: {lines[:3]}", f)
    ups = sorted(int(m.group(1)) for m in parsed if m.group(3) == "done")
    check(ups == list(range(1, 21)), f"one line per session with its byte count: {ups}", f)
    check([m.group(3) for m in parsed].count("client_reset") == 1, f"reset logged: {lines}", f)
    f.stop()
    backend.kill()


def test_udp_sessions_are_logged():
    backend = UdpBackend(echo)
    d = tmpdir()
    path = os.path.join(d, "access.log")
    config = udp_config([backend], listener_opts={"replies": 1}) + \
        f'\n[access_log]\npath = "{path}"\nformat = "json"\n'
    f = Fulcrum(config)
    client = Client(f.addr("front"))
    payload, source = client.request(b"q" * 123)
    check(payload == b"q" * 123, "echoed", f)
    record = json.loads(wait_lines(path, 1)[0])
    check(record["protocol"] == "udp" and record["listener"] == "front", str(record), f)
    check(record["backend"] == backend.address, str(record), f)
    check(record["bytes_up"] == 123 and record["bytes_down"] == 123, str(record), f)
    check(record["reason"] == "replies_done", str(record), f)
    check(record["client"] == f"127.0.0.1:{client.address[1]}", str(record), f)
    client.close()
    f.stop()


def test_unwritable_path_is_refused_at_start():
    backend = Backend(echo_handler)
    config = tcp_config([backend]) + '\n[access_log]\npath = "/nonexistent-dir/a.log"\n'
    f = Fulcrum(config, wait=False)
    code = f.proc.wait(timeout=10)
    f._reader.join(timeout=5)
    check(code == 3, f"exit code 3 (cannot start), got {code}", f)
    check("cannot open access log /nonexistent-dir/a.log" in f.log(), "names the path", f)
    backend.kill()


if __name__ == "__main__":
    run_tests(globals())
