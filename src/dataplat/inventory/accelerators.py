"""The accelerator check of ``roles/accelerators``: drivers, runtimes and device counts.

On every host that declares ``accelerators`` the role runs
``nvidia-smi --query-gpu=index,name,uuid,driver_version,memory.total --format=csv`` and
``npu-smi info`` where they exist and hands the raw output to the controller;
:func:`analyse` says, per declared kind, whether the driver answers and whether the
number of devices is exactly the declared count (a different count is an error
located at the inventory's file, line and field, like ``inventory check``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from dataplat.inventory.facts import (
    Finding,
    Gpu,
    HostFacts,
    _compare_accelerators,
    parse_npu_smi,
    parse_tool,
    split_probe,
    tool_note,
)
from dataplat.inventory.hwreport import HardwareReport
from dataplat.inventory.model import Inventory

GPU_QUERY = "index,name,uuid,driver_version,memory.total"
"""The fields the role asks nvidia-smi for (``--query-gpu``)."""


@dataclass(frozen=True)
class GpuRow:
    """One row of ``nvidia-smi --query-gpu=... --format=csv``."""

    index: int | None
    name: str
    uuid: str | None
    driver_version: str | None
    memory_mib: int | None


def parse_gpu_csv(text: str) -> list[GpuRow]:
    """``nvidia-smi --query-gpu=FIELDS --format=csv`` (with its header line) -> rows.

    The header names each field, with its unit in brackets (``memory.total [MiB]``); values
    carry the unit (``81920 MiB``). Lines that are not rows of that header (an error
    message, a blank line) are ignored.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.split(",")[0].strip() in ("index", "name")), None)
    if start is None:
        return []
    header = [h.strip().split(" [")[0] for h in lines[start].split(",")]
    rows: list[GpuRow] = []
    for values in csv.reader(io.StringIO("\n".join(lines[start + 1 :])), skipinitialspace=True):
        if len(values) != len(header):
            continue
        row = dict(zip(header, (v.strip() for v in values), strict=True))
        mem = row.get("memory.total", "").split()[0] if row.get("memory.total") else ""
        idx = row.get("index", "")
        rows.append(
            GpuRow(
                int(idx) if idx.isdigit() else None,
                row.get("name", ""),
                row.get("uuid"),
                row.get("driver_version"),
                int(mem) if mem.isdigit() else None,
            )
        )
    return rows


@dataclass
class AcceleratorReport(HardwareReport):
    """The outcome of ``roles/accelerators`` (written to ``<home>/accelerators/report.json``);
    ``skipped`` when no host declares accelerators."""

    kind: ClassVar[str] = "accelerators"


def declares(claims: Mapping[str, Any]) -> bool:
    """Whether a host's variables declare at least one accelerator."""
    return any(
        isinstance(a, Mapping) and int(a.get("count", 0) or 0) > 0 for a in claims.get("accelerators") or []
    )


def accelerator_hosts(inv: Inventory) -> list[str]:
    """The hosts that declare accelerators, in inventory order."""
    return [h for h, host in inv.hosts.items() if declares(host.vars)]


def skip_reason(inv: Inventory) -> str | None:
    """Why the accelerator check has nothing to do (None when some host declares accelerators)."""
    if accelerator_hosts(inv):
        return None
    return f"no host of {inv.path.name} declares accelerators: nothing to check"


def host_facts(probe: str) -> tuple[HostFacts, dict[str, Any]]:
    """The facts of a probe of ``roles/accelerators`` and what the report shows of them."""
    s = split_probe(probe)
    nv = parse_tool(s.get("nvidia-smi", "@@@absent"))
    npu = parse_tool(s.get("npu-smi", "@@@absent"))
    gpus: list[Gpu] | None = None
    rows: list[GpuRow] = []
    gpu_note = tool_note(nv, "nvidia-smi")
    if not gpu_note:
        rows = parse_gpu_csv(nv.text)
        gpus = [Gpu(r.name, round((r.memory_mib or 0) / 1024, 1)) for r in rows]
    npus = None
    npu_note = tool_note(npu, "npu-smi")
    if not npu_note:
        npus = parse_npu_smi(npu.text)
    version = next(
        (line.split("Version:")[1].strip(" |") for line in npu.text.splitlines() if "Version:" in line), None
    )
    shown = {
        "nvidia": {
            "driver": sorted({r.driver_version for r in rows if r.driver_version}),
            "devices": [r.__dict__ for r in rows],
            "note": gpu_note,
        },
        "ascend": {
            "driver": [version] if version else [],
            "devices": [n.__dict__ for n in npus or []],
            "note": npu_note,
        },
    }
    return HostFacts(gpus=gpus, gpu_note=gpu_note, npus=npus, npu_note=npu_note), shown


def _exact_count(host: str, claims: Mapping[str, Any], facts: HostFacts) -> list[Finding]:
    """More devices than declared: also a mismatch here (``inventory check`` only flags fewer)."""
    out: list[Finding] = []
    for kind, found, tool in (("nvidia", facts.gpus, "nvidia-smi"), ("ascend", facts.npus, "npu-smi")):
        declared = [
            (i, a)
            for i, a in enumerate(claims.get("accelerators") or [])
            if isinstance(a, Mapping) and a.get("kind") == kind
        ]
        want = sum(int(a.get("count", 0) or 0) for _, a in declared)
        if declared and found is not None and len(found) > want:
            out.append(
                Finding(
                    host,
                    f"accelerators:{kind}",
                    "mismatch",
                    str(want),
                    str(len(found)),
                    f"declared {want} {kind} accelerators but {tool} shows {len(found)}",
                    f"set count: {len(found)} (placement and scheduling use the declared count)",
                    "accelerators",
                    (declared[0][0], "count"),
                )
            )
    return out


def analyse(inv: Inventory, results: Sequence[Mapping[str, Any]]) -> AcceleratorReport:
    """Judge the probes in ``results`` (``host`` and ``probe`` each) against the claims of ``inv``."""
    reason = skip_reason(inv)
    report = AcceleratorReport(str(inv.path), "skipped" if reason else "ok", reason or "")
    for result in results:
        host = str(result.get("host"))
        if host not in inv.hosts or not declares(inv.hosts[host].vars):
            continue
        claims = inv.hosts[host].vars
        facts, shown = host_facts(str(result.get("probe", "")))
        kinds = {a.get("kind") for a in claims.get("accelerators") or [] if isinstance(a, Mapping)}
        findings = [
            f
            for f in _compare_accelerators(host, claims, facts)
            if f.item.split(":", 1)[1] in kinds or f.status != "unverifiable"
        ]
        findings += _exact_count(host, claims, facts)
        report.add_findings(inv, host, findings)
        report.hosts[host] = {k: v for k, v in shown.items() if k in kinds}
    report.finish()
    return report
