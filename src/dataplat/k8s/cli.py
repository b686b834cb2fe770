"""``dataplat render``: the platform's manifests for a target, validated offline.

    dataplat render -i INVENTORY --target k8s -o DIR [--namespace N] [--k8s-version 1.30] [--json]

Exit codes: 0 rendered and valid, 1 problems in the inventory, values or manifests
(every one printed with file, line and field), 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from dataplat.config import resolve_inventory
from dataplat.k8s.render import render_inventory, write_manifests
from dataplat.k8s.validate import DEFAULT_K8S_VERSION

TARGETS = ("k8s",)


def register(subparsers: Any) -> None:
    """Add the ``render`` command to the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "render",
        help="render the platform's manifests for a target (Kubernetes) and validate them offline",
        description="Render charts/ for the inventory and its placement plan, validate every object "
        "(Kubernetes schemas, custom resource schemas in charts/_crds) and write them to DIR.",
    )
    p.add_argument(
        "-i", "--inventory", help="inventory file (default: DATAPLAT_INVENTORY, else inventory/local.yml)"
    )
    p.add_argument("--target", choices=TARGETS, default="k8s", help="what to render for (default: k8s)")
    p.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="write NN-<component>.yaml files here (default: nothing "
        "is written, the manifests are only checked)",
    )
    p.add_argument(
        "--namespace",
        default=os.environ.get("DATAPLAT_NAMESPACE", "dataplat"),
        help="namespace of every object (default: DATAPLAT_NAMESPACE, else dataplat)",
    )
    p.add_argument(
        "--k8s-version",
        default=os.environ.get("DATAPLAT_K8S_VERSION", DEFAULT_K8S_VERSION),
        help=f"Kubernetes version to validate against (default: {DEFAULT_K8S_VERSION})",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render, validate, write; print problems or a summary."""
    inventory = resolve_inventory(args.inventory)
    result = render_inventory(inventory, namespace=args.namespace, k8s_version=args.k8s_version)
    if result.ok and args.output:
        write_manifests(result, args.output)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 0 if result.ok else 1
    for problem in result.problems:
        stream = sys.stderr if problem.is_error else sys.stdout
        print(f"{problem.severity}: {problem.render()}", file=stream)
    if not result.ok:
        errors = sum(1 for p in result.problems if p.is_error)
        print(f"dataplat: {errors} error(s); nothing written", file=sys.stderr)
        return 1
    kinds: dict[str, int] = {}
    for m in result.manifests:
        kinds[m.kind] = kinds.get(m.kind, 0) + 1
    counts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    where = f" to {args.output}" if args.output else " (not written: no -o DIR)"
    print(f"{len(result.manifests)} objects valid against Kubernetes {result.k8s_version}{where}: {counts}")
    for f in result.files:
        print(f"  {f}")
    return 0
