"""PROXY protocol v1 and v2 from Fulcrum to real nginx, and to a strict Python parser.

    client 127.0.0.1 ─┐
    client 127.0.0.2 ─┼► fulcrum 127.0.0.1:0 ─┐           ┌► nginx 127.0.0.1:P  proxy_protocol
    client ::1 ───────┴► fulcrum [::1]:0 ─────┴─ (v1|v2) ─┴► nginx [::1]:P6     proxy_protocol

Every listener family is paired with every backend family, so the header is shown to describe
the client's connection, not Fulcrum's own connection to the backend. nginx returns (and logs)
the client address and port it read from the header, and the server address and port; they
must equal the client's own getsockname() and the Fulcrum listener's address.
"""

import ipaddress
import queue
import socket
import struct
import threading
import time

from fulcrum_it import Fulcrum, run_tests
from real_servers import Nginx, fulcrum_config, log_tail, require_tools, stop_checked

require_tools("nginx")

PP_VARS = ("$proxy_protocol_addr $proxy_protocol_port "
           "$proxy_protocol_server_addr $proxy_protocol_server_port")


def start_nginx():
    def server(ports):
        return (f"  server {{\n"
                f"    listen 127.0.0.1:{ports[0]} proxy_protocol;\n"
                f"    listen [::1]:{ports[1]} proxy_protocol;\n"
                f"    location / {{ default_type text/plain; return 200 \"{PP_VARS}\\n\"; }}\n"
                f"  }}")
    return Nginx(server, listen_hosts=("127.0.0.1", "::1"),
                 http_extra=f"  log_format pp '{PP_VARS} $remote_addr';", access_format="pp")


NGINX = start_nginx()
NGINX_V4 = f"127.0.0.1:{NGINX.ports[0]}"
NGINX_V6 = f"[::1]:{NGINX.ports[1]}"

# (listener name, bind, pool): each client family towards each backend family.
LISTENERS = [("v4_to_v4", "127.0.0.1:0", "ngx4"), ("v4_to_v6", "127.0.0.1:0", "ngx6"),
             ("v6_to_v6", "[::1]:0", "ngx6"), ("v6_to_v4", "[::1]:0", "ngx4")]
# Client source addresses per listener family; 127.0.0.2 proves the header carries the real
# client address rather than a loopback default.
SOURCES = {"127.0.0.1": ["127.0.0.1", "127.0.0.2"], "::1": ["::1"]}


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def client(source, dest, payload, timeout=10.0):
    """Connects from (source, kernel port) to dest, sends payload, reads to EOF. Returns
    (the client's own (ip, port), reply)."""
    with socket.socket(family(source), socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.bind((source, 0))
        s.connect(dest)
        me = s.getsockname()[:2]
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = bytearray()
        while chunk := s.recv(65536):
            data += chunk
        return me, bytes(data)


REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def wait_logged(prefix, timeout=5.0):
    """Access-log lines starting with prefix. nginx may log a request only after the client saw
    EOF (lingering close waits for the client's FIN first), so a missing line is waited for."""
    deadline = time.time() + timeout
    while True:
        lines = [line for line in NGINX.access_lines() if line.startswith(prefix)]
        if lines or time.time() > deadline:
            return lines
        time.sleep(0.02)


def run_through_nginx(version):
    pools = {"ngx4": {"algorithm": "round_robin", "proxy_protocol": version,
                      "backends": [NGINX_V4]},
             "ngx6": {"algorithm": "round_robin", "proxy_protocol": version,
                      "backends": [NGINX_V6]}}
    fulcrum = Fulcrum(fulcrum_config(LISTENERS, pools))
    try:
        checked = 0
        for name, _, _ in LISTENERS:
            lhost, lport = fulcrum.addr(name)
            for source in SOURCES[lhost]:
                (cip, cport), reply = client(source, (lhost, lport), REQUEST)
                head, _, body = reply.partition(b"\r\n\r\n")
                want = f"{cip} {cport} {lhost} {lport}\n".encode()
                assert head.startswith(b"HTTP/1.1 200 "), \
                    f"{version} {name} from {source}: nginx answered {reply[:200]!r}\n" \
                    f"nginx error log:\n{NGINX.log()}" + log_tail(fulcrum)
                assert body == want, \
                    f"{version} {name}: nginx saw client/server {body!r}, expected {want!r}" \
                    + log_tail(fulcrum)
                logged = wait_logged(want.decode().strip() + " ")
                assert len(logged) == 1, f"{version} {name}: access log lines for " \
                                         f"{want!r}: {logged}"
                checked += 1
        assert checked == 6, f"expected 6 client/listener pairs, checked {checked}"
    finally:
        stop_checked(fulcrum)


# v1: nginx sees each client's real address and port, and the listener's, in every pairing.
def test_v1_through_nginx():
    run_through_nginx("v1")


# v2: the same through the binary header.
def test_v2_through_nginx():
    run_through_nginx("v2")


V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"connection closed inside the PROXY header: {data!r}")
        data += chunk
    return data


def parse_v1(conn, first):
    """Reads the rest of a v1 line (first: bytes already read) one byte at a time, so nothing
    after it is consumed; checks its syntax."""
    line = first
    while not line.endswith(b"\r\n"):
        line += read_exact(conn, 1)
        assert len(line) <= 107, f"v1 header longer than 107 bytes: {line!r}"
    parts = line[:-2].decode("ascii").split(" ")
    assert len(parts) == 6 and parts[0] == "PROXY" and parts[1] in ("TCP4", "TCP6"), \
        f"malformed v1 header {line!r}"
    ip_type = ipaddress.IPv4Address if parts[1] == "TCP4" else ipaddress.IPv6Address
    src, dst = ip_type(parts[2]), ip_type(parts[3])
    for p in parts[4:]:
        assert p.isdigit() and str(int(p)) == p and int(p) <= 65535, f"bad port {p!r} in {line!r}"
    return {"version": "v1", "family": parts[1], "src": (str(src), int(parts[4])),
            "dst": (str(dst), int(parts[5]))}


def parse_v2(conn, first):
    rest = read_exact(conn, 16 - len(first))
    head = first + rest
    assert head[:12] == V2_SIGNATURE, f"bad v2 signature {head[:12]!r}"
    assert head[12] == 0x21, f"v2 version/command byte {head[12]:#x}, expected 0x21 (PROXY)"
    length = struct.unpack("!H", head[14:16])[0]
    body = read_exact(conn, length)
    if head[13] == 0x11:
        assert length >= 12, f"TCP4 address block too short: {length}"
        src, dst, sport, dport = struct.unpack("!4s4sHH", body[:12])
        fam = "TCP4"
    elif head[13] == 0x21:
        assert length >= 36, f"TCP6 address block too short: {length}"
        src, dst, sport, dport = struct.unpack("!16s16sHH", body[:36])
        fam = "TCP6"
    else:
        raise AssertionError(f"v2 family/protocol byte {head[13]:#x}, expected 0x11 or 0x21")
    return {"version": "v2", "family": fam,
            "src": (str(ipaddress.ip_address(src)), sport),
            "dst": (str(ipaddress.ip_address(dst)), dport)}


class HeaderCapture:
    """A TCP server that parses the PROXY header of each connection strictly, then answers
    the first line after it with `echo <line>` so that the payload is checked too."""

    def __init__(self, host):
        self.sock = socket.socket(family(host), socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.address = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self.results = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            with conn:
                try:
                    conn.settimeout(10)
                    first = read_exact(conn, 5)
                    header = parse_v1(conn, first) if first == b"PROXY" else parse_v2(conn, first)
                    line = b""
                    while not line.endswith(b"\n"):
                        line += read_exact(conn, 1)
                    conn.sendall(b"echo " + line)
                    self.results.put((header, line))
                except Exception as e:
                    self.results.put((e, None))

    def take(self):
        header, line = self.results.get(timeout=10)
        if isinstance(header, Exception):
            raise header
        return header, line

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


# The header bytes themselves: the configured version, a well-formed header whose family is the
# client's, source = the client, destination = the Fulcrum listener, and the client's payload
# right after it, untouched.
def test_header_bytes_are_exact():
    captures = {"cap4": HeaderCapture("127.0.0.1"), "cap6": HeaderCapture("::1")}
    try:
        for version in ("v1", "v2"):
            pools = {p: {"algorithm": "round_robin", "proxy_protocol": version,
                         "backends": [c.address]} for p, c in captures.items()}
            listeners = [("l4_c4", "127.0.0.1:0", "cap4"), ("l4_c6", "127.0.0.1:0", "cap6"),
                         ("l6_c6", "[::1]:0", "cap6"), ("l6_c4", "[::1]:0", "cap4")]
            fulcrum = Fulcrum(fulcrum_config(listeners, pools))
            try:
                for name, _, pool in listeners:
                    lhost, lport = fulcrum.addr(name)
                    for source in SOURCES[lhost]:
                        payload = f"hello from {source} via {name}\n".encode()
                        me, reply = client(source, (lhost, lport), payload)
                        header, line = captures[pool].take()
                        where = f"{version} {name} from {source}"
                        assert reply == b"echo " + payload, f"{where}: reply {reply!r}" \
                            + log_tail(fulcrum)
                        assert line == payload, f"{where}: payload after header {line!r}"
                        want = {"version": version,
                                "family": "TCP6" if ":" in lhost else "TCP4",
                                "src": me, "dst": (lhost, lport)}
                        assert header == want, f"{where}: header {header}, expected {want}" \
                            + log_tail(fulcrum)
            finally:
                stop_checked(fulcrum)
    finally:
        for c in captures.values():
            c.close()


run_tests(globals())
