"""``dataplat drill list``; ``dataplat drill run NAME [--repeat N] [--profile FILE] [--json]``.

NAME is a scenario of ``dr/`` (by name) or the path of a scenario file; ``--profile FILE``
replaces the scenario's workload settings with those of FILE. ``--target k8s [--context C]
[--namespace N] [--kubeconfig F] [--warehouse-conninfo CONNINFO]`` (or ``target: k8s`` in
the scenario) runs it against a Kubernetes cluster (:mod:`dataplat.dr.cluster`). Exit codes of
``run``: 0 every target met, 1 a target or check missed, 2 the drill could not run
(or the scenario file is invalid).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dataplat.k8s.targetcli import add_cluster_arguments

_K8S_ONLY = ("context", "kubeconfig", "namespace", "warehouse_conninfo")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(subparsers: Any) -> None:
    """Add ``drill`` with ``list`` and ``run`` to the top-level sub-parsers."""
    drill = subparsers.add_parser("drill", help="disaster-recovery drills against the deployed platform")
    sub = drill.add_subparsers(dest="drill_command", metavar="ACTION")
    drill.set_defaults(func=lambda args: (drill.print_help(sys.stderr), 2)[1])

    p = sub.add_parser("list", help="the scenarios in dr/ (and any directory given)")
    p.add_argument("--dir", type=Path, default=None, help="directory of scenario files (default: dr/)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "run",
        help="run a drill scenario and judge it against its targets",
        description="Inject the scenario's fault into the deployed platform, measure, check, and write "
        "<home>/drills/<ident>/ (results.json, report.html, raw logs). "
        "Exit 0 met, 1 missed, 2 could not run.",
    )
    p.add_argument("name", help="scenario name (dr/NAME.yml) or path to a scenario file")
    p.add_argument("--repeat", type=_positive_int, default=1, help="repetitions (default 1)")
    p.add_argument(
        "--home", default=None, help="dataplat home of the deployed platform (default: see config)"
    )
    p.add_argument("-i", "--inventory", default=None, help="inventory (default: the one of the last deploy)")
    p.add_argument(
        "--profile",
        default=None,
        metavar="FILE",
        help="YAML file of workload settings replacing the scenario's (e.g. the scaling drill's load "
        "steps and HPA windows: dr/profiles/scaling-short.yml)",
    )
    p.add_argument("--json", action="store_true", help="print results.json on stdout")
    group = p.add_argument_group("Kubernetes target (--target k8s)")
    group.add_argument(
        "--target",
        choices=("local", "k8s"),
        default=None,
        help="local: the platform under --home; k8s: the cluster of dataplat up --target k8s "
        "(default: the scenario's target:, else DATAPLAT_TARGET, else local); run folders stay under --home",
    )
    add_cluster_arguments(group)
    group.add_argument(
        "--warehouse-conninfo",
        default=None,
        metavar="CONNINFO",
        help="failover: libpq conninfo reaching the CloudNativePG -rw Service, for the ledger workload "
        "(RTO, RPO); no password in it (a passfile or PGPASSWORD). Without it: API-level recovery only",
    )
    p.set_defaults(func=cmd_run)


def cmd_list(args: argparse.Namespace) -> int:
    """List scenarios with kind, fault and targets; invalid files are listed with their error."""
    from dataplat.dr.scenario import SCENARIO_DIR, ScenarioError, load_scenario, scenario_paths

    rows: list[dict[str, Any]] = []
    for path in scenario_paths(args.dir or SCENARIO_DIR):
        try:
            sc = load_scenario(path)
            rows.append(
                {
                    "name": sc.name,
                    "kind": sc.kind,
                    "fault": sc.fault_type,
                    "path": str(path),
                    "targets": [t.label() for t in sc.targets],
                    "description": sc.description,
                    **({"target": sc.target} if sc.target else {}),
                }
            )
        except ScenarioError as exc:
            rows.append({"name": path.stem, "path": str(path), "error": str(exc)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<28} INVALID  {r['error']}")
        else:
            where = f" (target {r['target']})" if r.get("target", "local") != "local" else ""
            print(f"{r['name']:<28} {r['kind']:<14} {r['fault']:<16} {'; '.join(r['targets'])}{where}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run one scenario; print a summary (or results.json); the exit code is the verdict."""
    from dataplat.config import resolve_home
    from dataplat.dr.runner import run_drill
    from dataplat.dr.scenario import find_scenario, load_scenario, with_profile

    scenario = load_scenario(find_scenario(args.name))
    if args.profile:
        scenario = with_profile(scenario, args.profile)
    home = resolve_home(args.home)
    inventory = Path(args.inventory) if args.inventory else None
    progress = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    from dataplat.dr.cluster import resolve_target

    if resolve_target(getattr(args, "target", None), scenario) == "k8s":
        from dataplat.dr.cluster import connect_target, run_cluster_drill

        target = connect_target(
            scenario,
            context=args.context,
            kubeconfig=args.kubeconfig,
            namespace=args.namespace,
            warehouse_conninfo=args.warehouse_conninfo,
        )
        result = run_cluster_drill(scenario, home / "drills", target, repeat=args.repeat, progress=progress)
    else:
        given = [f"--{o.replace('_', '-')}" for o in _K8S_ONLY if getattr(args, o, None)]
        if given:
            print(f"dataplat: error: {', '.join(given)} need --target k8s", file=sys.stderr)
            return 2
        result = run_drill(scenario, home, repeat=args.repeat, inventory=inventory, progress=progress)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        for metric, d in result.distributions.items():
            print(f"{metric}: n={d['n']} min={d['min']} median={d['median']} p95={d['p95']} max={d['max']}")
        for v in result.verdicts:
            print(f"target {v.target}: {'met' if v.met else 'MISSED'} ({v.detail})")
        level = result.summary.get("gbt20988_2007") if result.summary else None
        if level:
            print(f"GB/T 20988-2007 level (indication): {level.get('level')} {level.get('bands', '')}")
        if result.target:
            print(f"target k8s, namespace {result.target['namespace']}: {result.target['measured']}")
        print(f"{result.outcome} (exit {result.exit_code}); report: {result.run_dir / 'report.html'}")
    return result.exit_code
