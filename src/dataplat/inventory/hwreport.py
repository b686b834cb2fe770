"""What the hardware checks (``roles/rdma``, ``roles/accelerators``) share: their report.

Each check judges the probes of its hosts into findings; :class:`HardwareReport` gathers
them, locates every contradicted claim at the inventory's file, line and field (as
``inventory check`` does) and gives the JSON document the role writes to
``<home>/<kind>/report.json``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dataplat.inventory.facts import Finding
from dataplat.inventory.model import Inventory, Problem

__all__ = ["HardwareReport"]


@dataclass
class HardwareReport:
    """The outcome of one hardware check (written to ``<home>/<kind>/report.json``)."""

    kind: ClassVar[str]
    """``kind`` of the document: the check's name."""

    inventory: str
    status: str
    """``ok``, ``failed`` (an error) or ``skipped`` (no host declares what the check is about)."""
    reason: str = ""
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def _extra(self) -> dict[str, Any]:
        """Fields of a check's own, after ``hosts`` in :meth:`to_dict`."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able mapping."""
        return {
            "kind": self.kind,
            "inventory": self.inventory,
            "status": self.status,
            "reason": self.reason,
            "ok": self.ok,
            "hosts": self.hosts,
            **self._extra(),
            "findings": [f.to_dict() for f in self.findings],
            "problems": [p.to_dict() for p in self.problems],
        }

    def add_findings(
        self, inv: Inventory, host: str, findings: Iterable[Finding], notes: bool = False
    ) -> None:
        """Record the findings of ``host``: a mismatch is an error located at its claim (at the
        host when the claim has no line); with ``notes``, an unverifiable one is an info at the host."""
        findings = list(findings)
        self.findings += findings
        for f in findings:
            if f.status == "mismatch":
                origin = inv.origin(host, f.var or f.item, *f.sub)
                if origin.line == 0:
                    origin = inv.host_origin(host)
                self.problems.append(f.to_problem(origin))
            elif notes and f.status == "unverifiable":
                self.problems.append(inv.host_origin(host).problem("info", f"host {host}: {f.message}"))

    def finish(self) -> None:
        """Drop repeated problems and set ``status`` from them (a skipped check stays skipped)."""
        self.problems = list(dict.fromkeys(self.problems))
        if self.status != "skipped":
            self.status = "ok" if self.ok else "failed"
