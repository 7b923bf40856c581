"""UDP listener basics through a real fulcrum: datagrams of every size arrive whole, over IPv4
and IPv6; replies leave from the address the client reached; a session keeps its backend;
`replies` ends sessions; PROXY v2 precedes every datagram.
"""

import random
import socket

from fulcrum_it import Fulcrum, run_tests
from udp_helpers import (Client, UdpBackend, echo, named, stop_all_backends, totals,
                         udp_config)

SIZES = [0, 1, 1472, 8192, 65507]
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def no_drops(t):
    drops = {k: v for k, v in t.items() if k.startswith("drop_") and v}
    assert not drops, f"unexpected drops: {drops}"


def stop_checked(fulcrum):
    code = fulcrum.stop()
    assert code == 0, f"fulcrum exited with {code}:\n{fulcrum.log()[-3000:]}"


def exact_sizes(host):
    backends = [UdpBackend(echo, host=host), UdpBackend(echo, host=host)]
    fulcrum = Fulcrum(udp_config(backends, bind=f"[{host}]:0" if ":" in host else f"{host}:0"))
    rng = random.Random(7)
    try:
        target = fulcrum.addr("front")
        assert target[0] == host, target
        for size in SIZES:
            c = Client(target)
            for _ in range(3):
                payload = bytes(rng.getrandbits(8) for _ in range(min(size, 64))) * (
                    size // 64 + 1)
                payload = payload[:size]
                data, source = c.request(payload)
                assert source == target, f"{size}-byte reply from {source}, not {target}"
                assert len(data) == size, f"sent {size} bytes, got {len(data)} back"
                assert data == payload, f"{size}-byte datagram changed on the way"
            c.close()
    finally:
        stop_checked(fulcrum)
        for b in backends:
            b.kill()
            b.check_no_errors()
    t = totals(fulcrum, "front")
    assert t["datagrams_to_backend"] == 3 * len(SIZES) == t["datagrams_to_client"], t
    assert t["bytes_from_client"] == 3 * sum(SIZES) == t["bytes_from_backend"], t
    no_drops(t)


# 0, 1, 1472, 8192 and 65,507 bytes cross an IPv4 listener whole, both ways.
def test_sizes_exact_ipv4():
    exact_sizes("127.0.0.1")


# The same over an IPv6 listener with IPv6 backends.
def test_sizes_exact_ipv6():
    exact_sizes("::1")


# A session is the client's address and port: all its datagrams reach the one backend picked
# at its first datagram, while round robin sends the next client elsewhere.
def test_session_keeps_its_backend():
    backends = [UdpBackend(named, name=n) for n in ("a", "b", "c")]
    fulcrum = Fulcrum(udp_config(backends))
    try:
        target = fulcrum.addr("front")
        seen = []
        for _ in range(3):
            c = Client(target)
            names = {c.request(b"ping %d" % i)[0].split(b"|")[0] for i in range(20)}
            assert len(names) == 1, f"one client's datagrams reached {names}"
            seen.append(names.pop())
            c.close()
        assert sorted(seen) == [b"a", b"b", b"c"], seen
    finally:
        stop_checked(fulcrum)
        stop_all_backends()


# Wildcard bind: the reply leaves from the very address the client sent to, which the kernel
# would not choose by itself for 127.0.0.2 and 127.0.0.3.
def test_replies_leave_from_address_client_reached():
    backend = UdpBackend(echo)
    fulcrum = Fulcrum(udp_config([backend], bind="0.0.0.0:0"))
    try:
        _, port = fulcrum.addr("front")
        for dst in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            c = Client((dst, port), host="127.0.0.1")
            data, source = c.request(b"where from")
            assert data == b"where from"
            assert source == (dst, port), f"sent to {dst}:{port}, reply came from {source}"
            c.close()
    finally:
        stop_checked(fulcrum)
        stop_all_backends()


def parse_v2(data):
    assert data[:12] == V2_SIGNATURE, f"no PROXY v2 signature: {data[:16]!r}"
    length = int.from_bytes(data[14:16], "big")
    block = data[16:16 + length]
    if data[13] == 0x12:
        fam, n = socket.AF_INET, 4
    elif data[13] == 0x22:
        fam, n = socket.AF_INET6, 16
    else:
        raise AssertionError(f"transport byte {data[13]:#x} is not UDP over IPv4/IPv6")
    src = socket.inet_ntop(fam, block[0:n])
    dst = socket.inet_ntop(fam, block[n:2 * n])
    sport = int.from_bytes(block[2 * n:2 * n + 2], "big")
    dport = int.from_bytes(block[2 * n + 2:2 * n + 4], "big")
    return data[12], (src, sport), (dst, dport), data[16 + length:]


def proxy_reporter(_backend, data, _source):
    command, src, dst, payload = parse_v2(data)
    return [f"{command:#x} {src[0]} {src[1]} {dst[0]} {dst[1]} ".encode() + payload]


def proxy_v2(host):
    backend = UdpBackend(proxy_reporter, host=host)
    bind = f"[{host}]:0" if ":" in host else f"{host}:0"
    fulcrum = Fulcrum(udp_config([backend], bind=bind, pool_opts={"proxy_protocol": "v2"}))
    try:
        target = fulcrum.addr("front")
        c = Client(target)
        me = c.address
        for i in range(3):
            payload = b"datagram %d" % i
            data, _ = c.request(payload)
            expected = f"0x21 {me[0]} {me[1]} {target[0]} {target[1]} ".encode() + payload
            assert data == expected, f"backend saw {data!r}, expected {expected!r}"
        c.close()
    finally:
        stop_checked(fulcrum)
        backend.kill()
        backend.check_no_errors()


# Every datagram (not only the first) carries a v2 header naming the client and the listener.
def test_proxy_v2_on_every_datagram_ipv4():
    proxy_v2("127.0.0.1")


def test_proxy_v2_on_every_datagram_ipv6():
    proxy_v2("::1")


def double_reply(_backend, data, _source):
    return [b"1:" + data, b"2:" + data]


# replies = 2: a session ends once each request got two answers, so the next request is a new
# session (new pick); replies = 0 (unlimited) keeps one session for all requests.
def test_replies_count_ends_sessions():
    for replies, expected_sessions in ((2, 4), (0, 1)):
        backend = UdpBackend(double_reply)
        fulcrum = Fulcrum(udp_config([backend], listener_opts={"replies": replies}))
        try:
            c = Client(fulcrum.addr("front"))
            for i in range(4):
                c.send(b"q%d" % i)
                got = [c.recv()[0], c.recv()[0]]
                assert got == [b"1:q%d" % i, b"2:q%d" % i], got
            c.close()
        finally:
            stop_checked(fulcrum)
            backend.kill()
        t = totals(fulcrum, "front")
        assert t["sessions_total"] == expected_sessions, (replies, t)
        if replies:
            assert t["ended_replies_done"] == expected_sessions, t
        assert len(backend.sources) == expected_sessions, backend.sources
        no_drops(t)


if __name__ == "__main__":
    run_tests(globals())
