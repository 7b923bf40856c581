"""UDP session lifecycle through a real fulcrum: idle expiry gives every descriptor back, a
full session table follows its policy (drop_new / evict_oldest) and says so once, and a
backend killed mid-run costs its clients at most the datagrams in flight before their
sessions move elsewhere.
"""

import socket
import time

from fulcrum_it import Fulcrum, run_tests
from backends import proc_status_kb
from udp_helpers import (Client, UdpBackend, echo, fd_count, named, stop_all_backends, totals,
                         udp_config, wait_until)


def stop_checked(fulcrum):
    code = fulcrum.stop()
    assert code == 0, f"fulcrum exited with {code}:\n{fulcrum.log()[-3000:]}"


def with_port(_backend, data, source):
    """Answers with the backend's name and the source port it saw (one per session)."""
    return [b"%s|%d|%s" % (_backend.name.encode(), source[1], data)]


def open_sessions(target, n):
    clients = []
    for i in range(n):
        c = Client(target)
        assert c.request(b"hello %d" % i)[0] == b"hello %d" % i
        clients.append(c)
    return clients


# Idle sessions expire and hand back their backend sockets: the descriptor count returns to
# its baseline, twice in a row, and resident memory does not grow from one round to the next.
def test_idle_expiry_returns_descriptors():
    backend = UdpBackend(echo)
    fulcrum = Fulcrum(udp_config([backend], listener_opts={"idle_timeout": "1s"}))
    pid = fulcrum.proc.pid
    try:
        target = fulcrum.addr("front")
        baseline = fd_count(pid)
        rss = []
        for _ in range(2):
            clients = open_sessions(target, 300)
            during = fd_count(pid)
            assert during >= baseline + 300, f"{during} fds with 300 sessions, base {baseline}"
            wait_until(lambda: fd_count(pid) == baseline, 10,
                       f"descriptors back to {baseline} (now {fd_count(pid)})")
            rss.append(proc_status_kb(pid, "VmRSS"))
            for c in clients:
                c.close()
        assert rss[1] <= rss[0] + 2048, f"RSS grew from {rss[0]} kB to {rss[1]} kB"
    finally:
        stop_checked(fulcrum)
        stop_all_backends()
    t = totals(fulcrum, "front")
    assert t["sessions_total"] == 600 and t["ended_idle_timeout"] == 600, t
    assert t["sessions_open"] == 0, t


# drop_new: with 10 slots, 10 of 15 clients get sessions, 5 are dropped and counted, the
# condition is logged once; when the sessions expire, new clients are served again.
def test_table_full_drop_new():
    backend = UdpBackend(echo)
    fulcrum = Fulcrum(udp_config([backend], listener_opts={
        "idle_timeout": "2s", "max_sessions": 10, "table_full": "drop_new"}))
    try:
        target = fulcrum.addr("front")
        baseline = fd_count(fulcrum.proc.pid)
        clients = [Client(target, timeout=0.05) for _ in range(15)]
        for c in clients:
            c.send(b"x")
        time.sleep(0.5)
        served = 0
        for c in clients:
            try:
                served += c.recv()[0] == b"x"
            except socket.timeout:
                pass
        assert served == 10, f"{served} of 15 clients served with max_sessions = 10"
        fulcrum.wait_log(r"udp session table full listener=front max_sessions=10 "
                         r"policy=drop_new")

        wait_until(lambda: fd_count(fulcrum.proc.pid) == baseline, 10, "sessions to expire")
        late = Client(target)
        assert late.request(b"late")[0] == b"late"
        fulcrum.wait_log(r"udp session table has room again listener=front")
        assert fulcrum.count_log("udp session table full") == 1, fulcrum.log()
        for c in clients + [late]:
            c.close()
    finally:
        stop_checked(fulcrum)
        stop_all_backends()
    t = totals(fulcrum, "front")
    assert t["drop_table_full"] == 5 and t["sessions_total"] == 11, t


# evict_oldest: every client is served; each new one past the 10th ends the least recently
# active session. A client still in the table keeps its backend socket; an evicted one comes
# back on a new session.
def test_table_full_evict_oldest():
    backend = UdpBackend(with_port, name="b")
    fulcrum = Fulcrum(udp_config([backend], workers=1, listener_opts={
        "idle_timeout": "30s", "max_sessions": 10, "table_full": "evict_oldest"}))
    try:
        target = fulcrum.addr("front")
        clients = [Client(target) for _ in range(15)]
        first_port = []
        for i, c in enumerate(clients):
            reply = c.request(b"%d" % i)[0].split(b"|")
            first_port.append(int(reply[1]))
        # Client 14 is the newest: same session, same backend-side port.
        assert int(clients[14].request(b"again")[0].split(b"|")[1]) == first_port[14]
        # Client 0 was evicted first: a new session, so a new backend-side port.
        assert int(clients[0].request(b"again")[0].split(b"|")[1]) != first_port[0]
        fulcrum.wait_log(r"udp session table full listener=front max_sessions=10 "
                         r"policy=evict_oldest")
        for c in clients:
            c.close()
    finally:
        stop_checked(fulcrum)
        stop_all_backends()
    t = totals(fulcrum, "front")
    assert t["sessions_total"] == 16 and t["ended_evicted"] == 6, t
    assert t["drop_table_full"] == 0, t


# A backend killed mid-run answers with ICMP port unreachable: its sessions end, their next
# datagrams open sessions on the other backends, the drop is counted with its reason, and
# new sessions no longer go to the dead backend.
def test_backend_killed_mid_run():
    backends = [UdpBackend(named, name=n) for n in ("a", "b", "c")]
    fulcrum = Fulcrum(udp_config(backends, listener_opts={"idle_timeout": "30s"}))
    try:
        target = fulcrum.addr("front")
        clients = [Client(target, timeout=0.3) for _ in range(30)]
        owner = {}
        for i, c in enumerate(clients):
            owner[i] = c.request(b"%d" % i)[0].split(b"|")[0]
        on_b = [i for i in owner if owner[i] == b"b"]
        assert len(on_b) == 10, owner

        backends[1].kill()
        lost = {i: 0 for i in on_b}
        for round_ in range(6):
            for i, c in enumerate(clients):
                try:
                    who = c.request(b"%d.%d" % (i, round_))[0].split(b"|")[0]
                except socket.timeout:
                    assert i in on_b, f"client {i} on {owner[i]} lost a reply"
                    lost[i] += 1
                    continue
                assert who != b"b", f"client {i} reached the killed backend"
                if i not in on_b:
                    assert who == owner[i], f"client {i} moved from {owner[i]} to {who}"
        assert all(n <= 1 for n in lost.values()), f"datagrams lost per client: {lost}"

        # Fresh clients: every one is served on its first datagram, none by b.
        for i in range(30):
            c = Client(target, timeout=1.0)
            who = c.request(b"new %d" % i)[0].split(b"|")[0]
            assert who in (b"a", b"c"), who
            c.close()
        for c in clients:
            c.close()
    finally:
        stop_checked(fulcrum)
        stop_all_backends()
    t = totals(fulcrum, "front")
    assert t["ended_backend_unreachable"] >= 1, t
    assert t["drop_backend_unreachable"] == t["ended_backend_unreachable"], t
    assert "udp backend unreachable listener=front backend=" in fulcrum.log()


# on_down = "close": when an active check takes a backend down, its open sessions end at once
# and the clients' next datagrams go to a backend that is up, although the downed backend's
# UDP port still answers.
def test_on_down_close_ends_sessions_of_downed_backend():
    health = {}
    for name in ("a", "b"):
        health[name] = socket.socket()
        health[name].bind(("127.0.0.1", 0))
        health[name].listen(64)
    backends = [UdpBackend(named, name=n) for n in ("a", "b")]
    fulcrum = Fulcrum(udp_config(
        [(b, f"health = {{ port = {health[b.name].getsockname()[1]} }}") for b in backends],
        listener_opts={"idle_timeout": "30s"}, pool_opts={"on_down": "close"},
        health_opts={"type": "tcp", "interval": "200ms", "timeout": "100ms", "rise": 1,
                     "fall": 2}))
    try:
        target = fulcrum.addr("front")
        clients = [Client(target) for _ in range(6)]
        owner = [c.request(b"hi")[0].split(b"|")[0] for c in clients]
        assert sorted(owner) == [b"a"] * 3 + [b"b"] * 3, owner

        health["b"].close()
        fulcrum.wait_log(r"sessions closed for backend down worker=\d+ listener=front "
                         r"backend=\S+ sessions=\d+ reason=on_down_close", timeout=10)
        for i, c in enumerate(clients):
            assert c.request(b"again")[0].split(b"|")[0] == b"a", f"client {i} not moved"
        for c in clients:
            c.close()
    finally:
        stop_checked(fulcrum)
        stop_all_backends()
        for s in health.values():
            s.close()
    t = totals(fulcrum, "front")
    assert t["ended_backend_down"] == 3, t
    assert t["sessions_total"] == 9, t

if __name__ == "__main__":
    run_tests(globals())
