"""Byte-exact transfer through Fulcrum: large duplex streams, many at once, and a slow reader.

    client ──► fulcrum (127.0.0.1:0) ──► Python backend (127.0.0.1:0)

Every stream is pseudo-random data made from a seed; each end hashes what it received, and the
test compares that with the hash the other end computed while sending (and with the hash the
seed alone gives, so a sender bug cannot hide a splicer bug).
"""

import hashlib
import socket
import threading
import time

from backends import (Backend, check, connect, duplex, proc_status_kb, recv_count, send_stream,
                      stream_digest, tcp_config, wait_closed)
from fulcrum_it import Fulcrum, run_tests

MB = 1 << 20


def duplex_handler(size, seed_of):
    """A backend that receives `size` bytes while sending its own `size`-byte stream.

    The client first sends a line 'id\\n' so concurrent connections can be told apart;
    seed_of(id) gives the backend's stream seed for that connection.
    """

    def handler(conn, backend):
        ident = b""
        while not ident.endswith(b"\n"):
            b = conn.recv(1)
            if not b:
                raise AssertionError(f"EOF before the id line (got {ident!r})")
            ident += b
        ident = ident.decode().strip()
        conn.settimeout(120)
        result = duplex(conn, seed_of(ident), size, size)
        result["id"] = ident
        # Any byte the client's side delivers beyond its stream would show up here.
        result["after"] = wait_closed(conn, 30.0)[0]
        backend.report(result)

    return handler


def run_duplex_client(addr, ident, client_seed, size):
    s = connect(addr, timeout=120.0)
    try:
        s.sendall(ident.encode() + b"\n")
        return duplex(s, client_seed, size, size)
    finally:
        s.close()


def verify(client, server, client_seed, server_seed, size, fulcrum, label):
    check(client["sent"] == stream_digest(client_seed, size),
          f"{label}: client's own send digest is not the seed's digest (test bug)", fulcrum)
    check(server["received"] == size,
          f"{label}: backend received {server['received']} of {size} bytes", fulcrum)
    check(server["received_digest"] == client["sent"],
          f"{label}: backend received {size} bytes but their sha256 differs from what the "
          "client sent (bytes corrupted, reordered or mixed with another connection)", fulcrum)
    check(client["received"] == size,
          f"{label}: client received {client['received']} of {size} bytes", fulcrum)
    check(client["received_digest"] == server["sent"] == stream_digest(server_seed, size),
          f"{label}: client received {size} bytes but their sha256 differs from what the "
          "backend sent", fulcrum)
    check(server["after"] == "eof", f"{label}: after the client closed, the backend saw "
          f"'{server['after']}' instead of a clean EOF", fulcrum)


# 200 MB client->backend and a different 200 MB backend->client, both at once, arrive intact.
def test_200mb_each_way_at_once():
    size = 200 * MB
    backend = Backend(duplex_handler(size, lambda ident: 2002))
    fulcrum = Fulcrum(tcp_config([backend]))
    t0 = time.monotonic()
    client = run_duplex_client(fulcrum.addr("front"), "big", 1001, size)
    server = backend.result(timeout=60, what="duplex result")
    elapsed = time.monotonic() - t0
    backend.check_no_errors()
    verify(client, server, 1001, 2002, size, fulcrum, "200 MB duplex")
    print(f"  200 MB each way in {elapsed:.1f}s ({2 * size / MB / elapsed:.0f} MB/s total)")
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()


# Eight concurrent connections with 10 MB each way keep their streams apart and intact.
def test_8_connections_10mb_each_way():
    size = 10 * MB
    n = 8
    backend = Backend(duplex_handler(size, lambda ident: 5000 + int(ident)))
    fulcrum = Fulcrum(tcp_config([backend]))
    clients = {}
    errors = []

    def client(i):
        try:
            clients[i] = run_duplex_client(fulcrum.addr("front"), str(i), 100 + i, size)
        except Exception as e:
            errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    check(not errors, "concurrent clients failed: " + "; ".join(errors), fulcrum)
    servers = {}
    for _ in range(n):
        r = backend.result(timeout=30, what="duplex result")
        servers[int(r["id"])] = r
    backend.check_no_errors()
    check(sorted(servers) == list(range(n)), f"backend saw ids {sorted(servers)}", fulcrum)
    for i in range(n):
        verify(clients[i], servers[i], 100 + i, 5000 + i, size, fulcrum, f"connection {i}")
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()


# A client that stops reading for 2 s makes Fulcrum stop reading the backend instead of
# buffering its 50 MB in memory; once the client reads again every byte arrives intact.
def test_slow_reader_backpressure():
    size = 50 * MB
    head = 1 * MB
    pause = 2.0
    written = [0]

    def writer(conn, backend):
        conn.settimeout(60)
        backend.report(send_stream(conn, 7007, size, progress=written))

    backend = Backend(writer)
    fulcrum = Fulcrum(tcp_config([backend]))
    pid = fulcrum.proc.pid

    s = connect(fulcrum.addr("front"), timeout=30)
    # A small receive buffer keeps the kernel from absorbing the pause on the client side;
    # Fulcrum's memory is what this test is about.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    h = hashlib.sha256()
    got, _ = recv_count(s, head, h=h)
    check(got == head, f"only {got} bytes arrived before the pause", fulcrum)

    # The baseline is taken with the session live, so it already holds its fixed buffers.
    rss_before = proc_status_kb(pid, "VmRSS")
    peak = rss_before
    t_end = time.monotonic() + pause
    while time.monotonic() < t_end:
        peak = max(peak, proc_status_kb(pid, "VmRSS"))
        time.sleep(0.05)
    written_in_pause = written[0]

    got_rest, digest = recv_count(s, size - head, h=h)
    peak = max(peak, proc_status_kb(pid, "VmHWM"))
    after = wait_closed(s, 10.0)[0]
    s.close()
    sent_digest = backend.result(timeout=30, what="writer digest")
    backend.check_no_errors()

    growth_mb = (peak - rss_before) / 1024
    print(f"  backend had written {written_in_pause / MB:.1f} of {size / MB:.0f} MB when the "
          f"pause ended; fulcrum RSS {rss_before / 1024:.1f} MB, peak {peak / 1024:.1f} MB")
    check(growth_mb <= 32, f"fulcrum RSS grew by {growth_mb:.1f} MB while the client was not "
          f"reading (limit 32 MB); the backend had written {written_in_pause / MB:.1f} MB by "
          "the end of the pause", fulcrum)
    check(head + got_rest == size, f"client received {head + got_rest} of {size} bytes after "
          "resuming", fulcrum)
    check(digest == sent_digest == stream_digest(7007, size),
          "client received 50 MB whose sha256 differs from what the backend sent", fulcrum)
    check(after == "eof", f"after the backend closed the client saw '{after}', not EOF",
          fulcrum)
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()



# The mirror image: a backend that stops reading for 2 s makes Fulcrum stop reading the
# client, so a 50 MB upload waits in the client instead of in Fulcrum's memory.
def test_slow_backend_backpressure():
    size = 50 * MB
    head = 1 * MB
    pause = 2.0
    written = [0]

    def slow_reader(conn, backend):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        conn.settimeout(60)
        h = hashlib.sha256()
        got, _ = recv_count(conn, head, h=h)
        backend.report(("head", got))
        time.sleep(pause)
        got_rest, digest = recv_count(conn, size - head, h=h)
        backend.report(("all", head + got_rest, digest))

    backend = Backend(slow_reader)
    fulcrum = Fulcrum(tcp_config([backend]))
    pid = fulcrum.proc.pid
    s = connect(fulcrum.addr("front"), timeout=60)
    upload = {}

    def uploader():
        try:
            upload["digest"] = send_stream(s, 8008, size, progress=written)
        except OSError as e:
            upload["error"] = repr(e)

    t = threading.Thread(target=uploader)
    t.start()
    tag, got = backend.result(timeout=30, what="head of the upload")
    check(got == head, f"backend got only {got} bytes before its pause", fulcrum)

    rss_before = proc_status_kb(pid, "VmRSS")
    peak = rss_before
    t_end = time.monotonic() + pause
    while time.monotonic() < t_end:
        peak = max(peak, proc_status_kb(pid, "VmRSS"))
        time.sleep(0.05)
    written_in_pause = written[0]

    tag, total, digest = backend.result(timeout=60, what="upload digest")
    peak = max(peak, proc_status_kb(pid, "VmHWM"))
    t.join(timeout=30)
    s.close()
    backend.check_no_errors()

    growth_mb = (peak - rss_before) / 1024
    print(f"  client had written {written_in_pause / MB:.1f} of {size / MB:.0f} MB when the "
          f"pause ended; fulcrum RSS {rss_before / 1024:.1f} MB, peak {peak / 1024:.1f} MB")
    check("error" not in upload, f"the upload failed: {upload.get('error')}", fulcrum)
    check(growth_mb <= 32, f"fulcrum RSS grew by {growth_mb:.1f} MB while the backend was not "
          f"reading (limit 32 MB); the client had written {written_in_pause / MB:.1f} MB by "
          "the end of the pause", fulcrum)
    check(total == size, f"backend received {total} of {size} bytes", fulcrum)
    check(digest == upload["digest"] == stream_digest(8008, size),
          "backend received 50 MB whose sha256 differs from what the client sent", fulcrum)
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()


run_tests(globals())
