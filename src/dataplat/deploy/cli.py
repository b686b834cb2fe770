"""``dataplat up``, ``dataplat status``, ``dataplat down``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from dataplat.config import resolve_home, resolve_inventory


def _progress(console: Any) -> Any:
    """An ansible-runner event handler printing one line per task result."""
    styles = {
        "ok": "green",
        "changed": "yellow",
        "failed": "bold red",
        "skipped": "dim",
        "unreachable": "bold red",
    }

    def on_event(event: dict[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if kind == "playbook_on_play_start":
            console.print(f"[bold]PLAY[/] {data.get('play', '')}")
            return
        status = {
            "runner_on_ok": "ok",
            "runner_on_failed": "failed",
            "runner_on_skipped": "skipped",
            "runner_on_unreachable": "unreachable",
            "runner_item_on_failed": "failed",
        }.get(kind)
        if status is None:
            return
        res = data.get("res", {})
        if status == "ok" and res.get("changed"):
            status = "changed"
        if status == "failed" and data.get("ignore_errors"):
            status = "ok"
        if status == "failed" and res.get("results"):
            return  # a loop's summary: its failed items were shown already
        line = f"  [{styles[status]}]{status:9}[/] {data.get('task', '')} [dim]({data.get('host', '')})[/]"
        console.print(line, highlight=False)
        if status in ("failed", "unreachable"):
            msg = res.get("msg") or res.get("stderr") or ""
            if msg:
                console.print(f"            [red]{str(msg).strip()[:2000]}[/]", highlight=False, markup=False)

    return on_event


def _console(args: argparse.Namespace) -> Any:
    from rich.console import Console

    return Console(stderr=True, quiet=bool(getattr(args, "json", False)))


def cmd_up(args: argparse.Namespace) -> int:
    from dataplat.deploy.api import up

    console = _console(args)
    inventory = resolve_inventory(args.inventory)
    result = up(inventory, args.home, on_event=_progress(console))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        verdict = "[green]up[/]" if result.ok else "[bold red]failed[/]"
        console.print(
            f"{verdict}: {result.run.changed} change(s) in {result.seconds:.1f} s; "
            f"events in {result.run.artifacts_dir}"
        )
        for f in result.run.failures:
            console.print(f"[red]{f['host']}: {f['task']}: {f['msg']}[/]", markup=True, highlight=False)
        if result.ok:
            console.print(
                "see it with: [bold]dataplat status[/]" + (f" --home {result.home}" if args.home else "")
            )
    return 0 if result.ok else 1


def home_of(args: argparse.Namespace) -> Path:
    """--home > DATAPLAT_HOME > the inventory's ``dataplat_home`` > the default."""
    if args.home or os.environ.get("DATAPLAT_HOME"):
        return resolve_home(args.home)
    from dataplat.errors import InventoryError
    from dataplat.inventory.loader import load_inventory

    try:
        inventory = load_inventory(resolve_inventory(args.inventory))
    except (InventoryError, OSError):
        return resolve_home(None)
    first = next(iter(inventory.hosts), None)
    return resolve_home(None, inventory.declared(first, "dataplat_home") if first else None)


def cmd_down(args: argparse.Namespace) -> int:
    from dataplat.deploy.api import down

    console = _console(args)
    home = home_of(args)
    result = down(home, purge=args.purge, on_event=_progress(console))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        if args.purge and result.ok:
            console.print(f"stopped and purged {result.home} in {result.seconds:.1f} s")
        else:
            what = "stopped" if result.ok else "[bold red]failed[/]"
            console.print(f"{what} in {result.seconds:.1f} s; events in {result.run.artifacts_dir}")
    return 0 if result.ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    from dataplat.platform.status import platform_status

    report = platform_status(home_of(args))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        render_status(report)
    return 0 if report.healthy else 1


def render_status(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    colour = {"healthy": "green", "unhealthy": "red", "stopped": "yellow"}
    table = Table(title=f"dataplat platform under {report.home}")
    for col in ("instance", "component", "host", "ports", "pid", "health", "detail"):
        table.add_column(col)
    for c in report.components:
        ports = " ".join(f"{k}={v}" for k, v in c.ports.items())
        table.add_row(
            c.name,
            c.component,
            f"{c.host} ({c.address})",
            ports,
            str(c.pid or "-"),
            f"[{colour.get(c.health, 'white')}]{c.health}[/]",
            c.detail,
        )
    console.print(table)
    wh = report.warehouse
    if wh:
        leader = f"{wh['leader']} on {wh['leader_host']}" if wh.get("leader") else "NONE"
        t = Table(title=f"warehouse: leader {leader}")
        for col in ("member", "host", "role", "state", "timeline", "sync_state", "lag bytes", "replay lag s"):
            t.add_column(col)
        for m in wh["members"]:
            t.add_row(
                m["name"],
                f"{m['host']} ({m['address']})",
                m["role"],
                m["state"],
                str(m["timeline"]),
                str(m["sync_state"] or "-"),
                str(m["lag_bytes"] if m["lag_bytes"] is not None else "-"),
                f"{m['replay_lag_s']:.3f}" if m["replay_lag_s"] is not None else "-",
            )
        console.print(t)
        console.print(f"cluster (read-write): [bold]{wh['cluster_conninfo']}[/]", highlight=False)
        for m in wh["members"]:
            console.print(f"  {m['name']}: {m['conninfo']}", highlight=False)
        console.print(
            f'passwords: {wh["pgpass"]} (mode 0600), e.g. psql "{wh["cluster_conninfo"]}"', highlight=False
        )
        for key in ("error", "replication_error"):
            if key in wh:
                console.print(f"[red]{wh[key]}[/]")
    if report.stream:
        streams = ", ".join(f"{s['name']} ({s['messages']} msgs)" for s in report.stream.get("streams", []))
        console.print(f"stream: {', '.join(report.stream['servers'])}; streams: {streams or 'none'}")
    from dataplat.scaling.supervisor import format_state

    for label, section in (("serving pool", report.serving), ("decision service", report.decision)):
        for doc in section.get("scaling", []):
            lines = format_state(doc)
            console.print(f"{label} {lines[0]}", highlight=False)
            for line in lines[1:]:
                console.print(f"  {line}", highlight=False)
    if report.lake:
        console.print(
            f"lake: {report.lake['catalog_uri']} -> {report.lake['warehouse']} "
            f"(namespace {report.lake['namespace']})"
        )
    verdict = "[green]healthy[/]" if report.healthy else "[bold red]NOT healthy[/]"
    console.print(f"platform: {verdict}")


def register(sub: Any) -> None:
    p = sub.add_parser("up", help="deploy the platform from an inventory (idempotent; repairs)")
    p.add_argument("-i", "--inventory", help="inventory file (default: inventory/local.yml)")
    p.add_argument("--home", help="where the platform keeps its state (default: DATAPLAT_HOME)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("status", help="every component with host, port, pid and health")
    p.add_argument(
        "-i", "--inventory", help="inventory whose dataplat_home to use (default: inventory/local.yml)"
    )
    p.add_argument("--home", help="home of the deployed platform")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("down", help="stop everything dataplat started")
    p.add_argument(
        "-i", "--inventory", help="inventory whose dataplat_home to use (default: inventory/local.yml)"
    )
    p.add_argument("--home", help="home of the deployed platform")
    p.add_argument("--purge", action="store_true", help="also delete the platform's data")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_down)

    from dataplat.k8s.targetcli import add_target_options

    add_target_options(sub.choices["up"], sub.choices["status"], sub.choices["down"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(1)
