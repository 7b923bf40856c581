"""The failover bench end to end: `bench/fulcrum-bench failover` runs the short ci-demo
scenario (three demo backends, Maglev on source_ip, kill / hang / refuse on b0) against a
real Fulcrum and a real HAProxy, and its figures are checked against bounds computed from
the scenario's own settings:

    Fulcrum: detection (fault injected -> marked down) <= fall x interval + timeout + slack
    HAProxy: detection <= fall x (inter + timeout check) + slack (its next check starts
             inter after the previous one ended)

for every run, plus what each fault must look like to clients, and Fulcrum's failover
record (GET /api/v1/failovers) must agree with what the clients saw.
"""

import csv
import json
import os
import subprocess
import sys
import tomllib

from fulcrum_it import SOURCE_DIR, BUILD_DIR, FULCRUM_BIN, run_tests, tmpdir
from real_servers import require_tools

SCENARIO = os.path.join(SOURCE_DIR, "bench", "failover", "scenarios", "ci-demo.toml")
BENCH = os.path.join(SOURCE_DIR, "bench", "fulcrum-bench")
STATE = {}


def ms(text):
    return float(text[:-2]) if text.endswith("ms") else float(text[:-1]) * 1000


MAX_LAG_MS = 20  # Two timeline bins.
ATTEMPTS = 3


def run_bench():
    """Runs the scenario, again (up to ATTEMPTS) only while the machine starves the load
    driver or flaps b0 before the fault: the lag is measured, not guessed, and figures
    from a starved driver say more about the machine than about the balancer. The checks
    below see the last run; a flap still fails them, a lag is reported but not failed,
    since on a shared machine it is the neighbours' doing and every other check holds."""
    if "report" in STATE:
        return STATE["report"], STATE["out"]
    require_tools("haproxy")
    for attempt in range(1, ATTEMPTS + 1):
        out = tmpdir("fulcrum-failover-bench-")
        proc = subprocess.run([sys.executable, BENCH, "failover", SCENARIO, "-o", out,
                               "--fulcrum", FULCRUM_BIN, "--build-dir", BUILD_DIR],
                              capture_output=True, text=True, timeout=300)
        print(proc.stdout, proc.stderr, flush=True)
        assert proc.returncode == 0, f"bench exit {proc.returncode}"
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        lags = [r["figures"]["driver_lag_p99_ms"] for r in report["runs"]]
        false_downs = sum(r["figures"]["false_downs_before_fault"] for r in report["runs"])
        if max(lags) < MAX_LAG_MS and false_downs == 0:
            break
        print(f"attempt {attempt}: load driver lag p99 up to {max(lags)} ms, {false_downs} "
              f"false downs before the fault (machine busy)", flush=True)
    STATE["report"], STATE["out"] = report, out
    return report, out


def runs_by(report):
    return {(r["target"], r["fault"]): r for r in report["runs"]}


def test_every_run_detects_within_the_bound():
    report, _ = run_bench()
    with open(SCENARIO, "rb") as f:
        sc = tomllib.load(f)
    h = sc["health"]
    slack = ms(sc["scenario"]["slack"])
    bounds = {"fulcrum": h["fall"] * ms(h["interval"]) + ms(h["timeout"]) + slack,
              "haproxy": h["fall"] * (ms(h["interval"]) + ms(h["timeout"])) + slack}
    runs = runs_by(report)
    assert set(runs) == {(t, f) for t in ("fulcrum", "haproxy")
                         for f in ("kill", "hang", "refuse")}, sorted(runs)
    for key, run in runs.items():
        fig = run["figures"]
        bound = bounds[key[0]]
        print(f"{key}: detect {fig['detect_ms']} ms (bound {bound} ms), failed "
              f"{fig['failed_requests']} {fig['failed_by_kind']}, recovery "
              f"{fig['recovery_ms']} ms", flush=True)
        assert abs(fig["detect_bound_ms"] - bound) < 0.1, (fig["detect_bound_ms"], bound)
        assert fig["false_downs_before_fault"] == 0, f"{key}: b0 flapped before the fault"
        assert fig["detect_ms"] is not None, f"{key}: never marked down"
        assert 0 <= fig["detect_ms"] <= bound, f"{key}: {fig['detect_ms']} ms > {bound} ms"
        assert fig["heal_to_up_ms"] is not None, f"{key}: never marked up after the heal"
        assert fig["heal_to_served_ms"] is not None, f"{key}: b0 never served after the heal"
        assert fig["failed_share_before"] > 0, f"{key}: b0 served nothing before the fault"
        assert fig["failed_share_after_down"] == 0, f"{key}: b0 served while marked down"
        # Maglev / consistent source hashing: b0's clients moved, and no one else did.
        assert fig["only_failed_moved"] is True, f"{key}: {fig}"
        # Samples carry their actual send times, so lag shifts load rather than blurring
        # the timeline; beyond two bins the load is no longer steady.
        if fig["driver_lag_p99_ms"] >= MAX_LAG_MS:
            print(f"WARNING {key}: load driver {fig['driver_lag_p99_ms']} ms late at p99; "
                  f"the machine is busy, client-side figures are approximate", flush=True)


def test_faults_look_as_they_should_to_clients():
    report, _ = run_bench()
    runs = runs_by(report)
    for target in ("fulcrum", "haproxy"):
        # Kill and refuse: connects are refused, and one retry on another backend hides
        # that from clients.
        for fault in ("kill", "refuse"):
            fig = runs[(target, fault)]["figures"]
            assert fig["failed_by_kind"].get("timeout", 0) == 0, (target, fault, fig)
        # Hang: the kernel still accepts, nobody answers; requests sent to b0 time out until
        # the checks mark it down, and no request started after that fails (50 ms for a
        # flow that loaded the pool just before the down was published).
        fig = runs[(target, "hang")]["figures"]
        assert fig["failed_by_kind"].get("timeout", 0) > 0, (target, fig)
        assert fig["last_failure_start_ms"] <= fig["detect_ms"] + 50, (target, fig)


def test_fulcrum_record_matches_the_clients():
    report, _ = run_bench()
    for fault in ("kill", "hang", "refuse"):
        run = runs_by(report)[("fulcrum", fault)]
        rec = run["figures"]["fulcrum_record"]
        fig = run["figures"]
        print(f"fulcrum {fault}: record {rec}", flush=True)
        # Order of events, all in ms from the fault.
        assert 0 <= rec["first_signal"] <= rec["down"], rec
        assert rec["down"] <= rec["first_moved"], rec
        assert rec["up"] is not None and rec["up"] > rec["down"], rec
        # The record's down is what the bench measured as detection (same source).
        assert abs(rec["down"] - fig["detect_ms"]) < 1, (rec, fig)
        assert rec["detection_ms"] <= fig["detect_bound_ms"], rec
        # No client was served by b0 after Fulcrum's last new flow to it.
        if fig["last_served_by_failed_ms"] is not None:
            assert fig["last_served_by_failed_ms"] <= rec["last_flow"] + 1, (rec, fig)
    kill = runs_by(report)[("fulcrum", "kill")]["figures"]["fulcrum_record"]
    hang = runs_by(report)[("fulcrum", "hang")]["figures"]["fulcrum_record"]
    # Refused connects feed passive detection and fail probes alike, so either may see a
    # killed backend first; a hung one still accepts connects, so only the probes can.
    assert kill["reason"] in ("passive", "probe"), kill
    assert hang["reason"] == "probe" and hang["signal"] == "probe", hang


def test_outputs_are_written():
    report, out = run_bench()
    assert report["driver"].startswith("fulcrum-failover-driver"), report["driver"]
    with open(os.path.join(out, "timeline-fulcrum-hang.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["t_ms"]) for r in rows[:3]] == [0, 10, 20]
    assert sum(int(r["timeout"]) for r in rows) > 0
    with open(os.path.join(out, "failover.svg")) as f:
        svg = f.read()
    assert svg.startswith("<svg") and svg.count("<polyline") == 12, svg[:200]
    with open(os.path.join(out, "report.md")) as f:
        md = f.read()
    assert "time to detect" in md and "failover.svg" in md


# Scenario files are validated like the main config: the file, the line, the key, what was
# found and what is allowed; exit 2 and nothing started.
def test_bad_scenarios_are_refused_with_file_and_line():
    d = tmpdir("fulcrum-failover-scenarios-")
    cases = {
        "typo.toml": ('[scenario]\nfaults = ["kill"]\n\n[health]\nfalll = 3\n',
                      "typo.toml:5: [health] falll: unknown key; keys of [health] are:"),
        "fault.toml": ('[scenario]\nfaults = ["zap"]\n',
                       "fault.toml:2: [scenario] faults: found ['zap']; expected"),
        "order.toml": ('[scenario]\nfault_at = "5s"\nheal_at = "4s"\n',
                       "order.toml:3: [scenario] heal_at: fault_at (5s) < heal_at (4s)"),
        "duration.toml": ('[health]\ninterval = "fast"\n',
                          'duration.toml:2: [health] interval: found \'fast\'; expected a '
                          'duration such as "150ms"'),
        "udp.toml": ('[scenario]\ntargets = ["haproxy"]\n[load]\nkind = "udp_rr"\n',
                     "HAProxy does not proxy UDP"),
        "redis.toml": ('[scenario]\nfaults = ["refuse"]\n[backends]\nkind = "redis"\n',
                       "refuse cannot be applied to redis backends"),
        "table.toml": ("[bogus]\nx = 1\n", "table.toml:1: unknown table or key [bogus]"),
    }
    for name, (text, expected) in cases.items():
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(text)
        proc = subprocess.run([sys.executable, BENCH, "failover", path, "--check"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (name, proc.returncode, proc.stderr)
        assert expected in proc.stderr and len(proc.stderr.splitlines()) == 1, \
            (name, proc.stderr)


if __name__ == "__main__":
    run_tests(globals())
