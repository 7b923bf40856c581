"""The fulcrum command line: --version, check, run on a busy address, and SIGTERM draining.

    client ──► fulcrum (127.0.0.1:0) ──► Python backend (127.0.0.1:0)
"""

import glob
import os
import re
import signal
import socket
import subprocess
import time

from backends import (Backend, check, connect, recv_line, request, tcp_config, try_connect,
                      wait_closed)
from fulcrum_it import FULCRUM_BIN, SOURCE_DIR, Fulcrum, run_tests, tmpdir


def run_cli(*args, timeout=10):
    p = subprocess.run([FULCRUM_BIN, *args], capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def line_reporting(conn, backend):
    """Answers lines like line_handler, then reports how the client side ended."""
    try:
        while True:
            line = recv_line(conn)
            if not line:
                backend.report("eof")
                return
            conn.sendall(backend.name.encode() + b" " + line)
    except ConnectionResetError:
        backend.report("reset")


# `fulcrum --version` prints the version and exits 0.
def test_version():
    code, out, err = run_cli("--version")
    assert code == 0, f"--version exited {code}; stderr: {err}"
    assert out.strip() == "fulcrum 0.1.0", f"--version printed {out!r}"


# Every shipped config passes `fulcrum check` with a summary on stdout.
def test_check_shipped_configs():
    files = sorted(glob.glob(os.path.join(SOURCE_DIR, "conf", "*.toml")))
    assert files, f"no conf/*.toml under {SOURCE_DIR}"
    for path in files:
        code, out, err = run_cli("check", "-c", path)
        assert code == 0, f"fulcrum check -c {path} exited {code}; stderr:\n{err}"
        assert out.strip(), f"fulcrum check -c {path} printed no summary"
    print(f"  {len(files)} shipped configs pass: "
          + ", ".join(os.path.basename(f) for f in files))


GOOD = """\
[global]
workers = 1

[[listener]]
name = "front"
bind = "127.0.0.1:0"
pool = "back"
connect_timeout = "2s"

[pool.back]
backends = [
  { address = "127.0.0.1:7001" },
]
"""

# (description, text, line the error is on). Each breaks GOOD in one place.
BAD_CONFIGS = [
    ("unknown key in [global]", GOOD.replace("workers = 1", "wrokers = 1"), 2),
    ("listener names a missing pool", GOOD.replace('pool = "back"', 'pool = "nope"'), 7),
    ("duration without a unit", GOOD.replace('"2s"', '"2"'), 8),
    ("bad backend address", GOOD.replace("127.0.0.1:7001", "127.0.0.1:70001"), 12),
    ("unterminated string", GOOD.replace('name = "front"', 'name = "front'), 5),
    ("integer out of range", GOOD.replace("workers = 1", "workers = 100000"), 2),
]


# Broken configs make `fulcrum check` exit 1 with FILE:LINE:COLUMN pointing at the mistake.
def test_check_bad_configs():
    d = tmpdir("fulcrum-cli-")
    for i, (what, text, line) in enumerate(BAD_CONFIGS):
        path = os.path.join(d, f"bad{i}.toml")
        with open(path, "w") as f:
            f.write(text)
        code, out, err = run_cli("check", "-c", path)
        assert code == 1, f"{what}: fulcrum check exited {code}, expected 1; stderr:\n{err}"
        m = re.search(re.escape(path) + r":(\d+):(\d+):", err)
        assert m, f"{what}: stderr does not name {path}:LINE:COLUMN:\n{err}"
        assert int(m.group(1)) == line and int(m.group(2)) >= 1, \
            f"{what}: error points at {m.group(1)}:{m.group(2)}, the mistake is on line " \
            f"{line}:\n{err}"
        print(f"  {what}: {err.strip().splitlines()[0]}")
    code, out, err = run_cli("check", "-c", os.path.join(d, "missing.toml"))
    assert code == 1 and "missing.toml" in err, \
        f"a missing file gave exit {code} and stderr {err!r}"


# `fulcrum run` on an address another socket holds exits non-zero and says why.
def test_run_address_in_use():
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(8)
    port = holder.getsockname()[1]
    d = tmpdir("fulcrum-cli-")
    path = os.path.join(d, "busy.toml")
    with open(path, "w") as f:
        f.write(tcp_config(["127.0.0.1:7001"], bind=f"127.0.0.1:{port}"))
    try:
        code, out, err = run_cli("run", "-c", path, timeout=10)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"fulcrum run kept running on the busy address 127.0.0.1:{port}")
    finally:
        holder.close()
    text = out + err
    assert code != 0, f"fulcrum run on a busy address exited 0; output:\n{text}"
    assert re.search(r"in use", text, re.I) and str(port) in text, \
        f"the message does not say 127.0.0.1:{port} is in use:\n{text}"
    print(f"  exit {code}: {text.strip().splitlines()[-1]}")


# SIGTERM: Fulcrum stops accepting at once, lets the open session finish, then exits 0.
def test_sigterm_drains_open_session():
    backend = Backend(line_reporting, name="back")
    fulcrum = Fulcrum(tcp_config([backend], drain_timeout="10s"))
    addr = fulcrum.addr("front")
    s = connect(addr, timeout=5)
    request(s, "before")

    fulcrum.proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    state = "connected"
    while state == "connected" and time.monotonic() - t0 < 2.0:
        state = try_connect(addr, timeout=1.0)
        time.sleep(0.02)
    check(state == "refused", f"after SIGTERM new connects still got '{state}' for "
          f"{time.monotonic() - t0:.1f}s; expected them to be refused", fulcrum)

    for i in range(5):
        try:
            request(s, f"during drain {i}")
        except Exception as e:
            check(False, f"the open session broke during the drain: {e!r}", fulcrum)
        time.sleep(0.2)
    check(fulcrum.proc.poll() is None, "fulcrum exited while a session was still open "
          f"(exit {fulcrum.proc.poll()})", fulcrum)

    s.close()
    closed_at = time.monotonic()
    try:
        code = fulcrum.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        code = None
    secs = time.monotonic() - closed_at
    check(code == 0, f"after the last session closed fulcrum gave exit {code} within "
          f"{secs:.1f}s; expected exit 0 soon after", fulcrum)
    check(secs < 2.0, f"fulcrum took {secs:.1f}s to exit after the last session closed",
          fulcrum)
    print(f"  exited 0 {secs * 1000:.0f} ms after the last session closed")
    backend.kill()


# SIGTERM with a session that never ends: Fulcrum exits 0 after drain_timeout = 1s and the
# session is closed on both sides.
def test_sigterm_drain_timeout():
    backend = Backend(line_reporting, name="back")
    fulcrum = Fulcrum(tcp_config([backend], drain_timeout="1s"))
    s = connect(fulcrum.addr("front"), timeout=5)
    request(s, "hello")

    t0 = time.monotonic()
    fulcrum.proc.send_signal(signal.SIGTERM)
    try:
        code = fulcrum.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        code = None
    secs = time.monotonic() - t0
    check(code == 0, f"with a never-ending session and drain_timeout=1s, fulcrum gave exit "
          f"{code} after {secs:.1f}s; expected 0", fulcrum)
    check(0.8 <= secs <= 3.0, f"fulcrum exited {secs:.2f}s after SIGTERM; drain_timeout is "
          "1 s", fulcrum)
    kind, _ = wait_closed(s, 2.0)
    s.close()
    check(kind in ("eof", "reset"), f"after fulcrum exited the client saw '{kind}', not a "
          "closed session", fulcrum)
    end = backend.result(timeout=2, what="session end")
    check(end in ("eof", "reset"), f"the backend side ended with {end!r}", fulcrum)
    print(f"  exited 0 {secs:.2f}s after SIGTERM; client saw {kind}, backend saw {end}")
    backend.kill()



# SIGTERM as soon as a listener has reported itself started still means a clean exit 0: a
# supervisor that stops Fulcrum right after it came up must not see it die of the signal.
def test_sigterm_right_after_start():
    codes = []
    for _ in range(10):
        fulcrum = Fulcrum(tcp_config(["127.0.0.1:9"]))
        codes.append(fulcrum.stop())
        check(codes[-1] == 0, f"SIGTERM sent right after 'listener started' gave exit "
              f"{codes[-1]} (exit codes so far {codes}); expected 0 (-15 means the signal "
              "arrived before Fulcrum's handler was installed)", fulcrum)



# A second fulcrum on an address a first one already serves must refuse to start (exit 3)
# rather than join it through SO_REUSEPORT and silently take half its clients.
def test_second_instance_on_same_address_refused():
    backend = Backend(line_reporting, name="first")
    first = Fulcrum(tcp_config([backend]))
    host, port = first.addr("front")
    d = tmpdir("fulcrum-cli-")
    path = os.path.join(d, "second.toml")
    with open(path, "w") as f:
        f.write(tcp_config([backend], bind=f"{host}:{port}"))
    try:
        code, out, err = run_cli("run", "-c", path, timeout=10)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"a second fulcrum kept running on {host}:{port}, sharing it")
    text = out + err
    assert code == 3, f"second fulcrum on {host}:{port} exited {code}, want 3:\n{text}"
    assert re.search(r"in use", text, re.I) and str(port) in text, text
    # The first instance still serves every client.
    for _ in range(10):
        with connect((host, port)) as c:
            c.sendall(b"ping\n")
            assert recv_line(c) == b"first ping\n"
    assert first.stop() == 0


# SIGHUP (reload is not in this version) is logged and ignored: Fulcrum keeps serving.
def test_sighup_reloads_and_keeps_serving():
    backend = Backend(line_reporting, name="back")
    fulcrum = Fulcrum(tcp_config([backend]))
    addr = fulcrum.addr("front")
    fulcrum.proc.send_signal(signal.SIGHUP)
    fulcrum.wait_log(r"info config reloaded trigger=SIGHUP listeners=1 kept=1", timeout=5)
    time.sleep(0.2)
    assert fulcrum.proc.poll() is None, "fulcrum died on SIGHUP\n" + fulcrum.log()
    with connect(addr) as c:
        c.sendall(b"still there\n")
        assert recv_line(c) == b"back still there\n"
    assert fulcrum.stop() == 0

run_tests(globals())
