#!/usr/bin/env python3
"""Fulcrum's cost over going direct: redis-benchmark and wrk, same backends, same run.

Starts one redis-server and one nginx on loopback, Fulcrum in front of each (one backend per
pool, so the only difference is the hop), then alternates direct and through-Fulcrum rounds
and prints medians and ratios. Every run is bounded (request count or duration).

  bench/direct_vs_fulcrum.py [--build build] [--rounds 3] [--seconds 5] [--requests 100000]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5, help="wrk duration per round")
    p.add_argument("--requests", type=int, default=100000, help="redis-benchmark -n")
    p.add_argument("--clients", type=int, default=50)
    return p.parse_args()


def redis_benchmark(port, requests, clients):
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c",
                          str(clients), "-n", str(requests), "-t", "set,get", "--csv"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    results = {}
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells[0] in ("SET", "GET"):
            # test, rps, avg, min, p50, p95, p99, max
            results[cells[0]] = {"rps": float(cells[1]), "p50": float(cells[4]),
                                 "p99": float(cells[6])}
    return results


def wrk(port, seconds, close):
    args = ["wrk", "-t2", "-c50", f"-d{seconds}s", "--latency"]
    if close:
        args += ["-H", "Connection: close"]
    out = subprocess.run(args + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         timeout=seconds + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {"rps": rps, "p99": float(p99.group(1)) * scale,
            "errors": (errors.group(1) if errors else "none"),
            "non2xx": int(non2xx.group(1)) if non2xx else 0}


def main():
    args = parse_args()
    os.environ.setdefault("FULCRUM_BIN", os.path.join(args.build, "fulcrum"))
    import fulcrum_it
    from real_servers import Nginx, Redis, fulcrum_config

    redis = Redis()
    nginx = Nginx(lambda ports: "  server { listen 127.0.0.1:%d; keepalive_requests 100000; "
                  "location / { return 200 \"ok\\n\"; } }" % ports[0])
    config = fulcrum_config(
        [("redis", "127.0.0.1:0", "redis"), ("http", "127.0.0.1:0", "http")],
        {"redis": {"algorithm": "round_robin", "backends": [redis.address]},
         "http": {"algorithm": "round_robin", "backends": [f"127.0.0.1:{nginx.ports[0]}"]}})
    lb = fulcrum_it.Fulcrum(config)
    lb_redis = lb.addr("redis")[1]
    lb_http = lb.addr("http")[1]

    samples = {}

    def add(name, value):
        samples.setdefault(name, []).append(value)

    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for target, port, hport in (("direct", redis.port, nginx.ports[0]),
                                    ("fulcrum", lb_redis, lb_http)):
            rb = redis_benchmark(port, args.requests, args.clients)
            for test in ("SET", "GET"):
                add((f"redis {test} req/s", target), rb[test]["rps"])
                add((f"redis {test} p99 ms", target), rb[test]["p99"])
            for close, label in ((False, "keep-alive"), (True, "close")):
                w = wrk(hport, args.seconds, close)
                if w["errors"] != "none" or w["non2xx"]:
                    print(f"warning: wrk {label} {target}: errors={w['errors']} "
                          f"non2xx={w['non2xx']}", file=sys.stderr)
                add((f"wrk {label} req/s", target), w["rps"])
                add((f"wrk {label} p99 ms", target), w["p99"])

    code = lb.stop()
    print(f"\n{args.rounds} interleaved rounds, medians; fulcrum workers=2, one backend per pool,"
          f" redis-benchmark -c {args.clients} -n {args.requests}, wrk -t2 -c50 "
          f"-d{args.seconds}s\n")
    print(f"| metric | direct | through fulcrum | fulcrum / direct |")
    print(f"|---|---|---|---|")
    names = sorted({name for name, _ in samples}, key=lambda n: list(samples).index((n,
                   "direct")))
    for name in names:
        d = statistics.median(samples[(name, "direct")])
        f = statistics.median(samples[(name, "fulcrum")])
        print(f"| {name} | {d:,.2f} | {f:,.2f} | {f / d:.2f} |")
    print(f"\nfulcrum exit code after SIGTERM: {code}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
