"""The udp_expect health check against real DNS servers (nsd): the probe is a DNS query for
who.fulcrum.test TXT sent as raw bytes (send_hex), and the answer must start with the same
query id, the flags of an authoritative answer without error, one question and one answer
(expect_hex, match = "prefix").

    client ──► fulcrum (UDP listener, round_robin) ──► nsd a (stopped, hung, restarted)
                                                   └► nsd b

A stopped nsd leaves its port closed, so the kernel answers the probe with ICMP port
unreachable and the check fails at once; a hung one (SIGSTOP) keeps the port open and only
the timeout sees it. DNS queries through Fulcrum must follow each change.
"""

import os
import signal
import socket

from backends import check
from fulcrum_it import Fulcrum, run_tests
from real_servers import (Nsd, detection_bound, dns_answer, dns_query, health_config,
                          parse_duration, require_tools, restart_nsd, stop_checked,
                          timed_transition, wait_health)

SLACK = 0.25  # Seconds beyond the bound: process wake-ups and logging on 2 busy cores.
ZONE = "fulcrum.test"
PROBE_ID = 0x4A17

# QR + AA (0x84), RA clear and RCODE 0 (0x00), QDCOUNT 1, ANCOUNT 1.
ANSWER_PREFIX = PROBE_ID.to_bytes(2, "big") + bytes.fromhex("8400" "0001" "0001")

HEALTH = {
    "type": "udp_expect",
    "interval": "400ms",
    "fast_interval": "100ms",
    "timeout": "250ms",
    "rise": 2,
    "fall": 2,
    "send_hex": dns_query(f"who.{ZONE}", PROBE_ID).hex(),
    "expect_hex": ANSWER_PREFIX.hex(),
    "match": "prefix",
}


def who_via(fulcrum, n):
    """The TXT names answering n queries through Fulcrum, one client socket (session) each."""
    host, port = fulcrum.addr("dns")
    names = []
    for i in range(n):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            s.sendto(dns_query(f"who.{ZONE}", i + 1), (host, port))
            try:
                data, _ = s.recvfrom(4096)
            except socket.timeout:
                check(False, f"query {i + 1} of {n} from {s.getsockname()} got no answer "
                      f"through Fulcrum (answers so far: {names})", fulcrum)
            qid, rcode, texts = dns_answer(data)
            assert qid == i + 1 and rcode == 0, f"bad answer {data!r}"
            names += texts
    return names


def family_of(pid):
    """pid and its descendants: nsd serves from forked children, so hanging nsd means
    stopping all of them."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def signal_family(proc, sig):
    for pid in family_of(proc.pid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def transition(fulcrum, backend, state, action, phase, what, detail=None):
    return timed_transition(fulcrum, backend, state, action, phase, what, HEALTH, SLACK,
                            detail)[1]


# The probe's expectation is what nsd really answers, so the check cannot pass vacuously.
def test_probe_bytes_match_real_nsd():
    require_tools("nsd")
    server = Nsd("plain")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            s.sendto(bytes.fromhex(HEALTH["send_hex"]), ("127.0.0.1", server.port))
            data, _ = s.recvfrom(4096)
        check(data.startswith(ANSWER_PREFIX), f"nsd answered {data.hex()}")
        check(dns_answer(data)[2] == ["plain"], f"nsd answered {data!r}")
    finally:
        server.stop()


# Stopped → down at once (ICMP), restarted → up; hung → down at the timeout, resumed → up;
# queries through Fulcrum reach only the healthy server in between.
def test_udp_check_follows_nsd():
    require_tools("nsd")
    a, b = Nsd("nsd-a"), Nsd("nsd-b")
    fulcrum = Fulcrum(health_config(
        [("dns", "127.0.0.1:0", "dns", "udp")],
        {"dns": {"algorithm": "round_robin", "backends": [a.address, b.address],
                 "health": HEALTH}}))
    try:
        for server in (a, b):
            wait_health(fulcrum, server.address, "up", 0, timeout=5)
        check(set(who_via(fulcrum, 6)) == {"nsd-a", "nsd-b"}, "both answer at start", fulcrum)

        seconds = transition(fulcrum, a.address, "down", a.stop, "fall", "nsd stopped detected",
                             detail="icmp_unreachable")
        # ICMP makes every failing probe immediate: only the waits between probes count.
        immediate = (detection_bound(HEALTH, 0, "fall") - parse_duration(HEALTH["timeout"]) +
                     SLACK)
        check(seconds <= immediate, f"ICMP failures should not wait for the timeout: "
              f"{seconds:.3f}s > {immediate:.3f}s", fulcrum)
        names = who_via(fulcrum, 10)
        check(set(names) == {"nsd-b"}, f"a is down; answers came from {names}", fulcrum)

        transition(fulcrum, a.address, "up", lambda: restart_nsd(a), "rise",
                   "nsd restarted, recovery")
        check(set(who_via(fulcrum, 6)) == {"nsd-a", "nsd-b"}, "both answer again", fulcrum)

        transition(fulcrum, a.address, "down", lambda: signal_family(a.proc, signal.SIGSTOP),
                   "fall", "nsd hung (SIGSTOP) detected", detail="timeout")
        names = who_via(fulcrum, 10)
        check(set(names) == {"nsd-b"}, f"a is hung; answers came from {names}", fulcrum)

        transition(fulcrum, a.address, "up", lambda: signal_family(a.proc, signal.SIGCONT),
                   "rise", "nsd resumed (SIGCONT), recovery")
        check(set(who_via(fulcrum, 6)) == {"nsd-a", "nsd-b"}, "both answer at the end",
              fulcrum)
        stop_checked(fulcrum)
    finally:
        fulcrum.stop()
        if a.proc.poll() is None:
            signal_family(a.proc, signal.SIGCONT)
        a.stop()
        b.stop()


if __name__ == "__main__":
    run_tests(globals())
