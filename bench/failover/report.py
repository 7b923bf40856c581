"""Report files: Markdown for people, CSV timelines, JSON for machines, and an SVG drawn
here (no plotting library) with the fault, the detection and the heal marked."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

from .analyze import OUTCOMES

TARGET_LABEL = {"fulcrum": "Fulcrum", "haproxy": "HAProxy"}
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22"]


def write_csv(path: Path, rows: list[dict]):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)


def _fmt(value, unit=""):
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}{unit}"
    return f"{value}{unit}"


ROWS = [
    ("time to detect (fault → marked down)", "detect_ms", " ms"),
    ("detection bound from the config ¹", "detect_bound_ms", " ms"),
    ("within bound", "detect_within_bound", ""),
    ("marked down by", "down_reason", ""),
    ("false downs before the fault", "false_downs_before_fault", ""),
    ("failed requests (after the fault)", "failed_requests", ""),
    ("failed connections", "failed_connections", ""),
    ("first failed request starts", "first_failure_ms", " ms"),
    ("last failed request starts", "last_failure_start_ms", " ms"),
    ("full recovery (last failed request ends)", "recovery_ms", " ms"),
    ("last request served by the failed backend", "last_served_by_failed_ms", " ms"),
    ("share of flows (clients) that moved", "moved_share", ""),
    ("only the failed backend's clients moved", "only_failed_moved", ""),
    ("failed backend's share before → after down", None, ""),
    ("heal → marked up", "heal_to_up_ms", " ms"),
    ("heal → failed backend serves again", "heal_to_served_ms", " ms"),
    ("p99 latency before / during fault", None, ""),
    ("driver lag p99 / max", None, ""),
]


def _cell(fig: dict, key: str | None, unit: str, label: str) -> str:
    if key:
        return _fmt(fig.get(key), unit)
    if label.startswith("failed backend's share"):
        return f"{fig['failed_share_before']:.0%} → {fig['failed_share_after_down']:.0%}"
    if label.startswith("p99"):
        return f"{_fmt(fig['p99_ms_before'])} / {_fmt(fig['p99_ms_fault_window'])} ms"
    return f"{_fmt(fig['driver_lag_p99_ms'])} / {_fmt(fig['driver_lag_max_ms'])} ms"


def markdown(scenario, runs: list[dict], plot_name: str, driver: str) -> str:
    s = scenario
    out = [f"# Failover bench: {s.name}", ""]
    if s.description:
        out += [s.description, ""]
    out += [
        f"- scenario: `{s.path.name}`; backends: {s.backend_count} × {s.backend_kind}; "
        f"load: {s.load} at {s.rate}/s"
        + (f" from {s.clients} clients" if s.load != "tcp_stream" else f" over {s.streams} "
           "streams") + f", request timeout {s.request_timeout_s * 1000:g} ms",
        f"- picker: {s.algorithm}, retries {s.retries}, on_down {s.on_down}; health: "
        f"interval {s.interval_s * 1000:g} ms, timeout {s.timeout_s * 1000:g} ms, "
        f"fall {s.fall}, rise {s.rise}, passive_failures {s.passive_failures}",
        f"- fault on b{s.fault_backend} at {s.fault_at_s:g} s, healed at {s.heal_at_s:g} s, "
        f"run {s.duration_s:g} s; times below are from the fault (heal rows: from the heal)",
        f"- load driver: {driver}",
        "", f"![timeline]({plot_name})", "",
    ]
    faults = list(dict.fromkeys(r["fault"] for r in runs))
    targets = list(dict.fromkeys(r["target"] for r in runs))
    header = "| figure | " + " | ".join(
        f"{f} · {TARGET_LABEL[t]}" for f in faults for t in targets) + " |"
    out += [header, "|---|" + "---|" * (len(faults) * len(targets))]
    index = {(r["fault"], r["target"]): r for r in runs}
    for label, key, unit in ROWS:
        cells = []
        for f in faults:
            for t in targets:
                run = index.get((f, t))
                cells.append(_cell(run["figures"], key, unit, label) if run else "–")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out.append("")

    records = [r for r in runs if "fulcrum_record" in r["figures"]]
    if records:
        out += ["## Fulcrum's failover record beside the clients", "",
                "From `GET /api/v1/failovers`; ms from the fault as the bench injected it.", "",
                "| fault | first failed signal | marked down | last new flow to it | first flow "
                "moved | back up | sessions at down | clients: first error | clients: last "
                "error ends |", "|---|---|---|---|---|---|---|---|---|"]
        for r in records:
            rec, fig = r["figures"]["fulcrum_record"], r["figures"]
            out.append(
                f"| {r['fault']} | {_fmt(rec['first_signal'])} ({rec['signal']}) | "
                f"{_fmt(rec['down'])} ({rec['reason']}) | {_fmt(rec['last_flow'])} | "
                f"{_fmt(rec['first_moved'])} | {_fmt(rec['up'])} | "
                f"{rec['sessions_at_down']} {rec['sessions_action']} | "
                f"{_fmt(fig['first_failure_ms'])} | {_fmt(fig['recovery_ms'])} |")
        out.append("")
    out += ["¹ Fulcrum: fall × interval + timeout + slack (probes keep a start-to-start "
            "cadence). HAProxy: fall × (inter + timeout check) + slack (the next check starts "
            "inter after the previous one ended, so a timed-out check stretches the period).",
            ""]
    out += ["Errors by kind (after the fault):", ""]
    for r in runs:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["figures"]["failed_by_kind"].items()))
        out.append(f"- {r['fault']} · {TARGET_LABEL[r['target']]}: {kinds or 'none'}")
    out.append("")
    return "\n".join(out)


def svg(scenario, runs: list[dict]) -> str:
    """A grid: one row per fault, one column per target. Each panel plots successes and
    errors per 10 ms bin (as rates per second), which backend served underneath, and
    vertical marks for fault, detection, heal and back up."""
    faults = list(dict.fromkeys(r["fault"] for r in runs))
    targets = list(dict.fromkeys(r["target"] for r in runs))
    pw, ph, strip, ml, mt = 430, 150, 14, 52, 58
    width = ml + len(targets) * (pw + 30) + 10
    height = mt + len(faults) * (ph + strip + 48) + 10
    backends = [f"b{i}" for i in range(scenario.backend_count)]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{ml}" y="18" font-size="14" font-weight="bold">'
           f'{html.escape(scenario.name)}: {scenario.load} at {scenario.rate}/s, fault on '
           f'b{scenario.fault_backend} (10 ms bins, drawn as a 50 ms moving average; strip: '
           f'who served)</text>']
    legend = [("#2a9d3a", "successes/s"), ("#d62728", "errors/s"), ("#d62728", "fault"),
              ("#ff9900", "marked down"), ("#2a9d3a", "healed"), ("#17becf", "marked up")]
    x = ml
    for i, (color, label) in enumerate(legend):
        dash = ' stroke-dasharray="4 3"' if i >= 2 else ""
        out.append(f'<line x1="{x}" y1="34" x2="{x + 18}" y2="34" stroke="{color}" '
                   f'stroke-width="2"{dash}/><text x="{x + 22}" y="38">{label}</text>')
        x += 30 + 7 * len(label)
    for i, b in enumerate(backends):
        out.append(f'<rect x="{x}" y="29" width="10" height="10" fill="{COLORS[i % 8]}"/>'
                   f'<text x="{x + 13}" y="38">{b}</text>')
        x += 36
    index = {(r["fault"], r["target"]): r for r in runs}
    for fi, fault in enumerate(faults):
        for ti, target in enumerate(targets):
            run = index.get((fault, target))
            if not run:
                continue
            x0 = ml + ti * (pw + 30)
            y0 = mt + fi * (ph + strip + 48) + 16
            out += _panel(run, x0, y0, pw, ph, strip, backends,
                          f"{fault} · {TARGET_LABEL[target]}")
    out.append("</svg>")
    return "\n".join(out)


def _panel(run, x0, y0, pw, ph, strip, backends, title) -> list[str]:
    rows = run["timeline"]
    fig = run["figures"]
    n = len(rows)
    total_ms = n * 10
    # Drawn as a moving average over SMOOTH_BINS: at a few hundred requests per second a
    # 10 ms bin holds one or two requests, and the raw rate is mostly quantisation noise.
    # The CSV keeps the raw 10 ms bins.
    rates_ok = _smooth([r["ok"] * 100 for r in rows])
    rates_err = _smooth([sum(r[o] for o in OUTCOMES if o != "ok") * 100 for r in rows])
    top = max(max(rates_ok, default=1), max(rates_err, default=1), 1)
    top = _nice(top)
    sx = lambda t_ms: x0 + t_ms / total_ms * pw  # noqa: E731
    sy = lambda v: y0 + ph - v / top * ph  # noqa: E731
    out = [f'<text x="{x0}" y="{y0 - 4}" font-weight="bold">{html.escape(title)}</text>',
           f'<text x="{x0 + pw}" y="{y0 - 4}" text-anchor="end">detect '
           f'{_fmt(fig["detect_ms"])} ms · failed {fig["failed_requests"]}</text>',
           f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="#fafafa" '
           f'stroke="#999"/>']
    for frac in (0.5, 1.0):
        y = sy(top * frac)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end">{top * frac:g}</text>')
    out.append(f'<text x="{x0 - 4}" y="{y0 + ph + 4}" text-anchor="end">0</text>')
    out.append(f'<text x="{x0 - 40}" y="{y0 + ph / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 {x0 - 40} {y0 + ph / 2:.0f})">per second</text>')
    for series, color in ((rates_ok, "#2a9d3a"), (rates_err, "#d62728")):
        points = " ".join(f"{sx(i * 10 + 5):.1f},{sy(v):.1f}" for i, v in enumerate(series))
        out.append(f'<polyline points="{points}" fill="none" stroke="{color}" '
                   f'stroke-width="1"/>')
    # Served-by strip: each bin coloured by the backends that answered in it.
    ys = y0 + ph + 3
    for i, r in enumerate(rows):
        served = [(b, r.get(f"served_{b}", 0)) for b in backends]
        total = sum(v for _, v in served)
        if not total:
            continue
        y = ys
        for bi, (b, v) in enumerate(served):
            if v:
                h = strip * v / total
                out.append(f'<rect x="{sx(i * 10):.1f}" y="{y:.1f}" '
                           f'width="{pw / len(rows) + 0.3:.2f}" height="{h:.1f}" '
                           f'fill="{COLORS[bi % 8]}"/>')
                y += h
    for s in range(0, total_ms // 1000 + 1):
        x = sx(s * 1000)
        out.append(f'<text x="{x:.1f}" y="{ys + strip + 12}" text-anchor="middle">{s}s</text>')
    marks = fig["marks_ms"]
    for key, color in (("fault", "#d62728"), ("detect", "#ff9900"), ("heal", "#2a9d3a"),
                       ("up", "#17becf")):
        if marks.get(key) is not None:
            x = sx(marks[key])
            out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{ys + strip}" '
                       f'stroke="{color}" stroke-width="1.5" stroke-dasharray="4 3"/>')
    return out


SMOOTH_BINS = 5


def _smooth(values: list[float]) -> list[float]:
    half = SMOOTH_BINS // 2
    out = []
    for i in range(len(values)):
        window = values[max(0, i - half):i + half + 1]
        out.append(sum(window) / len(window))
    return out


def _nice(value: float) -> float:
    step = 1
    while step * 10 < value:
        step *= 10
    for m in (1, 2, 5, 10):
        if step * m >= value:
            return step * m
    return value


def write_all(out_dir: Path, scenario, runs: list[dict], driver: str) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    for r in runs:
        write_csv(out_dir / f"timeline-{r['target']}-{r['fault']}.csv", r["timeline"])
    (out_dir / "failover.svg").write_text(svg(scenario, runs))
    (out_dir / "report.md").write_text(markdown(scenario, runs, "failover.svg", driver))
    doc = {
        "scenario": scenario.name,
        "scenario_file": str(scenario.path),
        "driver": driver,
        "runs": [{"target": r["target"], "fault": r["fault"], "figures": r["figures"],
                  "fulcrum_failovers": r.get("fulcrum_failovers")} for r in runs],
    }
    (out_dir / "report.json").write_text(json.dumps(doc, indent=1))
    return doc
