"""The concurrent suite: the bank's interactive queries at concurrency steps, pgbench beside.

Each query is a file ``bench/concurrent/<query>.sql`` that is a pgbench script: header
comments (``-- query:``, ``-- description:``, ``-- weight:``), ``\\set NAME random(LO, HI)``
lines that draw its parameters (bounds are integers or the variables ``:customers`` and
``:branches``, the highest ids in the loaded data) and one SQL statement using ``:NAME``.

At every step (default 1, 4, 16, 64 clients) the harness runs closed-loop clients, one
thread and one psycopg connection each (prepared statements), that pick a query by
weight, draw its parameters from their own seeded generator and run it, for ``duration``
seconds; every latency goes into a full-resolution HdrHistogram (1 µs .. 60 s, 3
significant digits) per query. Then pgbench runs the very same scripts (``-M prepared
-c N -j N -T S --random-seed``, same weights, ``--log``) as the yardstick, and the step
reports QPS, p50/p95/p99/p99.9/max for both and the ratio of the harness's QPS to
pgbench's (goal >= 0.8).
"""

from __future__ import annotations

import html
import random
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplat.bench.context import BenchContext, BenchError
from dataplat.bench.slo import Target
from dataplat.bench.svg import bar_chart, line_chart
from dataplat.data.schema import qualified, quote_ident

METRICS = (
    "concurrent.[<query>.]{qps,p50_ms,p95_ms,p99_ms,p999_ms,max_ms,mean_ms,errors}, "
    "concurrent.qps_ratio_vs_pgbench, concurrent.pgbench_qps"
)
LATENCY_METRICS = ("p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms")
STEP_METRICS = ("qps", "errors", *LATENCY_METRICS)
HIST_LOWEST_US = 1
HIST_HIGHEST_US = 60_000_000
HIST_DIGITS = 3
PGBENCH_MODE = "prepared"

_SET = re.compile(r"^\\set\s+(?P<name>[A-Za-z_]\w*)\s+(?P<expr>.+?)\s*$")
_RANDOM = re.compile(r"^random\(\s*(?P<lo>:?\w+)\s*,\s*(?P<hi>:?\w+)\s*\)$")
_VAR = re.compile(r"(?<!:):(?P<name>[A-Za-z_]\w*)")
_HEADER = re.compile(r"^--\s*(?P<key>query|description|weight)\s*:\s*(?P<value>.*)$")


def pgbench_path() -> Path:
    """pgbench as shipped with pgserver's PostgreSQL (next to ``postgres``)."""
    import pgserver  # type: ignore[import-untyped]

    return Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"


def new_histogram() -> Any:
    """An empty HdrHistogram of microseconds."""
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_DIGITS)


# --- query scripts ----------------------------------------------------------------------


@dataclass(frozen=True)
class SetVar:
    """``\\set name random(lo, hi)`` (a constant when lo == hi); bounds are ints or ``:variables``."""

    name: str
    lo: str
    hi: str

    def bound(self, text: str, variables: dict[str, int]) -> int:
        """A bound's value."""
        return int(variables[text[1:]]) if text.startswith(":") else int(text)

    def draw(self, rng: random.Random, variables: dict[str, int]) -> int:
        """A value uniformly in [lo, hi], as pgbench's ``random()`` does."""
        return rng.randint(self.bound(self.lo, variables), self.bound(self.hi, variables))


@dataclass(frozen=True)
class QueryScript:
    """One query of the mix: its parameters, its statement, its weight."""

    name: str
    path: Path
    description: str
    weight: int
    sets: tuple[SetVar, ...]
    template: str
    """The statement with placeholders ({bank}, {bench}, ...) and ``:variables``."""

    def render(self, bank: str, bench: str) -> str:
        """The statement as both clients run it."""
        from dataplat.bench.batch import render_sql

        return render_sql(self.template, bank, bench, colon_free=True)

    def pgbench_script(self, bank: str, bench: str) -> str:
        """The pgbench script text."""
        sets = "".join(f"\\set {s.name} random({s.lo}, {s.hi})\n" for s in self.sets)
        return f"-- {self.name}\n{sets}{self.render(bank, bench)};\n"

    def psycopg_sql(self, bank: str, bench: str) -> str:
        """The statement with ``%(name)s`` placeholders (and ``%`` escaped) for psycopg."""
        return _VAR.sub(lambda m: f"%({m['name']})s", self.render(bank, bench).replace("%", "%%"))


def parse_query(path: Path, known_variables: Sequence[str] = ("customers", "branches")) -> QueryScript:
    """Read one query script; :class:`BenchError` naming file and line when it is malformed."""
    header: dict[str, str] = {}
    sets: list[SetVar] = []
    body: list[str] = []
    for no, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if line.startswith("\\"):
            m = _SET.match(line)
            r = _RANDOM.match(m["expr"]) if m else None
            if m and r is None and re.fullmatch(r"-?\d+", m["expr"]):
                sets.append(SetVar(m["name"], m["expr"], m["expr"]))
                continue
            if m is None or r is None:
                raise BenchError(f"{path}:{no}: only '\\set NAME random(LO, HI)' is understood, got {line!r}")
            for b in (r["lo"], r["hi"]):
                if b.startswith(":") and b[1:] not in known_variables:
                    raise BenchError(
                        f"{path}:{no}: unknown variable {b} (known: {', '.join(known_variables)})"
                    )
                if not b.startswith(":") and not re.fullmatch(r"-?\d+", b):
                    raise BenchError(f"{path}:{no}: bound {b!r} must be an integer or a :variable")
            sets.append(SetVar(m["name"], r["lo"], r["hi"]))
        elif line.startswith("--"):
            h = _HEADER.match(line)
            if h and not body:
                header[h["key"]] = h["value"].strip()
        elif line:
            body.append(raw)
    sql = "\n".join(body).strip()
    if sql.endswith(";"):
        sql = sql[:-1].rstrip()
    if not sql or ";" in sql:
        raise BenchError(f"{path}: needs exactly one SQL statement (ending with ';')")
    defined = {s.name for s in sets}
    for m in _VAR.finditer(sql):
        if m["name"] not in defined:
            raise BenchError(f"{path}: :{m['name']} is used but not '\\set'")
    try:
        weight = int(header.get("weight", "1"))
    except ValueError:
        raise BenchError(f"{path}: weight must be an integer, got {header['weight']!r}") from None
    if weight < 1:
        raise BenchError(f"{path}: weight must be >= 1, got {weight}")
    return QueryScript(
        name=header.get("query") or path.stem,
        path=path,
        description=header.get("description", ""),
        weight=weight,
        sets=tuple(sets),
        template=sql,
    )


def load_queries(directory: Path) -> list[QueryScript]:
    """The query scripts of ``directory`` (sorted by file name)."""
    queries = [parse_query(p) for p in sorted(directory.glob("*.sql"))]
    if not queries:
        raise BenchError(f"no query scripts (*.sql) in {directory}")
    return queries


# --- measurements -----------------------------------------------------------------------


def latency_summary(hist: Any) -> dict[str, float | None]:
    """Percentiles (ms) of a histogram of microseconds; None when it is empty."""
    if hist.get_total_count() == 0:
        return dict.fromkeys(LATENCY_METRICS)
    out = {
        f"p{k}_ms": hist.get_value_at_percentile(p) / 1000
        for k, p in (("50", 50.0), ("95", 95.0), ("99", 99.0), ("999", 99.9))
    }
    out["max_ms"] = hist.get_max_value() / 1000
    out["mean_ms"] = round(hist.get_mean_value() / 1000, 4)
    return out


def _side(hists: dict[str, Any], seconds: float, errors: int) -> dict[str, Any]:
    total = new_histogram()
    for h in hists.values():
        total.add(h)
    count = total.get_total_count()
    return {
        "count": count,
        "errors": errors,
        "seconds": round(seconds, 4),
        "qps": round(count / seconds, 2) if seconds > 0 else None,
        "latency_ms": latency_summary(total),
        "histogram": total.encode().decode("ascii"),
        "per_query": {
            name: {
                "count": h.get_total_count(),
                "qps": round(h.get_total_count() / seconds, 2) if seconds > 0 else None,
                "latency_ms": latency_summary(h),
                "histogram": h.encode().decode("ascii"),
            }
            for name, h in hists.items()
        },
    }


def run_harness(
    conninfo: str,
    queries: Sequence[QueryScript],
    variables: dict[str, int],
    concurrency: int,
    duration_s: float,
    seed: int,
    bank: str = "bank",
    bench: str = "bench",
) -> dict[str, Any]:
    """Closed-loop clients (threads, one connection each) for ``duration_s``; the step's numbers."""
    import psycopg

    names = [q.name for q in queries]
    weights = [q.weight for q in queries]
    sqls = [q.psycopg_sql(bank, bench) for q in queries]
    conns = []
    try:
        for _ in range(concurrency):
            conns.append(psycopg.connect(conninfo, autocommit=True))
    except psycopg.OperationalError as exc:
        for c in conns:
            c.close()
        raise BenchError(f"harness: cannot open {concurrency} connections: {exc}".strip()) from exc
    hists = [{n: new_histogram() for n in names} for _ in range(concurrency)]
    errors = [0] * concurrency
    last_error: list[str] = []
    ends = [0.0] * concurrency
    gate = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        rng = random.Random(seed * 1_000_003 + i)
        conn = conns[i]
        mine = hists[i]
        idx = range(len(queries))
        gate.wait()
        stop = deadline[0]
        now = time.perf_counter()
        while now < stop:
            k = rng.choices(idx, weights)[0]
            q = queries[k]
            params = {s.name: s.draw(rng, variables) for s in q.sets}
            try:
                with conn.cursor() as cur:
                    cur.execute(sqls[k], params, prepare=True)  # type: ignore[arg-type]
                    cur.fetchall()
            except psycopg.Error as exc:
                errors[i] += 1
                if not last_error:
                    last_error.append(f"{names[k]}: {exc}".strip())
                if conn.closed:
                    break
            done = time.perf_counter()
            mine[names[k]].record_value(max(int((done - now) * 1e6), 1))
            now = done
        ends[i] = now

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    deadline[0] = start + duration_s
    gate.wait()
    for t in threads:
        t.join(duration_s + 120)
    for c in conns:
        c.close()
    merged = {n: new_histogram() for n in names}
    for h in hists:
        for n in names:
            merged[n].add(h[n])
    out = _side(merged, max(ends) - start, sum(errors))
    if last_error:
        out["first_error"] = last_error[0]
    return out


def run_pgbench(
    conninfo: str,
    queries: Sequence[QueryScript],
    variables: dict[str, int],
    concurrency: int,
    duration_s: float,
    seed: int,
    out_dir: Path,
    bank: str = "bank",
    bench: str = "bench",
) -> dict[str, Any]:
    """pgbench with the same scripts, weights and concurrency; its log parsed into histograms."""
    exe = pgbench_path()
    if not exe.is_file():
        raise BenchError(f"pgbench is not installed at {exe}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("pgbench_log*"):
        old.unlink()
    cmd = [str(exe), "-n", "-M", PGBENCH_MODE, "-c", str(concurrency), "-j", str(concurrency)]
    cmd += ["-T", str(max(1, round(duration_s))), f"--random-seed={seed}", "--log"]
    cmd += [f"--log-prefix={out_dir / 'pgbench_log'}"]
    for name, value in variables.items():
        cmd += ["-D", f"{name}={value}"]
    for q in queries:
        script = out_dir / f"{q.name}.pgbench.sql"
        script.write_text(q.pgbench_script(bank, bench))
        cmd += ["-f", f"{script}@{q.weight}"]
    cmd.append(conninfo)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 120, check=False)
    (out_dir / "pgbench.out").write_text(proc.stdout + proc.stderr)
    if proc.returncode not in (0, 2) or "tps = " not in proc.stdout:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise BenchError(f"pgbench failed (exit {proc.returncode}): {' | '.join(tail)}")
    names = [q.name for q in queries]
    hists = {n: new_histogram() for n in names}
    first = last = None
    for log in sorted(out_dir.glob("pgbench_log.*")):
        with log.open() as fh:
            for line in fh:
                f = line.split()
                if len(f) < 6:
                    continue
                hists[names[int(f[3])]].record_value(max(int(f[2]), 1))
                t = int(f[4]) + int(f[5]) / 1e6
                first = t if first is None or t < first else first
                last = t if last is None or t > last else last
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", proc.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", proc.stdout)
    tps = float(m.group(1)) if m else None
    count = sum(h.get_total_count() for h in hists.values())
    seconds = count / tps if tps else float(duration_s)
    out = _side(hists, seconds, int(failed.group(1)) if failed else 0)
    out["tps_reported"] = tps
    out["command"] = [c if c != conninfo else "<conninfo>" for c in cmd]
    out["logs"] = sorted(p.name for p in out_dir.glob("pgbench_log.*"))
    return out


# --- preparation ------------------------------------------------------------------------

_INDEXES = (("customer_tags", "branch_id"), ("aum_snapshot", "branch_id"), ("lifecycle_stage", "customer_id"))


def prepare(ctx: BenchContext) -> dict[str, int]:
    """Make sure the batch outputs the queries read exist for the loaded data, with their indexes;
    return the variables (highest customer and branch ids)."""
    import psycopg

    from dataplat.bench import batch

    s = ctx.settings
    with psycopg.connect(ctx.conninfo(), autocommit=True) as conn:
        customers = conn.execute(
            f"SELECT COALESCE(MAX(customer_id), 0), COUNT(*) FROM {qualified(s.bank_schema, 'customers')}"
        ).fetchone()
        branches = conn.execute(
            f"SELECT COALESCE(MAX(branch_id), 0) FROM {qualified(s.bank_schema, 'branches')}"
        ).fetchone()
        assert customers is not None and branches is not None
        if not customers[1]:
            raise BenchError("the bank is not loaded in the warehouse; run `dataplat data load` or pass --sf")
        stale = []
        for table in dict.fromkeys(t for t, _ in _INDEXES):
            row = conn.execute(
                "SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s",
                (s.bench_schema, table),
            ).fetchone()
            if row is None or int(row[0]) != int(customers[1]):
                stale.append(table)
    if stale:
        ctx.log(f"concurrent: building {', '.join(stale)} on the warehouse (batch jobs)")
        jobs = batch.load_jobs(s.workload_dir / "batch", stale)
        with batch.WarehouseEngine(ctx.conninfo(), s.bench_schema) as engine:
            for job in jobs:
                r = batch.run_job(engine, job, s.bank_schema, s.bench_schema, checks=False)
                if r.error:
                    raise BenchError(f"concurrent: cannot build {job.name}: {r.error}")
    with psycopg.connect(ctx.conninfo(), autocommit=True) as conn:
        for table, column in _INDEXES:
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {quote_ident(f'{table}_{column}_idx')} "  # type: ignore[arg-type]
                f"ON {qualified(s.bench_schema, table)} ({quote_ident(column)})"
            )
        for table in dict.fromkeys(t for t, _ in _INDEXES):
            conn.execute(f"ANALYZE {qualified(s.bench_schema, table)}")  # type: ignore[arg-type]
    return {"customers": int(customers[0]), "branches": int(branches[0])}


# --- the suite protocol (see dataplat.bench.suites.SuiteModule) -------------------------


def run(ctx: BenchContext) -> dict[str, Any]:
    """Every concurrency step: the harness, then pgbench, and their ratio."""
    s = ctx.settings
    if s.sfs:
        ctx.ensure_sf(s.sfs[-1])
    queries = load_queries(s.workload_dir / "concurrent")
    variables = prepare(ctx)
    conninfo = ctx.conninfo()
    raw = ctx.raw_dir / "concurrent"
    raw.mkdir(parents=True, exist_ok=True)
    section: dict[str, Any] = {
        "sf": ctx.loaded_sf(),
        "duration_s": s.duration_s,
        "seed": s.seed,
        "mode": PGBENCH_MODE,
        "client": "threads, one psycopg connection each, closed loop, prepared statements",
        "variables": variables,
        "queries": [
            {"name": q.name, "file": str(q.path), "weight": q.weight, "description": q.description}
            for q in queries
        ],
        "steps": [],
    }
    for n in s.steps:
        ctx.log(f"concurrent: {n} client(s), harness, {s.duration_s:g} s")
        step: dict[str, Any] = {"concurrency": n}
        step["harness"] = run_harness(
            conninfo, queries, variables, n, s.duration_s, s.seed, s.bank_schema, s.bench_schema
        )
        _write_percentiles(raw / f"c{n:03d}-harness.hgrm", step["harness"])
        if s.pgbench:
            ctx.log(f"concurrent: {n} client(s), pgbench, {s.duration_s:g} s")
            step["pgbench"] = run_pgbench(
                conninfo,
                queries,
                variables,
                n,
                s.duration_s,
                s.seed,
                raw / f"c{n:03d}-pgbench",
                s.bank_schema,
                s.bench_schema,
            )
            _write_percentiles(raw / f"c{n:03d}-pgbench.hgrm", step["pgbench"])
            hq, pq = step["harness"]["qps"], step["pgbench"]["qps"]
            step["qps_ratio_vs_pgbench"] = round(hq / pq, 4) if hq and pq else None
        h = step["harness"]
        ratio = step.get("qps_ratio_vs_pgbench")
        ctx.log(
            f"concurrent: {n:>3} clients  harness {h['qps']} q/s p99 {h['latency_ms']['p99_ms']} ms"
            + (f"  pgbench {step['pgbench']['qps']} q/s  ratio {ratio}" if "pgbench" in step else "")
        )
        section["steps"].append(step)
    return section


def _write_percentiles(path: Path, side: dict[str, Any]) -> None:
    """The HdrHistogram percentile distribution (µs) in the text form HdrHistogram's tools read."""
    import io

    from hdrh.histogram import HdrHistogram

    hist = HdrHistogram.decode(side["histogram"].encode("ascii"))
    buf = io.BytesIO()
    hist.output_percentile_distribution(buf, 1.0)
    path.write_bytes(buf.getvalue())


def check_metric(metric: str, target: Target, workload_dir: Path) -> str | None:
    """What is wrong with a concurrent target's metric (None when it is fine)."""
    if target.engine is not None:
        return "'on ENGINE' applies to batch targets only"
    if metric in ("qps_ratio_vs_pgbench", "pgbench_qps", *STEP_METRICS):
        return None
    query, _, name = metric.rpartition(".")
    if query and name in STEP_METRICS:
        try:
            known = [q.name for q in load_queries(workload_dir / "concurrent")]
        except BenchError:
            known = []
        if known and query not in known:
            return f"unknown query {query!r} (known: {', '.join(known)})"
        return None
    return f"unknown metric {metric!r} (known: {METRICS})"


def _value(step: dict[str, Any], metric: str) -> float | None:
    if metric == "qps_ratio_vs_pgbench":
        return step.get("qps_ratio_vs_pgbench")
    if metric == "pgbench_qps":
        return (step.get("pgbench") or {}).get("qps")
    query, _, name = metric.rpartition(".")
    side = step["harness"]
    if query:
        side = side["per_query"].get(query)
        if side is None:
            return None
    if name == "qps":
        return side.get("qps")
    if name == "errors":
        return float(side.get("errors", 0))
    return side["latency_ms"].get(name)


def measure(section: dict[str, Any], target: Target) -> list[tuple[str, float | None]]:
    """One value per concurrency step (or at the target's step only)."""
    steps = section.get("steps", [])
    if target.concurrency is not None:
        steps = [s for s in steps if s["concurrency"] == target.concurrency]
        if not steps:
            return [(f"concurrency {target.concurrency}", None)]
    return [(f"concurrency {s['concurrency']}", _value(s, target.metric)) for s in steps]


def failures(section: dict[str, Any]) -> list[str]:
    """Concurrent queries have no invariants; errors count through targets (``errors <= 0``)."""
    return []


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return html.escape(f"{value:,}" if isinstance(value, int) else str(value))


def render_html(section: dict[str, Any]) -> str:
    """Latency percentiles and QPS per step (harness and pgbench), ratio, per-query table."""
    steps = section.get("steps", [])
    labels = [f"{s['concurrency']} clients" for s in steps]
    out = [
        "<h2>Concurrent queries</h2>",
        f"<p>SF {_f(section.get('sf'), 3)}, {section.get('duration_s')} s per step and client kind, "
        f"{html.escape(section.get('client', ''))}; pgbench <code>-M {section.get('mode')}</code>. "
        "Mix: "
        + ", ".join(f"{html.escape(q['name'])} ×{q['weight']}" for q in section.get("queries", []))
        + ".</p>",
    ]
    has_pg = any("pgbench" in s for s in steps)
    qps = {"harness": [s["harness"]["qps"] for s in steps]}
    if has_pg:
        qps["pgbench"] = [(s.get("pgbench") or {}).get("qps") for s in steps]
    out.append(bar_chart("Queries per second per step (higher is better)", labels, qps, y_label="QPS"))
    lat: dict[str, list[float | None]] = {}
    dashed: dict[str, bool] = {}
    for p in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
        lat[f"harness {p[:-3]}"] = [s["harness"]["latency_ms"][p] for s in steps]
        if has_pg:
            key = f"pgbench {p[:-3]}"
            lat[key] = [((s.get("pgbench") or {}).get("latency_ms") or {}).get(p) for s in steps]
            dashed[key] = True
    out.append(
        line_chart(
            "Latency percentiles per step (ms, log scale; dashed: pgbench)",
            labels,
            lat,
            y_label="ms",
            x_label="concurrency",
            log=True,
            dashed=dashed,
            height=340,
        )
    )
    out.append(
        "<table><tr><th>clients</th><th>harness QPS</th><th>pgbench QPS</th><th>ratio</th>"
        "<th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th>"
        "<th>pgbench p99 ms</th><th>errors</th></tr>"
    )
    for s in steps:
        h, pg = s["harness"], s.get("pgbench") or {}
        lm = h["latency_ms"]
        ratio = s.get("qps_ratio_vs_pgbench")
        cls = "" if ratio is None else ("pass" if ratio >= 0.8 else "fail")
        out.append(
            f"<tr><td>{s['concurrency']}</td><td>{_f(h['qps'])}</td><td>{_f(pg.get('qps'))}</td>"
            f"<td class='{cls}'>{_f(ratio, 3)}</td>"
            + "".join(f"<td>{_f(lm[k], 3)}</td>" for k in LATENCY_METRICS[:5])
            + f"<td>{_f((pg.get('latency_ms') or {}).get('p99_ms'), 3)}</td>"
            f"<td>{h['errors'] + pg.get('errors', 0)}</td></tr>"
        )
    out.append("</table><h3>Per query (harness; pgbench in brackets)</h3><table><tr><th>clients</th>")
    out.append("<th>query</th><th>QPS</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th></tr>")
    for s in steps:
        for name, q in s["harness"]["per_query"].items():
            pq = ((s.get("pgbench") or {}).get("per_query") or {}).get(name, {})
            pl = pq.get("latency_ms") or {}
            cells = "".join(
                f"<td>{_f(q['latency_ms'][k], 3)} ({_f(pl.get(k), 3)})</td>"
                for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
            )
            out.append(
                f"<tr><td>{s['concurrency']}</td><td>{html.escape(name)}</td>"
                f"<td>{_f(q['qps'])} ({_f(pq.get('qps'))})</td>{cells}</tr>"
            )
    out.append("</table>")
    return "\n".join(out)
