"""``report.html`` of a run, and the side-by-side comparison of several runs.

Both are single HTML files with inline, hand-made SVG (:mod:`dataplat.bench.svg`): no
scripts, no external assets, readable offline and attachable to a CI job.
"""

from __future__ import annotations

import html
from typing import Any

from dataplat.bench.suites import SUITES
from dataplat.bench.svg import bar_chart, line_chart

STYLE = (
    "<style>body{font-family:sans-serif;margin:2em;max-width:75em}table{border-collapse:collapse;"
    "margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
    ".pass{color:#2f855a}.fail{color:#c53030}.warn{color:#b7791f}code{background:#f4f4f4}</style>"
)
_OUTCOME_COLOUR = {"met": "#2f855a", "missed": "#c53030", "could not run": "#b7791f"}


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:,.0f}"
    return html.escape(str(value))


def _verdicts(doc: dict[str, Any]) -> list[str]:
    out = ["<h2>Verdicts</h2>"]
    slo = doc.get("slo")
    if slo:
        out.append(f"<p>SLO <b>{html.escape(slo['name'])}</b> ({html.escape(str(slo.get('path')))})</p>")
    if not doc.get("verdicts"):
        out.append("<p>No targets judged (no SLO file, or no target for the suites run).</p>")
    else:
        out.append(
            "<table><tr><th>target</th><th>scope</th><th>measured</th><th>verdict</th><th>detail</th></tr>"
        )
        for v in doc["verdicts"]:
            cls = "pass" if v["met"] else "fail"
            out.append(
                f"<tr><td><code>{html.escape(v['target'])}</code></td><td>{html.escape(v['scope'])}</td>"
                f"<td>{_f(v['value'])}</td><td class='{cls}'>{'met' if v['met'] else 'missed'}</td>"
                f"<td>{html.escape(v['detail'])}</td></tr>"
            )
        out.append("</table>")
    if doc.get("failures"):
        out.append("<p class='fail'>Invariant checks that did not hold:</p><ul>")
        out += [f"<li class='fail'>{html.escape(f)}</li>" for f in doc["failures"]]
        out.append("</ul>")
    return out


def render_run(doc: dict[str, Any]) -> str:
    """The human report of one run (``results.json`` as a dict)."""
    colour = _OUTCOME_COLOUR.get(doc["outcome"], "#333")
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>bench {html.escape(doc['ident'])}</title>{STYLE}</head><body>",
        f"<h1>Benchmark {html.escape(doc['ident'])}</h1>",
        f"<p>Suite <b>{html.escape(doc['suite'])}</b>, started {html.escape(doc['started_at'])}, "
        f"{doc['seconds']:.1f} s on {html.escape(str(doc['host']['hostname']))} "
        f"({doc['host']['cpus']} CPUs). Outcome: <b style='color:{colour}'>{doc['outcome']}</b> "
        f"(exit {doc['exit_code']}).</p>",
    ]
    if doc.get("loads"):
        out.append(
            "<p>Data loaded by this run: "
            + ", ".join(f"SF {ld['sf']:g} in {ld['seconds']:.1f} s" for ld in doc["loads"])
            + "</p>"
        )
    out += _verdicts(doc)
    for name, section in doc["suites"].items():
        if section["status"] != "ok":
            cls = "warn" if section["status"] == "unavailable" else "fail"
            out.append(
                f"<h2>{html.escape(name)}</h2><p class='{cls}'>{html.escape(section['status'])}: "
                f"{html.escape(str(section.get('error')))}</p>"
            )
            continue
        module = SUITES[name].load() if name in SUITES else None
        if module is not None:
            out.append(module.render_html(section))
    out.append(
        "<p style='color:#718096'>Raw data: <code>raw/</code> (pgbench logs and scripts, "
        "HdrHistogram percentile tables), <code>results.json</code> (schema "
        f"{html.escape(doc['schema'])}), <code>bench.log</code>.</p></body></html>"
    )
    return "\n".join(out)


# --- comparison ---------------------------------------------------------------------------


def _label(doc: dict[str, Any]) -> str:
    return str(doc["ident"])


def _batch_last(doc: dict[str, Any]) -> dict[str, Any] | None:
    b = doc["suites"].get("batch")
    if not b or b.get("status") != "ok" or not b.get("sf_runs"):
        return None
    return b["sf_runs"][-1]  # type: ignore[no-any-return]


def compare(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The comparison as data: per run, batch seconds per job/engine and concurrent numbers per step."""
    runs = []
    for d in docs:
        batch_rows: dict[str, dict[str, Any]] = {}
        b = d["suites"].get("batch")
        for entry in (b or {}).get("sf_runs", []) if b and b.get("status") == "ok" else []:
            for j in entry["jobs"]:
                batch_rows.setdefault(f"SF {entry['sf']:g}", {})[f"{j['job']}/{j['engine']}"] = j["seconds"]
        conc: dict[str, dict[str, Any]] = {}
        c = d["suites"].get("concurrent")
        if c and c.get("status") == "ok":
            for s in c["steps"]:
                conc[str(s["concurrency"])] = {
                    "qps": s["harness"]["qps"],
                    "p99_ms": s["harness"]["latency_ms"]["p99_ms"],
                    "pgbench_qps": (s.get("pgbench") or {}).get("qps"),
                    "qps_ratio_vs_pgbench": s.get("qps_ratio_vs_pgbench"),
                }
        runs.append(
            {
                "ident": d["ident"],
                "run_dir": d.get("run_dir"),
                "suite": d["suite"],
                "started_at": d["started_at"],
                "outcome": d["outcome"],
                "exit_code": d["exit_code"],
                "batch_seconds": batch_rows,
                "concurrent": conc,
                "concurrent_sf": (c or {}).get("sf"),
            }
        )
    return {"schema": "dataplat.bench.compare/v1", "runs": runs}


def render_compare(docs: list[dict[str, Any]]) -> str:
    """Several runs side by side: a summary table, batch runtimes, SF growth, QPS and p99 per step."""
    data = compare(docs)
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>bench comparison</title>",
        f"{STYLE}</head><body><h1>Benchmark runs compared</h1>",
        "<table><tr><th>run</th><th>suite</th><th>started</th><th>SF</th><th>outcome</th>"
        "<th>verdicts met</th></tr>",
    ]
    for d in docs:
        last = _batch_last(d)
        sf = last["sf"] if last else (d["suites"].get("concurrent") or {}).get("sf")
        met = sum(1 for v in d.get("verdicts", []) if v["met"])
        colour = _OUTCOME_COLOUR.get(d["outcome"], "#333")
        out.append(
            f"<tr><td><code>{html.escape(d['ident'])}</code></td><td>{html.escape(d['suite'])}</td>"
            f"<td>{html.escape(d['started_at'])}</td><td>{_f(sf)}</td>"
            f"<td style='color:{colour}'>{d['outcome']}</td><td>{met}/{len(d.get('verdicts', []))}</td></tr>"
        )
    out.append("</table>")
    # batch: the last SF of each run, job x engine
    with_batch = [d for d in docs if _batch_last(d)]
    if with_batch:
        keys = list(
            dict.fromkeys(
                f"{j['job']}/{j['engine']}" for d in with_batch for j in (_batch_last(d) or {})["jobs"]
            )
        )
        series = {}
        for d in with_batch:
            last = _batch_last(d) or {}
            by = {f"{j['job']}/{j['engine']}": j["seconds"] for j in last["jobs"]}
            series[f"{_label(d)} (SF {last['sf']:g})"] = [by.get(k) for k in keys]
        out.append("<h2>Batch runtimes</h2>")
        out.append(
            bar_chart("Seconds per job/engine (lower is better)", keys, series, y_label="seconds", height=340)
        )
        out.append("<table><tr><th>job/engine</th>" + "".join(f"<th>{html.escape(k)}</th>" for k in series))
        out.append("</tr>")
        for i, k in enumerate(keys):
            out.append(
                f"<tr><td>{html.escape(k)}</td>" + "".join(f"<td>{_f(v[i])}</td>" for v in series.values())
            )
        out.append("</table>")
        # growth: every (run, sf) point of every job/engine
        points: dict[str, dict[float, float]] = {}
        for d in with_batch:
            for entry in d["suites"]["batch"]["sf_runs"]:
                for j in entry["jobs"]:
                    if j["seconds"] is not None:
                        points.setdefault(f"{j['job']}/{j['engine']}", {})[entry["sf"]] = j["seconds"]
        sfs = sorted({sf for p in points.values() for sf in p})
        if len(sfs) > 1:
            out.append("<h2>Growth with scale factor</h2>")
            out.append(
                line_chart(
                    "Seconds by scale factor (log scale; dashed: lake)",
                    [f"SF {sf:g}" for sf in sfs],
                    {k: [p.get(sf) for sf in sfs] for k, p in points.items()},
                    y_label="seconds",
                    x_label="scale factor",
                    log=True,
                    dashed={k: k.endswith("/lake") for k in points},
                    height=360,
                )
            )
    with_conc = [r for r in data["runs"] if r["concurrent"]]
    if with_conc:
        steps = sorted({int(s) for r in with_conc for s in r["concurrent"]})
        labels = [f"{s} clients" for s in steps]
        out.append("<h2>Concurrent queries</h2>")
        qps: dict[str, list[float | None]] = {}
        p99: dict[str, list[float | None]] = {}
        dashed: dict[str, bool] = {}
        for r in with_conc:
            qps[r["ident"]] = [r["concurrent"].get(str(s), {}).get("qps") for s in steps]
            qps[f"{r['ident']} pgbench"] = [r["concurrent"].get(str(s), {}).get("pgbench_qps") for s in steps]
            dashed[f"{r['ident']} pgbench"] = True
            p99[r["ident"]] = [r["concurrent"].get(str(s), {}).get("p99_ms") for s in steps]
        out.append(line_chart("QPS per step (dashed: pgbench)", labels, qps, y_label="QPS", dashed=dashed))
        out.append(line_chart("p99 latency per step (ms, log scale)", labels, p99, y_label="ms", log=True))
        out.append(
            "<table><tr><th>clients</th>"
            + "".join(f"<th>{html.escape(r['ident'])} QPS / p99 ms / ratio</th>" for r in with_conc)
            + "</tr>"
        )
        for s in steps:
            cells = []
            for r in with_conc:
                c = r["concurrent"].get(str(s), {})
                ratio = _f(c.get("qps_ratio_vs_pgbench"))
                cells.append(f"<td>{_f(c.get('qps'), 1)} / {_f(c.get('p99_ms'))} / {ratio}</td>")
            out.append(f"<tr><td>{s}</td>{''.join(cells)}</tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


# --- the ``dataplat report`` command --------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add the top-level ``report RUN [RUN...] [--json] [-o FILE] [--home DIR]``."""
    p = subparsers.add_parser(
        "report",
        help="compare benchmark runs side by side (one HTML with a table and plots)",
        description="RUN is a run folder, its results.json, or an ident under <home>/bench/.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="benchmark runs to compare")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument(
        "-o", "--output", default=None, help="HTML file to write (default: <home>/bench/compare-<ts>.html)"
    )
    p.add_argument("--home", default=None, help="dataplat home whose bench/ holds the runs")
    p.set_defaults(func=cmd_report)


def cmd_report(args: Any) -> int:
    """Compare runs: write the HTML, print its path (or the JSON)."""
    import json
    import time
    from pathlib import Path

    from dataplat.bench.results import load_results, runs_dir
    from dataplat.config import resolve_home

    home = resolve_home(args.home)
    docs = [load_results(r, home) for r in args.runs]
    if args.output:
        out = Path(args.output)
    else:
        runs_dir(home).mkdir(parents=True, exist_ok=True)
        out = runs_dir(home) / f"compare-{time.strftime('%Y%m%dT%H%M%S')}.html"
    out.write_text(render_compare(docs))
    if args.json:
        print(json.dumps({**compare(docs), "html": str(out)}, indent=2, default=str))
    else:
        print(f"compared {len(docs)} run(s): {out}")
    return 0
