"""Server-first protocols through Fulcrum: the backend speaks before the client sends a byte.

    client ──► fulcrum (127.0.0.1:0) ──► Python backend (127.0.0.1:0), MySQL-like greeting

MySQL, SMTP, FTP and friends greet on accept, so Fulcrum must connect the backend as soon as
it accepts the client, not when the client's first bytes arrive.
"""

import struct
import time

from backends import Backend, check, connect, log_tail, recv_exact, tcp_config
from fulcrum_it import Fulcrum, run_tests

SERVER_VERSION = b"8.0.36-fulcrum-it"
GREETING_WAIT = 2.0  # Seconds the client waits for the greeting without sending anything.


def packet(seq, payload):
    """A MySQL wire packet: 3-byte little-endian length, sequence id, payload."""
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def read_packet(sock):
    header = recv_exact(sock, 4)
    length = int.from_bytes(header[:3], "little")
    return header[3], recv_exact(sock, length)


def handshake_v10(connection_id):
    """A protocol-10 initial handshake, shaped like the one a MySQL server sends first."""
    salt = bytes(range(1, 21))
    return (b"\x0a" + SERVER_VERSION + b"\x00" + struct.pack("<I", connection_id)
            + salt[:8] + b"\x00" + struct.pack("<H", 0xF7FF) + b"\x21"
            + struct.pack("<H", 0x0002) + struct.pack("<H", 0x81FF) + bytes([21])
            + b"\x00" * 10 + salt[8:] + b"\x00" + b"mysql_native_password\x00")


def mysql_like(conn, backend):
    conn.sendall(packet(0, handshake_v10(backend.accepted)))
    while True:
        try:
            seq, payload = read_packet(conn)
        except AssertionError:
            return  # EOF between packets: the client is done.
        if payload[:1] != b"\x03":
            conn.sendall(packet(seq + 1, b"\xff unexpected command"))
            return
        conn.sendall(packet(seq + 1, b"\x00result:" + payload[1:]))


# The client receives the whole greeting without sending anything, then queries and gets
# answers, over several connections in a row.
def test_greeting_before_client_speaks():
    backend = Backend(mysql_like)
    fulcrum = Fulcrum(tcp_config([backend]))
    for i in range(5):
        t0 = time.monotonic()
        s = connect(fulcrum.addr("front"), timeout=GREETING_WAIT)
        try:
            seq, greeting = read_packet(s)
        except TimeoutError:
            raise AssertionError(f"connection {i}: no greeting within {GREETING_WAIT}s while "
                                 "the client stayed silent (backend connected only on the "
                                 f"client's first bytes?); backend accepted={backend.accepted}"
                                 + log_tail(fulcrum)) from None
        waited = time.monotonic() - t0
        check(seq == 0 and greeting[:1] == b"\x0a",
              f"connection {i}: greeting starts with seq={seq} {greeting[:8]!r}", fulcrum)
        version = greeting[1:greeting.index(b"\x00", 1)]
        check(version == SERVER_VERSION, f"connection {i}: server version {version!r}",
              fulcrum)
        check(greeting == handshake_v10(i + 1),
              f"connection {i}: greeting bytes differ from what the backend sent", fulcrum)
        print(f"  connection {i}: greeting after {waited * 1000:.1f} ms")

        s.settimeout(10)
        for q in (b"SELECT 1", b"SELECT @@version", b"x" * 70000):
            s.sendall(packet(0, b"\x03" + q))
            seq, answer = read_packet(s)
            check(seq == 1 and answer == b"\x00result:" + q,
                  f"connection {i}: query {q[:20]!r} got seq={seq} answer {answer[:40]!r}",
                  fulcrum)
        s.close()
    backend.check_no_errors()
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    backend.kill()


run_tests(globals())
