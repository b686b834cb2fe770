"""The run folder's ``results.json`` and ``report.html`` (inline, hand-made SVG timelines)."""

from __future__ import annotations

import html
import json
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
