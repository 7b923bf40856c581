"""XDP fast path end to end in a namespace topology (see xdp_netns.py): a client, the
balancer running fulcrum with a mode = "xdp" listener, three DSR backends.

- TCP connections and UDP flows to the VIP are served, spread over all three backends; the
  replies come from the backends' own MACs, never through the balancer; the balancer's VIP
  and backend counters equal what the client sent, packet for packet and byte for byte.
- A backend taken down by health checks leaves the table: flows on the other backends stay
  where they were, flows that were on it move, new flows avoid it.
- When XDP cannot attach (native mode on lo), fulcrum says so in one line and, with
  xdp_fallback = "splicer", serves the VIP with the splicer.

Needs root; exits 77 (skipped) without.
"""

import json
import os
import signal
import subprocess
import sys
import time

from fulcrum_it import (DEMO_BACKEND, FULCRUM_BIN, DemoBackend, Fulcrum, free_port, run_tests,
                        spawn, stop, tmpdir)
import fulcrum_it
import xdp_netns
from xdp_netns import VIP, Topology, sh

PORT = 8080  # Inside our own namespaces only: nothing else listens there.
CLIENT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "xdp_client.py")

if not xdp_netns.is_root():
    print("test_xdp_netns: needs root (namespaces, XDP); skipped")
    sys.exit(77)


def config(backends, admin_socket, protocol, name):
    backend_lines = "\n".join(f'  {{ address = "{ip}:{PORT}" }},' for ip in backends)
    return f"""
[global]
workers = 1
log_level = "info"
drain_timeout = "1s"

[admin]
socket = "{admin_socket}"

[[listener]]
name = "{name}"
bind = "{VIP}:{PORT}"
protocol = "{protocol}"
pool = "web"
mode = "xdp"
interface = "{{iface}}"
xdp_attach = "native"

[pool.web]
algorithm = "maglev"
hash_key = "source_ip_port"
maglev_table_size = 4099
backends = [
{backend_lines}
]

[pool.web.health]
type = "tcp"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1
"""


class Bed:
    """Topology + demo backends in the backend namespaces + fulcrum in the balancer's."""

    def __init__(self, protocol="udp"):
        self.topo = Topology()
        self.backends = {}
        self.fulcrum = None
        try:
            self._start(protocol)
        except Exception:
            self.close()
            raise

    def _start(self, protocol):
        for ns, ip in zip(self.topo.backends, self.topo.backend_ips):
            d = tmpdir("fxdp-be-")
            p = spawn(["ip", "netns", "exec", ns, DEMO_BACKEND, "--name", ns,
                       "--tcp", f"0.0.0.0:{PORT}", "--udp", f"0.0.0.0:{PORT}"],
                      os.path.join(d, "log"))
            self.backends[ns] = p
        self.dir = tmpdir("fxdp-")
        self.admin_socket = os.path.join(self.dir, "admin.sock")
        wrapper = self.topo.fulcrum_wrapper(self.dir, FULCRUM_BIN)
        text = config(self.topo.backend_ips, self.admin_socket, protocol, "vip")
        text = text.replace("{iface}", Topology.dev(self.topo.balancer))
        self.topo.resolve_neighbours()
        fulcrum_it.FULCRUM_BIN = wrapper
        try:
            self.fulcrum = Fulcrum(text, timeout=20.0)
        finally:
            fulcrum_it.FULCRUM_BIN = FULCRUM_BIN
        self.wait_up(3)

    def status(self):
        out = subprocess.run(["curl", "-s", "--unix-socket", self.admin_socket,
                              "http://localhost/api/v1/status"],
                             check=True, stdout=subprocess.PIPE, text=True).stdout
        return json.loads(out)

    def xdp(self):
        return self.status()["listeners"][0]["xdp"]

    def wait_up(self, count, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            ups = sum(1 for b in self.xdp().get("backends", []) if b["up"])
            if ups == count:
                return
            time.sleep(0.1)
        raise AssertionError(f"expected {count} backends up in XDP: {self.xdp()}")

    def client(self, *args):
        out = sh(sys.executable, CLIENT_SCRIPT, VIP, str(PORT), *args,
                 ns=self.topo.client).stdout
        return json.loads(out)

    def close(self):
        try:
            if self.fulcrum is None:
                return
            code = self.fulcrum.stop()
            assert code == 0, f"fulcrum exit {code}\n{self.fulcrum.log()}"
            self.fulcrum.wait_log(r"xdp detached listener=vip")
        finally:
            for p in self.backends.values():
                stop(p)
            self.topo.remove()


def test_tcp_and_udp_served_by_backends_directly():
    bed = Bed("tcp")
    try:
        r = bed.client("--tcp", "60")
        assert not r["errors"], r["errors"]
        names = [name for _, name in r["tcp"]]
        assert len(names) == 60
        counts = {ns: names.count(ns) for ns in bed.topo.backends}
        assert all(c >= 8 for c in counts.values()), counts

        # Replies come from the backends' MACs, never from the balancer's.
        backend_macs = {bed.topo.macs[ns] for ns in bed.topo.backends}
        assert r["reply_macs"], "no reply seen"
        assert set(r["reply_macs"]) <= backend_macs, (r["reply_macs"], backend_macs)
        assert bed.topo.macs[bed.topo.balancer] not in r["reply_macs"]

        # Counters: every packet the client sent to the VIP was steered, bytes included, and
        # the per-backend counters add up to the VIP's.
        x = bed.xdp()
        assert x["attach"] == "native", x
        assert x["packets_total"] == r["sent_packets"], (x, r["sent_packets"])
        assert x["bytes_total"] == r["sent_bytes"], (x, r["sent_bytes"])
        assert sum(b["packets_total"] for b in x["backends"]) == r["sent_packets"]
        assert x["program_events_total"]["tx"] == r["sent_packets"]
        drops = sum(v for k, v in x["program_events_total"].items() if k.startswith("drop_"))
        assert drops == 0, x

        metrics = subprocess.run(["curl", "-s", "--unix-socket", bed.admin_socket,
                                  "http://localhost/metrics"],
                                 check=True, stdout=subprocess.PIPE, text=True).stdout
        assert f'fulcrum_xdp_packets_total{{listener="vip"}} {r["sent_packets"]}' in metrics
        assert 'fulcrum_xdp_listener_info{listener="vip",' in metrics
        assert 'fulcrum_xdp_events_total{event="drop_no_neigh"} 0' in metrics
    finally:
        bed.close()


def test_udp_flows_and_backend_down():
    bed = Bed("udp")
    try:
        ports = [str(41000 + i) for i in range(60)]
        first = bed.client("--udp-ports", ",".join(ports))
        assert not first["errors"], first["errors"]
        before = {port: name for port, name in first["udp"]}
        counts = {ns: list(before.values()).count(ns) for ns in bed.topo.backends}
        assert all(c >= 8 for c in counts.values()), counts
        x = bed.xdp()
        assert x["packets_total"] == first["sent_packets"] == 60, (x, first["sent_packets"])
        assert x["bytes_total"] == first["sent_bytes"]

        # Backend 2 stops: its health check fails and it leaves the table.
        victim = bed.topo.backends[1]
        stop(bed.backends[victim])
        bed.wait_up(2)
        bed.fulcrum.wait_log(rf"backend down .*backend={bed.topo.backend_ips[1]}:{PORT}")

        second = bed.client("--udp-ports", ",".join(ports), "--udp-new", "40")
        assert not second["errors"], second["errors"]
        moved = 0
        for port, name in second["udp"]:
            assert name != victim, (port, name)
            if port in before and before[port] != victim:
                assert name == before[port], f"flow {port} moved from {before[port]} to {name}"
            elif port in before:
                moved += 1
        assert moved == counts[victim], (moved, counts)
        assert len(second["udp"]) == 100
    finally:
        bed.close()


def test_reload_removes_a_backend_without_moving_other_flows():
    bed = Bed("udp")
    try:
        ports = [str(43000 + i) for i in range(45)]
        first = bed.client("--udp-ports", ",".join(ports))
        assert not first["errors"], first["errors"]
        before = {port: name for port, name in first["udp"]}

        # The third backend leaves the pool by reload (SIGHUP); the VIP's entry is kept and
        # reprogrammed in place.
        removed = bed.topo.backends[2]
        with open(bed.fulcrum.config_path) as f:
            text = f.read()
        with open(bed.fulcrum.config_path, "w") as f:
            f.write(text.replace(f'  {{ address = "{bed.topo.backend_ips[2]}:{PORT}" }},\n', ""))
        bed.fulcrum.proc.send_signal(signal.SIGHUP)
        bed.fulcrum.wait_log(r"config reloaded trigger=SIGHUP")
        deadline = time.time() + 5
        while len(bed.xdp()["backends"]) != 2 and time.time() < deadline:
            time.sleep(0.05)
        assert len(bed.xdp()["backends"]) == 2, bed.xdp()

        second = bed.client("--udp-ports", ",".join(ports))
        assert not second["errors"], second["errors"]
        for port, name in second["udp"]:
            assert name != removed
            if before[port] != removed:
                assert name == before[port], f"flow {port} moved from {before[port]} to {name}"
        assert sum(v for k, v in bed.xdp()["program_events_total"].items()
                   if k.startswith("drop_")) == 0
    finally:
        bed.close()


def test_fallback_to_splicer_when_xdp_cannot_attach():
    # Native XDP is not available on lo: the attach fails, fulcrum says so in one line and
    # the splicer serves the VIP (127.0.0.1 here) with the same backends.
    backend = DemoBackend("b1", tcp=["127.0.0.1:0"])
    port = free_port()
    text = f"""
[[listener]]
name = "vip"
bind = "127.0.0.1:{port}"
pool = "web"
mode = "xdp"
interface = "lo"
xdp_attach = "native"
xdp_fallback = "splicer"

[pool.web]
algorithm = "maglev"
backends = [ {{ address = "127.0.0.1:{backend.tcp[0][1]}" }} ]
"""
    f = Fulcrum(text)
    try:
        m = f.wait_log(r"xdp unavailable listener=vip interface=lo action=splicer_fallback "
                       r"reason=\"(.+)\"")
        assert "xdp_attach" in m.group(1) or "lo" in m.group(1), m.group(0)
        assert f.count_log("xdp unavailable") == 1
        f.wait_log(r"listener started listener=vip .* mode=splicer_fallback")
        import socket
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"hi\n")
            assert c.recv(100).startswith(b"b1 hi")
    finally:
        f.stop()
        backend.stop()

    # Without a fallback fulcrum refuses to start, with the same reason in one line.
    text = text.replace('xdp_fallback = "splicer"', 'xdp_fallback = "none"')
    f = Fulcrum(text, wait=False)
    code = f.proc.wait(timeout=20)
    f._reader.join(timeout=5)
    assert code != 0, f.log()
    assert "listener vip: XDP is unavailable" in f.log(), f.log()


if __name__ == "__main__":
    run_tests(globals())
