"""The batch suite: the bank's nightly jobs as SQL files, on the warehouse and on the lake.

A job is a file ``bench/batch/NN_<job>.sql`` (run in file order). Header comments name it
and say what it reads; ``-- @build`` is the SELECT whose result replaces
``{bench}."<job>"``; every ``-- @check NAME`` is a query that returns no rows when its
invariant holds (the rows it returns are the violations). A section followed by an
engine dialect (``-- @build duckdb``, ``-- @check NAME postgres``) replaces the common one
on that engine only. Placeholders: ``{bank}``, ``{bench}`` (quoted schemas), ``{as_of}``
(the business date, a DATE literal) and ``{as_of_ts}`` (its midnight in Asia/Shanghai).

Per job and engine: the seconds the build took (PostgreSQL: DROP + CREATE TABLE AS +
ANALYZE in one transaction; DuckDB: CREATE OR REPLACE TABLE AS over the Iceberg data
files), rows out, rows in (the rows of the bank tables it reads) and rows/s (rows in per
second); then every check. With several scale factors the bank is loaded at each and the
suite runs at each: the section has one entry per SF and the growth of every job.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dataplat.bench.context import BenchContext, BenchError
from dataplat.bench.engines import DIALECTS, Engine, LakeEngine, WarehouseEngine
from dataplat.bench.slo import Target
from dataplat.bench.svg import bar_chart, line_chart
from dataplat.data.generate import AS_OF
from dataplat.data.schema import TABLE_NAMES, quote_ident

METRICS = "batch.<job>.seconds, batch.<job>.rows_per_s (<job> a job of bench/batch/ or *)"
ENGINES = ("warehouse", "lake")
_SECTION = re.compile(r"^--\s*@(?P<kind>build|check)\b\s*(?P<rest>.*)$")
_HEADER = re.compile(r"^--\s*(?P<key>job|description|reads|after)\s*:\s*(?P<value>.*)$")
_SAMPLE_ROWS = 5


@dataclass(frozen=True)
class Check:
    """An invariant: a query returning its violations; ``sql`` per dialect ('' = every engine)."""

    name: str
    sql: dict[str, str]

    def for_dialect(self, dialect: str) -> str:
        """The query text for ``dialect``."""
        return self.sql.get(dialect) or self.sql[""]


@dataclass(frozen=True)
class BatchJob:
    """One nightly job read from its SQL file."""

    name: str
    path: Path
    description: str
    reads: tuple[str, ...]
    after: tuple[str, ...]
    build: dict[str, str]
    checks: tuple[Check, ...]

    def build_sql(self, dialect: str) -> str:
        """The build SELECT for ``dialect``."""
        return self.build.get(dialect) or self.build[""]


def _problem(path: Path, line: int, message: str) -> BenchError:
    return BenchError(f"{path}:{line}: {message}")


def parse_job(path: Path) -> BatchJob:
    """Read one job file; :class:`BenchError` naming file and line when it is malformed."""
    lines = path.read_text().splitlines()
    header: dict[str, str] = {}
    sections: list[tuple[str, str, str, int, list[str]]] = []  # kind, name, dialect, line, body
    for no, raw in enumerate(lines, start=1):
        m = _SECTION.match(raw.strip())
        if m:
            words = m["rest"].split()
            kind = m["kind"]
            if kind == "check":
                if not words:
                    raise _problem(path, no, "'-- @check' needs a name")
                name, rest = words[0], words[1:]
            else:
                name, rest = "", words
            dialect = rest[0] if rest else ""
            if dialect and dialect not in DIALECTS.values() or len(rest) > 1:
                raise _problem(path, no, f"unknown engine dialect {' '.join(rest)!r} (postgres or duckdb)")
            sections.append((kind, name, dialect, no, []))
            continue
        if not sections:
            h = _HEADER.match(raw.strip())
            if h:
                header[h["key"]] = h["value"].strip()
            elif raw.startswith("--   ") and "description" in header:
                header["description"] += " " + raw[2:].strip()
            continue
        sections[-1][4].append(raw)
    name = header.get("job") or re.sub(r"^\d+_", "", path.stem)
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise _problem(path, 1, f"job name {name!r} must be lower-case letters, digits and '_'")
    build: dict[str, str] = {}
    checks: dict[str, dict[str, str]] = {}
    for kind, cname, dialect, no, body in sections:
        sql = "\n".join(b for b in body if not b.strip().startswith("--")).strip().rstrip(";").strip()
        if not sql:
            raise _problem(path, no, f"section '@{kind} {cname}'.strip() has no SQL")
        target = build if kind == "build" else checks.setdefault(cname, {})
        if dialect in target:
            raise _problem(path, no, f"second '@{kind} {cname} {dialect}' section".replace("  ", " "))
        target[dialect] = sql
    if "" not in build:
        raise _problem(path, 1, "no '-- @build' section (the SELECT that makes the job's table)")
    for cname, variants in checks.items():
        if "" not in variants and set(variants) != set(DIALECTS.values()):
            raise _problem(path, 1, f"check {cname!r} has neither a common section nor one per dialect")
    reads = tuple(t.strip() for t in header.get("reads", "").split(",") if t.strip())
    unknown = [t for t in reads if t not in TABLE_NAMES]
    if unknown:
        raise _problem(path, 1, f"reads unknown table(s) {', '.join(unknown)}")
    after = tuple(t.strip() for t in header.get("after", "").split(",") if t.strip())
    return BatchJob(
        name=name,
        path=path,
        description=header.get("description", ""),
        reads=reads,
        after=after,
        build=build,
        checks=tuple(Check(n, v) for n, v in checks.items()),
    )


def load_jobs(directory: Path, only: Sequence[str] = ()) -> list[BatchJob]:
    """The jobs of ``directory`` in file order (``only``: those and what they run after)."""
    jobs = [parse_job(p) for p in sorted(directory.glob("*.sql"))]
    if not jobs:
        raise BenchError(f"no batch jobs (*.sql) in {directory}")
    by_name = {j.name: j for j in jobs}
    for j in jobs:
        for dep in j.after:
            if dep not in by_name or jobs.index(by_name[dep]) > jobs.index(j):
                raise BenchError(f"{j.path}: runs after {dep!r}, which is not an earlier job")
    if not only:
        return jobs
    unknown = [n for n in only if n not in by_name]
    if unknown:
        raise BenchError(f"unknown batch job(s) {', '.join(unknown)} (known: {', '.join(by_name)})")
    wanted: set[str] = set()

    def add(n: str) -> None:
        if n not in wanted:
            wanted.add(n)
            for dep in by_name[n].after:
                add(dep)

    for n in only:
        add(n)
    return [j for j in jobs if j.name in wanted]


def render_sql(sql: str, bank: str, bench: str, as_of: dt.date = AS_OF, colon_free: bool = False) -> str:
    """Substitute the placeholders (quoted schemas, date literals).

    ``colon_free`` writes the timestamp without ``:`` (``TIMESTAMPTZ 'YYYY-MM-DD +08'``, which
    PostgreSQL reads but DuckDB does not), for pgbench scripts where ``:00`` would be a variable.
    """
    ts = f"'{as_of.isoformat()} +08'" if colon_free else f"'{as_of.isoformat()} 00:00:00+08:00'"
    return (
        sql.replace("{bank}", quote_ident(bank))
        .replace("{bench}", quote_ident(bench))
        .replace("{as_of_ts}", f"TIMESTAMPTZ {ts}")
        .replace("{as_of}", f"DATE '{as_of.isoformat()}'")
    )


@dataclass
class CheckResult:
    """One invariant on one engine: passed, and the violations it saw (a few rows)."""

    name: str
    passed: bool
    detail: str
    seconds: float = 0.0


@dataclass
class JobRun:
    """One job on one engine."""

    job: str
    engine: str
    seconds: float | None = None
    rows_out: int = 0
    rows_in: int = 0
    rows_per_s: float | None = None
    checks: list[CheckResult] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        """No error and every check passed."""
        return self.error is None and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["passed"] = self.passed
        return d


def run_checks(engine: Engine, job: BatchJob, bank: str, bench: str) -> list[CheckResult]:
    """Run every invariant of ``job`` on ``engine`` against its output table."""
    out = []
    for check in job.checks:
        sql = render_sql(check.for_dialect(engine.dialect), bank, bench)
        start = time.perf_counter()
        try:
            names, rows = engine.query(sql)
        except Exception as exc:  # noqa: BLE001 - a check that cannot run fails, with its reason
            out.append(CheckResult(check.name, False, f"could not run: {exc}".strip()[:500]))
            continue
        seconds = time.perf_counter() - start
        if rows:
            sample = "; ".join(
                ", ".join(f"{n}={v}" for n, v in zip(names, row, strict=False)) for row in rows[:_SAMPLE_ROWS]
            )
            more = f" (+{len(rows) - _SAMPLE_ROWS} more)" if len(rows) > _SAMPLE_ROWS else ""
            out.append(CheckResult(check.name, False, f"violated: {sample}{more}", seconds))
        else:
            out.append(CheckResult(check.name, True, "holds", seconds))
    return out


def run_job(
    engine: Engine, job: BatchJob, bank: str, bench: str, rows_in: int = 0, checks: bool = True
) -> JobRun:
    """Build ``job``'s table on ``engine`` (timed), count its rows, run its checks."""
    run = JobRun(job.name, engine.name, rows_in=rows_in)
    sql = render_sql(job.build_sql(engine.dialect), bank, bench)
    try:
        run.seconds = engine.create_table_as(bench, job.name, sql)
        run.rows_out = engine.count(bench, job.name)
    except Exception as exc:  # noqa: BLE001 - recorded; the run goes on with the next job
        run.error = f"{type(exc).__name__}: {exc}".strip()[:1000]
        return run
    run.rows_per_s = rows_in / run.seconds if run.seconds > 0 else None
    if checks:
        run.checks = run_checks(engine, job, bank, bench)
    return run


def open_engine(ctx: BenchContext, name: str) -> Engine:
    """The engine ``name`` (warehouse | lake) of the platform under ``ctx.home``."""
    s = ctx.settings
    if name == "warehouse":
        return WarehouseEngine(ctx.conninfo(), s.bench_schema)
    if name == "lake":
        catalog, namespace = ctx.lake()
        return LakeEngine(catalog, namespace, s.bank_schema, s.bench_schema)
    raise BenchError(f"unknown engine {name!r} (known: {', '.join(ENGINES)})")


def _row_counts(ctx: BenchContext) -> tuple[float | None, dict[str, int]]:
    from dataplat.data.load import warehouse_dataset

    info = warehouse_dataset(ctx.conninfo(), ctx.settings.bank_schema)
    if info is None or not info.row_counts.get("customers"):
        raise BenchError(
            "the bank is not loaded in the warehouse; run `dataplat data load --sf SF` or pass --sf"
        )
    return info.sf, dict(info.row_counts)


def run_at_current_sf(ctx: BenchContext, jobs: list[BatchJob]) -> dict[str, Any]:
    """Every job on every engine at the scale factor loaded now; one entry of ``sf_runs``."""
    s = ctx.settings
    sf, counts = _row_counts(ctx)
    entry: dict[str, Any] = {"sf": sf, "row_counts": counts, "engines": {}, "jobs": []}
    for engine_name in s.engines:
        start = time.perf_counter()
        try:
            engine = open_engine(ctx, engine_name)
        except Exception as exc:  # noqa: BLE001 - the other engine may still run
            entry["engines"][engine_name] = {"error": f"{type(exc).__name__}: {exc}"}
            ctx.log(f"batch: {engine_name} unavailable: {exc}")
            entry["jobs"] += [
                JobRun(j.name, engine_name, error=f"engine unavailable: {exc}").to_dict() for j in jobs
            ]
            continue
        with engine:
            info: dict[str, Any] = {
                "version": engine.version(),
                "setup_seconds": round(time.perf_counter() - start, 4),
            }
            if isinstance(engine, LakeEngine):
                info["sources"] = engine.sources
            entry["engines"][engine_name] = info
            for job in jobs:
                rows_in = sum(counts.get(t, 0) for t in job.reads)
                run = run_job(engine, job, s.bank_schema, s.bench_schema, rows_in)
                status = "ok" if run.passed else "FAILED"
                secs = f"{run.seconds:.3f} s" if run.seconds is not None else run.error
                ctx.log(f"batch SF {sf:g} {engine_name:<9} {job.name:<18} {secs} {status}")
                entry["jobs"].append(run.to_dict())
    entry["faster"] = faster_engines(entry["jobs"])
    return entry


def faster_engines(jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per job: the faster engine and by how much (``speedup`` = slower / faster)."""
    out: dict[str, dict[str, Any]] = {}
    names = list(dict.fromkeys(j["job"] for j in jobs))
    for name in names:
        times = {j["engine"]: j["seconds"] for j in jobs if j["job"] == name and j["seconds"] is not None}
        if len(times) < 2:
            out[name] = {"engine": next(iter(times), None), "speedup": None}
            continue
        best = min(times, key=lambda e: times[e])
        worst = max(times.values())
        out[name] = {"engine": best, "speedup": round(worst / times[best], 3) if times[best] > 0 else None}
    return out


def growth(sf_runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per job and engine: seconds at each SF and the log-log slope (1.0 = linear growth)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in sf_runs:
        for j in entry["jobs"]:
            g = out.setdefault(j["job"], {}).setdefault(j["engine"], {"sf": [], "seconds": []})
            g["sf"].append(entry["sf"])
            g["seconds"].append(j["seconds"])
    for engines in out.values():
        for g in engines.values():
            g["exponent"] = growth_exponent(g["sf"], g["seconds"])
    return out


def growth_exponent(sfs: Sequence[float | None], seconds: Sequence[float | None]) -> float | None:
    """Least-squares slope of log(seconds) over log(SF); None with fewer than two distinct SFs."""
    pts = [
        (math.log(s), math.log(t)) for s, t in zip(sfs, seconds, strict=False) if s and t and s > 0 and t > 0
    ]
    if len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return round(sum((p[0] - mx) * (p[1] - my) for p in pts) / den, 3)


# --- the suite protocol (see dataplat.bench.suites.SuiteModule) -------------------------


def run(ctx: BenchContext) -> dict[str, Any]:
    """Every job on every engine at each requested scale factor (or at the one loaded)."""
    s = ctx.settings
    jobs = load_jobs(s.workload_dir / "batch", s.jobs)
    sf_runs = []
    for sf in s.sfs or (None,):
        if sf is not None:
            ctx.ensure_sf(sf)
        sf_runs.append(run_at_current_sf(ctx, jobs))
    return {
        "jobs": [
            {
                "name": j.name,
                "file": str(j.path),
                "description": j.description,
                "reads": list(j.reads),
                "checks": [c.name for c in j.checks],
            }
            for j in jobs
        ],
        "sf_runs": sf_runs,
        "growth": growth(sf_runs),
    }


def check_metric(metric: str, target: Target, workload_dir: Path) -> str | None:
    """What is wrong with a batch target's metric (None when it is fine)."""
    if target.concurrency is not None:
        return "'at concurrency' applies to concurrent targets only"
    if target.engine is not None and target.engine not in ENGINES:
        return f"unknown engine {target.engine!r} (known: {', '.join(ENGINES)})"
    job, _, name = metric.rpartition(".")
    if not job or name not in ("seconds", "rows_per_s"):
        return f"unknown metric {metric!r} (known: {METRICS})"
    if job != "*":
        try:
            known = [j.name for j in load_jobs(workload_dir / "batch")]
        except BenchError:
            known = []
        if known and job not in known:
            return f"unknown job {job!r} (known: {', '.join(known)}, or *)"
    return None


def measure(section: dict[str, Any], target: Target) -> list[tuple[str, float | None]]:
    """Per job and engine at the last scale factor run."""
    if not section.get("sf_runs"):
        return []
    entry = section["sf_runs"][-1]
    job, _, name = target.metric.rpartition(".")
    out: list[tuple[str, float | None]] = []
    for j in entry["jobs"]:
        if (job == "*" or j["job"] == job) and (target.engine is None or j["engine"] == target.engine):
            out.append((f"{j['job']} on {j['engine']} (SF {entry['sf']:g})", j.get(name)))
    return out


def failures(section: dict[str, Any]) -> list[str]:
    """Jobs that failed to run and invariants that did not hold, at every scale factor."""
    out = []
    for entry in section.get("sf_runs", []):
        for j in entry["jobs"]:
            where = f"batch {j['job']} on {j['engine']} (SF {entry['sf']:g})"
            if j.get("error"):
                out.append(f"{where}: {j['error']}")
            for c in j.get("checks", []):
                if not c["passed"]:
                    out.append(f"{where}: check {c['name']}: {c['detail']}")
    return out


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return html.escape(f"{value:,}" if isinstance(value, int) else str(value))


def render_html(section: dict[str, Any]) -> str:
    """Runtimes per job and engine (bars), rows/s, the faster engine, checks, SF growth."""
    out = ["<h2>Batch</h2>"]
    for entry in section.get("sf_runs", []):
        jobs = list(dict.fromkeys(j["job"] for j in entry["jobs"]))
        engines = list(dict.fromkeys(j["engine"] for j in entry["jobs"]))
        by = {(j["job"], j["engine"]): j for j in entry["jobs"]}
        out.append(f"<h3>SF {entry['sf']:g} ({_f(entry['row_counts'].get('customers'))} customers)</h3>")
        out.append(
            bar_chart(
                f"Runtime per job and engine, SF {entry['sf']:g} (seconds, lower is better)",
                jobs,
                {e: [by[(j, e)]["seconds"] if (j, e) in by else None for j in jobs] for e in engines},
                y_label="seconds",
            )
        )
        out.append(
            "<table><tr><th>job</th>"
            + "".join(f"<th>{html.escape(e)} s</th><th>{html.escape(e)} rows/s</th>" for e in engines)
            + "<th>rows out</th><th>faster</th><th>checks</th></tr>"
        )
        for job in jobs:
            cells = "".join(
                f"<td>{_f(by.get((job, e), {}).get('seconds'))}</td>"
                f"<td>{_f(by.get((job, e), {}).get('rows_per_s'), 0)}</td>"
                for e in engines
            )
            fast = entry.get("faster", {}).get(job, {})
            speed = f" ×{fast['speedup']:.2f}" if fast.get("speedup") else ""
            checks = []
            for e in engines:
                run = by.get((job, e), {})
                if run.get("error"):
                    checks.append(f"<span class='fail' title='{html.escape(run['error'])}'>{e}: error</span>")
                for c in run.get("checks", []):
                    cls = "pass" if c["passed"] else "fail"
                    checks.append(
                        f"<span class='{cls}' title='{html.escape(c['detail'])}'>{html.escape(e)}:"
                        f"{html.escape(c['name'])} {'✓' if c['passed'] else '✗'}</span>"
                    )
            rows_out = next((by[(job, e)]["rows_out"] for e in engines if (job, e) in by), None)
            out.append(
                f"<tr><td>{html.escape(job)}</td>{cells}<td>{_f(rows_out)}</td>"
                f"<td>{html.escape(str(fast.get('engine') or '–'))}{speed}</td>"
                f"<td style='font-size:smaller'>{'<br>'.join(checks)}</td></tr>"
            )
        out.append("</table>")
        failed = [
            f"{j['job']} on {j['engine']}: {c['name']}: {c['detail']}"
            for j in entry["jobs"]
            for c in j.get("checks", [])
            if not c["passed"]
        ]
        if failed:
            out.append("<p class='fail'>Invariants violated:</p><ul>")
            out += [f"<li class='fail'>{html.escape(f)}</li>" for f in failed]
            out.append("</ul>")
    g = section.get("growth", {})
    sfs = sorted({e["sf"] for e in section.get("sf_runs", [])})
    if len(sfs) > 1:
        out.append("<h3>Growth with scale factor</h3>")
        series = {}
        for job, engines in g.items():
            for engine, data in engines.items():
                by_sf = dict(zip(data["sf"], data["seconds"], strict=False))
                series[f"{job}/{engine}"] = [by_sf.get(sf) for sf in sfs]
        out.append(
            line_chart(
                "Runtime by scale factor (seconds, log scale)",
                [f"SF {sf:g}" for sf in sfs],
                series,
                y_label="seconds",
                x_label="scale factor",
                log=True,
                dashed={k: k.endswith("/lake") for k in series},
                height=360,
            )
        )
        out.append("<table><tr><th>job</th><th>engine</th><th>growth exponent (1 = linear)</th></tr>")
        for job, engines in g.items():
            for engine, data in engines.items():
                out.append(
                    f"<tr><td>{html.escape(job)}</td><td>{html.escape(engine)}</td>"
                    f"<td>{_f(data.get('exponent'))}</td></tr>"
                )
        out.append("</table>")
    return "\n".join(out)
