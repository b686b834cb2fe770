"""systemd units for dataplat's server processes (``dataplat_service_manager: systemd``).

The same :class:`~dataplat.deploy.daemon.DaemonSpec` that describes a pid-file daemon
renders to ``/etc/systemd/system/dataplat-<name>.service`` (:func:`render_unit`);
:func:`ensure` writes it when its content changed and drives it with ``systemctl``:
daemon-reload after a write, enable, start when inactive, restart when the unit (and so
the configuration checksum it carries) changed. The Ansible module ``dataplat_daemon``
calls it instead of the pid-file path on hosts whose inventory says so.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dataplat.deploy.daemon import DaemonSpec, port_in_use
from dataplat.errors import ComponentError, PortInUseError

UNIT_DIR = Path("/etc/systemd/system")
LIMIT_NOFILE = 65536
"""Open files per process: PostgreSQL, nats-server and the ASGI workers hold many sockets."""

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def unit_name(name: str) -> str:
    """``dataplat-<name>.service``."""
    return f"dataplat-{name}.service"


def _escape(value: str) -> str:
    """A value for a unit file line: ``%`` specifiers and ``$`` expansion made literal."""
    return value.replace("%", "%%").replace("$", "$$")


def quote_arg(arg: str) -> str:
    """One ExecStart= argument, double-quoted when it holds spaces, quotes or backslashes."""
    arg = _escape(arg)
    if arg and not re.search(r"[\s\"'\\;]", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(spec: DaemonSpec, limit_nofile: int = LIMIT_NOFILE, stop_timeout: float = 30.0) -> str:
    """The unit file of ``spec``: User=, WorkingDirectory=, Environment=, ExecStart=,
    Restart=on-failure, LimitNOFILE=, the log appended to ``spec.log_file``; the config
    checksum in a comment so that a changed configuration changes the unit."""
    env = {"LANG": "C.UTF-8", **spec.env}
    lines = [
        f"# Managed by dataplat: {spec.name}; configuration checksum {spec.checksum or '-'}",
        "[Unit]",
        f"Description=dataplat {spec.name}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
    ]
    if spec.user:
        lines.append(f"User={spec.user}")
    if spec.cwd:
        lines.append(f"WorkingDirectory={quote_arg(str(spec.cwd))}")
    for key, value in sorted(env.items()):
        lines.append(f"Environment={quote_arg(f'{key}={value}')}")
    lines += [
        "ExecStart=" + " ".join(quote_arg(a) for a in spec.argv),
        "Restart=on-failure",
        "RestartSec=2",
        f"LimitNOFILE={limit_nofile}",
        f"StandardOutput=append:{_escape(str(spec.log_file))}",
        "StandardError=inherit",
        "KillMode=mixed",
        f"TimeoutStopSec={int(stop_timeout)}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class UnitState:
    """What ``ensure`` did."""

    name: str
    path: Path
    changed: bool
    written: bool
    active: bool


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def _systemctl(
    systemctl: str, run: Runner, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = run([systemctl, *args])
    if check and proc.returncode != 0:
        raise ComponentError(
            f"systemctl {' '.join(args)} failed (rc {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()}"
        )
    return proc


def ensure(
    spec: DaemonSpec,
    state: str = "started",
    unit_dir: Path = UNIT_DIR,
    systemctl: str = "systemctl",
    run: Runner = _run,
    limit_nofile: int = LIMIT_NOFILE,
    stop_timeout: float = 30.0,
    check_mode: bool = False,
) -> UnitState:
    """Bring the unit of ``spec`` to ``state`` (``started``, ``stopped``, ``restarted``)."""
    name = unit_name(spec.name)
    path = Path(unit_dir) / name
    if state == "stopped":
        active = _systemctl(systemctl, run, "is-active", "--quiet", name, check=False).returncode == 0
        if active and not check_mode:
            _systemctl(systemctl, run, "stop", name)
        return UnitState(name, path, active, False, False)
    text = render_unit(spec, limit_nofile, stop_timeout)
    try:
        written = path.read_text() != text
    except OSError:
        written = True
    active = _systemctl(systemctl, run, "is-active", "--quiet", name, check=False).returncode == 0
    if check_mode:
        return UnitState(name, path, written or not active or state == "restarted", written, active)
    if written:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        _systemctl(systemctl, run, "daemon-reload")
    changed = written
    if _systemctl(systemctl, run, "is-enabled", "--quiet", name, check=False).returncode != 0:
        _systemctl(systemctl, run, "enable", name)
        changed = True
    if not active:
        for port, setting in spec.ports.items():
            if port_in_use(spec.bind_address, port):
                raise PortInUseError(
                    f"port {port} on {spec.bind_address} is already in use by a process dataplat did not "
                    f"start (needed by {spec.name}); stop that process or change {setting} in the inventory"
                )
        spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        _systemctl(systemctl, run, "start", name)
        changed = True
    elif written or state == "restarted":
        _systemctl(systemctl, run, "restart", name)
        changed = True
    return UnitState(name, path, changed, written, True)
