"""``dataplat inventory rdma|accelerators`` as library calls: run the role, read its report.

The roles write ``<home>/rdma/report.json`` and ``<home>/accelerators/report.json`` (also
during ``dataplat up``); :func:`run_check` runs one of them alone through ansible-runner
(``roles/rdma.yml``, ``roles/accelerators.yml``) and returns the report. When no host
declares what the check is about, nothing is run: the report says ``skipped`` and why.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from dataplat.config import resolve_home
from dataplat.inventory import accelerators, rdma
from dataplat.inventory.loader import load_inventory

Kind = Literal["rdma", "accelerators"]


def report_path(home: Path, kind: Kind) -> Path:
    """Where the role of ``kind`` writes its report."""
    return Path(home) / kind / "report.json"


def read_report(home: Path, kind: Kind) -> dict[str, Any] | None:
    """The last report of ``kind`` under ``home`` (None when there is none)."""
    try:
        return dict(json.loads(report_path(home, kind).read_text()))
    except (OSError, ValueError):
        return None


def run_check(
    kind: Kind,
    inventory_path: str | os.PathLike[str],
    home: str | os.PathLike[str] | None = None,
    perftest: bool = True,
) -> dict[str, Any]:
    """Run the ``kind`` role against every host of the inventory and return its report.

    Contradicted claims do not fail the run here: they are errors in the report (the
    caller decides the exit code from ``report["ok"]``). ``run`` in the result names the
    Ansible run's artefacts; a run that failed for another reason (a host unreachable)
    adds ``run_failures``.
    """
    from dataplat.deploy.runner import run_playbook

    inv = load_inventory(inventory_path)
    first = next(iter(inv.hosts), None)
    resolved = resolve_home(home, inv.declared(first, "dataplat_home") if first else None)
    skip = (rdma.skip_reason if kind == "rdma" else accelerators.skip_reason)(inv)
    path = report_path(resolved, kind)
    if skip is not None:
        report: dict[str, Any] = {
            "kind": kind,
            "inventory": str(inv.path),
            "status": "skipped",
            "reason": skip,
            "ok": True,
            "hosts": {},
            "findings": [],
            "problems": [],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        report["report"] = str(path)
        return report
    extravars: dict[str, Any] = {"dataplat_home": str(resolved), f"{kind}_fail_on_error": False}
    if kind == "rdma":
        extravars["rdma_perftest"] = perftest
    path.unlink(missing_ok=True)
    run = run_playbook(f"{kind}.yml", inv.path, resolved, extravars=extravars, ident_prefix=kind)
    report = read_report(resolved, kind) or {
        "kind": kind,
        "inventory": str(inv.path),
        "status": "failed",
        "reason": "the role wrote no report",
        "ok": False,
        "hosts": {},
        "findings": [],
        "problems": [],
    }
    report["run"] = str(run.artifacts_dir)
    report["report"] = str(path)
    if not run.ok:
        report["ok"] = False
        report["status"] = "failed"
        report["run_failures"] = run.failures
    return report
