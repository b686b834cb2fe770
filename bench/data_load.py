#!/usr/bin/env python3
"""Benchmark ``dataplat data load``: generate and load the bank at several scale factors.

Prints rows/s per store and table for each scale factor and the time ratio of the
largest to the smallest (linear scaling gives the ratio of the scale factors). The
exit code is 1 when the largest scale factor takes longer than ``--max-seconds``.

Where the stores come from, first match wins:

* ``--conninfo`` / ``--lake-dir``: a PostgreSQL you name, a local Iceberg SQL catalog;
* ``--home``: the deployed platform (``dataplat.platform.endpoints``);
* ``--start-pg``: a throw-away PostgreSQL from pgserver's binaries (tests/data/data_testkit.py),
  and a catalog in a temporary directory.

Example: ``python bench/data_load.py --start-pg --sf 0.1 1 --json-out /tmp/load.json``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _lake(args: argparse.Namespace, tmp: Path) -> tuple[Any, str]:
    from pyiceberg.catalog.sql import SqlCatalog

    if args.home and not args.lake_dir:
        from dataplat.config import resolve_home
        from dataplat.platform import endpoints

        return endpoints.lake_catalog(resolve_home(args.home))
    root = Path(args.lake_dir) if args.lake_dir else tmp / "lake"
    root.mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog("bench", uri=f"sqlite:///{root}/catalog.db", warehouse=f"file://{root}/warehouse")
    return catalog, "bank"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sf", type=float, nargs="+", default=[0.1, 1.0], help="scale factors (default 0.1 1)")
    p.add_argument("--seed", type=int, default=20261121)
    p.add_argument("--target", choices=("warehouse", "lake", "all"), default="all")
    p.add_argument("--conninfo", help="libpq conninfo of the warehouse")
    p.add_argument("--lake-dir", help="directory of a local Iceberg SQL catalog")
    p.add_argument("--home", help="dataplat home of a deployed platform")
    p.add_argument("--start-pg", action="store_true", help="start a throw-away PostgreSQL")
    p.add_argument("--chunk-customers", type=int, default=100_000)
    p.add_argument("--max-seconds", type=float, default=600.0, help="limit for the largest SF (default 600)")
    p.add_argument("--json-out", help="write the results as JSON here")
    args = p.parse_args(argv)

    from dataplat.data.load import load

    targets = ("warehouse", "lake") if args.target == "all" else (args.target,)
    tmp = Path(tempfile.mkdtemp(prefix="dataplat-bench-"))
    pg = None
    try:
        conninfo = args.conninfo
        if "warehouse" in targets and not conninfo:
            if args.start_pg:
                sys.path.insert(0, str(REPO / "tests" / "data"))
                from data_testkit import TempPostgres

                pg = TempPostgres.start()
                conninfo = pg.conninfo
            elif args.home:
                from dataplat.config import resolve_home
                from dataplat.platform import endpoints

                conninfo = endpoints.warehouse_conninfo(resolve_home(args.home), "admin")
            else:
                p.error("the warehouse needs --conninfo, --home or --start-pg")
        catalog, namespace = _lake(args, tmp) if "lake" in targets else (None, None)

        runs: list[dict[str, Any]] = []
        for sf in args.sf:
            start = time.perf_counter()
            results = load(
                sf, args.seed, conninfo, catalog, namespace, targets,
                progress=None, chunk_customers=args.chunk_customers,
            )  # fmt: skip
            wall = time.perf_counter() - start
            runs.append({"sf": sf, "wall_s": wall, "loads": [r.__dict__ for r in results]})
            total_rows = sum(r.rows for r in results if r.store == "generate")
            print(f"\nSF {sf:g}: {wall:.1f} s wall, {total_rows:,} rows")
            print(f"  {'store':<10} {'table':<16} {'rows':>12} {'seconds':>9} {'rows/s':>12}")
            for r in results:
                print(f"  {r.store:<10} {r.table:<16} {r.rows:>12,} {r.seconds:>9.2f} {r.rows_per_s:>12,.0f}")
            for store in ("generate", *targets):
                rows = sum(r.rows for r in results if r.store == store)
                secs = sum(r.seconds for r in results if r.store == store)
                rate = rows / secs if secs else 0
                print(f"  {store:<10} {'TOTAL':<16} {rows:>12,} {secs:>9.2f} {rate:>12,.0f}")
        verdict = 0
        if len(runs) > 1:
            lo, hi = min(runs, key=lambda r: r["sf"]), max(runs, key=lambda r: r["sf"])
            ratio = hi["wall_s"] / lo["wall_s"]
            linear = hi["sf"] / lo["sf"]
            print(f"\ntime ratio SF {hi['sf']:g} / SF {lo['sf']:g}: {ratio:.2f} (linear: {linear:.2f})")
        biggest = max(runs, key=lambda r: r["sf"])
        if biggest["wall_s"] > args.max_seconds:
            print(f"FAIL: SF {biggest['sf']:g} took {biggest['wall_s']:.0f} s > {args.max_seconds:.0f} s")
            verdict = 1
        else:
            print(f"PASS: SF {biggest['sf']:g} took {biggest['wall_s']:.0f} s <= {args.max_seconds:.0f} s")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({"targets": list(targets), "runs": runs}, indent=2))
        return verdict
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
