"""``dataplat bench run`` and ``dataplat bench list``.

``bench run [--suite batch|concurrent|decisions|all] [--sf SF[,SF...]] [--slo FILE]
[--duration S] [--concurrency N,N...] [--home DIR] [--json]`` runs the suite(s) against
the deployed platform and writes ``<home>/bench/<timestamp>-<suite>/``. Exit codes: 0
every target met and every invariant held, 1 something missed, 2 could not run (or the
SLO file is invalid).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"scale factors must be > 0, got {text!r}")
    return values


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"concurrency steps must be >= 1, got {text!r}")
    return values


def _words(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def register(subparsers: Any) -> None:
    """Add ``bench`` with ``run`` and ``list`` to the top-level sub-parsers."""
    from dataplat.bench.context import DEFAULT_DURATION_S, DEFAULT_SEED, DEFAULT_STEPS
    from dataplat.bench.suites import SUITES

    bench = subparsers.add_parser("bench", help="benchmarks: batch jobs, concurrent queries, decisions")
    sub = bench.add_subparsers(dest="bench_command", metavar="ACTION")
    bench.set_defaults(func=lambda args: (bench.print_help(sys.stderr), 2)[1])

    p = sub.add_parser("list", help="the registered suites and whether they are available")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "run",
        help="run benchmark suites and judge them against an SLO file",
        description="Run the suite(s) against the deployed platform and write "
        "<home>/bench/<timestamp>-<suite>/ "
        "(results.json, report.html, raw data). Exit 0 every target met, 1 missed, 2 could not run.",
    )
    p.add_argument("--suite", default="all", choices=[*SUITES, "all"], help="suite to run (default: all)")
    p.add_argument(
        "--sf",
        type=_floats,
        default=(),
        help="scale factor(s), comma-separated: load the bank at each (warehouse and lake) and run the "
        "batch suite at each; default: the data loaded now",
    )
    p.add_argument(
        "--slo",
        default=None,
        help="SLO file of targets (default: bench/slo/default.yml; 'none' for no targets)",
    )
    p.add_argument(
        "--duration",
        type=_positive,
        default=DEFAULT_DURATION_S,
        help=f"seconds per concurrency step and client kind (default {DEFAULT_DURATION_S:g})",
    )
    p.add_argument(
        "--concurrency",
        type=_ints,
        default=DEFAULT_STEPS,
        help=f"concurrency steps (default {','.join(map(str, DEFAULT_STEPS))})",
    )
    p.add_argument("--engines", type=_words, default=("warehouse", "lake"), help="batch engines")
    p.add_argument("--jobs", type=_words, default=(), help="batch jobs to run (default: all)")
    p.add_argument("--no-pgbench", action="store_true", help="do not run pgbench beside the harness")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="data and parameter seed")
    p.add_argument(
        "--home", default=None, help="dataplat home of the deployed platform (default: see config)"
    )
    p.add_argument("--json", action="store_true", help="print results.json on stdout")
    p.set_defaults(func=cmd_run)


def cmd_list(args: argparse.Namespace) -> int:
    """List the suites."""
    from dataplat.bench.suites import SUITES

    rows = [
        {"name": s.name, "available": s.available, "module": s.module, "help": s.help}
        for s in SUITES.values()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:<12} {'available' if r['available'] else 'not available yet':<18} {r['help']}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run; print a summary (or results.json); the exit code is the verdict."""
    from dataplat.bench.context import BenchError, BenchSettings
    from dataplat.bench.runner import run_bench
    from dataplat.bench.slo import DEFAULT_SLO, load_slo
    from dataplat.config import resolve_home

    unknown = [e for e in args.engines if e not in ("warehouse", "lake")]
    if unknown:
        raise BenchError(f"unknown engine(s) {', '.join(unknown)} (known: warehouse, lake)")
    slo = None
    if args.slo != "none":
        path = Path(args.slo) if args.slo else DEFAULT_SLO
        if args.slo or path.is_file():
            slo = load_slo(path)
    settings = BenchSettings(
        sfs=args.sf,
        seed=args.seed,
        steps=args.concurrency,
        duration_s=args.duration,
        engines=args.engines,
        jobs=args.jobs,
        pgbench=not args.no_pgbench,
    )
    home = resolve_home(args.home)
    progress = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    result = run_bench(args.suite, home, settings, slo, progress)
    doc = result.to_dict()
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
        return result.exit_code
    for name, section in doc["suites"].items():
        if section["status"] != "ok":
            print(f"{name}: {section['status']}: {section.get('error')}")
    for v in result.verdicts:
        print(f"target {v.target} [{v.scope}]: {'met' if v.met else 'MISSED'} ({v.detail})")
    for f in result.failures:
        print(f"invariant FAILED: {f}")
    print(f"{result.outcome} (exit {result.exit_code}); report: {result.run_dir / 'report.html'}")
    return result.exit_code
