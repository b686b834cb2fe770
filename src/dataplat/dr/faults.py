"""Faults the drills inject, and how a lost process is brought back.

Nothing here waits for recovery: the platform (Patroni, the daemons) recovers by
itself; the drill only measures. The one exception is a lost *host*: nothing on it
survives, so :func:`restart_daemon` plays the host coming back and its service
manager starting the daemon again, exactly as ``dataplat up`` started it.

What a lost host takes with it depends on the placement (:func:`lost_host`): on a
multi-host platform every dataplat daemon placed on the primary's host dies (its
Patroni member, a Raft witness, nats-server, serving pools, decision service,
exporter), each with all its processes; on the one-machine platform, where the other
members share the host, the member's own processes play the host.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplat.deploy import daemon
from dataplat.dr.context import DrillError
from dataplat.platform.endpoints import Platform


@dataclass(frozen=True)
class Injected:
    """A fault as it was injected: when, what, which processes."""

    t: float
    kind: str
    target: str
    pids: tuple[int, ...] = ()
    detail: str = ""


def pgdata(platform: Platform, member: str) -> Path:
    """The data directory of a warehouse member, as roles/warehouse lays it out."""
    return platform.home / "warehouse" / member / "pgdata"


def postmaster_pid(platform: Platform, member: str) -> int:
    """The postmaster's pid from ``<pgdata>/postmaster.pid``."""
    path = pgdata(platform, member) / "postmaster.pid"
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise DrillError(f"cannot read the postmaster pid of {member} from {path}: {exc}") from None


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children ...), read from /proc once."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    out: list[int] = []
    frontier = [pid]
    while frontier:
        below = [child for child, ppid in parent.items() if ppid in frontier]
        out.extend(below)
        frontier = below
    return out


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_postmaster(platform: Platform, member: str) -> Injected:
    """``kill -9`` of the member's postmaster (its backends notice and exit; Patroni survives)."""
    pid = postmaster_pid(platform, member)
    t = time.time()
    _kill([pid])
    return Injected(t, "postmaster-kill", member, (pid,), f"SIGKILL to postmaster {pid}")


@dataclass(frozen=True)
class DaemonRecipe:
    """What it takes to start a dataplat pid-file daemon again (read before it is killed)."""

    name: str
    argv: tuple[str, ...]
    cwd: str | None
    user: str | None
    checksum: str
    log_file: str

    def spec(self, run_dir: Path) -> daemon.DaemonSpec:
        return daemon.DaemonSpec(
            name=self.name,
            argv=self.argv,
            run_dir=run_dir,
            log_file=Path(self.log_file),
            cwd=Path(self.cwd) if self.cwd else None,
            user=self.user,
            checksum=self.checksum,
        )


def daemon_recipe(platform: Platform, name: str) -> DaemonRecipe:
    """Read how daemon ``name`` runs (state file + /proc) so it can be started again the same way."""
    state = daemon.read_state(name, platform.run_dir)
    if not state.running or state.pid is None:
        raise DrillError(f"{name} is not running (pid file {platform.run_dir / (name + '.pid')})")
    meta = json.loads((platform.run_dir / f"{name}.json").read_text())
    try:
        cwd: str | None = os.readlink(f"/proc/{state.pid}/cwd")
    except OSError:
        cwd = None
    user = None
    if os.geteuid() == 0:
        uid = os.stat(f"/proc/{state.pid}").st_uid
        user = pwd.getpwuid(uid).pw_name if uid != 0 else None
    return DaemonRecipe(
        name=name,
        argv=tuple(meta["argv"]),
        cwd=cwd,
        user=user,
        checksum=str(meta.get("checksum") or ""),
        log_file=str(meta.get("log") or platform.log_dir / f"{name}.log"),
    )


def kill_daemon(platform: Platform, name: str) -> Injected:
    """``kill -9`` of a dataplat daemon's process (nats-server, a Patroni agent)."""
    state = daemon.read_state(name, platform.run_dir)
    if not state.running or state.pid is None:
        raise DrillError(f"{name} is not running; nothing to kill")
    t = time.time()
    _kill([state.pid])
    return Injected(t, "kill-9", name, (state.pid,), f"SIGKILL to {name} {state.pid}")


def host_loss(platform: Platform, member: str) -> Injected:
    """The member's host is lost: its Patroni agent, postmaster and every backend die at once.

    Nothing releases the leader lock: the others must wait for it to expire (ttl).
    """
    agent = daemon.read_state(member, platform.run_dir)
    if not agent.running or agent.pid is None:
        raise DrillError(f"the Patroni agent of {member} is not running")
    pm = postmaster_pid(platform, member)
    victims = [agent.pid, *_children(agent.pid), pm, *_children(pm)]
    t = time.time()
    _kill(victims)
    # stragglers forked in the meantime
    _kill(_children(agent.pid) + _children(pm))
    return Injected(
        t,
        "host-loss",
        member,
        tuple(victims),
        f"SIGKILL to agent {agent.pid}, postmaster {pm} and {len(victims) - 2} children",
    )


@dataclass(frozen=True)
class LostHost:
    """What the loss of a warehouse member's host takes with it."""

    host: str
    address: str
    daemons: tuple[str, ...]
    """Daemons placed on the host that were running, the member first."""
    whole_host: bool
    """False on a one-machine platform: only the member's own processes play the host."""


def lost_host(platform: Platform, member: str) -> LostHost:
    """The host of ``member`` and the running daemons that go down with it."""
    placed = {i["name"]: i for i in platform.instances}
    if member not in placed:
        raise DrillError(f"{member} is not a warehouse member of the platform under {platform.home}")
    host = placed[member]["host"]
    members_there = [i for i in platform.by_component("warehouse") if i["host"] == host]
    if len(members_there) > 1:
        return LostHost(host, placed[member]["address"], (member,), whole_host=False)
    names = [member] + [
        i["name"]
        for i in platform.instances
        if i["host"] == host
        and i["name"] != member
        and daemon.read_state(i["name"], platform.run_dir).running
    ]
    return LostHost(host, placed[member]["address"], tuple(names), whole_host=True)


def whole_host_loss(platform: Platform, lost: LostHost) -> Injected:
    """SIGKILL to every process of every daemon on the lost host at once (nothing shuts down cleanly)."""
    members = {i["name"] for i in platform.by_component("warehouse")}
    roots: list[int] = []
    for name in lost.daemons:
        state = daemon.read_state(name, platform.run_dir)
        if state.running and state.pid is not None:
            roots.append(state.pid)
        if name in members:
            try:
                roots.append(postmaster_pid(platform, name))  # Patroni detaches its postmaster
            except DrillError:
                pass  # PostgreSQL not running: the agent is all there is
    if not roots:
        raise DrillError(f"no daemon of host {lost.host} is running")
    victims = [v for pid in roots for v in (pid, *_descendants(pid))]
    t = time.time()
    _kill(victims)
    _kill([v for pid in roots for v in _descendants(pid)])  # stragglers forked in the meantime
    return Injected(
        t,
        "host-loss",
        lost.daemons[0],
        tuple(victims),
        f"host {lost.host} ({lost.address}) lost: SIGKILL to {len(victims)} processes of "
        f"{', '.join(lost.daemons)}",
    )


def restart_daemon(platform: Platform, recipe: DaemonRecipe) -> daemon.DaemonState:
    """Start a killed daemon again the way ``dataplat up`` does (same argv, user and checksum)."""
    if daemon.read_state(recipe.name, platform.run_dir).running:
        return daemon.read_state(recipe.name, platform.run_dir)
    return daemon.start(recipe.spec(platform.run_dir))


def rest_url(member: dict[str, Any]) -> str:
    return f"http://{member['address']}:{member['ports']['rest']}"


def switchover(platform: Platform, leader: str, candidate: str) -> Injected:
    """A planned switchover through Patroni's REST API (``POST /switchover`` on the leader)."""
    inst = next(i for i in platform.by_component("warehouse") if i["name"] == leader)
    body = json.dumps({"leader": leader, "candidate": candidate}).encode()
    req = urllib.request.Request(
        f"{rest_url(inst)}/switchover", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    t = time.time()
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            answer = resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        raise DrillError(
            f"Patroni refused the switchover {leader} -> {candidate}: HTTP {exc.code} "
            f"{exc.read().decode(errors='replace')}"
        ) from None
    except OSError as exc:
        raise DrillError(f"Patroni REST API of {leader} did not answer the switchover: {exc}") from None
    return Injected(t, "switchover", leader, (), answer.strip()[:200])
