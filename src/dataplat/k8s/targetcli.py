"""``dataplat up|status|down --target k8s``: the platform in a Kubernetes cluster.

    dataplat up     --target k8s [-i INV] [--context C] [--kubeconfig F] [--namespace N]
                    [--dry-run] [--force-conflicts] [--no-prune] [--no-wait] [--timeout S] [--json]
    dataplat status --target k8s [-i INV] [--context C] [--namespace N] [--json]
    dataplat down   --target k8s [-i INV] [--context C] [--namespace N] [--purge] [--json]

The manifests are rendered from ``charts/`` for the inventory exactly as ``dataplat render``
does (problems stop the command before the cluster is touched), then applied, inspected or
deleted through :mod:`dataplat.k8s.applier`. The local target stays the default;
:func:`add_target_options` adds these options to the local commands' parsers and sends a
``--target k8s`` run here.

Exit codes: 0 done / healthy, 1 failed / not healthy / problems in the inventory (a
missing operator, an apply conflict, a readiness timeout), 2 bad usage or no cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from dataplat.config import resolve_inventory

__all__ = ["TARGETS", "add_cluster_arguments", "add_target_options", "cmd_down", "cmd_status", "cmd_up"]

TARGETS = ("local", "k8s")

_K8S_ONLY = {
    "up": (
        "context",
        "kubeconfig",
        "namespace",
        "dry_run",
        "force_conflicts",
        "no_prune",
        "no_wait",
        "timeout",
    ),
    "status": ("context", "kubeconfig", "namespace"),
    "down": ("context", "kubeconfig", "namespace", "timeout"),
}


def add_cluster_arguments(group: Any) -> None:
    """``--context``, ``--kubeconfig`` and ``--namespace``: which cluster and namespace (the
    same options for up/status/down and for drills on the cluster)."""
    group.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    group.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"
    )
    group.add_argument(
        "--namespace",
        default=None,
        help="namespace of the platform (default: DATAPLAT_NAMESPACE, else dataplat)",
    )


def add_target_options(
    up: argparse.ArgumentParser, status: argparse.ArgumentParser, down: argparse.ArgumentParser
) -> None:
    """Add ``--target`` and the cluster options to the parsers of ``up``, ``status`` and ``down``,
    and route ``--target k8s`` to this module (the local command runs otherwise)."""
    for name, parser, k8s_func in (
        ("up", up, cmd_up),
        ("status", status, cmd_status),
        ("down", down, cmd_down),
    ):
        group = parser.add_argument_group("Kubernetes target (--target k8s)")
        group.add_argument(
            "--target",
            choices=TARGETS,
            default=os.environ.get("DATAPLAT_TARGET", "local"),
            help="local: the embedded platform through Ansible (default; DATAPLAT_TARGET); "
            "k8s: the manifests of charts/ in a Kubernetes cluster",
        )
        add_cluster_arguments(group)
        group.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="seconds to wait for readiness (up, default 600) or for deletions (down, default 300)",
        )
        if name == "up":
            group.add_argument(
                "--dry-run",
                action="store_true",
                help="print the diff against the live objects, change nothing",
            )
            group.add_argument(
                "--force-conflicts",
                action="store_true",
                help="take over fields another field manager owns (server-side apply force)",
            )
            group.add_argument(
                "--no-prune",
                action="store_true",
                help="keep the platform's objects that are no longer rendered",
            )
            group.add_argument(
                "--no-wait", action="store_true", help="apply and return without waiting for readiness"
            )
        parser.set_defaults(func=_dispatch(name, parser.get_default("func"), k8s_func))


def _dispatch(
    name: str, local: Callable[[argparse.Namespace], int], k8s: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if args.target == "k8s":
            if getattr(args, "home", None):
                print(
                    "dataplat: error: --home is for the local target; a cluster keeps its state itself",
                    file=sys.stderr,
                )
                return 2
            return k8s(args)
        given = [
            f"--{o.replace('_', '-')}" for o in _K8S_ONLY[name] if getattr(args, o, None) not in (None, False)
        ]
        if given:
            print(f"dataplat: error: {', '.join(given)} need --target k8s", file=sys.stderr)
            return 2
        return local(args)

    return run


def _namespace(args: argparse.Namespace) -> str:
    return str(args.namespace or os.environ.get("DATAPLAT_NAMESPACE") or "dataplat")


def _console(args: argparse.Namespace) -> Any:
    from rich.console import Console

    return Console(stderr=True, quiet=bool(getattr(args, "json", False)), highlight=False, soft_wrap=True)


def _render(args: argparse.Namespace) -> Any:
    """The render of the inventory for the namespace; None (problems printed) when it has errors.

    Called after :func:`_connect` (which only reads), so a missing or unreachable cluster is
    reported before the slower render, and before anything is written."""
    from dataplat.k8s.render import render_inventory

    inventory = resolve_inventory(args.inventory)
    result = render_inventory(inventory, namespace=_namespace(args))
    if not result.ok:
        for problem in result.problems:
            if problem.is_error:
                print(f"{problem.severity}: {problem.render()}", file=sys.stderr)
        print(
            f"dataplat: the inventory {inventory} does not render; the cluster was not touched",
            file=sys.stderr,
        )
        return None
    return result


def _connect(args: argparse.Namespace) -> Any:
    from dataplat.k8s.cluster import connect

    return connect(args.context, args.kubeconfig)


_STYLE = {
    "create": "green",
    "update": "yellow",
    "prune": "red",
    "delete": "red",
    "ready": "green",
    "present": "green",
    "progressing": "yellow",
    "missing": "red",
    "failed": "bold red",
}


def cmd_up(args: argparse.Namespace) -> int:
    """Render, diff, apply, prune, wait; or with --dry-run print the diff only."""
    from dataplat.k8s import applier

    cluster = _connect(args)
    result = _render(args)
    if result is None:
        return 1
    console = _console(args)
    ns = _namespace(args)
    console.print(f"[bold]cluster[/] {cluster.host} ({cluster.source}), namespace {ns}")
    if args.force_conflicts and not args.dry_run:
        console.print("[yellow]--force-conflicts: fields other managers own are taken over for dataplat[/]")

    def on_step(action: str, label: str, detail: str) -> None:
        style = _STYLE.get(action, "white")
        console.print(f"  [{style}]{action:9}[/] {label}" + (f" [dim]({detail})[/]" if detail else ""))

    def on_ready(r: Any) -> None:
        word = "ready" if r.ok else ("failed" if r.state == "failed" else "waiting")
        console.print(f"  [{_STYLE.get(r.state, 'white')}]{word:9}[/] {r.label}: {r.summary}")

    up = applier.up(
        cluster,
        result.objects,
        ns,
        dry_run=args.dry_run,
        force=args.force_conflicts,
        prune=not args.no_prune,
        wait=not args.no_wait,
        timeout=args.timeout if args.timeout is not None else 600.0,
        on_step=on_step,
        on_ready=on_ready,
    )
    if args.json:
        print(json.dumps(up.to_dict(), indent=2, ensure_ascii=False))
        return 0 if up.ok else 1
    if args.dry_run:
        print(up.diff.render())
        console.print("dry run: nothing was changed")
        return 0
    s = up.diff.summary()
    if up.ok:
        waited = f"; ready in {up.readiness.seconds:.1f} s" if up.readiness else " (not waited for)"
        console.print(
            f"[green]up[/]: {s['create']} created, {s['update']} updated, {len(up.pruned)} pruned, "
            f"{s['unchanged']} unchanged{waited}"
        )
        console.print(f"see it with: [bold]dataplat status --target k8s[/] --namespace {ns}")
        return 0
    console.print(f"[bold red]not ready[/]: {len(up.applied)} applied, {len(up.pruned)} pruned")
    print(f"dataplat: {up.error}", file=sys.stderr)
    return 1


def cmd_status(args: argparse.Namespace) -> int:
    """Every workload's readiness, the warehouse primary and the autoscalers, from the cluster."""
    from dataplat.k8s.applier import cluster_status

    cluster = _connect(args)
    result = _render(args)
    if result is None:
        return 1
    report = cluster_status(cluster, result.manifests, _namespace(args))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return 0 if report.healthy else 1
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 160  # logs and pipes: whole names and messages rather than 80 columns
    table = Table(title=f"dataplat in {cluster.host}, namespace {report.namespace}")
    for col in ("component", "object", "state", "ready/desired", "detail"):
        table.add_column(col, overflow="fold")
    for o in report.objects:
        r = o.readiness
        counts = f"{r.ready}/{r.desired}" if r.desired is not None else "-"
        detail = r.summary + ("" if o.rendered else " [not rendered: pruned by the next up]")
        if r.conditions:
            detail += "\n" + "\n".join(r.conditions)
        table.add_row(o.component, r.label, f"[{_STYLE.get(r.state, 'white')}]{r.state}[/]", counts, detail)
    console.print(table)
    console.print(f"warehouse primary: [bold]{report.primary or 'none'}[/]")
    verdict = "[green]healthy[/]" if report.healthy else "[bold red]NOT healthy[/]"
    console.print(f"platform: {verdict}")
    return 0 if report.healthy else 1


def cmd_down(args: argparse.Namespace) -> int:
    """Delete the platform's objects in reverse order; claims and namespace kept unless --purge."""
    from dataplat.k8s.applier import down

    cluster = _connect(args)
    result = _render(args)
    if result is None:
        return 1
    console = _console(args)
    ns = _namespace(args)

    def on_step(action: str, label: str, detail: str) -> None:
        console.print(f"  [red]{action:9}[/] {label}" + (f" [dim]({detail})[/]" if detail else ""))

    res = down(
        cluster,
        result.objects,
        ns,
        purge=args.purge,
        timeout=args.timeout if args.timeout is not None else 300.0,
        on_step=on_step,
    )
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, ensure_ascii=False))
        return 0 if res.ok else 1
    console.print(f"deleted {len(res.deleted)} object(s) in {res.seconds:.1f} s")
    if res.kept_claims:
        console.print(
            f"kept {len(res.kept_claims)} volume claim(s) (--purge deletes them): "
            + ", ".join(c.split("/", 1)[1] for c in res.kept_claims)
        )
    if res.deleted_claims:
        console.print(f"purged {len(res.deleted_claims)} volume claim(s) and the namespace {ns}")
    if res.remaining:
        console.print(f"[bold red]still there after the timeout[/]: {', '.join(res.remaining)}")
        return 1
    return 0
