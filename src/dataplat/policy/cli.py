"""``dataplat policy plan|apply|verify|audit|rollback``: masking and access policies as code."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dataplat.config import PROJECT_ROOT

DEFAULT_POLICIES = PROJECT_ROOT / "policies"


def register(subparsers: Any) -> None:
    """Add ``policy`` and its actions to the top-level sub-parsers."""
    policy = subparsers.add_parser("policy", help="masking and access policies: plan, apply, verify, audit")
    sub = policy.add_subparsers(dest="policy_command", metavar="ACTION")
    policy.set_defaults(func=lambda args: (policy.print_help(sys.stderr), 2)[1])

    def common(p: argparse.ArgumentParser, policies: bool = True) -> None:
        if policies:
            p.add_argument(
                "-p",
                "--policies",
                default=str(DEFAULT_POLICIES),
                help=f"policy folder or file (default {DEFAULT_POLICIES})",
            )
        p.add_argument(
            "--home", default=None, help="dataplat home of the deployed platform (default: see config)"
        )
        p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    def masks_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--masks",
            choices=("auto", "native", "sql"),
            default="auto",
            help="mask functions: the C extension dataplat_mask where the warehouse has it (auto, "
            "default), required (native), or SQL only (sql)",
        )

    p = sub.add_parser("plan", help="what apply would change, against what is in force (changes nothing)")
    common(p)
    p.add_argument("--sql", action="store_true", help="also print the compiled SQL as a unified diff")
    p.add_argument("--offline", action="store_true", help="only validate and compile, no warehouse")
    masks_arg(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("apply", help="compile and put the policies in force in one transaction")
    common(p)
    p.add_argument("--note", default="", help="a note recorded with the version")
    masks_arg(p)
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("verify", help="query as every role; exit 0 only when nothing leaks")
    common(p)
    p.add_argument("--role", action="append", help="only this role (repeatable)")
    p.add_argument("--sample", type=int, default=200, help="rows sampled per table (default 200)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("audit", help="version history and the role x column matrix of the policy in force")
    common(p, policies=False)
    p.add_argument("--csv", metavar="FILE", help="also write the matrix as CSV to FILE")
    p.add_argument("--all-columns", action="store_true", help="every column, not only classified ones")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("rollback", help="re-apply the previous version (recorded as a new version)")
    common(p, policies=False)
    p.add_argument("--to", type=int, default=None, help="roll back to this version instead")
    p.set_defaults(func=cmd_rollback)


def _target(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from dataplat.config import resolve_home
    from dataplat.policy.apply import Target

    return Target.from_home(resolve_home(args.home))


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from dataplat.policy.loader import load_policies
    from dataplat.policy.model import PolicyError

    try:
        return load_policies(Path(args.policies))
    except PolicyError as exc:
        if args.json:
            print(json.dumps({"ok": False, "problems": [p.as_dict() for p in exc.problems]}, indent=2))
        raise


def _emit(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    print(json.dumps(doc, indent=2, default=str) if args.json else text)


def cmd_plan(args: argparse.Namespace) -> int:
    """Validate, compile and diff against the version in force."""
    from dataplat.policy.apply import in_force, native_masks
    from dataplat.policy.audit import diff

    policy = _load(args)
    current = None if args.offline else in_force(_target(args))
    native = args.masks == "native" or (not args.offline and native_masks(_target(args), args.masks))
    old = current.policy() if current else None
    old_sql = ";\n\n".join(current.statements) + ";\n" if current else ""
    plan = diff(old, policy, old_sql, current.version if current else None, native=native)
    head = (
        f"in force: version {current.version} ({current.applied_at}, {current.applied_by})"
        if current
        else "in force: nothing"
    )
    body = "\n".join(f"  {c}" for c in plan.changes) if plan.changed else "  no changes"
    text = f"{head}\n{body}" + (f"\n\n{plan.sql_diff}" if args.sql and plan.sql_diff else "")
    _emit(args, plan.as_dict(), text)
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    """Apply in one transaction; changed=false when already in force."""
    from dataplat.policy.apply import apply

    result = apply(_load(args), _target(args), note=args.note, masks=args.masks)
    text = (
        f"applied: version {result.version} (was {result.previous}); " + "; ".join(result.reasons)
        if result.changed
        else f"no change: version {result.version} is in force"
    )
    _emit(args, result.as_dict(), text)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Query as every role; exit 1 on any LEAK or FAIL."""
    from dataplat.policy.verify import verify

    report = verify(_load(args), _target(args), sample=args.sample, roles=args.role)
    lines = [report.table()]
    for f in report.problems():
        lines.append(f"{f.status}: {f.role} ({f.login}) {f.check}: {f.detail}")
    lines.append("verify: " + ("nothing leaks" if report.ok else f"{len(report.problems())} problem(s)"))
    _emit(args, report.as_dict(), "\n".join(lines))
    return 0 if report.ok else 1


def cmd_audit(args: argparse.Namespace) -> int:
    """History and the matrix of the policy in force."""
    from dataplat.policy.apply import history
    from dataplat.policy.audit import matrix, matrix_csv, matrix_text
    from dataplat.policy.model import PolicyApplyError

    versions = history(_target(args))
    if not versions:
        raise PolicyApplyError(
            "no policy has been applied to this warehouse yet (run `dataplat policy apply`)"
        )
    current = versions[-1]
    policy = current.policy()
    cells = matrix(policy, classified_only=not args.all_columns) if policy else []
    if args.csv:
        Path(args.csv).write_text(matrix_csv(matrix(policy) if policy else []))
    doc = {
        "in_force": current.version,
        "history": [v.summary() for v in versions],
        "matrix": [c.as_dict() for c in cells],
    }
    hist = "\n".join(
        f"  v{v.version}  {v.applied_at}  {v.action:<8}  {v.applied_by}  sha256 {v.source_sha256[:12]}"
        + (f"  ({v.note})" if v.note else "")
        for v in versions
    )
    text = f"history:\n{hist}\n\nin force: version {current.version}\n{matrix_text(cells) if cells else ''}"
    _emit(args, doc, text)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Back to the previous version."""
    from dataplat.policy.apply import rollback

    result = rollback(_target(args), args.to)
    _emit(
        args,
        result.as_dict(),
        f"rolled back: version {result.version} is in force ({'; '.join(result.reasons)})",
    )
    return 0
