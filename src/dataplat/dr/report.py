"""The run folder's ``results.json`` and ``report.html`` (inline, hand-made SVG timelines)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from dataplat.dr.results import DrillResult, Repetition

COLORS = ("#2b6cb0", "#2f855a", "#b7791f", "#6b46c1", "#c53030", "#718096")


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return html.escape(str(value))


def timeline_svg(rep: Repetition, width: int = 860, height: int = 220, bin_s: float = 0.1) -> str:
    """Write stream (acknowledged operations per ``bin_s``, one colour per series) with events marked."""
    times = [t for ts in rep.series.values() for t in ts] + [e.t for e in rep.events]
    if not times:
        return "<p>(no timeline recorded)</p>"
    t0 = rep.t_fault if rep.t_fault is not None else min(times)
    lo, hi = min(times) - t0, max(times) - t0
    span = max(hi - lo, 1.0)
    left, right, top, bottom = 50, 10, 20, 40
    pw, ph = width - left - right, height - top - bottom
    nbins = max(1, int(span / bin_s) + 1)
    counts: dict[str, list[int]] = {}
    for name, ts in rep.series.items():
        c = [0] * nbins
        for t in ts:
            c[min(nbins - 1, int((t - t0 - lo) / bin_s))] += 1
        counts[name] = c
    peak = max((sum(c[i] for c in counts.values()) for i in range(nbins)), default=1) or 1

    def x(sec: float) -> float:
        return left + (sec - lo) / span * pw

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20}" '
        f'font-family="sans-serif" font-size="10">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>',
    ]
    bw = max(pw / nbins, 0.5)
    for i in range(nbins):
        base = 0
        for k, (_name, c) in enumerate(counts.items()):
            if c[i]:
                h = c[i] / peak * ph
                y = top + ph - (base + c[i]) / peak * ph
                parts.append(
                    f'<rect x="{left + i * bw:.1f}" y="{y:.1f}" width="{bw:.2f}" height="{h:.1f}" '
                    f'fill="{COLORS[k % len(COLORS)]}"/>'
                )
                base += c[i]
    step = 1 if span <= 15 else 5 if span <= 75 else 10 if span <= 150 else 30
    s = int(lo // step) * step
    while s <= hi:
        if s >= lo:
            parts.append(
                f'<line x1="{x(s):.1f}" y1="{top + ph}" x2="{x(s):.1f}" y2="{top + ph + 4}" stroke="#333"/>'
                f'<text x="{x(s):.1f}" y="{top + ph + 15}" text-anchor="middle">{s:g}</text>'
            )
        s += step
    parts.append(
        f'<text x="{left + pw / 2}" y="{top + ph + 30}" text-anchor="middle">seconds since the fault'
        f" (bars: acknowledged per {bin_s:g} s, peak {peak})</text>"
    )
    for j, e in enumerate(rep.events):
        ex = x(e.t - t0)
        color = "#c53030" if e.label.startswith("fault") else "#444"
        parts.append(
            f'<line x1="{ex:.1f}" y1="{top}" x2="{ex:.1f}" y2="{top + ph}" stroke="{color}" '
            f'stroke-dasharray="3,2"/>'
            f'<text x="{ex + 2:.1f}" y="{top + 10 + (j % 6) * 11}" fill="{color}">'
            f"{html.escape(e.label)} ({e.t - t0:+.2f} s)</text>"
        )
    for k, name in enumerate(counts):
        parts.append(
            f'<rect x="{left + k * 170}" y="{height + 6}" width="10" height="10" '
            f'fill="{COLORS[k % len(COLORS)]}"/><text x="{left + k * 170 + 14}" y="{height + 15}">'
            f"{html.escape(name)} ({len(rep.series[name])})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def timeseries_svg(rep: Repetition, width: int = 860, panel_h: int = 120) -> str:
    """Load, replicas and latency per second in three panels over one time axis, events marked.

    ``rep.info["timeseries"]`` is the scaling drill's per-second record: ``users``,
    ``issued``, ``throughput``, ``errors``, ``p50_ms``, ``p99_ms`` and ``replicas`` by scaled
    object, index ``i`` covering ``[t0 + i, t0 + i + 1)``.
    """
    ts = rep.info.get("timeseries") or {}
    n = len(ts.get("second", []))
    if not n:
        return "<p>(no time series recorded)</p>"
    t0 = float(ts["t0"])
    left, right, top, gap = 56, 150, 16, 26
    pw = width - left - right
    height = top + 3 * panel_h + 2 * gap + 40

    def x(sec: float) -> float:
        return left + sec / max(n, 1) * pw

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="10" role="img"><title>load, replicas and latency</title>'
    ]

    def panel(k: int, title: str, series: dict[str, list[float | None]], step: bool = False,
              dashed: tuple[str, ...] = (), hline: float | None = None) -> None:  # fmt: skip
        y0 = top + k * (panel_h + gap)
        values = [v for vs in series.values() for v in vs if v is not None] + ([hline] if hline else [])
        peak = max(values, default=1.0) or 1.0
        if step:
            peak = math.ceil(peak) + 0.5

        def y(v: float) -> float:
            return y0 + panel_h - v / peak * panel_h

        parts.append(
            f'<rect x="{left}" y="{y0}" width="{pw}" height="{panel_h}" fill="#fafafa" stroke="#ccc"/>'
            f'<text x="{left}" y="{y0 - 4}" font-weight="bold">{html.escape(title)}</text>'
            f'<text x="{left - 4}" y="{y0 + 8}" text-anchor="end">{_fmt(round(peak, 1))}</text>'
            f'<text x="{left - 4}" y="{y0 + panel_h}" text-anchor="end">0</text>'
        )
        for j, (name, vs) in enumerate(series.items()):
            color = COLORS[j % len(COLORS)]
            pts: list[str] = []
            for i, v in enumerate(vs):
                if v is None:
                    continue
                if step:
                    pts += [f"{x(i):.1f},{y(v):.1f}", f"{x(i + 1):.1f},{y(v):.1f}"]
                else:
                    pts.append(f"{x(i + 0.5):.1f},{y(v):.1f}")
            dash = ' stroke-dasharray="4,3"' if name in dashed else ""
            if pts:
                parts.append(
                    f'<polyline points="{" ".join(pts)}" fill="none" stroke="{color}" '
                    f'stroke-width="1.6"{dash}/>'
                )
            parts.append(
                f'<line x1="{left + pw + 8}" y1="{y0 + 10 + j * 13}" x2="{left + pw + 22}" '
                f'y2="{y0 + 10 + j * 13}" stroke="{color}" stroke-width="3"{dash}/>'
                f'<text x="{left + pw + 26}" y="{y0 + 13 + j * 13}">{html.escape(name)}</text>'
            )
        if hline is not None:
            parts.append(
                f'<line x1="{left}" y1="{y(hline):.1f}" x2="{left + pw}" y2="{y(hline):.1f}" '
                f'stroke="#c53030" stroke-dasharray="2,2"/>'
                f'<text x="{left + pw - 2}" y="{y(hline) - 2:.1f}" text-anchor="end" '
                f'fill="#c53030">SLO {_fmt(hline)} ms</text>'
            )

    peak_users = max(ts["users"], default=1) or 1
    peak_rate = max([*ts["issued"], *ts["throughput"], 1])
    scaled_users = [u / peak_users * peak_rate for u in ts["users"]]
    panel(
        0,
        f"load per second (users scaled: {peak_users} users = top)",
        {"users": scaled_users, "requests issued": ts["issued"], "answered": ts["throughput"],
         "errors": ts["errors"]},
        dashed=("users",),
    )  # fmt: skip
    panel(1, "ready replicas", dict(ts["replicas"].items()), step=True)
    panel(2, "latency (ms) of the requests answered each second", {"p50": ts["p50_ms"], "p99": ts["p99_ms"]},
          hline=rep.info.get("p99_slo_ms"))  # fmt: skip
    bottom = top + 3 * panel_h + 2 * gap
    tick = 1 if n <= 15 else 5 if n <= 75 else 10 if n <= 150 else 30
    for s in range(0, n + 1, tick):
        parts.append(
            f'<line x1="{x(s):.1f}" y1="{bottom}" x2="{x(s):.1f}" y2="{bottom + 4}" stroke="#333"/>'
            f'<text x="{x(s):.1f}" y="{bottom + 14}" text-anchor="middle">{s}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2}" y="{bottom + 28}" text-anchor="middle">'
        "seconds since the load started</text>"
    )
    for j, e in enumerate(sorted(rep.events, key=lambda e: e.t)):
        sec = e.t - t0
        if not 0 <= sec <= n:
            continue
        color = (
            "#c53030" if e.label.startswith("fault") else "#2f855a" if e.label.startswith("load") else "#888"
        )
        parts.append(
            f'<line x1="{x(sec):.1f}" y1="{top}" x2="{x(sec):.1f}" y2="{bottom}" stroke="{color}" '
            f'stroke-dasharray="3,2"><title>{html.escape(e.label)} ({sec:.2f} s)</title></line>'
        )
        if not e.label.startswith(("load", "fault", "replaced")):
            continue
        parts.append(
            f'<text x="{x(sec) + 2:.1f}" y="{top + 10 + (j % 4) * 11}" fill="{color}">'
            f"{html.escape(e.label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _timings_table(rep: Repetition) -> str:
    """The scaling drill's derived timings and errors per scaled object and transition."""
    info = rep.info
    rows = [
        "<table><tr><th>scaled object</th><th>replicas at the step</th><th>scale-out reaction s</th>"
        "<th>scale-in s</th></tr>"
    ]
    for o in info.get("objects", []):
        base = info.get("baseline_replicas") if o == info.get("target") else None
        rows.append(
            f"<tr><td>{html.escape(o)}{' (load target)' if o == info.get('target') else ''}</td>"
            f"<td>{_fmt(base)}</td><td>{_fmt(info.get('reaction_s', {}).get(o))}</td>"
            f"<td>{_fmt(info.get('scale_in_s', {}).get(o))}</td></tr>"
        )
    rows.append("</table><table><tr><th>transition</th><th>failed requests</th></tr>")
    for phase, count in (info.get("errors") or {}).items():
        rows.append(f"<tr><td>{html.escape(phase)}</td><td>{count}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def render_html(result: DrillResult) -> str:
    """The human report: verdicts, distributions, checks and a timeline per repetition."""
    doc = result.to_dict()
    sc = result.scenario
    colour = {"met": "#2f855a", "missed": "#c53030", "could not run": "#b7791f"}[result.outcome]
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>drill {html.escape(result.ident)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.pass{color:#2f855a}"
        ".fail{color:#c53030}code{background:#f4f4f4}</style></head><body>",
        f"<h1>Drill {html.escape(sc.name)} <small>({html.escape(sc.kind)})</small></h1>",
        f"<p>{html.escape(sc.description)}</p>",
        f"<p>Run <code>{html.escape(result.ident)}</code>, {len(result.repetitions)} repetition(s), "
        f"{result.seconds:.1f} s. Outcome: <b style='color:{colour}'>{result.outcome}</b> "
        f"(exit {result.exit_code}).</p>",
    ]
    if result.error:
        out.append(f"<p class='fail'>Could not run: {html.escape(result.error)}</p>")
    if result.target:
        out.append("<h2>Where it ran</h2><table>")
        for key, value in result.target.items():
            out.append(f"<tr><th>{html.escape(str(key))}</th><td>{_fmt(value)}</td></tr>")
        out.append("</table>")
    out.append(
        "<h2>Targets</h2><table><tr><th>target</th><th>bound</th><th>measured</th><th>verdict</th></tr>"
    )
    for v in result.verdicts:
        out.append(
            f"<tr><td>{html.escape(v.target)}</td><td>{_fmt(v.bound)}</td><td>{_fmt(v.value)}</td>"
            f"<td class='{'pass' if v.met else 'fail'}'>{'met' if v.met else 'missed'}</td></tr>"
        )
    out.append("</table>")
    out.append(
        "<h2>Distributions</h2><table><tr><th>metric</th><th>n</th><th>min</th><th>median</th>"
        "<th>p95</th><th>max</th></tr>"
    )
    for metric, d in result.distributions.items():
        out.append(
            f"<tr><td>{html.escape(metric)}</td>"
            + "".join(f"<td>{_fmt(d.get(k))}</td>" for k in ("n", "min", "median", "p95", "max"))
            + "</tr>"
        )
    out.append(
        "</table><h2>Checks (every repetition)</h2><table><tr><th>check</th><th>passed</th>"
        "<th>failed</th></tr>"
    )
    for name, c in doc["checks"].items():
        cls = "pass" if not c["failed"] else "fail"
        out.append(
            f"<tr><td>{html.escape(name)}</td><td>{c['passed']}</td><td class='{cls}'>{c['failed']}</td></tr>"
        )
    out.append("</table>")
    if result.summary:
        out.append("<h2>Summary</h2><pre>" + html.escape(json.dumps(result.summary, indent=2)) + "</pre>")
    for rep in result.repetitions:
        out.append(f"<h2>Repetition {rep.index}</h2>")
        if rep.error:
            out.append(f"<p class='fail'>Could not run: {html.escape(rep.error)}</p>")
        if rep.metrics:
            out.append(
                "<p>"
                + ", ".join(f"{html.escape(k)} = <b>{_fmt(v)}</b>" for k, v in rep.metrics.items())
                + "</p>"
            )
        if rep.info.get("timeseries"):
            out.append(timeseries_svg(rep))
            out.append(_timings_table(rep))
        else:
            out.append(timeline_svg(rep))
        out.append("<table><tr><th>check</th><th>result</th><th>detail</th></tr>")
        for c in rep.checks:
            out.append(
                f"<tr><td>{html.escape(c.name)}</td><td class='{'pass' if c.passed else 'fail'}'>"
                f"{'pass' if c.passed else 'FAIL'}</td><td>{html.escape(c.detail)}</td></tr>"
            )
        out.append("</table>")
        out.append(f"<p>Raw logs: <code>rep-{rep.index:02d}/</code></p>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(result: DrillResult) -> Path:
    """Write ``results.json`` and ``report.html`` into the run folder; returns the HTML path."""
    result.run_dir.mkdir(parents=True, exist_ok=True)
    (result.run_dir / "results.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    for rep in result.repetitions:
        rep_dir = result.run_dir / f"rep-{rep.index:02d}"
        rep_dir.mkdir(exist_ok=True)
        (rep_dir / "series.json").write_text(json.dumps(rep.series))
    path = result.run_dir / "report.html"
    path.write_text(render_html(result))
    return path
