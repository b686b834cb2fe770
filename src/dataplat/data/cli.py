"""``dataplat data load``: generate the synthetic bank and load it into the warehouse and the lake."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

DEFAULT_SEED = 20261121  # same as dataplat.data.generate.DEFAULT_SEED (kept import-free here)
TARGETS = {"warehouse": ("warehouse",), "lake": ("lake",), "all": ("warehouse", "lake")}


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"the scale factor must be > 0, got {text}")
    return value


def register(subparsers: Any) -> None:
    """Add ``data`` with its ``load`` sub-command to the top-level sub-parsers."""
    data = subparsers.add_parser("data", help="the synthetic bank: generate and load it")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda args: (data.print_help(sys.stderr), 2)[1])

    p = data_sub.add_parser(
        "load",
        help="generate the bank at a scale factor and load it (re-running replaces the data)",
        description="Generate the deterministic synthetic bank for (SF, seed) and load it into the "
        "warehouse (PostgreSQL) and/or the lake (Iceberg). SF 1 = 1M customers, 2M accounts, "
        "20M transactions.",
    )
    p.add_argument("--sf", type=_positive_float, required=True, help="scale factor (1 = 1M customers)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    p.add_argument(
        "--target", choices=sorted(TARGETS), default="all", help="which store(s) to load (default all)"
    )
    p.add_argument(
        "--home", default=None, help="dataplat home of the deployed platform (default: see config)"
    )
    p.add_argument("--schema", default="bank", help="warehouse schema (default bank)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=cmd_load)


def cmd_load(args: argparse.Namespace) -> int:
    """Run ``data load``: connect to the deployed stores, load, print rows and rows/s."""
    from dataplat.config import resolve_home
    from dataplat.data.load import load
    from dataplat.platform import endpoints

    home = resolve_home(args.home)
    targets = TARGETS[args.target]
    conninfo = endpoints.warehouse_conninfo(home, "admin") if "warehouse" in targets else None
    catalog, namespace = endpoints.lake_catalog(home) if "lake" in targets else (None, None)
    results = load(
        args.sf,
        args.seed,
        conninfo=conninfo,
        catalog=catalog,
        namespace=namespace,
        targets=targets,
        schema=args.schema,
        progress=None if not args.json else False,
    )
    if args.json:
        doc = {
            "sf": args.sf,
            "seed": args.seed,
            "targets": list(targets),
            "loads": [
                {"store": r.store, "table": r.table, "rows": r.rows, "seconds": round(r.seconds, 4),
                 "rows_per_s": round(r.rows_per_s, 1)}
                for r in results
            ],
        }  # fmt: skip
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"data load: SF {args.sf:g}, seed {args.seed}")
    for col in ("store", "table", "rows", "seconds", "rows/s"):
        table.add_column(col, justify="right" if col in ("rows", "seconds", "rows/s") else "left")
    for r in results:
        table.add_row(r.store, r.table, f"{r.rows:,}", f"{r.seconds:.2f}", f"{r.rows_per_s:,.0f}")
    for store in targets:
        rows = sum(r.rows for r in results if r.store == store)
        secs = sum(r.seconds for r in results if r.store == store)
        table.add_row(store, "[b]total[/b]", f"{rows:,}", f"{secs:.2f}", f"{rows / secs if secs else 0:,.0f}")
    Console().print(table)
    return 0
