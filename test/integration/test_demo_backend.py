"""The demo backend on its own (no Fulcrum in between): TCP line mode, HTTP mode through curl and
raw sockets, UDP, robustness against bad input and non-reading clients, and clean exit."""

import os
import signal
import socket
import subprocess
import time

from fulcrum_it import DEMO_BACKEND, DemoBackend, run_tests
from real_servers import require_tools

require_tools("curl")


def connect(addr, timeout=5.0):
    return socket.create_connection(addr, timeout=timeout)


def recv_until_eof(sock, limit=64 * 1024 * 1024):
    data = bytearray()
    while len(data) < limit:
        chunk = sock.recv(1024 * 1024)
        if not chunk:
            return bytes(data)
        data += chunk
    raise AssertionError(f"peer kept sending past {limit} bytes")


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"connection closed after {len(data)} of {n} expected bytes: {data!r}"
        data += chunk
    return data


def curl(*args):
    r = subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True,
                       timeout=30)
    assert r.returncode == 0, f"curl {args} failed ({r.returncode}): {r.stderr.decode()}"
    return r.stdout.decode()


def http_url(addr, path="/"):
    host, port = addr
    return f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"


def assert_alive(backend):
    assert backend.proc.poll() is None, f"demo backend died:\n{backend.log()}"
    with connect(backend.tcp[0]) as s:
        s.sendall(b"still there?\n")
        assert recv_exactly(s, len(b"alpha still there?\n")) == b"alpha still there?\n"


BACKEND = DemoBackend("alpha", tcp=["127.0.0.1:0", "[::1]:0"], udp=["127.0.0.1:0", "[::1]:0"])


# Replies come per line, whatever way the bytes are split, over IPv4 and IPv6; a half-close gets
# the last unterminated line answered and then the backend's own FIN.
def test_line_mode_answers_each_line_over_v4_and_v6():
    for addr in BACKEND.tcp:
        with connect(addr) as s:
            for piece in (b"hel", b"lo\r\nwor", b"ld\n", b"\n"):
                s.sendall(piece)
                time.sleep(0.02)
            want = b"alpha hello\nalpha world\nalpha \n"
            got = recv_exactly(s, len(want))
            assert got == want, f"{addr}: expected {want!r}, got {got!r}"

            s.sendall(b"one\ntwo\nlast without newline")
            s.shutdown(socket.SHUT_WR)
            rest = recv_until_eof(s)
            want = b"alpha one\nalpha two\nalpha last without newline\n"
            assert rest == want, f"{addr}: after half-close expected {want!r}, got {rest!r}"


# curl sees a well-formed HTTP/1.1 answer: keep-alive reuses the connection, Connection: close
# is honoured, HEAD has no body, POST bodies are skipped, IPv6 works too.
def test_http_mode_with_curl():
    for addr in BACKEND.tcp:
        out = curl("-w", "|%{http_code} %{num_connects}\n", http_url(addr, "/a"),
                   http_url(addr, "/b"))
        assert out == "alpha\n|200 1\nalpha\n|200 0\n", \
            f"{addr}: two keep-alive requests should share one connection, got {out!r}"

    headers = curl("-D", "-", "-o", "/dev/null", "-H", "Connection: close",
                   http_url(BACKEND.tcp[0]))
    assert headers.startswith("HTTP/1.1 200 OK\r\n"), headers
    assert "Connection: close\r\n" in headers, f"Connection: close not echoed: {headers!r}"
    assert "Content-Type: text/plain\r\n" in headers, headers

    head = curl("-I", http_url(BACKEND.tcp[0]))
    assert "Content-Length: 6\r\n" in head, f"HEAD should announce the GET length: {head!r}"

    body = curl("-d", "x=1&y=2", http_url(BACKEND.tcp[1], "/post"))
    assert body == "alpha\n", f"POST answered with {body!r}"


# Pipelined requests with bodies are answered in order, each with a correct Content-Length,
# and `Connection: close` ends the connection after its own response.
def test_http_pipelining_bodies_and_close():
    requests = (b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
                b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                b"GET /4 HTTP/1.1\r\nHost: x\r\n\r\n")
    with connect(BACKEND.tcp[0]) as s:
        s.sendall(requests)
        data = recv_until_eof(s)

    responses = data.split(b"HTTP/1.1 ")[1:]
    assert len(responses) == 3, f"expected 3 responses then close, got {len(responses)}: {data!r}"
    for i, r in enumerate(responses):
        head, _, body = r.partition(b"\r\n\r\n")
        assert head.startswith(b"200 OK"), f"response {i + 1}: {r!r}"
        assert body == b"alpha\n", f"response {i + 1} body {body!r}"
        assert b"Content-Length: 6" in head, f"response {i + 1} head {head!r}"
    assert b"Connection: close" in responses[2], responses[2]

    # HTTP/1.0 closes by default, and keeps the connection only when asked to.
    with connect(BACKEND.tcp[0]) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = recv_until_eof(s)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nalpha\n"), data
    assert b"Connection: close\r\n" in data, data
    with connect(BACKEND.tcp[0]) as s:
        s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = recv_exactly(s, len(data.replace(b"close", b"keep-alive")))
        assert b"Connection: keep-alive\r\n" in first, first
        s.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
        second = recv_until_eof(s)
        assert second.startswith(b"HTTP/1.1 200 OK") and second.endswith(b"\r\n\r\n"), second


# Every datagram gets "NAME\n" back, sent to the datagram's sender, over IPv4 and IPv6.
def test_udp_replies_to_each_datagram():
    for host, port in BACKEND.udp:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.bind((host, 0))
            for payload in (b"ping", b"", b"x" * 1400):
                s.sendto(payload, (host, port))
                data, sender = s.recvfrom(2048)
                assert data == b"alpha\n", f"udp {host}: reply {data!r} to {payload[:10]!r}"
                assert sender[:2] == (host, port), f"reply came from {sender}, not the backend"


# Garbage, an endless line, a malformed or oversized HTTP head and a chunked body close only
# the connection concerned; the backend keeps serving.
def test_bad_input_closes_only_that_connection():
    with connect(BACKEND.tcp[0]) as s:
        s.sendall(os.urandom(4096).replace(b"\n", b"."))
        s.sendall(b"x" * (200 * 1024))
        try:
            data = recv_until_eof(s)
        except ConnectionResetError:
            data = b""
        assert data == b"", f"an over-long line should close without reply, got {data[:80]!r}"

    cases = [
        (b"GET /\r\n\r\n", b"HTTP/1.1 400 "),
        (b"GET / HTTP/1.1\r\nbad header line\r\n\r\n", b"HTTP/1.1 400 "),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         b"HTTP/1.1 400 "),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * (100 * 1024) + b"\r\n\r\n", b"HTTP/1.1 431 "),
    ]
    for request, status in cases:
        with connect(BACKEND.tcp[0]) as s:
            try:
                s.sendall(request)
                data = recv_until_eof(s)
            except (ConnectionResetError, BrokenPipeError):
                data = b"(reset)"
            assert data.startswith(status), f"{request[:40]!r}...: expected {status!r}, " \
                                            f"got {data[:80]!r}"
    assert_alive(BACKEND)


# A client that sends without reading makes the backend stop reading (its own queue stays
# bounded) instead of buffering everything; once the client reads, every reply arrives.
def test_non_reading_client_is_backpressured():
    chunk = b"x\n" * 4096
    budget = 48 * 1024 * 1024
    with connect(BACKEND.tcp[0]) as s:
        s.setblocking(False)
        sent = 0
        last_progress = time.time()
        while sent < budget and time.time() - last_progress < 1.0:
            try:
                sent += s.send(chunk[sent % len(chunk):])
                last_progress = time.time()
            except BlockingIOError:
                time.sleep(0.01)
        assert sent < budget, f"backend accepted all {sent} bytes without anyone reading replies"

        s.setblocking(True)
        s.settimeout(10)
        s.shutdown(socket.SHUT_WR)
        data = recv_until_eof(s)
    want_lines = (sent + 1) // 2  # An odd count ends in a lone "x", answered at half-close.
    assert data == b"alpha x\n" * want_lines, \
        f"sent {sent} bytes ({want_lines} lines), got {len(data)} bytes of replies"
    assert_alive(BACKEND)


# SIGTERM and SIGINT both end the process with status 0, even with a client connected.
def test_signals_exit_zero():
    for sig in (signal.SIGTERM, signal.SIGINT):
        b = DemoBackend("beta", tcp=["127.0.0.1:0"])
        idle = connect(b.tcp[0])
        code = b.stop(sig)
        idle.close()
        assert code == 0, f"exit status {code} after {sig.name}:\n{b.log()}"


# Bad command lines fail with a message instead of starting a half-configured server.
def test_bad_arguments_are_refused():
    for args in (["--name", "x"], ["--name", "x", "--tcp", "127.0.0.1"],
                 ["--name", "x", "--tcp", "localhost:80"], ["--name", "x", "--udp", "::1:80"],
                 ["--name", "x", "--tcp", "127.0.0.1:99999"], ["--tcp", "127.0.0.1:0"]):
        r = subprocess.run([DEMO_BACKEND, *args], capture_output=True, timeout=10)
        assert r.returncode != 0, f"{args} was accepted: {r.stdout!r}"
        assert r.stderr.strip(), f"{args} refused without a message"


# Last: the backend every test above used shuts down cleanly after all of it (under the
# sanitizers a leak or a bad access would show here as a non-zero status).
def test_shared_backend_exits_cleanly():
    code = BACKEND.stop()
    assert code == 0, f"exit status {code}:\n{BACKEND.log()}"


run_tests(globals())
