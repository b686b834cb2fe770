#!/usr/bin/python
"""Ansible module: judge the RDMA or accelerator probes of a play and write the report."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dataplat_hwcheck
short_description: Compare hardware probes with the inventory's claims and write the report
description:
  - Runs on the controller (run_once, delegate_to localhost) after roles/rdma or
    roles/accelerators probed their hosts; thin layer over dataplat.inventory.rdma /
    dataplat.inventory.accelerators.
  - Writes the report as JSON (atomically) and fails, naming the inventory's file, line and
    field of every claim the facts contradict, when I(fail_on_error) is set.
  - Never reports a change: the report is an observation, not a configuration of the hosts.
options:
  kind: {description: rdma or accelerators., required: true, type: str}
  inventory: {description: The inventory file the play runs from., required: true, type: path}
  report: {description: Where the JSON report goes., required: true, type: path}
  results: {description: One mapping per checked host (host, probe, perftest)., type: list, elements: dict, default: []}
  fail_on_error: {description: Fail when the facts contradict a claim., type: bool, default: true}
"""

import json
import os
import tempfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            kind=dict(type="str", required=True, choices=["rdma", "accelerators"]),
            inventory=dict(type="path", required=True),
            report=dict(type="path", required=True),
            results=dict(type="list", elements="dict", default=[]),
            fail_on_error=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    try:
        from dataplat.inventory import accelerators, rdma
        from dataplat.inventory.loader import load_inventory
    except ImportError as exc:  # pragma: no cover - only on a controller without dataplat
        module.fail_json(msg=f"dataplat is not installed for {module._name}'s interpreter: {exc}")
        return
    p = module.params
    inv = load_inventory(p["inventory"])
    analyse = rdma.analyse if p["kind"] == "rdma" else accelerators.analyse
    report = analyse(inv, p["results"]).to_dict()
    path = Path(p["report"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report-")
    with os.fdopen(fd, "w") as fh:
        json.dump(report, fh, indent=2)
    os.replace(tmp, path)
    errors = [pr for pr in report["problems"] if pr["severity"] == "error"]
    if errors and p["fail_on_error"]:
        lines = [
            f"{e['file']}:{e['line']}:{e['column']}: {e['field']}: {e['message']}"
            + (f" (fix: {e['hint']})" if e["hint"] else "")
            for e in errors
        ]
        module.fail_json(
            msg=f"{p['kind']} check failed ({path}):\n" + "\n".join(lines),
            report=str(path),
            problems=errors,
            changed=False,
        )
    module.exit_json(changed=False, report=str(path), status=report["status"], problems=report["problems"])


if __name__ == "__main__":
    main()
