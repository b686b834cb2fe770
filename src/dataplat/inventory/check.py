"""``inventory check`` as a library call: validate, compare claims with facts, plan.

:func:`check_inventory` never raises for a wrong inventory: every problem ends up
in :attr:`CheckReport.problems`; only an inventory that cannot be parsed at all
raises :class:`~dataplat.inventory.model.InventoryParseError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataplat.config import resolve_home
from dataplat.inventory.facts import FactsRun, Finding, HostFacts, compare, gather_facts
from dataplat.inventory.loader import validate_inventory
from dataplat.inventory.model import Inventory, Problem
from dataplat.inventory.placement import Plan, plan


@dataclass
class CheckReport:
    """Everything ``inventory check`` found.

    ``problems``: errors, warnings and notes (validation, placement, facts), sorted;
    ``findings``: every claim compared with the facts (empty offline); ``plan``: the
    placement (None only when the inventory could not be built).
    """

    path: str
    offline: bool
    problems: list[Problem]
    plan: Plan | None
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, HostFacts] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    facts_run: str = ""
    """Artefacts folder of the facts playbook run (online only)."""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when nothing is an error (warnings and notes do not count)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able mapping of the whole report."""
        return {
            "inventory": self.path,
            "ok": self.ok,
            "parsed": True,
            "offline": self.offline,
            "counts": {
                s: sum(1 for p in self.problems if p.severity == s) for s in ("error", "warning", "info")
            },
            "hosts": list(self.hosts),
            "problems": [p.to_dict() for p in self.problems],
            "facts": {h: f.to_dict() for h, f in self.facts.items()},
            "unreachable": dict(self.unreachable),
            "findings": [f.to_dict() for f in self.findings],
            "plan": self.plan.to_dict() if self.plan is not None else None,
            "open_ports": self.plan.open_ports() if self.plan is not None else {},
            "facts_run": self.facts_run,
        }


def _facts_problems(inv: Inventory, run: FactsRun) -> tuple[list[Finding], list[Problem]]:
    findings: list[Finding] = []
    problems: list[Problem] = []
    for host in inv.hosts:
        if host in run.unreachable:
            problems.append(
                inv.host_origin(host).problem(
                    "error",
                    f"host {host} gave no facts: {run.unreachable[host]}",
                    "check that the host is up, reachable over SSH as ansible_user, and has Python",
                )
            )
            continue
        host_facts = run.facts.get(host)
        if host_facts is None:
            continue
        for finding in compare(host, inv.hosts[host].vars, host_facts):
            findings.append(finding)
            if finding.status == "mismatch":
                origin = inv.origin(host, finding.var or finding.item, *finding.sub)
                if origin.line == 0:
                    origin = inv.host_origin(host)
                problems.append(finding.to_problem(origin))
    return findings, problems


def check_inventory(
    path: str | os.PathLike[str], offline: bool = True, home: str | os.PathLike[str] | None = None
) -> CheckReport:
    """Validate the inventory at ``path``, plan placement and, unless ``offline``,
    gather every host's facts through Ansible and compare them with the claims.

    ``home`` is the ``--home`` flag (the facts run keeps its artefacts under
    ``<home>/runs/``); it is resolved with :func:`dataplat.config.resolve_home`.
    Facts are not gathered while the inventory has errors.
    """
    inventory, problems = validate_inventory(path)
    report = CheckReport(path=str(path), offline=offline, problems=list(problems), plan=None)
    if inventory is None:
        return report
    report.hosts = list(inventory.hosts)
    report.plan = plan(inventory)
    if not offline:
        if report.errors:
            report.problems.append(
                Problem(
                    "info",
                    str(path),
                    0,
                    0,
                    "",
                    "facts were not gathered because the inventory has errors",
                    "fix the errors above, then run the check again",
                )
            )
        else:
            first = next(iter(inventory.hosts), None)
            resolved = resolve_home(home, inventory.declared(first, "dataplat_home"))
            run = gather_facts(inventory.path, resolved, hosts=list(inventory.hosts))
            report.facts = run.facts
            report.unreachable = run.unreachable
            report.facts_run = run.artifacts_dir
            report.findings, extra = _facts_problems(inventory, run)
            report.problems.extend(extra)
    order = {"error": 0, "warning": 1, "info": 2}
    report.problems = sorted(
        dict.fromkeys(report.problems),
        key=lambda p: (order[p.severity], p.file != str(path), p.file, p.line, p.column),
    )
    return report


def parse_failure_dict(path: str | os.PathLike[str], problems: list[Problem]) -> dict[str, Any]:
    """The JSON shape of a report for an inventory that could not be parsed."""
    return {
        "inventory": str(Path(path)),
        "ok": False,
        "parsed": False,
        "counts": {"error": len(problems), "warning": 0, "info": 0},
        "problems": [p.to_dict() for p in problems],
        "plan": None,
    }
