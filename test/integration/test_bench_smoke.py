"""bench/compare_peers.py in smoke mode: every peer (direct, Fulcrum, HAProxy, nginx) and
every metric with tiny durations, so the comparison never rots. It checks that the run
completes, that every metric has a number for every peer it applies to, that the traffic
really flowed (non-zero rates), and that the report parses; it never asserts a speed.
"""

import json
import math
import os
import re
import subprocess
import sys

from fulcrum_it import BUILD_DIR, SOURCE_DIR, run_tests, tmpdir
from real_servers import require_tools

require_tools("haproxy", "nginx", "iperf3", "wrk", "redis-benchmark", "redis-server")

SCRIPT = os.path.join(SOURCE_DIR, "bench", "compare_peers.py")
ALL = ("direct", "fulcrum", "haproxy", "nginx")
UDP = ("direct", "fulcrum", "nginx")
PROXIES = ("fulcrum", "haproxy", "nginx")

# metric -> peers that must have it; the rates must be above zero (traffic flowed).
EXPECTED = {
    "bulk 1 stream Gbit/s": ALL, "bulk 4 streams Gbit/s": ALL,
    "CPU s per GB, 1 stream": PROXIES, "CPU s per GB, 4 streams": PROXIES,
    "new connections/s": ALL, "new connection p99 ms": ALL,
    "wrk keep-alive req/s": ALL, "wrk keep-alive p99 ms": ALL,
    "redis SET req/s": ALL, "redis GET req/s": ALL, "redis SET p99 ms": ALL,
    "redis GET p99 ms": ALL,
    "UDP request/response per s": UDP, "UDP flood echoed datagrams/s": UDP,
    "memory per idle connection, 50 conns, bytes": PROXIES,
    "memory per idle connection, 100 conns, bytes": PROXIES,
}
POSITIVE = re.compile(r"Gbit/s|connections/s|req/s|per s|datagrams/s")


def test_smoke_every_peer_every_metric():
    out_json = os.path.join(tmpdir("fulcrum-bench-smoke-"), "smoke.json")
    p = subprocess.run([sys.executable, SCRIPT, "--smoke", "--build", BUILD_DIR, "--json",
                        out_json], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"

    with open(out_json) as f:
        data = json.load(f)
    assert data["exit_codes"]["fulcrum"] == 0, data["exit_codes"]
    samples = {(s["metric"], s["peer"]): s["values"] for s in data["samples"]}
    for metric, peers in EXPECTED.items():
        for peer in peers:
            values = samples.get((metric, peer))
            assert values, f"no sample for {metric!r} / {peer}; have {sorted(samples)}"
            assert all(math.isfinite(v) and v >= 0 for v in values), (metric, peer, values)
            if POSITIVE.search(metric):
                assert all(v > 0 for v in values), f"{metric} / {peer}: nothing moved {values}"
    # HAProxy community has no UDP: its column stays empty rather than made up.
    assert ("UDP request/response per s", "haproxy") not in samples

    # The printed table has a row per metric with a number or "-" in every peer column.
    rows = [line for line in p.stdout.splitlines() if line.startswith("| ")]
    table = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:6]] for r in rows}
    for metric in EXPECTED:
        assert metric in table, f"no row for {metric!r} in:\n{p.stdout}"
        assert all(re.fullmatch(r"-|[\d,.]+", c) for c in table[metric]), table[metric]
    assert any(line.startswith("| new connections/s vs haproxy") for line in rows), p.stdout


run_tests(globals())
