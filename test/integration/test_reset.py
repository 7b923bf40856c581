"""Resets through Fulcrum: an RST from one side reaches the other as a reset, not as a FIN.

    client ──► fulcrum (127.0.0.1:0) ──► Python backend (127.0.0.1:0)

A peer that aborts (SO_LINGER {1, 0} then close) tells the other end the data may be
incomplete; turning that into a clean EOF would let a truncated transfer pass for a finished
one.
"""

from backends import (Backend, check, connect, read_until_closed, recv_line, set_linger_rst,
                      tcp_config, wait_closed)
from fulcrum_it import Fulcrum, run_tests

ROUNDS = 5
PROMPT = 1.0  # Seconds within which the reset must arrive.


# A client that aborts its connection makes the backend's recv fail with ECONNRESET promptly.
def test_client_reset_reaches_backend():
    def handler(conn, backend):
        line = recv_line(conn)
        conn.sendall(b"ok\n")
        backend.report(("ready", line))
        backend.report(wait_closed(conn, 10.0))

    backend = Backend(handler)
    fulcrum = Fulcrum(tcp_config([backend]))
    for i in range(ROUNDS):
        s = connect(fulcrum.addr("front"), timeout=10)
        s.sendall(b"hello\n")
        check(recv_line(s) == b"ok\n", f"round {i}: no answer before the reset", fulcrum)
        tag, line = backend.result(what="ready")
        check(line == b"hello\n", f"round {i}: backend read {line!r}", fulcrum)
        set_linger_rst(s)
        s.close()
        kind, secs = backend.result(timeout=15, what="close observation")
        check(kind == "reset", f"round {i}: the client reset its connection but the backend "
              f"saw '{kind}' after {secs:.2f}s (expected ECONNRESET)", fulcrum)
        check(secs < PROMPT, f"round {i}: the reset reached the backend after {secs:.2f}s",
              fulcrum)
    backend.check_no_errors()
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()


# A backend that aborts its connection makes the client's recv fail with ECONNRESET promptly.
def test_backend_reset_reaches_client():
    def handler(conn, backend):
        recv_line(conn)
        conn.sendall(b"ok\n")
        # Wait for the client's acknowledgement so the reset does not race the answer.
        recv_line(conn)
        set_linger_rst(conn)
        conn.close()

    backend = Backend(handler)
    fulcrum = Fulcrum(tcp_config([backend]))
    for i in range(ROUNDS):
        s = connect(fulcrum.addr("front"), timeout=10)
        s.sendall(b"hello\n")
        check(recv_line(s) == b"ok\n", f"round {i}: no answer before the reset", fulcrum)
        s.sendall(b"ack\n")
        kind, secs = wait_closed(s, 10.0)
        s.close()
        check(kind == "reset", f"round {i}: the backend reset its connection but the client "
              f"saw '{kind}' after {secs:.2f}s (expected ECONNRESET)", fulcrum)
        check(secs < PROMPT, f"round {i}: the reset reached the client after {secs:.2f}s",
              fulcrum)
    backend.check_no_errors()
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()


# A backend that aborts in the middle of a 4 MB reply must not look like a finished reply:
# the client gets ECONNRESET after at most the bytes sent, never a clean EOF.
def test_backend_reset_mid_transfer():
    size = 4 << 20

    def handler(conn, backend):
        recv_line(conn)
        conn.sendall(bytes(size))
        set_linger_rst(conn)
        conn.close()

    backend = Backend(handler)
    fulcrum = Fulcrum(tcp_config([backend]))
    for i in range(ROUNDS):
        s = connect(fulcrum.addr("front"), timeout=10)
        s.sendall(b"send it\n")
        got, kind = read_until_closed(s)
        s.close()
        check(kind == "reset", f"round {i}: the backend reset after sending {size} bytes; "
              f"the client read {got} bytes and then saw '{kind}' (a truncated reply must "
              "end in ECONNRESET)", fulcrum)
        check(got <= size, f"round {i}: client read {got} bytes, more than the {size} sent",
              fulcrum)
    backend.check_no_errors()
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()


# A client that aborts in the middle of a 4 MB upload makes the backend's recv fail with
# ECONNRESET, not return a clean EOF after a truncated upload.
def test_client_reset_mid_transfer():
    size = 4 << 20

    def handler(conn, backend):
        got, kind = read_until_closed(conn)
        backend.report((kind, got))

    backend = Backend(handler)
    fulcrum = Fulcrum(tcp_config([backend]))
    for i in range(ROUNDS):
        s = connect(fulcrum.addr("front"), timeout=10)
        s.sendall(bytes(size))
        set_linger_rst(s)
        s.close()
        kind, got = backend.result(timeout=15, what="upload end")
        check(kind == "reset", f"round {i}: the client reset during a {size}-byte upload; "
              f"the backend read {got} bytes and then saw '{kind}' (expected ECONNRESET)",
              fulcrum)
    backend.check_no_errors()
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()


run_tests(globals())
