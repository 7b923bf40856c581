"""Bulk flows through Fulcrum's splice() path: every byte arrives once, in order.

    client ──► fulcrum (127.0.0.1:0) ──► Python backend (127.0.0.1:0)

A direction switches from copying to splice() through a pooled pipe after 512 KiB of full
reads, so every flow here is tens of megabytes. The streams carry their own offsets (each
64 KiB block starts with its index), so a lost, repeated or reordered block changes the
digest. Around them: a slow reader (the source must stop being read), half-close and
resets in the middle of a bulk direction, many flows at once, the access log's byte counts,
and the process's descriptor count once all flows are gone (pipes are pooled, at most 8 per
worker, so at most 16 descriptors per worker may remain).
"""

import hashlib
import json
import os
import socket
import struct
import threading
import time

from backends import (Backend, check, connect, fd_count, read_until_closed, recv_count, recv_to_eof,
                      set_linger_rst, tcp_config, wait_fds)
from fulcrum_it import Fulcrum, run_tests, tmpdir

MB = 1 << 20
BLOCK = 64 * 1024
PIPE_BYTES = 256 * 1024  # The splice pipe's size (F_SETPIPE_SZ in lb/runtime/pipe_pool).
CLIENT_RCVBUF = 256 * 1024
WORKERS = 2
POOLED_FDS = 16 * WORKERS  # PipePool::kMaxCached pipes of two descriptors per worker.
_BASE = os.urandom(BLOCK + 4096)


def block(seed, index):
    """Block `index` of stream `seed`: its own number, then bytes that shift with it."""
    start = (index * 977 + seed * 131) % 4096
    head = struct.pack(">QQ", seed, index)
    return head + _BASE[start + len(head):start + BLOCK]


def digest(seed, size):
    h = hashlib.sha256()
    for i in range(size // BLOCK):
        h.update(block(seed, i))
    return h.hexdigest()


def send_blocks(sock, seed, size, progress=None, pause_after=None, pause=None):
    for i in range(size // BLOCK):
        if pause_after is not None and i * BLOCK == pause_after:
            pause.wait(30)
        sock.sendall(block(seed, i))
        if progress is not None:
            progress[0] += BLOCK


def pipe_count(pid):
    n = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{name}").startswith("pipe:")
        except OSError:
            pass
    return n


def start(backend, access_path=None, idle="30s"):
    config = tcp_config([backend], workers=WORKERS, listener_opts={"idle_timeout": idle})
    if access_path:
        config += f'\n[access_log]\npath = "{access_path}"\nformat = "json"\n'
    return Fulcrum(config)


# Both directions at once on several flows: the client uploads UP bytes then shuts down
# writing; the backend sends DOWN bytes while it reads, then closes after the client's EOF.
def exchange_handler(down):
    def handler(conn, backend):
        seed = conn.recv(8)
        while len(seed) < 8:
            more = conn.recv(8 - len(seed))
            if not more:
                raise AssertionError("no seed")
            seed += more
        (n,) = struct.unpack(">Q", seed)
        t = threading.Thread(target=send_blocks, args=(conn, n + 1000, down), daemon=True)
        t.start()
        got, d = recv_to_eof(conn)
        t.join(60)
        conn.shutdown(socket.SHUT_WR)
        backend.report({"seed": n, "got": got, "digest": d})
    return handler


def run_exchange(addr, seed, up, down, out):
    s = connect(addr, timeout=30)
    try:
        s.sendall(struct.pack(">Q", seed))
        t = threading.Thread(target=lambda: (send_blocks(s, seed, up),
                                             s.shutdown(socket.SHUT_WR)), daemon=True)
        t.start()
        got, d = recv_to_eof(s)
        t.join(60)
        out[seed] = (got, d)
    finally:
        s.close()


def check_exchange(fulcrum, backend, seeds, up, down, out):
    results = {}
    for _ in seeds:
        r = backend.result(timeout=45, what="upload digest")
        results[r["seed"]] = r
    backend.check_no_errors()
    for seed in seeds:
        check(results[seed]["got"] == up and results[seed]["digest"] == digest(seed, up),
              f"upload {seed}: {results[seed]['got']} bytes, digest mismatch or short", fulcrum)
        got, d = out.get(seed, (0, ""))
        check(got == down and d == digest(seed + 1000, down),
              f"download {seed}: {got} of {down} bytes or digest mismatch", fulcrum)


def test_concurrent_bulk_both_ways_and_access_log():
    # 12 flows, both directions bulky: about 12 pipes per worker, more than the pool keeps,
    # so the pool's overflow (pipes closed on release) is taken too.
    up = down = 16 * MB
    seeds = list(range(1, 13))
    backend = Backend(exchange_handler(down))
    access = os.path.join(tmpdir(), "access.log")
    fulcrum = start(backend, access)
    pid = fulcrum.proc.pid
    baseline = fd_count(pid)
    out = {}
    threads = [threading.Thread(target=run_exchange, args=(fulcrum.addr("front"), s, up, down,
                                                           out), daemon=True) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(50)
    check_exchange(fulcrum, backend, seeds, up, down, out)

    # Every session logs the bytes it carried, the seed's 8 bytes included.
    deadline = time.time() + 5
    records = []
    while time.time() < deadline:
        with open(access) as f:
            records = [json.loads(line) for line in f if line.strip()]
        if len(records) >= len(seeds):
            break
        time.sleep(0.05)
    check(len(records) == len(seeds), f"{len(records)} access records", fulcrum)
    for r in records:
        check(r["bytes_up"] == up + 8 and r["bytes_down"] == down and r["reason"] == "done",
              f"access record {r}", fulcrum)
    check(wait_fds(pid, baseline + POOLED_FDS),
          f"fds {fd_count(pid)} > baseline {baseline} + {POOLED_FDS} pooled", fulcrum)
    fulcrum.stop()


# The client stops reading in the middle of a 64 MB download. The backend must stall within
# the kernel buffers plus one pipe, not keep going into Fulcrum's memory; then every byte
# arrives once the client reads again.
def test_slow_reader_backpressure():
    size = 64 * MB
    progress = [0]

    def handler(conn, backend):
        send_blocks(conn, 7, size, progress)
        conn.shutdown(socket.SHUT_WR)
        backend.report("sent")

    backend = Backend(handler)
    fulcrum = start(backend)
    pipes_before = pipe_count(fulcrum.proc.pid)
    s = connect(fulcrum.addr("front"), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
    first, h = 0, hashlib.sha256()
    buf = bytearray(BLOCK)
    while first < 4 * MB:  # Enough to be on the splice path.
        n = s.recv_into(buf, min(BLOCK, 4 * MB - first))
        check(n > 0, "early EOF", fulcrum)
        h.update(memoryview(buf)[:n])
        first += n
    time.sleep(1.5)
    stalled_at = progress[0]
    time.sleep(1.0)
    check(progress[0] == stalled_at, f"backend kept sending while the client did not read: "
          f"{stalled_at} -> {progress[0]}", fulcrum)
    # What the kernel may hold: the client's receive buffer (set above; the kernel doubles
    # it), Fulcrum's send buffer towards it, one pipe, Fulcrum's receive buffer from the
    # backend (TCP autotuning grows it up to tcp_rmem's maximum, 32 MB on this kernel) and
    # the backend's send buffer; plus the block the backend is in the middle of. Anything
    # beyond that would be bytes held in Fulcrum's memory.
    rmem_max = int(open("/proc/sys/net/ipv4/tcp_rmem").read().split()[2])
    wmem_max = int(open("/proc/sys/net/ipv4/tcp_wmem").read().split()[2])
    bound = 2 * CLIENT_RCVBUF + wmem_max + PIPE_BYTES + rmem_max + wmem_max + BLOCK
    check(stalled_at - first <= bound,
          f"{stalled_at - first} bytes in flight, more than the kernel buffers and one pipe "
          f"({bound})", fulcrum)
    # The stalled direction is on the splice path: its pipe is open.
    check(pipe_count(fulcrum.proc.pid) > pipes_before, "no splice pipe while stalled", fulcrum)
    while True:
        n = s.recv_into(buf)
        if n == 0:
            break
        h.update(memoryview(buf)[:n])
        first += n
    s.close()
    check(backend.result(timeout=30) == "sent", "backend did not finish", fulcrum)
    check(first == size and h.hexdigest() == digest(7, size),
          f"slow reader got {first} of {size} bytes or a digest mismatch", fulcrum)
    fulcrum.stop()


# Half-close in the middle of bulk: the backend sends 16 MB and shuts down writing while the
# client is still uploading 48 MB; the client sees EOF after exactly 16 MB and the upload
# still arrives whole, after which the backend replies with its digest.
def test_half_close_mid_bulk():
    up, down = 48 * MB, 16 * MB

    def handler(conn, backend):
        send_blocks(conn, 21, down)
        conn.shutdown(socket.SHUT_WR)
        got, d = recv_to_eof(conn)
        backend.report({"got": got, "digest": d})

    backend = Backend(handler)
    fulcrum = start(backend)
    s = connect(fulcrum.addr("front"), timeout=30)
    out = {}

    def reader():
        out["down"] = recv_to_eof(s)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    send_blocks(s, 22, up)
    t.join(30)
    s.shutdown(socket.SHUT_WR)
    r = backend.result(timeout=30)
    check(out.get("down", (0, ""))[0] == down and out["down"][1] == digest(21, down),
          f"download before backend FIN: {out.get('down')}", fulcrum)
    check(r["got"] == up and r["digest"] == digest(22, up),
          f"upload after backend FIN: {r['got']} bytes", fulcrum)
    # Both ends finished: the client now sees its own EOF after the half-close.
    s.settimeout(5)
    check(s.recv(1) == b"", "no EOF after both sides finished", fulcrum)
    s.close()
    fulcrum.stop()


# A reset in the middle of a spliced direction reaches the other side as a reset, and the
# session's descriptors (sockets and pipe) are released; a later flow is intact, so no pipe
# with stale bytes went back to the pool.
def test_resets_mid_bulk_release_everything():
    size = 64 * MB

    def sender(conn, backend):
        try:
            send_blocks(conn, 31, size)
            backend.report("sent all")
        except OSError as e:
            backend.report(type(e).__name__)

    backend = Backend(sender)
    fulcrum = start(backend)
    pid = fulcrum.proc.pid
    baseline = fd_count(pid)

    # Client resets after 8 MB of a download: the backend's send must fail.
    for _ in range(3):
        s = connect(fulcrum.addr("front"), timeout=30)
        got, _ = recv_count(s, 8 * MB)
        check(got == 8 * MB, f"got {got}", fulcrum)
        set_linger_rst(s)
        s.close()
        r = backend.result(timeout=15, what="backend send outcome")
        check(r in ("ConnectionResetError", "BrokenPipeError"),
              f"backend saw {r} after the client reset", fulcrum)

    # Backend resets after 8 MB of an upload: the client sees a reset, not a clean end.
    def reset_reader(conn, backend):
        recv_count(conn, 8 * MB)
        set_linger_rst(conn)
        backend.report("reset")

    backend.handler = reset_reader
    s = connect(fulcrum.addr("front"), timeout=30)
    try:
        send_blocks(s, 32, size)
        kind = "sent all"
    except OSError as e:
        kind = type(e).__name__
    check(backend.result(timeout=15) == "reset", "backend handler", fulcrum)
    check(kind in ("ConnectionResetError", "BrokenPipeError"),
          f"client upload ended with {kind} after the backend reset", fulcrum)
    s.close()

    check(wait_fds(pid, baseline + POOLED_FDS),
          f"fds {fd_count(pid)} > baseline {baseline} + {POOLED_FDS} pooled", fulcrum)

    # Pooled pipes now serve a fresh flow: it must be byte-exact.
    backend.handler = exchange_handler(16 * MB)
    out = {}
    run_exchange(fulcrum.addr("front"), 40, 16 * MB, 16 * MB, out)
    check_exchange(fulcrum, backend, [40], 16 * MB, 16 * MB, out)
    fulcrum.stop()


# --- Close paths with bytes parked in pipes ------------------------------------------------
# Each flow below is stuck in both directions: client and backend each read 4 MB, then stop
# reading while the other keeps sending, so both pipes hold bytes. The session then ends by
# idle timeout, by on_down = "close" or by shutdown; every descriptor must go (a pipe with
# bytes in it must be closed, not pooled: the fresh flow afterwards checks that).

def stuck_handler(conn, backend):
    try:
        recv_count(conn, 4 * MB)
        send_blocks(conn, 51, 64 * MB)
        backend.report("sent all")
    except OSError as e:
        backend.report(type(e).__name__)


def open_stuck_flows(fulcrum, n):
    flows = []
    for i in range(n):
        s = connect(fulcrum.addr("front"), timeout=30)

        def upload(sock=s, seed=60 + i):
            try:
                send_blocks(sock, seed, 64 * MB)
            except OSError:
                pass

        t = threading.Thread(target=upload, daemon=True)
        t.start()
        got, _ = recv_count(s, 4 * MB)
        check(got == 4 * MB, f"stuck flow {i}: only {got} bytes before stalling", fulcrum)
        flows.append((s, t))
    return flows


def close_stuck_flows(fulcrum, backend, flows, timeout=10):
    for _ in flows:
        r = backend.result(timeout=timeout, what="backend send outcome")
        check(r in ("ConnectionResetError", "BrokenPipeError"),
              f"backend send ended with {r} when the session was closed", fulcrum)
    for s, t in flows:
        t.join(timeout)
        check(not t.is_alive(), "client upload still blocked after the session closed",
              fulcrum)
        s.close()


def stuck_config(backend, pool_extra="", health=None, idle="30s", drain="5s"):
    lines = ["[global]", f"workers = {WORKERS}", 'log_level = "info"',
             f'drain_timeout = "{drain}"', "", "[[listener]]", 'name = "front"',
             'bind = "127.0.0.1:0"', 'pool = "front"', f'idle_timeout = "{idle}"', "",
             "[pool.front]", 'algorithm = "round_robin"', "retries = 0", pool_extra,
             f'backends = [ {{ address = "{backend.address}"'
             + (f", health = {{ port = {health.backend.port} }}" if health else "") + " } ]"]
    if health is not None:
        lines += ["", "[pool.front.health]", 'type = "tcp"', 'interval = "200ms"',
                  'timeout = "100ms"', "rise = 1", "fall = 1"]
    return "\n".join(lines) + "\n"


def check_clean_after(fulcrum, backend, baseline):
    pid = fulcrum.proc.pid
    check(wait_fds(pid, baseline + POOLED_FDS),
          f"fds {fd_count(pid)} > baseline {baseline} + {POOLED_FDS} pooled", fulcrum)
    backend.handler = exchange_handler(16 * MB)
    for seed in (70, 71, 72, 73):
        out = {}
        run_exchange(fulcrum.addr("front"), seed, 16 * MB, 16 * MB, out)
        check_exchange(fulcrum, backend, [seed], 16 * MB, 16 * MB, out)


def test_idle_timeout_with_full_pipes():
    backend = Backend(stuck_handler)
    fulcrum = Fulcrum(stuck_config(backend, idle="1s"))
    pid = fulcrum.proc.pid
    baseline, pipes_before = fd_count(pid), pipe_count(pid)
    flows = open_stuck_flows(fulcrum, 3)
    check(pipe_count(pid) >= pipes_before + 2 * 3, "stuck flows hold no pipes", fulcrum)
    close_stuck_flows(fulcrum, backend, flows)
    check_clean_after(fulcrum, backend, baseline)
    fulcrum.stop()


class _CheckPort:
    def __init__(self):
        self.backend = Backend(lambda conn, b: None)


def test_on_down_close_with_full_pipes():
    backend = Backend(stuck_handler)
    health = _CheckPort()
    fulcrum = Fulcrum(stuck_config(backend, pool_extra='on_down = "close"', health=health))
    pid = fulcrum.proc.pid
    baseline, pipes_before = fd_count(pid), pipe_count(pid)
    flows = open_stuck_flows(fulcrum, 3)
    check(pipe_count(pid) >= pipes_before + 2 * 3, "stuck flows hold no pipes", fulcrum)
    ups = fulcrum.count_log(r" backend up pool=front backend=")
    health.backend.kill()
    fulcrum.wait_log(r"sessions closed for backend down", timeout=5)
    close_stuck_flows(fulcrum, backend, flows)
    # Back up, so the fresh flows have a backend.
    health.backend = Backend(lambda conn, b: None, port=health.backend.port)
    fulcrum.wait_for(lambda: fulcrum.count_log(r" backend up pool=front backend=") > ups, 5,
                     "backend up again")
    check_clean_after(fulcrum, backend, baseline)
    fulcrum.stop()


def test_shutdown_with_full_pipes():
    backend = Backend(stuck_handler)
    fulcrum = Fulcrum(stuck_config(backend, drain="500ms"))
    flows = open_stuck_flows(fulcrum, 3)
    code = fulcrum.stop()
    check(code == 0, f"fulcrum exited {code} after aborting stuck sessions", fulcrum)
    close_stuck_flows(fulcrum, backend, flows)


if __name__ == "__main__":
    run_tests(globals())
