"""Pid-file daemons: start, watch and stop server processes without systemd.

A daemon is described by :class:`DaemonSpec`; its state lives in ``<run_dir>/<name>.pid``
(the pid) and ``<run_dir>/<name>.json`` (argv, config checksum, process start time), so a
reused pid is never mistaken for ours. Starting is idempotent: a daemon that runs with
the same checksum is left alone and reported unchanged; a dead one is started again.

The Ansible module ``dataplat_daemon`` (roles/library) is a thin layer over
:func:`ensure_started` and :func:`ensure_stopped`; tests and the CLI call them directly.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dataplat.errors import ComponentError, PortInUseError


@dataclass(frozen=True)
class DaemonSpec:
    """How to run one server process."""

    name: str
    argv: tuple[str, ...]
    run_dir: Path
    log_file: Path
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    checksum: str = ""
    ports: Mapping[int, str] = field(default_factory=dict)
    """Ports the process will bind, each with the setting that chooses it (for errors)."""
    bind_address: str = "127.0.0.1"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def state_file(self) -> Path:
        return self.run_dir / f"{self.name}.json"


@dataclass(frozen=True)
class DaemonState:
    """What the pid and state files say, checked against /proc."""

    name: str
    pid: int | None
    running: bool
    checksum: str | None
    started_at: float | None


def _proc_start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces or parentheses: split after the last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
        return state[state.rindex(")") + 2] != "Z"
    except OSError:
        return False


def read_state(spec_or_name: DaemonSpec | str, run_dir: Path | None = None) -> DaemonState:
    """The state of a daemon, ``running`` only when the recorded process is still ours."""
    if isinstance(spec_or_name, DaemonSpec):
        name, run_dir = spec_or_name.name, spec_or_name.run_dir
    else:
        name = spec_or_name
        assert run_dir is not None
    pid_file, state_file = run_dir / f"{name}.pid", run_dir / f"{name}.json"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return DaemonState(name, None, False, None, None)
    try:
        meta = json.loads(state_file.read_text())
    except (OSError, ValueError):
        meta = {}
    running = _alive(pid) and (
        meta.get("start_ticks") is None or _proc_start_ticks(pid) == meta.get("start_ticks")
    )
    return DaemonState(name, pid, running, meta.get("checksum"), meta.get("started_at"))


def port_in_use(address: str, port: int) -> bool:
    """True when something already listens on ``address:port`` (TCP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((address, port)) == 0


def _demote(user: str | None):
    if user is None or os.geteuid() != 0:
        return None
    pw = pwd.getpwnam(user)

    def fn() -> None:
        os.setgid(pw.pw_gid)
        os.initgroups(pw.pw_name, pw.pw_gid)
        os.setuid(pw.pw_uid)

    return fn


def start(spec: DaemonSpec) -> DaemonState:
    """Start the process in its own session, detached, and record it."""
    for port, setting in spec.ports.items():
        if port_in_use(spec.bind_address, port):
            raise PortInUseError(
                f"port {port} on {spec.bind_address} is already in use by a process dataplat did not "
                f"start (needed by {spec.name}); stop that process or change {setting} in the inventory"
            )
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    spec.log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **spec.env}
    if spec.user and os.geteuid() == 0:
        pw = pwd.getpwnam(spec.user)
        env.setdefault("HOME", pw.pw_dir if os.path.isdir(pw.pw_dir) else str(spec.run_dir))
        env.setdefault("USER", spec.user)
    with open(spec.log_file, "ab") as log, open(os.devnull, "rb") as devnull:
        if spec.user and os.geteuid() == 0:
            pw = pwd.getpwnam(spec.user)
            os.chown(spec.log_file, pw.pw_uid, pw.pw_gid)
        proc = subprocess.Popen(
            list(spec.argv),
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(spec.cwd) if spec.cwd else None,
            env=env,
            start_new_session=True,
            preexec_fn=_demote(spec.user),
            close_fds=True,
        )
    now = time.time()
    ticks = None
    for _ in range(50):
        ticks = _proc_start_ticks(proc.pid)
        if ticks is not None:
            break
        time.sleep(0.01)
    spec.state_file.write_text(
        json.dumps(
            {
                "argv": list(spec.argv),
                "checksum": spec.checksum,
                "started_at": now,
                "start_ticks": ticks,
                "log": str(spec.log_file),
            }
        )
    )
    spec.pid_file.write_text(f"{proc.pid}\n")
    # a process that dies at once (bad config, port race) is an error now, not later
    time.sleep(0.3)
    if proc.poll() is not None:
        tail = _tail(spec.log_file)
        raise ComponentError(
            f"{spec.name} exited at once with code {proc.returncode}; log {spec.log_file}:\n{tail}"
        )
    return DaemonState(spec.name, proc.pid, True, spec.checksum, now)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(name: str, run_dir: Path, timeout: float = 30.0, sig: int = signal.SIGTERM) -> bool:
    """Stop the daemon (``sig``, then SIGKILL after ``timeout``); True when one was running."""
    state = read_state(name, run_dir)
    stopped = False
    if state.running and state.pid:
        try:
            os.killpg(state.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(state.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        delay = 0.05
        while _alive(state.pid) and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        if _alive(state.pid):
            try:
                os.killpg(state.pid, signal.SIGKILL)
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    raise
        stopped = True
    for path in (run_dir / f"{name}.pid",):
        path.unlink(missing_ok=True)
    return stopped


def ensure_started(spec: DaemonSpec, restart_on_change: bool = True) -> tuple[bool, DaemonState]:
    """Start the daemon unless it runs with the same checksum. Returns (changed, state)."""
    state = read_state(spec)
    if state.running:
        if not restart_on_change or state.checksum == spec.checksum:
            return False, state
        stop(spec.name, spec.run_dir)
    return True, start(spec)


def ensure_stopped(name: str, run_dir: Path, timeout: float = 30.0) -> bool:
    """Stop the daemon if it runs. Returns whether anything changed."""
    return stop(name, run_dir, timeout=timeout)
