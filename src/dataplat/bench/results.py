"""``results.json`` of a benchmark run: the schema, versioned, and how to find runs.

Schema ``dataplat.bench/v1`` (keys of the top-level object)::

    schema        "dataplat.bench/v1"
    ident         "<YYYYmmddTHHMMSS>-<suite>", also the run folder's name
    suite         the suite asked for (batch | concurrent | decisions | all)
    run_dir       the run folder <home>/bench/<ident>/
    started_at    ISO-8601 UTC;   seconds: wall time of the run
    host          {hostname, cpus, python, dataplat}
    settings      BenchSettings.to_dict(): sfs, seed, steps, duration_s, engines, schemas...
    loads         data loads the run made: [{sf, seed, seconds}]
    slo           {name, path, description, targets: [Target]} or null
    suites        {name: {status: ok | error | unavailable, error, seconds, ...section}}
        batch       jobs: [{name, file, description, reads, checks}]
                    sf_runs: [{sf, row_counts, engines: {engine: {version, setup_seconds, sources}},
                               jobs: [{job, engine, seconds, rows_out, rows_in, rows_per_s,
                                       checks: [{name, passed, detail, seconds}], error, passed}],
                               faster: {job: {engine, speedup}}}]
                    growth: {job: {engine: {sf: [...], seconds: [...], exponent}}}
        concurrent  sf, duration_s, seed, mode, client, variables, queries: [{name, file, weight}]
                    steps: [{concurrency, qps_ratio_vs_pgbench,
                             harness|pgbench: {count, errors, seconds, qps,
                                               latency_ms: {p50_ms, p95_ms, p99_ms, p999_ms, max_ms, mean_ms},
                                               histogram (HdrHistogram, base64 compressed, µs),
                                               per_query: {query: {count, qps, latency_ms, histogram}},
                                               pgbench only: tps_reported, command, logs}}]
        decisions   url, steps_users, step_s, processes, loadgen_hosts, customers, locustfile, client
                    service|bare: {command, exit_code, timed_out, seconds, saturation_rps,
                                   steps: [{step, users, seconds, requests, failures, rps, error_rate,
                                            p50_ms, p66_ms, p75_ms, p90_ms, p95_ms, p99_ms, p999_ms,
                                            max_ms, degraded, degraded_rate, by_name}],
                                   total, by_name, files (Locust CSVs, log),
                                   cpu: {seconds, requests, cores_available, total_cores,
                                         total_cpu_ms_per_request,
                                         groups: {decision|serving|stream|warehouse|...|loadgen|
                                                  bare endpoint|other: {cpu_s, cores, cpu_ms_per_request}}}}
                    bare.workers; saturation_rps, bare_saturation_rps, saturation_ratio_vs_bare
                    half: the service paced at half its saturation (as service without cpu, plus
                          rate) or null
                    stream: {events, rate, decided, lost, received_ms, decided_ms: {p50_ms, p95_ms,
                             p99_ms, max_ms}}
    verdicts      [{target, suite, metric, scope, op, bound, value, met, detail}]
    failures      invariant checks that did not hold / jobs that failed (each misses the run)
    outcome       met | missed | could not run;   exit_code 0 | 1 | 2

Raw data next to it: ``raw/concurrent/cNNN-pgbench/`` (pgbench scripts, per-transaction
logs, output), ``raw/concurrent/cNNN-{harness,pgbench}.hgrm`` (percentile tables), and
``bench.log``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dataplat.bench.context import BenchError

SCHEMA = "dataplat.bench/v1"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"


def runs_dir(home: Path) -> Path:
    """Where the run folders of a home live."""
    return Path(home) / "bench"


def find_run(ref: str, home: Path | None = None) -> Path:
    """A run's ``results.json`` from a folder, a results.json path or an ident under ``<home>/bench``."""
    p = Path(ref)
    candidates = [p / RESULTS_FILE if p.is_dir() else p]
    if home is not None:
        candidates.append(runs_dir(home) / ref / RESULTS_FILE)
    for c in candidates:
        if c.is_file():
            return c
    where = f" or under {runs_dir(home)}" if home is not None else ""
    raise BenchError(f"no benchmark run {ref!r} (a run folder, its results.json{where})")


def load_results(ref: str, home: Path | None = None) -> dict[str, Any]:
    """A run's results; :class:`BenchError` when missing, unreadable or of another schema."""
    path = find_run(ref, home)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise BenchError(f"{path} is not a {SCHEMA} results file (schema {doc.get('schema')!r})")
    doc.setdefault("run_dir", str(path.parent))
    return doc
