"""A namespace topology for the XDP tests and benchmark, built and removed by the caller.

    client (198.18.0.2) ─┐
    balancer (198.18.0.1)├─ bridge in a "switch" namespace
    backend N (198.18.0.1N, VIP on lo via scripts/dsr-backend.sh)

The VIP (198.18.100.10) is routed by the client to the balancer. The balancer's XDP program
sends client packets back out of the same interface (XDP_TX) to a backend inside IPIP, and
the backend answers the client directly over the bridge. Names carry the PID so parallel
runs never collide; remove() deletes every namespace (their interfaces go with them) and is
registered with atexit, so a failing test cleans up too.
"""

import atexit
import os
import subprocess

SOURCE_DIR = os.environ.get("FULCRUM_SOURCE_DIR", ".")
BUILD_DIR = os.environ.get("FULCRUM_BUILD_DIR", ".")
DSR_SCRIPT = os.path.join(SOURCE_DIR, "scripts", "dsr-backend.sh")
PASS_OBJ = os.path.join(BUILD_DIR, "ebpf", "xdp_pass.bpf.o")
DECAP_OBJ = os.path.join(BUILD_DIR, "ebpf", "fulcrum_decap.bpf.o")

VIP = "198.18.100.10"
BALANCER = "198.18.0.1"
CLIENT = "198.18.0.2"


def sh(*args, ns=None, check=True, env=None):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def is_root():
    return os.geteuid() == 0


class Topology:
    _count = 0

    def __init__(self, backends=3):
        Topology._count += 1
        tag = f"{os.getpid() % 100000}{Topology._count % 10}"
        self.tag = tag
        self.switch = f"fx{tag}s"
        self.client = f"fx{tag}c"
        self.balancer = f"fx{tag}l"
        self.backends = [f"fx{tag}b{i + 1}" for i in range(backends)]
        self.backend_ips = [f"198.18.0.{11 + i}" for i in range(backends)]
        self.macs = {}
        self._made = []
        atexit.register(self.remove)
        try:
            self._build()
        except Exception:
            self.remove()
            raise

    # Interface of a namespace: "e" + its namespace name (<= 15 characters).
    @staticmethod
    def dev(ns):
        return "e" + ns

    def _add_ns(self, ns):
        sh("ip", "netns", "add", ns)
        self._made.append(ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)

    def _join(self, ns, address):
        dev = self.dev(ns)
        peer = "p" + ns
        sh("ip", "link", "add", dev, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", dev, "netns", ns)
        sh("ip", "link", "set", peer, "netns", self.switch)
        sh("ip", "link", "set", peer, "master", "br0", ns=self.switch)
        sh("ip", "link", "set", peer, "up", ns=self.switch)
        sh("ip", "addr", "add", f"{address}/24", "dev", dev, ns=ns)
        sh("ip", "link", "set", dev, "up", ns=ns)
        out = sh("cat", f"/sys/class/net/{dev}/address", ns=ns).stdout.strip()
        self.macs[ns] = out

    def _build(self):
        self._add_ns(self.switch)
        sh("ip", "link", "add", "br0", "type", "bridge", ns=self.switch)
        sh("ip", "link", "set", "br0", "up", ns=self.switch)
        for ns in [self.client, self.balancer] + self.backends:
            self._add_ns(ns)
        self._join(self.client, CLIENT)
        self._join(self.balancer, BALANCER)
        for ns, ip in zip(self.backends, self.backend_ips):
            self._join(ns, ip)
            sh(DSR_SCRIPT, "up", self.dev(ns), VIP, ns=ns,
               env={**os.environ, "FULCRUM_DECAP_OBJ": DECAP_OBJ})
        sh("ip", "route", "add", f"{VIP}/32", "via", BALANCER, ns=self.client)
        # A veth hands the peer a packet whose L4 checksum is left for the NIC to fill in
        # (offload); XDP_TX forwards the bytes as they are, so the backend would see a bad
        # checksum. A real client's NIC fills it in; here the client's kernel must.
        sh("ethtool", "-K", self.dev(self.client), "tx", "off", ns=self.client)
        # The XDP program's FIB lookups need forwarding on the balancer's interface.
        sh("sysctl", "-qw", f"net.ipv4.conf.{self.dev(self.balancer)}.forwarding=1",
           ns=self.balancer)
        # Native XDP_TX frames from a veth arrive only where the peer runs an XDP program.
        sh("ip", "link", "set", "dev", "p" + self.balancer, "xdpdrv", "obj", PASS_OBJ,
           "sec", "xdp", ns=self.switch)

    def resolve_neighbours(self):
        """Permanent neighbour entries for the backends on the balancer, so the XDP FIB
        lookups find their MACs from the first packet (health checks would resolve them too,
        but only once they have run)."""
        for ns, ip in zip(self.backends, self.backend_ips):
            sh("ip", "neigh", "replace", ip, "lladdr", self.macs[ns], "dev",
               self.dev(self.balancer), "nud", "permanent", ns=self.balancer)

    def remove(self):
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        self._made = []

    def fulcrum_wrapper(self, directory, fulcrum_bin):
        """A script that runs fulcrum inside the balancer namespace (exec keeps the PID)."""
        path = os.path.join(directory, "fulcrum-in-ns")
        with open(path, "w") as f:
            f.write(f"#!/bin/sh\nexec ip netns exec {self.balancer} {fulcrum_bin} \"$@\"\n")
        os.chmod(path, 0o755)
        return path
