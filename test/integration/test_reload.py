"""Hot reload under load: a long-lived connection keeps carrying data and a steady stream of
new connections keeps being served across 20 reloads (SIGHUP), some of them invalid. Zero
failed connections and zero bytes lost are required; each valid config must visibly take
effect (backends added and removed, a listener added and removed), each invalid one must be
reported while the old config keeps running, and an unchanged backend keeps its health
state and counters."""

import hashlib
import os
import random
import signal
import socket
import threading
import time

from backends import Backend, check, connect, line_handler, recv_exact, request
from fulcrum_it import Fulcrum, run_tests
from admin_helpers import AdminFulcrum, admin_config, curl
from udp_helpers import Client, UdpBackend, named, totals, udp_config


def echo_handler(conn, backend):
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def config(backends, extra_listener=False, algorithm="round_robin", log_level="info",
           broken=None):
    lines = ["[global]", "workers = 2", f'log_level = "{log_level}"', 'drain_timeout = "2s"',
             "", "[[listener]]", 'name = "front"', 'bind = "127.0.0.1:0"', 'pool = "front"',
             "", "[[listener]]", 'name = "stream"', 'bind = "127.0.0.1:0"', 'pool = "stream"']
    if extra_listener:
        lines += ["", "[[listener]]", 'name = "extra"', 'bind = "127.0.0.1:0"',
                  'pool = "front"']
    lines += ["", "[pool.front]", f'algorithm = "{algorithm}"', "backends = ["]
    lines += [f'  {{ address = "{b.address}" }},' for b in backends]
    lines += ["]", "", "[pool.stream]", "backends = [", '  {{ address = "{}" }},', "]"]
    text = "\n".join(lines) + "\n"
    if broken == "syntax":
        text += "[pool.front\n"
    elif broken == "unknown_key":
        text = text.replace('algorithm = "', 'algoritm = "')
    elif broken == "bad_pool":
        text = text.replace('pool = "front"', 'pool = "nowhere"', 1)
    return text


class Load:
    """New connections one after another, each one request; every failure is kept."""

    def __init__(self, fulcrum):
        self.fulcrum = fulcrum
        self.addr = fulcrum.addr("front")
        self.served = {}
        self.failures = []
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        deadline = time.monotonic() + 60  # Bounded even if the test forgets to stop it.
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                s = connect(self.addr, timeout=5)
                name = request(s, f"n{self.count}")
                s.close()
                self.served[name] = self.served.get(name, 0) + 1
            except Exception as e:  # noqa: BLE001 - every failure is a test failure.
                self.failures.append(repr(e))
            self.count += 1

    def snapshot(self):
        return dict(self.served)

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=10)


class Stream:
    """One long-lived connection echoing random data; checks every byte comes back."""

    def __init__(self, addr):
        self.sock = connect(addr, timeout=10)
        self.sent = hashlib.sha256()
        self.received = hashlib.sha256()
        self.bytes = 0
        self.error = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        rng = random.Random(7)
        deadline = time.monotonic() + 60
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                chunk = rng.randbytes(rng.randint(1, 8192))
                self.sock.sendall(chunk)
                self.sent.update(chunk)
                self.received.update(recv_exact(self.sock, len(chunk)))
                self.bytes += len(chunk)
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=10)
        self.sock.close()


def reload(f, text, expect_ok):
    with open(f.config_path, "w") as out:
        out.write(text)
    before_ok = f.count_log(r"config reloaded trigger=SIGHUP")
    before_fail = f.count_log(r"reload failed trigger=SIGHUP")
    f.proc.send_signal(signal.SIGHUP)
    if expect_ok:
        f.wait_for(lambda: f.count_log(r"config reloaded trigger=SIGHUP") > before_ok, 5,
                   "config reloaded")
    else:
        f.wait_for(lambda: f.count_log(r"reload failed trigger=SIGHUP") > before_fail, 5,
                   "reload failed")


def test_twenty_reloads_under_load():
    a, b, c = (Backend(line_handler, name=n) for n in "abc")
    echo = Backend(echo_handler)
    text = config([a, b]).replace('{{ address = "{}" }}', f'{{ address = "{echo.address}" }}')

    def cfg(*args, **kw):
        return config(*args, **kw).replace('{{ address = "{}" }}',
                                           f'{{ address = "{echo.address}" }}')

    f = Fulcrum(text)
    stream = Stream(f.addr("stream"))
    load = Load(f)
    time.sleep(0.3)

    steps = [
        (cfg([a, b, c]), True, "c added"),
        (cfg([a, b, c], broken="syntax"), False, "syntax error"),
        (cfg([a, c]), True, "b removed"),
        (cfg([a, c], broken="unknown_key"), False, "unknown key"),
        (cfg([a, c], algorithm="least_conn"), True, "algorithm changed"),
        (cfg([a, c], extra_listener=True), True, "listener added"),
        (cfg([a, c], broken="bad_pool"), False, "missing pool"),
        (cfg([a, c]), True, "listener removed"),
        (cfg([a, b, c], log_level="debug"), True, "b back, log level"),
        (cfg([a, b, c]), True, "unchanged"),
    ]
    seen = []
    for round_ in range(2):
        for text_, ok, what in steps:
            reload(f, text_, ok)
            # A connection that picked its backend just before the switch may finish after
            # the log line; the load is sequential, so 50 ms lets it land before counting.
            time.sleep(0.05)
            before = load.snapshot()
            time.sleep(0.15)
            after = load.snapshot()
            delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            seen.append((what, ok, delta))
            if what == "b removed" or what == "listener removed":
                check(delta.get("b", 0) == 0, f"{what}: b takes no new flows: {delta}", f)
            if what == "listener removed":
                # Its open session carries on; new clients are refused.
                check(request(extra_sock, "after removal") in ("a", "c"),
                      "a session of a removed listener keeps working", f)
                extra_sock.close()
                try:
                    connect(extra_addr, timeout=2).close()
                    refused = False
                except ConnectionRefusedError:
                    refused = True
                check(refused, "a removed listener accepts no new connection", f)
            if what == "c added":
                # Flows are sequential and round-robin: c must show up within 0.15 s.
                check(delta.get("c", 0) > 0, f"{what}: c takes flows: {delta}", f)
            if what == "listener added":
                extra = f.addresses.get("extra")
                check(extra is not None, "the extra listener announced its address", f)
                extra_addr = f.addr("extra")
                extra_sock = connect(extra_addr, timeout=5)
                check(request(extra_sock, "via extra") in ("a", "c"), "extra listener serves",
                      f)

    load.finish()
    stream.finish()
    check(not load.failures, f"zero failed connections over {load.count}: "
                             f"{load.failures[:5]}", f)
    check(stream.error is None, f"long-lived stream survived: {stream.error}", f)
    check(stream.sent.digest() == stream.received.digest() and stream.bytes > 0,
          f"zero bytes lost on the long-lived connection ({stream.bytes} bytes)", f)
    check(f.count_log(r"config reloaded trigger=SIGHUP") == 14, "14 valid reloads applied", f)
    check(f.count_log(r"reload failed trigger=SIGHUP reason=invalid_config") == 6,
          "6 invalid reloads refused", f)
    check(f.count_log(r"listener stopped listener=extra address=\S+ reason=removed_by_reload")
          == 2, "the extra listener was removed twice", f)
    print(f"reloads: 20, connections: {load.count}, failures: {len(load.failures)}, "
          f"stream bytes: {stream.bytes}")
    f.stop()
    for x in (a, b, c, echo):
        x.kill()


def test_unchanged_backend_keeps_health_and_counters():
    a = Backend(line_handler, name="a")
    down_port = Backend(lambda conn, b: None)
    closed = down_port.port
    down_port.kill()
    b = Backend(line_handler, name="b")
    base = ("[global]\nworkers = 1\n\n[[listener]]\nname = \"front\"\nbind = \"127.0.0.1:0\"\n"
            "pool = \"front\"\n{extra}\n[pool.front]\nbackends = [\n"
            f"  {{ address = \"{a.address}\" }},\n"
            f"  {{ address = \"{b.address}\", health = {{ port = {closed} }} }},\n"
            "]\n[pool.front.health]\ntype = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\n")
    f = Fulcrum(base.replace("{extra}", ""))
    f.wait_log(r"health checks started pool=front check=tcp backends=2 up=1")
    reload(f, base.replace("{extra}", 'idle_timeout = "1m"'), True)
    time.sleep(0.6)
    check(f.count_log(rf"backend (up|down) pool=front backend={a.address}") == 1,
          "a stays up with no new transition after the reload", f)
    check(f.count_log(rf"backend up pool=front backend={b.address}") == 0,
          "b stays down: its state survived the reload", f)
    check(f.count_log(r"backend added|backend removed") == 0, "no backend was re-created", f)
    for i in range(4):
        s = connect(f.addr("front"))
        check(request(s, f"x{i}") == "a", "only a serves", f)
        s.close()
    f.stop()
    a.kill()
    b.kill()


def test_udp_listener_settings_change_in_place():
    """A UDP listener whose settings change keeps its socket and its open sessions: a game
    client keeps its backend across the reload, and the new replies setting applies to new
    sessions."""
    a, b = UdpBackend(named, name="a"), UdpBackend(named, name="b")
    text = udp_config([a, b], algorithm="round_robin", listener_opts={"replies": 0})
    f = Fulcrum(text)
    game = Client(f.addr("front"))
    first, _ = game.request(b"hello")
    reload(f, udp_config([a, b], algorithm="round_robin", listener_opts={"replies": 1}), True)
    f.wait_log(r"config reloaded trigger=SIGHUP listeners=1 kept=0 changed=1")
    for i in range(5):
        again, source = game.request(b"tick %d" % i)
        check(again.split(b"|")[0] == first.split(b"|")[0],
              f"the open session keeps its backend: {first!r} then {again!r}", f)
        check(source == f.addr("front"), "replies still come from the listener address", f)
    # New sessions follow replies = 1: each ends after its answer (seen in the totals).
    for i in range(4):
        c = Client(f.addr("front"))
        c.request(b"dns-like")
        c.close()
    f.stop()
    ended = totals(f, "front")
    check(int(ended.get("ended_replies_done", 0)) >= 4,
          f"new sessions end after one reply: {ended}", f)
    game.close()


def test_reload_through_the_admin_api():
    a, b = Backend(line_handler, name="a"), Backend(line_handler, name="b")
    pools = {"web": {"backends": [(a.address, "")]}}
    f = AdminFulcrum(admin_config(pools))
    # The file on disk is what a reload reads; the admin section must stay as it is.
    with open(f.config_path) as fh:
        original = fh.read()
    with open(f.config_path, "w") as fh:
        fh.write(original.replace(f'  {{ address = "{a.address}" }},',
                                  f'  {{ address = "{a.address}" }},\n'
                                  f'  {{ address = "{b.address}" }},'))
    ok = curl(f, "/api/v1/reload", method="POST")
    check(ok.status == 200 and ok.json() == {"reloaded": True}, f"reload answered {ok}", f)
    f.wait_log(r"config reloaded trigger=admin listeners=1 kept=1")
    served = set()
    for i in range(4):
        s = connect(f.addr("web"))
        served.add(request(s, f"r{i}"))
        s.close()
    check(served == {"a", "b"}, f"the added backend serves: {served}", f)

    with open(f.config_path, "w") as fh:
        fh.write(original + "\n[pool.web.bogus]\n")
    bad = curl(f, "/api/v1/reload", method="POST")
    check(bad.status == 422 and "reload refused, the running config stays: " in bad.error()
          and "bogus" in bad.error(), f"an invalid file is refused with its place: {bad}", f)
    check(curl(f, "/api/v1/reload", method="GET").status == 405, "reload is POST only", f)
    check(curl(f, "/api/v1/reload", method="POST", token=None).status == 401,
          "reload needs the token", f)
    f.stop()
    a.kill()
    b.kill()


if __name__ == "__main__":
    run_tests(globals())
