"""GET /api/v1/failovers and the failover histograms, on a real backend going down and up.

Topology: TCP listener "web" -> pool "web" = [a, b] (Python line servers), round robin,
tcp probe every 100 ms, fall 2, rise 2, passive detection off so the probe alone decides.
The test stops a's listener, drives flows, brings a back, and checks the record's order
of events, its bound, and that the metrics counted one detection and one reroute.
"""

import subprocess
import time

from admin_helpers import AdminFulcrum, admin_config, curl, wait_until
from backends import Backend, check, connect, line_handler, request
from fulcrum_it import run_tests
from test_admin_metrics import parse_metrics, value

INTERVAL_MS, TIMEOUT_MS, FALL = 100, 80, 2
SLACK_MS = 250  # Process wake-ups on two busy cores.


def flows(f, count):
    served = []
    for i in range(count):
        c = connect(f.addr("web"), timeout=5)
        served.append(request(c, f"f{i}"))
        c.close()
    return served


def failovers(f):
    r = curl(f, "/api/v1/failovers")
    check(r.status == 200, f"/api/v1/failovers: {r}", f)
    return r.json()


def test_record_follows_a_down_and_up():
    a = Backend(line_handler, name="a")
    b = Backend(line_handler, name="b")
    config = admin_config(
        {"web": {"backends": [(a.address, ""), (b.address, "")],
                 "extra": 'algorithm = "round_robin"\nretries = 1',
                 "health": f'type = "tcp"\ninterval = "{INTERVAL_MS}ms"\n'
                           f'timeout = "{TIMEOUT_MS}ms"\nrise = 2\nfall = {FALL}\n'
                           f"passive_failures = 0"}})
    f = AdminFulcrum(config)
    check(set(flows(f, 6)) == {"a", "b"}, "both backends serve", f)
    doc = failovers(f)
    check(doc["failovers"] == [], f"no failover yet: {doc}")
    check(abs(doc["now_unix_ms"] - time.time() * 1000) < 2000, f"wall clock {doc}")

    address, port = a.address, a.port
    stopped_ns = time.monotonic_ns()
    stopped_unix_ms = time.time() * 1000
    a.kill()
    wait_until(lambda: failovers(f)["failovers"], what="a failover record")
    check(set(flows(f, 4)) == {"b"}, "b serves alone", f)

    rec = failovers(f)["failovers"][0]
    print(f"record while down: {rec}", flush=True)
    check(rec["backend"] == address and rec["pool"] == "web", f"names {rec}")
    check(rec["reason"] == "probe" and rec["signal"] == "probe", f"reason {rec}")
    check(stopped_ns <= rec["first_signal_mono_ns"] <= rec["down_mono_ns"], f"order {rec}")
    bound_ms = FALL * INTERVAL_MS + TIMEOUT_MS + SLACK_MS
    detect_ms = (rec["down_mono_ns"] - stopped_ns) / 1e6
    check(detect_ms <= bound_ms, f"detected {detect_ms} ms after the stop, bound {bound_ms}")
    check(rec["first_moved_mono_ns"] >= rec["down_mono_ns"], f"first moved {rec}")
    check(rec["reroute_ms"] is not None and rec["reroute_ms"] >= 0, f"reroute {rec}")
    check(rec["last_flow_mono_ns"] < rec["down_mono_ns"], f"no flow to a after down {rec}")
    check(rec["up_mono_ns"] is None and rec["up_reason"] is None, f"still down {rec}")
    check(rec["sessions_action"] == "left", f"on_down continue {rec}")
    check(abs(rec["down_unix_ms"] - stopped_unix_ms - detect_ms) < 50,
          f"wall-clock down time {rec} against the stop at {stopped_unix_ms}")

    text = curl(f, "/metrics").body
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=60)
    out = (p.stdout + p.stderr).decode()
    check(p.returncode == 0 and out.strip() == "", f"promtool said ({p.returncode}):\n{out}")
    m = parse_metrics(text)
    check(value(m, "fulcrum_failover_detection_seconds_count", pool="web") == 1, "detections")
    check(value(m, "fulcrum_failover_reroute_seconds_count", pool="web") == 1, "reroutes")
    detection_s = value(m, "fulcrum_failover_detection_seconds_sum", pool="web")
    check(abs(detection_s * 1000 - rec["detection_ms"]) < 1, f"sum {detection_s} vs {rec}")

    a2 = Backend(line_handler, port=port, name="a")
    wait_until(lambda: failovers(f)["failovers"][0]["up_mono_ns"], what="a back up")
    rec = failovers(f)["failovers"][0]
    check(rec["up_reason"] == "probe" and rec["down_for_ms"] > 0, f"up {rec}")
    check("a" in flows(f, 6), "a serves again", f)
    # Counted once, however often the endpoint is read.
    m = parse_metrics(curl(f, "/metrics").body)
    check(value(m, "fulcrum_failover_reroute_seconds_count", pool="web") == 1, "reroutes once")
    check(len(failovers(f)["failovers"]) == 1, "one record")
    check(curl(f, "/api/v1/failovers", method="POST").status == 405, "POST refused")

    # An operator draining a serving backend opens a record too, outside the detection
    # histogram; enabling it closes the record.
    r = curl(f, f"/api/v1/pools/web/backends/{b.address}/drain", method="POST")
    check(r.status == 200, f"drain {r}")
    check(set(flows(f, 4)) == {"a"}, "a serves alone while b drains", f)
    rec = failovers(f)["failovers"][-1]
    check(rec["id"] == 2 and rec["reason"] == "admin" and rec["detail"] == "draining",
          f"admin record {rec}")
    check(rec["first_moved_mono_ns"] is not None and rec["up_mono_ns"] is None, f"{rec}")
    curl(f, f"/api/v1/pools/web/backends/{b.address}/enable", method="POST")
    rec = failovers(f)["failovers"][-1]
    check(rec["up_reason"] == "admin" and rec["up_mono_ns"] > rec["down_mono_ns"], f"{rec}")
    m = parse_metrics(curl(f, "/metrics").body)
    check(value(m, "fulcrum_failover_detection_seconds_count", pool="web") == 1,
          "a drain is no detection")
    check(f.stop() == 0, "fulcrum exit code", f)
    a2.kill()
    b.kill()


if __name__ == "__main__":
    run_tests(globals())
