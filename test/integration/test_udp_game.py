"""Game-like UDP through Fulcrum: 200 clients, each sending a stream of datagrams and getting
several tagged replies per datagram from its server (replies = 0: unlimited).

Each backend numbers every reply it sends (one counter per backend), and tags it with the
client's id and the request's sequence number. Every client must see only its own replies,
all from one backend, all from the listener's address, in the order that backend sent them,
and none missing. Two workers share the listener, so this also shows that one client's
session is never split across workers.
"""

import itertools
import selectors
import time

from fulcrum_it import Fulcrum, run_tests
from udp_helpers import Client, UdpBackend, stop_all_backends, totals, udp_config

CLIENTS = 200
ROUNDS = 10           # Datagrams each client sends.
REPLIES = 4           # Replies the server sends per datagram.
ROUND_TIMEOUT = 10.0  # Seconds a round may take before the missing replies are reported.


class GameServer:
    """Answers "cid:seq" with REPLIES datagrams "name|cid:seq|k|n", n counting per server."""

    def __init__(self, name):
        self.counter = itertools.count()
        self.backend = UdpBackend(self.handle, name=name)

    def handle(self, backend, data, _source):
        return [b"%s|%s|%d|%d|" % (backend.name.encode(), data, k, next(self.counter)) +
                b"x" * (k * 100) for k in range(REPLIES)]


def run_game(algorithm, pool_opts=None, workers=2):
    servers = [GameServer(n) for n in ("alpha", "bravo", "charlie")]
    fulcrum = Fulcrum(udp_config([s.backend for s in servers], algorithm=algorithm,
                                 workers=workers, pool_opts=pool_opts,
                                 listener_opts={"idle_timeout": "30s", "max_sessions": 1000}))
    target = fulcrum.addr("front")
    clients = [Client(target) for _ in range(CLIENTS)]
    sel = selectors.DefaultSelector()
    for cid, c in enumerate(clients):
        c.sock.setblocking(False)
        sel.register(c.sock, selectors.EVENT_READ, cid)

    got = [[] for _ in range(CLIENTS)]   # (server, seq, k, n) per client, in arrival order.
    try:
        for seq in range(ROUNDS):
            for cid, c in enumerate(clients):
                c.send(b"c%03d:%03d" % (cid, seq))
            want = (seq + 1) * REPLIES
            deadline = time.time() + ROUND_TIMEOUT
            while any(len(g) < want for g in got) and time.time() < deadline:
                for key, _ in sel.select(timeout=0.2):
                    cid = key.data
                    while True:
                        try:
                            data, source = key.fileobj.recvfrom(65535)
                        except BlockingIOError:
                            break
                        assert source[:2] == target, f"client {cid}: reply from {source}"
                        server, tag, k, n, _pad = data.split(b"|")
                        want_prefix = b"c%03d:" % cid
                        assert tag.startswith(want_prefix), \
                            f"client {cid} received another client's reply {data[:40]!r}"
                        got[cid].append((server.decode(), int(tag[5:]), int(k), int(n)))
    finally:
        for c in clients:
            sel.unregister(c.sock)
            c.close()
        code = fulcrum.stop()
        stop_all_backends()
    assert code == 0, f"fulcrum exited with {code}"
    for s in servers:
        s.backend.check_no_errors()

    per_server = {}
    for cid, replies in enumerate(got):
        servers_seen = {r[0] for r in replies}
        assert len(servers_seen) == 1, f"client {cid} got replies from {servers_seen}"
        numbers = [r[3] for r in replies]
        assert numbers == sorted(numbers), f"client {cid}: replies out of server order"
        expected = [(seq, k) for seq in range(ROUNDS) for k in range(REPLIES)]
        assert [(r[1], r[2]) for r in replies] == expected, \
            f"client {cid}: got {len(replies)} of {len(expected)} replies or out of order"
        server = servers_seen.pop()
        per_server[server] = per_server.get(server, 0) + 1

    t = totals(fulcrum, "front")
    drops = {k: v for k, v in t.items() if k.startswith("drop_") and v}
    assert not drops, f"drops: {drops}"
    assert t["sessions_total"] == CLIENTS, t
    assert t["datagrams_to_client"] == CLIENTS * ROUNDS * REPLIES, t
    return per_server


# Round robin: 200 sessions split evenly across the three servers.
def test_game_round_robin():
    per_server = run_game("round_robin")
    assert sorted(per_server) == ["alpha", "bravo", "charlie"], per_server
    assert all(abs(n - CLIENTS / 3) <= 2 for n in per_server.values()), per_server


# least_conn places each new session on the least loaded server: also even.
def test_game_least_conn():
    per_server = run_game("least_conn")
    assert all(abs(n - CLIENTS / 3) <= 3 for n in per_server.values()), per_server


if __name__ == "__main__":
    run_tests(globals())
