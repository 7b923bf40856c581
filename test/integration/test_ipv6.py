"""IPv6 through Fulcrum, and across address families.

    v6v6: client ──► fulcrum [::1]:0     ──► backend [::1]
    v6v4: client ──► fulcrum [::1]:0     ──► backend 127.0.0.1
    v4v6: client ──► fulcrum 127.0.0.1:0 ──► backend [::1]
"""

import socket

from backends import (Backend, check, connect, recv_count, recv_exact, send_stream,
                      stream_digest)
from fulcrum_it import Fulcrum, run_tests

SIZE = 1 << 20


def exchange_handler(conn, backend):
    """Reads a 1 MiB request, answers with its sha256 and a 1 MiB stream of its own."""
    got, digest = recv_count(conn, SIZE)
    peer = conn.getpeername()[0]
    conn.sendall(digest.encode())
    sent = send_stream(conn, 900 + backend.port % 97, SIZE)
    backend.report({"got": got, "digest": digest, "sent": sent, "peer": peer})


def listener_block(name, bind, backend):
    return f"""
[[listener]]
name = "{name}"
bind = "{bind}"
pool = "{name}"

[pool.{name}]
algorithm = "round_robin"
backends = [ {{ address = "{backend.address}" }} ]
"""


# Each family combination carries a request and a response byte for byte, and listeners
# report their real IPv6 address.
def test_ipv6_and_mixed_families():
    b6 = Backend(exchange_handler, host="::1", name="v6")
    b4 = Backend(exchange_handler, host="127.0.0.1", name="v4")
    b6b = Backend(exchange_handler, host="::1", name="v6b")
    routes = [("v6v6", "[::1]:0", b6, "::1"), ("v6v4", "[::1]:0", b4, "127.0.0.1"),
              ("v4v6", "127.0.0.1:0", b6b, "::1")]
    config = "[global]\nworkers = 2\n" + "".join(
        listener_block(name, bind, b) for name, bind, b, _ in routes)
    fulcrum = Fulcrum(config)

    for name, bind, backend, backend_host in routes:
        raw = fulcrum.addresses[name]
        want_host = bind.rsplit(":", 1)[0]
        check(raw.rsplit(":", 1)[0] == want_host and not raw.endswith(":0"),
              f"{name}: listener started with address={raw}, expected {want_host}:<port>",
              fulcrum)
        host, port = fulcrum.addr(name)
        s = connect((host, port), timeout=10)
        check(s.family == (socket.AF_INET6 if ":" in host else socket.AF_INET),
              f"{name}: client socket family {s.family}", fulcrum)
        sent = send_stream(s, 300 + port % 89, SIZE)
        echo = recv_exact(s, 64)
        got, digest = recv_count(s, SIZE)
        s.close()
        r = backend.result(timeout=10, what=f"{name} exchange")
        check(r["got"] == SIZE and r["digest"] == sent == stream_digest(300 + port % 89, SIZE),
              f"{name}: backend received {r['got']} bytes with the wrong digest", fulcrum)
        check(echo == sent.encode(), f"{name}: client got digest {echo!r} back", fulcrum)
        check(got == SIZE and digest == r["sent"],
              f"{name}: client received {got} bytes whose digest differs from the backend's",
              fulcrum)
        check(r["peer"] == backend_host, f"{name}: backend saw Fulcrum connect from "
              f"{r['peer']}, expected {backend_host}", fulcrum)
        print(f"  {name}: {raw} -> {backend.address} ok")
    for b in (b6, b4, b6b):
        b.check_no_errors()
    check(fulcrum.stop() == 0, "fulcrum did not exit 0 on SIGTERM", fulcrum)
    for b in (b6, b4, b6b):
        b.kill()


run_tests(globals())
