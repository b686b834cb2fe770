#!/usr/bin/env python3
"""Benchmark dynamic masking: a masked query's latency against the same query in the clear.

The same SQL text runs twice per repetition, interleaved (clear then masked, then masked
then clear, ...), so drift hits both sides alike: once as the admin with
``search_path = bank`` (the clear data) and once as a policy role's LOGIN member, whose
``search_path`` is the masked schema (``bank_masked``: security-barrier views that
mask at read time). Prints the median latency of each side and their ratio per query;
the exit code is 1 when a ratio is above ``--max-ratio`` (default 1.15).

Queries: a customer-360 point lookup by id (every column), an audience selection
(a scan returning masked names, mobiles and e-mails), and a branch dashboard
(customers joined with accounts, grouped).

Where the warehouse comes from, first match wins:

* ``--conninfo`` (admin) with ``--secrets-dir``: a warehouse where the policies can be applied;
* ``--home``: the deployed platform;
* ``--start-pg``: a throw-away PostgreSQL from pgserver's binaries with the bank at ``--sf``.

The shipped policies (``-p``) are applied first (a no-op when they are in force).

Example: ``python bench/masking_overhead.py --start-pg --sf 0.05``
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

QUERIES: dict[str, str] = {
    "customer_360": "SELECT * FROM customers WHERE customer_id = %(id)s",
    "audience": "SELECT customer_id, name, mobile, email FROM customers "
    "WHERE segment = 'affluent' AND marketing_consent AND risk_level >= 2",
    "branch_dashboard": "SELECT c.branch_id, count(*), sum(a.balance) FROM customers c "
    "JOIN accounts a ON a.customer_id = c.customer_id GROUP BY c.branch_id",
}


def _start_pg(sf: float, seed: int) -> tuple[Any, str]:
    sys.path.insert(0, str(REPO / "tests" / "data"))
    import psycopg
    from data_testkit import TempPostgres  # type: ignore[import-not-found]

    from dataplat.data.load import load_warehouse

    pg = TempPostgres.start()
    with psycopg.connect(pg.conninfo, autocommit=True) as conn:
        conn.execute("CREATE ROLE dataplat_admin LOGIN CREATEROLE")
        conn.execute("CREATE DATABASE bank OWNER dataplat_admin")
    conninfo = f"host=127.0.0.1 port={pg.port} user=dataplat_admin dbname=bank"
    load_warehouse(conninfo, sf, seed, progress=False)
    return pg, conninfo


def _time(conn: Any, query: str, params: dict[str, Any]) -> float:
    start = time.perf_counter()
    conn.execute(query, params).fetchall()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conninfo", help="libpq conninfo of the warehouse as its admin")
    p.add_argument("--secrets-dir", help="where the token key and login passwords live (with --conninfo)")
    p.add_argument("--home", help="dataplat home of a deployed platform")
    p.add_argument("--start-pg", action="store_true", help="start a throw-away PostgreSQL and load the bank")
    p.add_argument("--sf", type=float, default=0.05, help="scale factor for --start-pg (default 0.05)")
    p.add_argument("--seed", type=int, default=20261121)
    p.add_argument("-p", "--policies", default=str(REPO / "policies"))
    p.add_argument("--role", default="marketing_analyst", help="the masked side (default marketing_analyst)")
    p.add_argument("--repeat", type=int, default=0, help="repetitions per query (default: by query)")
    p.add_argument(
        "--max-ratio", type=float, default=1.15, help="limit of masked/clear medians (default 1.15)"
    )
    p.add_argument("--json-out", help="write the results as JSON here")
    args = p.parse_args(argv)

    import psycopg

    from dataplat.policy.apply import Target, apply
    from dataplat.policy.loader import load_policies

    pg = None
    tmp = Path(tempfile.mkdtemp(prefix="dataplat-mask-bench-"))
    try:
        if args.conninfo:
            target = Target(args.conninfo, Path(args.secrets_dir or tmp))
        elif args.home:
            from dataplat.config import resolve_home

            target = Target.from_home(resolve_home(args.home))
        elif args.start_pg:
            pg, conninfo = _start_pg(args.sf, args.seed)
            target = Target(conninfo, tmp)
        else:
            p.error("the warehouse needs --conninfo, --home or --start-pg")
        policy = load_policies(args.policies)
        apply(policy, target)
        login = policy.roles[args.role].logins[0].name
        with (
            psycopg.connect(target.admin_conninfo, autocommit=True) as clear,
            psycopg.connect(target.login_conninfo(login), autocommit=True) as masked,
        ):
            clear.execute("SET search_path = " + policy.settings.source_schema)
            ids = [
                r[0] for r in clear.execute("SELECT customer_id FROM customers ORDER BY random() LIMIT 500")
            ]
            n_customers = clear.execute("SELECT count(*) FROM customers").fetchone()[0]
            rng = random.Random(7)
            results: dict[str, dict[str, float]] = {}
            for name, query in QUERIES.items():
                repeat = args.repeat or (400 if name == "customer_360" else 40)
                times: dict[str, list[float]] = {"clear": [], "masked": []}
                for i in range(repeat + 5):
                    params = {"id": rng.choice(ids)}
                    order = (
                        (("clear", clear), ("masked", masked))
                        if i % 2
                        else (("masked", masked), ("clear", clear))
                    )
                    for side, conn in order:
                        t = _time(conn, query, params)
                        if i >= 5:  # warm-up
                            times[side].append(t)
                c, m = statistics.median(times["clear"]), statistics.median(times["masked"])
                results[name] = {
                    "clear_ms": c * 1000,
                    "masked_ms": m * 1000,
                    "ratio": m / c,
                    "repeat": repeat,
                }
        print(f"masking overhead: role {args.role} vs admin in the clear, {n_customers} customers")
        print(f"{'query':<18} {'clear ms':>10} {'masked ms':>10} {'ratio':>7}")
        worst = 0.0
        for name, r in results.items():
            worst = max(worst, r["ratio"])
            print(f"{name:<18} {r['clear_ms']:>10.3f} {r['masked_ms']:>10.3f} {r['ratio']:>6.2f}x")
        verdict = worst <= args.max_ratio
        print(f"worst ratio {worst:.2f}x, limit {args.max_ratio:.2f}x: {'PASS' if verdict else 'FAIL'}")
        if args.json_out:
            Path(args.json_out).write_text(
                json.dumps(
                    {
                        "role": args.role,
                        "customers": n_customers,
                        "queries": results,
                        "worst_ratio": worst,
                        "max_ratio": args.max_ratio,
                        "pass": verdict,
                    },
                    indent=2,
                )
            )
        return 0 if verdict else 1
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    sys.exit(main())
