"""From one run's samples and events to a 10 ms timeline and the failover figures."""

from __future__ import annotations

import collections
import statistics

BIN_NS = 10_000_000  # Timeline resolution: 10 ms.
OUTCOMES = ("ok", "refused", "reset", "timeout", "closed", "protocol", "other")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def timeline(samples, t0_ns: int, end_ns: int, backends: list[str]) -> list[dict]:
    """One row per 10 ms bin of start times: outcomes, latency of the bin's successes, and
    how many successes each backend served."""
    count = (end_ns - t0_ns + BIN_NS - 1) // BIN_NS
    rows = [{"t_ms": i * 10, **{o: 0 for o in OUTCOMES}, "lat": [],
             **{f"served_{b}": 0 for b in backends}} for i in range(count)]
    for s in samples:
        i = (s.start_ns - t0_ns) // BIN_NS
        if not 0 <= i < count:
            continue
        row = rows[i]
        row[s.outcome] += 1
        if s.outcome == "ok":
            row["lat"].append((s.end_ns - s.start_ns) / 1e6)
            key = f"served_{s.backend}"
            if key in row:
                row[key] += 1
    for row in rows:
        lat = row.pop("lat")
        row["p50_ms"] = round(percentile(lat, 0.5), 3) if lat else ""
        row["p99_ms"] = round(percentile(lat, 0.99), 3) if lat else ""
        row["max_ms"] = round(max(lat), 3) if lat else ""
    return rows


def _ms(a_ns: int | None, b_ns: int | None) -> float | None:
    if a_ns is None or b_ns is None:
        return None
    return round((b_ns - a_ns) / 1e6, 1)


def _majority(names: list[str]) -> str | None:
    return collections.Counter(names).most_common(1)[0][0] if names else None


def figures(scenario, target, samples, broken, lag_ns, t0_ns, end_ns, fault_ns, heal_ns, events,
            failed: str, record: dict | None) -> dict:
    downs = sorted((t, why) for t, e, why in events if e == "down" and t >= fault_ns)
    # A down before the fault is a false one (a probe timing out on a starved machine, say):
    # the run then measures that, not the fault, and says so.
    false_downs = sum(1 for t, e, _ in events if e == "down" and t < fault_ns)
    ups = [t for t, e, _ in events if e == "up" and t >= heal_ns]
    down_ns, down_reason = downs[0] if downs else (None, None)
    up_ns = min(ups) if ups else None

    during = [s for s in samples if fault_ns <= s.start_ns]
    window = [s for s in during if s.start_ns < heal_ns]
    failures = [s for s in during if s.outcome != "ok"]
    by_kind = collections.Counter(s.outcome for s in failures)
    failed_in_window = [s for s in window if s.outcome != "ok"]
    last_failure_end = max((s.end_ns for s in failed_in_window), default=None)
    first_failure = min((s.start_ns for s in failed_in_window), default=None)
    last_failure_start = max((s.start_ns for s in failed_in_window), default=None)
    served_by_failed = [s for s in samples if s.outcome == "ok" and s.backend == failed]
    last_served_before_heal = max((s.start_ns for s in served_by_failed
                                   if fault_ns <= s.start_ns < heal_ns), default=None)
    back = min((s.start_ns for s in served_by_failed if s.start_ns >= heal_ns), default=None)

    before = [s for s in samples if s.start_ns < fault_ns]
    before_lat = [(s.end_ns - s.start_ns) / 1e6 for s in before if s.outcome == "ok"]
    window_lat = [(s.end_ns - s.start_ns) / 1e6 for s in window if s.outcome == "ok"]

    # Flows that moved: each client's usual backend before the fault against the one it
    # used once the failed backend was out (from the mark-down, or the fault if never).
    after_from = down_ns if down_ns is not None else fault_ns
    pre, post = collections.defaultdict(list), collections.defaultdict(list)
    for s in samples:
        if s.outcome != "ok":
            continue
        if s.start_ns < fault_ns:
            pre[s.client].append(s.backend)
        elif after_from <= s.start_ns < heal_ns:
            post[s.client].append(s.backend)
    both = [c for c in pre if c in post]
    moved = [c for c in both if _majority(pre[c]) != _majority(post[c])]
    on_failed = [c for c in both if _majority(pre[c]) == failed]
    others_moved = [c for c in moved if _majority(pre[c]) != failed]

    share_before = (sum(1 for s in before if s.outcome == "ok" and s.backend == failed) /
                    max(1, sum(1 for s in before if s.outcome == "ok")))
    after_ok = [s for s in samples if s.outcome == "ok" and after_from <= s.start_ns < heal_ns]
    share_after = (sum(1 for s in after_ok if s.backend == failed) / max(1, len(after_ok)))

    bound_ms = round(scenario.detection_bound_s(target) * 1000, 1)
    detect_ms = _ms(fault_ns, down_ns)
    out = {
        "requests": len(samples),
        "requests_in_fault_window": len(window),
        "detect_ms": detect_ms,
        "detect_bound_ms": bound_ms,
        "detect_within_bound": detect_ms is not None and detect_ms <= bound_ms,
        "down_reason": down_reason,
        "false_downs_before_fault": false_downs,
        "failed_requests": len(failures),
        "failed_by_kind": dict(by_kind),
        "failed_connections": len(broken) if scenario.load == "tcp_stream" else len(failures),
        "first_failure_ms": _ms(fault_ns, first_failure),
        "last_failure_start_ms": _ms(fault_ns, last_failure_start),
        "recovery_ms": _ms(fault_ns, last_failure_end) if last_failure_end else 0.0,
        "last_served_by_failed_ms": _ms(fault_ns, last_served_before_heal),
        "heal_to_up_ms": _ms(heal_ns, up_ns),
        "heal_to_served_ms": _ms(heal_ns, back),
        "clients_compared": len(both),
        "moved_share": round(len(moved) / len(both), 3) if both else None,
        "clients_on_failed": len(on_failed),
        "only_failed_moved": (not others_moved and len(moved) == len(on_failed))
        if scenario.hashing and both else None,
        "other_clients_moved": len(others_moved),
        "failed_share_before": round(share_before, 3),
        "failed_share_after_down": round(share_after, 3),
        "p50_ms_before": percentile(before_lat, 0.5),
        "p99_ms_before": percentile(before_lat, 0.99),
        "p99_ms_fault_window": percentile(window_lat, 0.99),
        "driver_lag_p99_ms": round(percentile(lag_ns, 0.99) / 1e6, 2) if lag_ns else None,
        "driver_lag_max_ms": round(max(lag_ns) / 1e6, 2) if lag_ns else None,
        "marks_ms": {"fault": _ms(t0_ns, fault_ns), "detect": _ms(t0_ns, down_ns),
                     "heal": _ms(t0_ns, heal_ns), "up": _ms(t0_ns, up_ns)},
    }
    for key in ("p50_ms_before", "p99_ms_before", "p99_ms_fault_window"):
        if out[key] is not None:
            out[key] = round(out[key], 2)
    if record:
        # Fulcrum's own record, in ms from the fault, beside what the clients saw.
        out["fulcrum_record"] = {
            name: _ms(fault_ns, record.get(f"{name}_mono_ns"))
            for name in ("first_signal", "down", "last_flow", "first_moved", "up")
        } | {"reason": record["reason"], "signal": record["signal"],
             "sessions_at_down": record["sessions_at_down"],
             "sessions_action": record["sessions_action"],
             "detection_ms": record["detection_ms"], "reroute_ms": record["reroute_ms"]}
    return out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
