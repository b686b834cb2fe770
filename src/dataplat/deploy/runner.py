"""Run Ansible playbooks through ansible-runner and keep every event.

Each run gets its own private data directory ``<home>/runs/<ident>/`` where
ansible-runner keeps ``artifacts/<ident>/job_events/*.json``, stdout and the
final stats; :class:`RunResult` exposes what callers need from them.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataplat.config import ROLES_DIR

FAILURE_EVENTS = ("runner_on_failed", "runner_on_unreachable", "runner_item_on_failed")

EventHandler = Callable[[dict[str, Any]], None]


@dataclass
class HostStats:
    """Play recap counters of one host."""

    ok: int = 0
    changed: int = 0
    failures: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass
class RunResult:
    """What a playbook run left behind."""

    ident: str
    rc: int
    status: str
    artifacts_dir: Path
    stats: dict[str, HostStats] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.status == "successful"

    @property
    def changed(self) -> int:
        return sum(s.changed for s in self.stats.values())

    def events(self) -> list[dict[str, Any]]:
        """Every Ansible event of the run, in order, read from the artefacts."""
        out = []
        events_dir = self.artifacts_dir / "job_events"
        for path in sorted(events_dir.glob("*.json"), key=lambda p: int(p.name.split("-", 1)[0])):
            out.append(json.loads(path.read_text()))
        return out


def new_ident(prefix: str) -> str:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{prefix}"


def _collect(ident: str, private: Path, runner: Any) -> RunResult:
    stats: dict[str, HostStats] = {}
    raw = runner.stats or {}
    for key, attr in (
        ("ok", "ok"),
        ("changed", "changed"),
        ("failures", "failures"),
        ("dark", "unreachable"),
        ("skipped", "skipped"),
    ):
        for host, count in (raw.get(key) or {}).items():
            setattr(stats.setdefault(host, HostStats()), attr, count)
    failures = []
    facts: dict[str, dict[str, Any]] = {}
    for ev in runner.events:
        data = ev.get("event_data", {})
        if ev.get("event") in FAILURE_EVENTS and not data.get("ignore_errors"):
            res = data.get("res", {})
            if res.get("results"):  # a loop: its items said what failed
                continue
            failures.append(
                {
                    "host": data.get("host"),
                    "task": data.get("task"),
                    "msg": res.get("msg") or res.get("stderr") or res.get("reason") or "",
                }
            )
        if ev.get("event") == "runner_on_ok":
            res = data.get("res", {})
            if "dataplat_facts" in res.get("ansible_facts", {}):
                facts[data.get("host")] = res["ansible_facts"]["dataplat_facts"]
    return RunResult(
        ident=ident,
        rc=int(runner.rc),
        status=str(runner.status),
        artifacts_dir=private / "artifacts" / ident,
        stats=stats,
        failures=failures,
        facts=facts,
    )


def run_playbook(
    playbook: str | os.PathLike[str],
    inventory: str | os.PathLike[str],
    home: Path,
    *,
    extravars: Mapping[str, Any] | None = None,
    ident_prefix: str = "run",
    limit: str | None = None,
    tags: str | None = None,
    on_event: EventHandler | None = None,
    quiet: bool = True,
) -> RunResult:
    """Run ``playbook`` (a path, or a name under ``roles/``) against ``inventory``.

    ``on_event`` sees every Ansible event as it happens (progress display);
    the artefacts stay under ``<home>/runs/<ident>/``.
    """
    import ansible_runner

    path = Path(playbook)
    if not path.is_absolute():
        path = ROLES_DIR / path
    ident = new_ident(ident_prefix)
    private = Path(home) / "runs" / ident
    private.mkdir(parents=True, exist_ok=True)
    os.chmod(private, 0o700)
    envvars = {
        "ANSIBLE_ROLES_PATH": str(ROLES_DIR),
        "ANSIBLE_LIBRARY": str(ROLES_DIR / "library"),
        "ANSIBLE_MODULE_UTILS": str(ROLES_DIR / "module_utils"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_PIPELINING": "1",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(private / "tmp"),
        # the playbook and modules import dataplat from this interpreter
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }

    def handler(event: dict[str, Any]) -> bool:
        if on_event is not None:
            on_event(event)
        return True

    runner = ansible_runner.run(
        private_data_dir=str(private),
        ident=ident,
        playbook=str(path),
        inventory=str(Path(inventory).resolve()),
        extravars=dict(extravars or {}),
        envvars=envvars,
        limit=limit,
        tags=tags,
        quiet=quiet,
        event_handler=handler,
        rotate_artifacts=0,
        json_mode=False,
    )
    # ansible-runner copies nothing we need into env/ except our extravars: they may
    # hold paths but never secrets; still keep the folder private.
    shutil.rmtree(private / "tmp", ignore_errors=True)
    return _collect(ident, private, runner)
