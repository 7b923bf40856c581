"""Half-close through Fulcrum: a FIN from one side ends only that direction.

    client ──► fulcrum (127.0.0.1:0) ──► Python backend (127.0.0.1:0)

A session must carry bytes the other way after one side has shut down writing, and only
close when both directions have ended.
"""

import socket
import time

from backends import (Backend, check, connect, recv_exact, recv_to_eof, send_stream,
                      stream_digest, tcp_config, wait_closed)
from fulcrum_it import Fulcrum, run_tests

MB = 1 << 20
REQUEST = 64 * 1024
REPLY = 5 * MB


# The client sends a request and shuts down writing; the backend sees EOF, then sends 5 MB
# and closes; the client receives all 5 MB and then EOF.
def test_client_shuts_down_first():
    def handler(conn, backend):
        got, digest = recv_to_eof(conn)
        eof_at = time.monotonic()
        sent = send_stream(conn, 32, REPLY)
        backend.report({"got": got, "digest": digest, "eof_at": eof_at, "sent": sent})

    backend = Backend(handler)
    fulcrum = Fulcrum(tcp_config([backend]))
    s = connect(fulcrum.addr("front"), timeout=20)
    sent = send_stream(s, 31, REQUEST)
    s.shutdown(socket.SHUT_WR)
    shut_at = time.monotonic()
    got, digest = recv_to_eof(s)  # Returns only at EOF (or raises on reset/timeout).
    s.close()

    r = backend.result(timeout=20, what="half-close result")
    backend.check_no_errors()
    check(r["got"] == REQUEST and r["digest"] == sent == stream_digest(31, REQUEST),
          f"backend received {r['got']} of {REQUEST} request bytes before EOF, or they "
          "differ from what the client sent", fulcrum)
    check(r["eof_at"] - shut_at < 2.0, f"backend saw EOF {r['eof_at'] - shut_at:.2f}s after "
          "the client's shutdown(SHUT_WR); the FIN was not passed on promptly", fulcrum)
    check(got == REPLY, f"after shutting down writing, the client received {got} of {REPLY} "
          "reply bytes before EOF (Fulcrum closed the session on the first FIN?)", fulcrum)
    check(digest == r["sent"] == stream_digest(32, REPLY),
          "client received 5 MB whose sha256 differs from what the backend sent", fulcrum)
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()


# The backend shuts down writing first; the client sees EOF, still sends 5 MB, and the
# backend receives all of it and then EOF.
def test_backend_shuts_down_first():
    greeting = b"bye for now, but keep talking\n"

    def handler(conn, backend):
        conn.sendall(greeting)
        conn.shutdown(socket.SHUT_WR)
        got, digest = recv_to_eof(conn)
        backend.report({"got": got, "digest": digest})

    backend = Backend(handler)
    fulcrum = Fulcrum(tcp_config([backend]))
    s = connect(fulcrum.addr("front"), timeout=20)
    got, _ = recv_to_eof(s)
    check(got == len(greeting), f"client received {got} bytes before EOF, expected the "
          f"{len(greeting)}-byte greeting", fulcrum)
    try:
        sent = send_stream(s, 41, REPLY)
        s.shutdown(socket.SHUT_WR)
    except OSError as e:
        check(False, f"after the backend's FIN the client could not send its 5 MB: {e!r} "
              "(Fulcrum closed the session on the first FIN?)", fulcrum)
    # The backend closes after reading to EOF; the client should then see the session end.
    end, secs = wait_closed(s, 20.0)
    s.close()

    r = backend.result(timeout=20, what="half-close result")
    backend.check_no_errors()
    check(r["got"] == REPLY, f"after the backend's FIN the client sent {REPLY} bytes but the "
          f"backend received {r['got']} before EOF", fulcrum)
    check(r["digest"] == sent == stream_digest(41, REPLY),
          "backend received 5 MB whose sha256 differs from what the client sent", fulcrum)
    check(end == "eof", f"after both sides shut down, the client saw '{end}' instead of EOF",
          fulcrum)
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()


# Twenty short sessions in a row, each half-closed by the client, all finish with the reply
# and an EOF: no session is left hanging on its second FIN.
def test_half_close_sessions_all_finish():
    def handler(conn, backend):
        _, digest = recv_to_eof(conn)
        conn.sendall(digest.encode())

    backend = Backend(handler)
    fulcrum = Fulcrum(tcp_config([backend]))
    for i in range(20):
        s = connect(fulcrum.addr("front"), timeout=10)
        sent = send_stream(s, 500 + i, 1000 + i)
        s.shutdown(socket.SHUT_WR)
        reply = recv_exact(s, 64)
        end, _ = wait_closed(s, 5.0)
        s.close()
        check(reply == sent.encode(), f"session {i}: backend's digest {reply!r} differs from "
              f"the sent digest {sent!r}", fulcrum)
        check(end == "eof", f"session {i}: after the reply the client saw '{end}', not EOF",
              fulcrum)
    backend.check_no_errors()
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()



# A client that shuts down writing right after connecting, before sending anything, still
# gets the backend's answer: the early FIN is passed on, not taken for a closed session.
def test_immediate_shutdown_still_answered():
    def handler(conn, backend):
        got, _ = recv_to_eof(conn)
        conn.sendall(f"got {got} bytes\n".encode())

    backend = Backend(handler)
    fulcrum = Fulcrum(tcp_config([backend]))
    for i in range(10):
        s = connect(fulcrum.addr("front"), timeout=10)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
        s.close()
        check(answer == b"got 0 bytes\n", f"round {i}: after an immediate shutdown(SHUT_WR) "
              f"the client received {answer!r} before EOF; expected the backend's answer",
              fulcrum)
    backend.check_no_errors()
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()


run_tests(globals())
