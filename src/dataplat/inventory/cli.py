"""``dataplat inventory check``: validate an inventory, compare it with the hosts, show the plan.

Exit status: 0 when nothing is an error (warnings do not fail), 1 on any error,
2 when the inventory cannot be parsed at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from dataplat.config import resolve_inventory
from dataplat.inventory.check import CheckReport, check_inventory, parse_failure_dict
from dataplat.inventory.model import InventoryParseError, Problem

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
_STATUS_STYLE = {"ok": "green", "mismatch": "bold red", "unverifiable": "dim"}


def register(subparsers: Any) -> None:
    """Add ``inventory check`` to the ``dataplat`` command."""
    parser = subparsers.add_parser("inventory", help="check an inventory and show the placement plan")
    parser.set_defaults(func=lambda args: _usage(parser))
    sub = parser.add_subparsers(dest="inventory_command", metavar="ACTION")
    check = sub.add_parser(
        "check",
        help="validate the inventory, compare its claims with the hosts' facts, plan placement",
        description="Validate the inventory (every problem with file, line and field), gather the facts "
        "of every host through Ansible and compare them with the claims (unless --offline), "
        "and print the placement plan. Exit 0: no error; 1: errors; 2: unparseable.",
    )
    check.add_argument(
        "-i",
        "--inventory",
        help="inventory file (default: $DATAPLAT_INVENTORY, else the embedded inventory/local.yml)",
    )
    check.add_argument("--offline", action="store_true", help="do not contact the hosts")
    check.add_argument("--json", action="store_true", help="print the whole report as JSON")
    check.add_argument("--home", help="platform home; the facts run keeps its artefacts under HOME/runs/")
    check.set_defaults(func=func)
    for kind, help_text in (
        (
            "rdma",
            "check the RDMA fabric (devices, link, MTU, GID index, PFC/ECN) and measure host pairs "
            "with perftest",
        ),
        ("accelerators", "check GPU/NPU drivers and the device counts each host declares"),
    ):
        hw = sub.add_parser(
            kind,
            help=help_text,
            description=f"Run roles/{kind} against the inventory's hosts (those that declare nothing are "
            f"skipped, with the reason) and print HOME/{kind}/report.json. Exit 0: no error; 1: a claim "
            "is contradicted or the run failed.",
        )
        hw.add_argument(
            "-i",
            "--inventory",
            help="inventory file (default: $DATAPLAT_INVENTORY, else inventory/local.yml)",
        )
        hw.add_argument("--home", help=f"platform home (the report goes to HOME/{kind}/report.json)")
        hw.add_argument("--json", action="store_true", help="print the report as JSON")
        hw.add_argument("--last", action="store_true", help="print the last report without running the check")
        if kind == "rdma":
            hw.add_argument(
                "--no-perftest", action="store_true", help="do not run ib_write_bw / ib_write_lat"
            )
        hw.set_defaults(func=hw_func, hw_kind=kind)


def hw_func(args: argparse.Namespace) -> int:
    """``inventory rdma`` / ``inventory accelerators``: run (or read) the check, print it."""
    from dataplat.config import resolve_home
    from dataplat.inventory.hwcheck import read_report, run_check
    from dataplat.inventory.loader import load_inventory

    path = resolve_inventory(args.inventory)
    if args.last:
        inv = load_inventory(path)
        first = next(iter(inv.hosts), None)
        home = resolve_home(args.home, inv.declared(first, "dataplat_home") if first else None)
        report = read_report(home, args.hw_kind)
        if report is None:
            print(
                f"no {args.hw_kind} report under {home} yet: run `dataplat inventory {args.hw_kind}`",
                file=sys.stderr,
            )
            return 1
    else:
        report = run_check(args.hw_kind, path, args.home, perftest=not getattr(args, "no_perftest", False))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render_hw(report, Console(highlight=False, width=None if sys.stdout.isatty() else 160))
    return 0 if report.get("ok") else 1


def render_hw(report: dict[str, Any], console: Console) -> None:
    """Print an RDMA or accelerator report for people."""
    kind = report.get("kind", "")
    console.print(f"[bold]{kind}[/] check of {_escape(str(report.get('inventory')))}: {report.get('status')}")
    if report.get("reason"):
        console.print(f"[dim]{_escape(str(report['reason']))}[/]")
    if report.get("findings"):
        table = Table(title="Claims against the hosts", title_justify="left")
        for col in ("host", "item", "status", "fact", "note"):
            table.add_column(col, overflow="fold")
        for f in report["findings"]:
            table.add_row(
                f["host"],
                f["item"],
                f"[{_STATUS_STYLE[f['status']]}]{f['status']}[/]",
                _escape(f["fact"]),
                _escape(f["message"]),
            )
        console.print(table)
    for pair in report.get("pairs") or []:
        bw, lat = pair.get("bw") or {}, pair.get("lat") or {}
        console.print(
            f"perftest {pair['client']} -> {pair['server']} ({pair['device']}): "
            f"{bw.get('bw_avg_gbps', '-')} Gb/s, latency typical {lat.get('t_typical_us', '-')} us"
        )
    for p in report.get("problems") or []:
        prob = Problem.from_dict(p)
        console.print(
            f"[{_STYLE[prob.severity]}]{prob.severity}[/]: {_escape(prob.render())}", soft_wrap=True
        )
    for f in report.get("run_failures") or []:
        console.print(
            f"[bold red]error[/]: {f.get('host')}: {_escape(str(f.get('task')))}: "
            f"{_escape(str(f.get('msg')))}"
        )
    verdict = "[bold green]OK[/]" if report.get("ok") else "[bold red]FAILED[/]"
    console.print(f"{verdict}: {report.get('report') or ''}".rstrip())


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def func(args: argparse.Namespace) -> int:
    """Run the check; print it as tables or JSON; return the exit status."""
    path = resolve_inventory(args.inventory)
    try:
        report = check_inventory(path, offline=args.offline, home=args.home)
    except InventoryParseError as exc:
        problems: list[Problem] = list(exc.problems)
        if args.json:
            print(json.dumps(parse_failure_dict(path, problems), indent=2))
        else:
            console = Console(stderr=True, highlight=False, soft_wrap=True)
            for p in problems:
                console.print(f"[bold red]error[/]: {_escape(p.render())}")
            console.print(f"[bold red]cannot parse {_escape(str(path))}[/]")
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        render(report, Console(highlight=False, width=None if sys.stdout.isatty() else 160))
    return 0 if report.ok else 1


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def render(report: CheckReport, console: Console) -> None:
    """Print a report for people: problems, facts against claims, placement, verdict."""
    mode = "offline (hosts not contacted)" if report.offline else "facts gathered through Ansible"
    console.print(f"[bold]Inventory[/] {_escape(report.path)}: {len(report.hosts)} host(s), {mode}")
    if report.problems:
        console.print()
        console.print("[bold]Problems[/]")
        for p in report.problems:
            console.print(f"[{_STYLE[p.severity]}]{p.severity}[/]: {_escape(p.render())}", soft_wrap=True)
    if not report.offline and (report.findings or report.unreachable):
        table = Table(title="Facts against claims", title_justify="left")
        for col in ("host", "item", "status", "claim", "fact", "note"):
            table.add_column(col, overflow="fold")
        for host, why in report.unreachable.items():
            table.add_row(host, "reachable", "[bold red]mismatch[/]", "reachable", "no", _escape(why))
        for f in report.findings:
            table.add_row(
                f.host,
                f.item,
                f"[{_STATUS_STYLE[f.status]}]{f.status}[/]",
                _escape(f.claim),
                _escape(f.fact),
                _escape(f.message),
            )
        console.print()
        console.print(table)
    if report.plan is not None and report.plan.instances:
        table = Table(title="Placement", title_justify="left")
        for col in ("instance", "component", "host", "address", "ports", "arch", "rack", "az", "pool"):
            table.add_column(col, overflow="fold")
        for i in report.plan.instances:
            ports = " ".join(f"{k}={v}" for k, v in i.ports.items()) or "-"
            pool = f"{i.pool} ({i.accelerator})" if i.pool else "-"
            table.add_row(
                i.name, i.component, i.host, i.address, ports, i.arch or "-", i.rack or "-", i.az or "-", pool
            )
        console.print()
        console.print(table)
        console.print("Ports to let in (opened by `up` where firewalld or ufw runs):")
        for host, host_ports in report.plan.open_ports().items():
            console.print(f"  {host}: tcp {', '.join(map(str, host_ports))}", highlight=False)
    counts = {s: sum(1 for p in report.problems if p.severity == s) for s in ("error", "warning", "info")}
    verdict = "[bold green]OK[/]" if report.ok else "[bold red]FAILED[/]"
    console.print()
    console.print(
        f"{verdict}: {counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} note(s)"
    )
