"""systemd integration: the notify protocol seen from a fake NOTIFY_SOCKET (READY=1 only once
listeners accept, watchdog pings, STOPPING=1 on drain), and the shipped unit file accepted by
systemd-analyze with no warning."""

import os
import shutil
import socket
import subprocess
import time

from backends import Backend, check, line_handler, tcp_config
from fulcrum_it import FULCRUM_BIN, Fulcrum, run_tests, tmpdir

SOURCE_DIR = os.environ.get("FULCRUM_SOURCE_DIR",
                            os.path.join(os.path.dirname(__file__), "..", ".."))


def receive(sock, timeout):
    """Notify messages received within timeout, as dicts of their KEY=VALUE lines."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(4096)
        except socket.timeout:
            break
        out.append(dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line))
    return out


def test_notify_ready_watchdog_stopping():
    d = tmpdir()
    path = os.path.join(d, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    backend = Backend(line_handler)
    saved = dict(os.environ)
    os.environ.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    try:
        f = Fulcrum(tcp_config([backend]))
    finally:
        os.environ.clear()
        os.environ.update(saved)

    messages = receive(sock, 0.6)
    ready = [m for m in messages if m.get("READY") == "1"]
    check(len(ready) == 1, f"exactly one READY=1: {messages}", f)
    check("serving 1 listener(s)" in ready[0].get("STATUS", ""), f"status: {ready}", f)
    pings = [m for m in messages if m.get("WATCHDOG") == "1"]
    # 0.6 s at one ping per 100 ms (half of 200 ms).
    check(4 <= len(pings) <= 8, f"watchdog pings every 100 ms: {len(pings)} in 0.6 s", f)
    f.wait_log(r"systemd watchdog enabled interval_ms=200")

    f.proc.send_signal(15)
    messages = receive(sock, 1.0)
    check(any(m.get("STOPPING") == "1" for m in messages), f"STOPPING=1 on SIGTERM: {messages}",
          f)
    f.stop()
    sock.close()
    backend.kill()


def test_without_notify_socket_nothing_changes():
    backend = Backend(line_handler)
    saved = os.environ.pop("NOTIFY_SOCKET", None)
    try:
        f = Fulcrum(tcp_config([backend]))
    finally:
        if saved is not None:
            os.environ["NOTIFY_SOCKET"] = saved
    check("watchdog" not in f.log(), "no watchdog outside systemd", f)
    check(f.stop() == 0, "clean exit", f)
    backend.kill()


def test_unit_file_verifies():
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze (package systemd) is required"
    d = tmpdir()
    with open(os.path.join(SOURCE_DIR, "conf", "fulcrum.service")) as f:
        unit = f.read()
    check("Type=notify" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit,
          "the unit is Type=notify and reloads with SIGHUP")
    # verify wants the binaries to exist; point them at the one under test.
    path = os.path.join(d, "fulcrum.service")
    with open(path, "w") as f:
        f.write(unit.replace("/usr/local/bin/fulcrum", os.path.abspath(FULCRUM_BIN)))
    result = subprocess.run([tool, "verify", path], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if path in line or "fulcrum.service" in line]
    check(result.returncode == 0 and not problems,
          f"systemd-analyze verify: rc={result.returncode} {problems}")


if __name__ == "__main__":
    run_tests(globals())
