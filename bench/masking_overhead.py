#!/usr/bin/env python3
"""Benchmark dynamic masking: a masked query's latency against the same query in the clear.

The target (issue: masked latency at most 1.15x the clear one) is measured on the
concurrent-query workload (``bench/concurrent/*.sql``): every query of it that reads the
bank's tables (``{bank}``, where the classified columns live) runs through the same
closed-loop harness as ``dataplat bench run --suite concurrent``, once as the admin on the
clear tables and once as a policy role's LOGIN member on its masked views, in short
alternating rounds (clear then masked, masked then clear, ...) so drift hits both sides
alike, at each client count of ``--clients``. The ratio per query and client count is the
median over the rounds of masked p50 / clear p50 of the same round (two runs back to back,
so load from elsewhere on the machine cancels out); the exit code is 1 when one is above
``--max-ratio`` (default 1.15). Queries over the batch outputs (``{bench}``) read
no classified column and are listed as not masked.

Three stricter probes on the bank tables are reported beside it (they do not decide the exit
code unless ``--strict``): a point lookup of every customer column (a keyed token, four
display masks; tens of microseconds in the clear, so a few microseconds of masking show), an
audience scan returning masked names, mobiles and e-mails, and a branch dashboard join.

Where the warehouse comes from, first match wins:

* ``--conninfo`` (admin) with ``--secrets-dir``: a warehouse where the policies can be applied;
* ``--home``: the deployed platform;
* ``--start-pg``: a throw-away PostgreSQL from pgserver's binaries with the bank at ``--sf``.

The shipped policies (``-p``) are applied first (a no-op when they are in force); whether the
views use the C masks (extension ``dataplat_mask``) or the SQL ones is printed (``--masks``).

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

PROBES: dict[str, str] = {
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


def probes(clear: Any, masked: Any, repeat: int, seed: int) -> dict[str, dict[str, float]]:
    """The stricter probes, one connection per side, interleaved."""
    ids = [r[0] for r in clear.execute("SELECT customer_id FROM customers ORDER BY random() LIMIT 500")]
    rng = random.Random(seed)
    out: dict[str, dict[str, float]] = {}
    for name, query in PROBES.items():
        n = repeat or (400 if name == "customer_360" else 40)
        times: dict[str, list[float]] = {"clear": [], "masked": []}
        for i in range(n + 5):
            params = {"id": rng.choice(ids)}
            order = (
                (("clear", clear), ("masked", masked)) if i % 2 else (("masked", masked), ("clear", clear))
            )
            for side, conn in order:
                t = _time(conn, query, params)
                if i >= 5:  # warm-up
                    times[side].append(t)
        c, m = statistics.median(times["clear"]), statistics.median(times["masked"])
        out[name] = {"clear_ms": c * 1000, "masked_ms": m * 1000, "ratio": m / c, "repeat": n}
    return out


def workload(
    admin: str,
    login: str,
    source_schema: str,
    masked_schema: str,
    clients: list[int],
    rounds: int,
    seconds: float,
    seed: int,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The concurrent workload's queries over the bank tables, clear and masked, in alternating
    rounds through the concurrent suite's harness; per query and client count the ratio."""
    import psycopg

    from dataplat.bench.concurrent import load_queries, run_harness

    queries = load_queries(REPO / "bench" / "concurrent")
    masked_queries = [q for q in queries if "{bank}" in q.template and "{bench}" not in q.template]
    not_masked = [q.name for q in queries if q not in masked_queries]
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute(
            f'SELECT max(c.customer_id), (SELECT max(b.branch_id) FROM "{source_schema}".branches AS b) '
            f'FROM "{source_schema}".customers AS c'
        ).fetchone()
    assert row is not None
    variables = {"customers": int(row[0]), "branches": int(row[1])}
    results: dict[str, dict[str, Any]] = {}
    for q in masked_queries:
        for n in clients:
            pairs: list[float] = []
            p50: dict[str, list[float]] = {"clear": [], "masked": []}
            p99: dict[str, list[float]] = {"clear": [], "masked": []}
            qps: dict[str, list[float]] = {"clear": [], "masked": []}
            errors = 0
            for r in range(rounds + 1):  # round 0 warms both sides up
                sides = [("clear", admin, source_schema), ("masked", login, masked_schema)]
                for side, conninfo, bank in sides if r % 2 else sides[::-1]:
                    step = run_harness(conninfo, [q], variables, n, seconds, seed + r, bank=bank)
                    errors += step["errors"]
                    if step["latency_ms"]["p50_ms"] is None:
                        raise SystemExit(f"{q.name}: no query answered ({side}): {step.get('first_error')}")
                    if r:
                        p50[side].append(step["latency_ms"]["p50_ms"])
                        p99[side].append(step["latency_ms"]["p99_ms"])
                        qps[side].append(step["qps"])
                if r:  # the two sides of one round ran back to back: their ratio is drift-free
                    pairs.append(p50["masked"][-1] / p50["clear"][-1])
            med = {
                k: {side: statistics.median(v) for side, v in d.items()}
                for k, d in (("p50", p50), ("p99", p99), ("qps", qps))
            }
            results[f"{q.name}@{n}"] = {
                "query": q.name,
                "clients": n,
                "rounds": rounds,
                "clear_p50_ms": med["p50"]["clear"],
                "masked_p50_ms": med["p50"]["masked"],
                "clear_p99_ms": med["p99"]["clear"],
                "masked_p99_ms": med["p99"]["masked"],
                "clear_qps": med["qps"]["clear"],
                "masked_qps": med["qps"]["masked"],
                "ratio": statistics.median(pairs),
                "round_ratios": [round(x, 4) for x in pairs],
                "p99_ratio": med["p99"]["masked"] / med["p99"]["clear"],
                "errors": errors,
            }
    return results, not_masked


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
    p.add_argument(
        "--masks", choices=("auto", "native", "sql"), default="auto", help="mask functions (apply)"
    )
    p.add_argument("--clients", default="1,4", help="client counts of the workload (default 1,4)")
    p.add_argument("--rounds", type=int, default=10, help="alternating rounds per client count (default 10)")
    p.add_argument("--seconds", type=float, default=1.5, help="seconds per side and round (default 1.5)")
    p.add_argument("--repeat", type=int, default=0, help="repetitions per probe (default: by probe)")
    p.add_argument("--strict", action="store_true", help="the probes decide the exit code too")
    p.add_argument(
        "--max-ratio", type=float, default=1.15, help="limit of masked/clear medians (default 1.15)"
    )
    p.add_argument("--json-out", help="write the results as JSON here")
    args = p.parse_args(argv)

    import psycopg

    from dataplat.policy.apply import Target, apply, in_force
    from dataplat.policy.compiler import masked_schema
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
        apply(policy, target, masks=args.masks)
        current = in_force(target)
        native = bool(current and any("dataplat_mask." in st for st in current.statements))
        login = policy.roles[args.role].logins[0].name
        src = policy.settings.source_schema
        clients = [int(c) for c in args.clients.split(",") if c.strip()]
        with (
            psycopg.connect(target.admin_conninfo, autocommit=True) as clear,
            psycopg.connect(target.login_conninfo(login), autocommit=True) as masked,
        ):
            clear.execute("SET search_path = " + src)
            n_customers = clear.execute("SELECT count(*) FROM customers").fetchone()[0]
            probe = probes(clear, masked, args.repeat, 7)
        work, not_masked = workload(
            target.admin_conninfo,
            target.login_conninfo(login),
            src,
            masked_schema(policy, args.role),
            clients,
            args.rounds,
            args.seconds,
            args.seed,
        )
        print(
            f"masking overhead: role {args.role} vs admin in the clear, {n_customers} customers, "
            f"{'C masks (dataplat_mask)' if native else 'SQL masks'}"
        )
        print(f"concurrent workload ({args.rounds} alternating rounds of {args.seconds:g} s per side):")
        print(f"  {'query@clients':<18} {'clear p50':>10} {'masked p50':>11} {'ratio':>7} {'p99 ratio':>10}")
        for key, r in work.items():
            print(
                f"  {key:<18} {r['clear_p50_ms']:>9.3f}ms {r['masked_p50_ms']:>9.3f}ms "
                f"{r['ratio']:>6.2f}x {r['p99_ratio']:>9.2f}x"
            )
        if not_masked:
            print(f"  not masked (no classified column read): {', '.join(not_masked)}")
        print("probes on the bank tables (one client, interleaved):")
        print(f"  {'probe':<18} {'clear ms':>10} {'masked ms':>10} {'ratio':>7}")
        for name, r in probe.items():
            print(f"  {name:<18} {r['clear_ms']:>10.3f} {r['masked_ms']:>10.3f} {r['ratio']:>6.2f}x")
        worst_work = max((r["ratio"] for r in work.values()), default=0.0)
        worst_probe = max((r["ratio"] for r in probe.values()), default=0.0)
        worst = max(worst_work, worst_probe) if args.strict else worst_work
        errors = sum(r["errors"] for r in work.values())
        verdict = worst <= args.max_ratio and errors == 0 and bool(work)
        print(
            f"worst workload ratio {worst_work:.2f}x, worst probe ratio {worst_probe:.2f}x, "
            f"limit {args.max_ratio:.2f}x{' (probes included)' if args.strict else ''}, "
            f"errors {errors}: {'PASS' if verdict else 'FAIL'}"
        )
        if args.json_out:
            Path(args.json_out).write_text(
                json.dumps(
                    {
                        "role": args.role,
                        "customers": n_customers,
                        "masks": "native" if native else "sql",
                        "workload": work,
                        "not_masked": not_masked,
                        "probes": probe,
                        "worst_workload_ratio": worst_work,
                        "worst_probe_ratio": worst_probe,
                        "strict": args.strict,
                        "max_ratio": args.max_ratio,
                        "errors": errors,
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
