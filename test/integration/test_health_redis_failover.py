"""A Redis primary switch behind Fulcrum, driven by a tcp_expect role check:

    writers ──► fulcrum (round_robin, on_down = "close") ──► redis a (master, then replica)
                                                         └► redis b (replica, then master)

The check sends `INFO replication` and `QUIT` as inline commands and expects "role:master".
QUIT makes a replica's answer end with the connection, so a failing probe is judged at once
instead of at the timeout. Only the master is up, so only it takes sessions.

Writers SET unique keys through Fulcrum on long-lived sessions, reconnecting when a session
ends. Then b is promoted and a demoted. The test checks that Fulcrum follows within the bound
the config implies, cuts the sessions still open to a, and that no write reaches a once it
is a replica:

* fenced switch (what an operator's failover script does): a's writes are paused
  (CLIENT PAUSE WRITE) before the switch and resumed only after Fulcrum has cut a's
  sessions. A write that reached the replica would then fail with READONLY, so "no write
  reached the replica" is proved by zero READONLY replies at the clients and zero READONLY
  errors in a's own error statistics, and "no acknowledged write lost" by every acknowledged
  key being on b.
* unfenced switch: writes hitting a between its demotion and Fulcrum noticing get READONLY
  (no health checker can avoid that window); none may be sent after Fulcrum marked a down.
"""

import threading
import time

from backends import check
from fulcrum_it import Fulcrum, run_tests
from real_servers import (Redis, RespConn, RespError, detection_bound, health_config,
                          require_tools, stop_checked, wait_health)

SLACK = 0.25  # Seconds beyond the bound: process wake-ups and logging on 2 busy cores.
WRITERS = 4
WRITER_SECONDS = 40.0  # Hard stop for every writer, whatever happens.
MAX_WRITES = 200000    # Per writer.

HEALTH = {
    "type": "tcp_expect",
    "interval": "500ms",
    "fast_interval": "100ms",
    "timeout": "300ms",
    "rise": 2,
    "fall": 2,
    "send": "INFO replication\r\nQUIT\r\n",
    "expect": "role:master",
    "match": "contains",
}


class Writer(threading.Thread):
    """SETs w<id>:<seq> = <id>-<seq> through Fulcrum on one session at a time, named with
    CLIENT SETNAME so a server's CLIENT LIST shows where each session landed."""

    def __init__(self, fulcrum, wid, stop_event):
        super().__init__(daemon=True)
        self.addr = fulcrum.addr("front")
        self.wid = wid
        self.stop_event = stop_event
        self.acked = []     # (key, value, sent, acked) for every +OK.
        self.readonly = []  # (key, sent) for every READONLY error.
        self.errors = []    # Any other error reply.
        self.unknown = []   # (key, sent): session ended before the reply.
        self.cuts = []      # Times sessions ended under us.
        self.sessions = 0
        self.refused = 0

    def run(self):
        deadline = time.time() + WRITER_SECONDS
        conn = None
        seq = 0
        while not self.stop_event.is_set() and time.time() < deadline and seq < MAX_WRITES:
            if conn is None:
                try:
                    conn = RespConn(*self.addr, timeout=8)
                    if conn.pipeline([("CLIENT", "SETNAME", f"writer-{self.wid}")])[0] != "OK":
                        raise ConnectionError("SETNAME failed")
                    self.sessions += 1
                except (OSError, ConnectionError):
                    self.refused += 1
                    conn = None
                    time.sleep(0.01)
                    continue
            key, value = f"w{self.wid}:{seq}", f"{self.wid}-{seq}"
            seq += 1
            sent = time.time()
            try:
                reply = conn.pipeline([("SET", key, value)])[0]
            except (OSError, ConnectionError):
                self.unknown.append((key, sent))
                self.cuts.append(time.time())
                conn.sock.close()
                conn = None
                continue
            if reply == "OK":
                self.acked.append((key, value, sent, time.time()))
            elif isinstance(reply, RespError) and str(reply).startswith("READONLY"):
                self.readonly.append((key, sent))
            else:
                self.errors.append(f"{key}: {reply!r}")
        if conn is not None:
            conn.sock.close()


def writer_sessions(redis):
    """Names of the writer sessions open on a redis-server."""
    text = redis.control.call("CLIENT", "LIST").decode()
    return [field[5:] for line in text.splitlines() for field in line.split()
            if field.startswith("name=writer-")]


def wait_until(predicate, timeout, what):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.01)


def start_pair():
    """a master, b its replica in sync, and Fulcrum in front with only a up."""
    a, b = Redis(), Redis()
    b.control.call("REPLICAOF", "127.0.0.1", a.port)
    wait_until(lambda: b.info("replication").get("master_link_status") == "up", 10,
               "b to sync from a")
    fulcrum = Fulcrum(health_config(
        [("front", "127.0.0.1:0", "redis")],
        {"redis": {"algorithm": "round_robin", "on_down": "close", "backends":
                   [a.address, b.address], "health": HEALTH}}))
    wait_health(fulcrum, a.address, "up", 0, timeout=5)
    wait_health(fulcrum, b.address, "down", 0, timeout=5)
    return a, b, fulcrum


def start_writers(fulcrum, a):
    stop_event = threading.Event()
    writers = [Writer(fulcrum, i, stop_event) for i in range(WRITERS)]
    for w in writers:
        w.start()
    wait_until(lambda: len(writer_sessions(a)) == WRITERS, 10, "writer sessions on a")
    time.sleep(0.5)
    return stop_event, writers


def switch(fulcrum, a, b):
    """Promotes b and demotes a; returns (t_demote, a_down_event, b_up_event)."""
    t_promote = time.time()
    b.control.call("REPLICAOF", "NO", "ONE")
    t_demote = time.time()
    a.control.call("REPLICAOF", "127.0.0.1", b.port)

    down_bound = detection_bound(HEALTH, SLACK, "fall")
    up_bound = detection_bound(HEALTH, SLACK, "rise")
    a_down = wait_health(fulcrum, a.address, "down", t_demote, timeout=down_bound + 10)
    b_up = wait_health(fulcrum, b.address, "up", t_promote, timeout=up_bound + 10)
    print(f"  old master marked down {(a_down.time - t_demote) * 1000:.0f} ms after demotion "
          f"(bound {down_bound * 1000:.0f} ms) [{a_down.line}]", flush=True)
    print(f"  new master marked up {(b_up.time - t_promote) * 1000:.0f} ms after promotion "
          f"(bound {up_bound * 1000:.0f} ms) [{b_up.line}]", flush=True)
    check(a_down.time - t_demote <= down_bound,
          f"old master seen late: {a_down.time - t_demote:.3f}s > {down_bound:.3f}s", fulcrum)
    check(b_up.time - t_promote <= up_bound,
          f"new master seen late: {b_up.time - t_promote:.3f}s > {up_bound:.3f}s", fulcrum)
    return t_demote, a_down, b_up


def stop_writers(stop_event, writers):
    stop_event.set()
    for w in writers:
        w.join(timeout=15)
        assert not w.is_alive(), f"writer {w.wid} did not stop"


def check_acked_on(redis, writers, fulcrum):
    """Every acknowledged write is on redis with its value."""
    acked = [(k, v) for w in writers for (k, v, _, _) in w.acked]
    conn = RespConn("127.0.0.1", redis.port)
    try:
        missing = []
        for i in range(0, len(acked), 500):
            batch = acked[i:i + 500]
            values = conn.call("MGET", *[k for k, _ in batch])
            missing += [k for (k, v), got in zip(batch, values)
                        if got is None or got.decode() != v]
    finally:
        conn.close()
    check(not missing, f"{len(missing)} of {len(acked)} acknowledged writes missing on the "
          f"new master, e.g. {missing[:5]}", fulcrum)
    return len(acked)


def readonly_errors_at(redis):
    stats = redis.info("errorstats")
    value = stats.get("errorstat_READONLY", "count=0")
    return int(str(value).split("count=")[1].split(",")[0])


# The fenced switch: sessions on the old master are cut, no write reaches it as a replica,
# and no acknowledged write is lost.
def test_fenced_switch_cuts_sessions_and_loses_nothing():
    require_tools("redis-server")
    a, b, fulcrum = start_pair()
    stop_event, writers = start_writers(fulcrum, a)
    try:
        a.control.call("CLIENT", "PAUSE", "20000", "WRITE")
        on_a = writer_sessions(a)
        wait_until(lambda: b.info("replication")["slave_repl_offset"] ==
                   a.info("replication")["master_repl_offset"], 10, "b to catch up with a")

        t_demote, a_down, _ = switch(fulcrum, a, b)

        closed = fulcrum.wait_log(rf"sessions closed for backend down .*backend={a.address} "
                                  r"sessions=(\d+)", timeout=5)
        wait_until(lambda: not writer_sessions(a), 2, "a's writer sessions to be cut")
        t_cut = time.time()
        print(f"  {len(on_a)} paused sessions on the old master cut within "
              f"{(t_cut - a_down.time) * 1000:.0f} ms of its down line", flush=True)
        a.control.call("CLIENT", "UNPAUSE")

        time.sleep(1.5)
        stop_writers(stop_event, writers)

        readonly = [r for w in writers for r in w.readonly]
        errors = [e for w in writers for e in w.errors]
        after = sum(1 for w in writers for (_, _, sent, _) in w.acked if sent > t_demote)
        cuts = sum(len(w.cuts) for w in writers)
        total = check_acked_on(b, writers, fulcrum)
        print(f"  writes acknowledged {total} ({after} after the switch), READONLY "
              f"{len(readonly)}, sessions cut {cuts}, in flight when cut "
              f"{sum(len(w.unknown) for w in writers)}, refused connects "
              f"{sum(w.refused for w in writers)}", flush=True)

        check(len(on_a) == WRITERS, f"all writer sessions were on a before: {on_a}", fulcrum)
        check(int(closed.group(1)) == len(on_a),
              f"Fulcrum closed {closed.group(1)} sessions, {len(on_a)} were open on a", fulcrum)
        check(cuts >= len(on_a), f"{cuts} sessions cut, {len(on_a)} were open on a", fulcrum)
        check(not readonly, f"{len(readonly)} writes reached the replica: {readonly[:5]}",
              fulcrum)
        check(readonly_errors_at(a) == 0, "a counted READONLY errors: a write reached it "
              "as a replica", fulcrum)
        check(not errors, f"unexpected error replies: {errors[:5]}", fulcrum)
        check(after > 0, "no write was acknowledged after the switch", fulcrum)
        check(not writer_sessions(a), f"writer sessions reopened on the replica: "
              f"{writer_sessions(a)}", fulcrum)
        stop_checked(fulcrum)
    finally:
        stop_writers(stop_event, writers)
        fulcrum.stop()
        a.stop()
        b.stop()


# The unfenced switch: READONLY replies may come only from writes sent before Fulcrum marked
# the old master down (plus the moment to close its sessions); nothing acknowledged is lost.
def test_unfenced_switch_refuses_nothing_after_down():
    require_tools("redis-server")
    a, b, fulcrum = start_pair()
    stop_event, writers = start_writers(fulcrum, a)
    try:
        t_demote, a_down, _ = switch(fulcrum, a, b)
        wait_until(lambda: not writer_sessions(a), 2, "a's writer sessions to be cut")
        time.sleep(1.5)
        stop_writers(stop_event, writers)

        readonly = sorted(sent for w in writers for (_, sent) in w.readonly)
        late = [sent for sent in readonly if sent > a_down.time + 0.2]
        after = sum(1 for w in writers for (_, _, sent, _) in w.acked if sent > a_down.time)
        window = (readonly[-1] - t_demote) if readonly else 0.0
        print(f"  unfenced: {len(readonly)} READONLY replies, last sent "
              f"{window * 1000:.0f} ms after demotion (down line at "
              f"{(a_down.time - t_demote) * 1000:.0f} ms); {after} writes acknowledged after "
              f"the down line", flush=True)
        check(not late, f"{len(late)} writes reached the replica after Fulcrum marked it down",
              fulcrum)
        check(after > 0, "no write was acknowledged after the switch", fulcrum)
        # Without the fence a write a acknowledged after b's promotion is lost when a
        # resyncs from b (the split brain the fence prevents), so only writes sent once
        # Fulcrum had switched must be on b.
        for w in writers:
            w.acked = [x for x in w.acked if x[2] > a_down.time + 0.2]
        check_acked_on(b, writers, fulcrum)
        stop_checked(fulcrum)
    finally:
        stop_writers(stop_event, writers)
        fulcrum.stop()
        a.stop()
        b.stop()


if __name__ == "__main__":
    run_tests(globals())
