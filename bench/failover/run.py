"""`fulcrum-bench failover`: run a scenario against Fulcrum and/or HAProxy, one fresh
deployment per (target, fault), and write the report."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import sys
import time
from pathlib import Path

from . import analyze, deploy, load, protocols, report, scenario as scenario_mod

REPO = Path(__file__).resolve().parents[2]
# Load runs this long before the fault is counted from t0; the first moments after start
# (connections warming up) are part of the timeline too, so keep it short but nonzero.
SETTLE_S = 0.3


def find_tools(args) -> dict:
    build = Path(args.build_dir or os.environ.get("FULCRUM_BUILD_DIR", REPO / "build"))
    tools = {
        "fulcrum": args.fulcrum or os.environ.get("FULCRUM_BIN", str(build / "fulcrum")),
        "demo": str(build / "bench" / "fulcrum-demo-backend"),
        "driver": str(build / "bench" / "fulcrum-failover-driver"),
        "haproxy": shutil.which("haproxy") or "/usr/sbin/haproxy",
    }
    pg = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    tools["pg_bin"] = str(pg[-1].parent) if pg else ""
    return tools


def check_tools(s, tools) -> list[str]:
    missing = []
    if "fulcrum" in s.targets and not os.access(tools["fulcrum"], os.X_OK):
        missing.append(f"fulcrum binary {tools['fulcrum']} (build it: scripts/build.sh, or "
                       f"pass --fulcrum)")
    if "haproxy" in s.targets and not os.access(tools["haproxy"], os.X_OK):
        missing.append("haproxy (apt-get install haproxy)")
    if s.backend_kind == "demo" and not os.access(tools["demo"], os.X_OK):
        missing.append(f"demo backend {tools['demo']} (scripts/build.sh)")
    if s.backend_kind == "redis" and not shutil.which("redis-server"):
        missing.append("redis-server (apt-get install redis-server)")
    if s.backend_kind == "postgres" and not tools["pg_bin"]:
        missing.append("PostgreSQL server (apt-get install postgresql)")
    if any(f in scenario_mod.ROOT_FAULTS for f in s.faults):
        if os.geteuid() != 0:
            missing.append("root, for the blackhole and slow faults (they run in network "
                           "namespaces the bench creates)")
        elif not shutil.which("tc"):
            missing.append("tc (apt-get install iproute2)")
        elif "slow" in s.faults and not deploy.netem_available():
            missing.append("the netem qdisc for the slow fault (this kernel has no "
                           "sch_netem); drop slow from faults or use a kernel with netem")
    return missing


def exchange_for(s, backends):
    if s.backend_kind == "demo":
        return protocols.demo_exchange
    if s.backend_kind == "redis":
        return protocols.redis_exchange
    ports = {b.port: b.name for b in backends}
    return functools.partial(protocols.postgres_exchange, ports=ports,
                             keep=s.load == "tcp_stream")


def native(tools) -> bool:
    return os.access(tools["driver"], os.X_OK)


def driver_name(s, tools) -> str:
    if s.load == "tcp_rr" and s.backend_kind in ("demo", "redis") and native(tools):
        return "fulcrum-failover-driver (C++, epoll)"
    return "asyncio"


async def _drive(s, dep, fault: str, t0_ns: int,
                 tools: dict) -> tuple[load.LoadResult, int, int]:
    end_ns = t0_ns + int(s.duration_s * 1e9)
    fault_ns_box, heal_ns_box = [0], [0]
    failed = dep.backends[s.fault_backend]
    loop = asyncio.get_running_loop()

    def stamped(box, action, *args):
        box[0] = time.monotonic_ns()
        action(*args)

    async def inject():
        # Faults are applied from a thread so a slow kill or tc call does not stall the
        # load's event loop; the stamp is taken in that thread right before the action, so
        # a thread that waited for its turn does not make detection look faster.
        await asyncio.sleep((t0_ns + int(s.fault_at_s * 1e9) - time.monotonic_ns()) / 1e9)
        await loop.run_in_executor(None, stamped, fault_ns_box, failed.apply, fault,
                                   s.slow_delay_s)
        await asyncio.sleep((t0_ns + int(s.heal_at_s * 1e9) - time.monotonic_ns()) / 1e9)
        await loop.run_in_executor(None, stamped, heal_ns_box, failed.heal, fault)

    if s.load == "tcp_rr" and s.backend_kind in ("demo", "redis") and native(tools):
        driver = load.tcp_rr_native(tools["driver"], dep.vip, s.backend_kind, s.rate,
                                    s.clients, s.request_timeout_s, t0_ns, end_ns)
    elif s.load == "tcp_rr":
        driver = load.tcp_rr(dep.vip, exchange_for(s, dep.backends), s.rate, s.clients,
                             s.request_timeout_s, t0_ns, end_ns)
    elif s.load == "tcp_stream":
        driver = load.tcp_stream(dep.vip, exchange_for(s, dep.backends), s.rate, s.streams,
                                 s.request_timeout_s, t0_ns, end_ns)
    else:
        driver = load.udp_rr(dep.vip, s.rate, s.clients, s.request_timeout_s, t0_ns, end_ns)
    result, _ = await asyncio.gather(driver, inject())
    return result, fault_ns_box[0], heal_ns_box[0]


def run_one(s, target: str, fault: str, tools: dict, out_dir: Path, verbose: bool) -> dict:
    use_netns = any(f in scenario_mod.ROOT_FAULTS for f in s.faults)
    logs_dir = out_dir / "logs" / f"{target}-{fault}"
    dep = deploy.Deployment(s, target, tools, use_netns, logs_dir)
    try:
        time.sleep(SETTLE_S)
        t0_ns = time.monotonic_ns() + 50_000_000
        result, fault_ns, heal_ns = asyncio.run(_drive(s, dep, fault, t0_ns, tools))
        end_ns = t0_ns + int(s.duration_s * 1e9)
        failed = dep.backends[s.fault_backend]
        # Let the last up/down lines arrive before reading the events.
        time.sleep(0.1)
        if target == "fulcrum":
            failed_key = f"{failed.host}:{failed.udp_port if s.load == 'udp_rr' else failed.port}"
            failovers = dep.front.failovers()
            events = dep.front.events(failed_key)
            # The record of this fault: down after it, or already open when it came (then
            # false_downs_before_fault in the figures says the run is disturbed).
            records = [r for r in failovers["failovers"] if r["backend"] == failed_key
                       and (r["down_mono_ns"] >= fault_ns or not r["up_mono_ns"]
                            or r["up_mono_ns"] >= fault_ns)]
            record = records[0] if records else None
        else:
            failovers, record = None, None
            events = dep.front.events(failed.name)
        names = [b.name for b in dep.backends]
        timeline = analyze.timeline(result.samples, t0_ns, end_ns, names)
        figures = analyze.figures(s, target, result.samples, result.broken_streams, result.lag_ns,
                                  t0_ns, end_ns, fault_ns, heal_ns, events, failed.name, record)
        if verbose:
            print(f"  {target:8} {fault:9} detect={figures['detect_ms']} ms "
                  f"(bound {figures['detect_bound_ms']}) failed={figures['failed_requests']} "
                  f"recovery={figures['recovery_ms']} ms requests={figures['requests']}",
                  flush=True)
        return {"target": target, "fault": fault, "timeline": timeline, "figures": figures,
                "fulcrum_failovers": failovers}
    finally:
        dep.close(keep_logs_in=logs_dir)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="fulcrum-bench failover",
        description="Drive steady load through Fulcrum (and HAProxy), inject a fault into one "
                    "backend, heal it, and report detection, failures and recovery.")
    parser.add_argument("scenario", help="scenario TOML (see bench/failover/scenarios/)")
    parser.add_argument("-o", "--out", default=None,
                        help="output folder (default: failover-results/<scenario name>)")
    parser.add_argument("--targets", help="comma list overriding the scenario's targets")
    parser.add_argument("--faults", help="comma list overriding the scenario's faults")
    parser.add_argument("--fulcrum", help="fulcrum binary (default: build/fulcrum)")
    parser.add_argument("--build-dir", help="build folder holding fulcrum and the demo backend")
    parser.add_argument("--check", action="store_true",
                        help="validate the scenario and the tools it needs, then exit")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)

    try:
        s = scenario_mod.load(args.scenario)
        for attr, text, allowed in (("targets", args.targets, scenario_mod.TARGETS),
                                    ("faults", args.faults, scenario_mod.FAULTS)):
            if text:
                chosen = [v.strip() for v in text.split(",") if v.strip()]
                bad = [v for v in chosen if v not in allowed]
                if bad or not chosen:
                    raise scenario_mod.ScenarioError(
                        f"--{attr} {text}: unknown {', '.join(bad) or 'empty list'}; "
                        f"allowed: {', '.join(allowed)}")
                setattr(s, attr, chosen)
        problem = scenario_mod.target_fault_problem(s)
        if problem:
            raise scenario_mod.ScenarioError(f"--{problem[0]}: {problem[1]}")
    except scenario_mod.ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tools = find_tools(args)
    missing = check_tools(s, tools)
    if missing:
        print("error: missing for this scenario: " + "; ".join(missing), file=sys.stderr)
        return 3
    if args.check:
        print(f"scenario {s.name} ok: targets={','.join(s.targets)} faults={','.join(s.faults)}"
              f" backends={s.backend_count}x{s.backend_kind} load={s.load}")
        return 0

    out_dir = Path(args.out or Path("failover-results") / s.name)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: -o {out_dir}: cannot create the output folder: {e.strerror}; "
              f"choose a writable path", file=sys.stderr)
        return 2
    try:
        return run_all(s, args, tools, out_dir)
    except KeyboardInterrupt:
        # Every run cleans up its processes, namespaces and temp folders on the way out.
        print("interrupted: processes and namespaces of the bench are stopped; "
              "no report written", file=sys.stderr)
        return 130


def run_all(s, args, tools, out_dir: Path) -> int:
    runs = []
    if not args.quiet:
        print(f"scenario {s.name}: {len(s.faults) * len(s.targets)} runs of {s.duration_s:g} s",
              flush=True)
    for fault in s.faults:
        for target in s.targets:
            runs.append(run_one(s, target, fault, tools, out_dir, not args.quiet))
    report.write_all(out_dir, s, runs, driver_name(s, tools))
    if not args.quiet:
        print(f"report: {out_dir / 'report.md'}  plot: {out_dir / 'failover.svg'}  "
              f"json: {out_dir / 'report.json'}")
    return 0
