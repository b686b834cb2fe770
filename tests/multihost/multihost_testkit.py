"""Helpers of the multi-host tests: loopback "hosts", a free port block on all of them, the
example inventory moved into it, and the kernel's own list of listening sockets."""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helpers
import yaml

REPO = Path(__file__).resolve().parents[2]
LOOPBACK_INVENTORY = REPO / "inventory" / "examples" / "loopback-3hosts.yml"
ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
"""The hosts h1, h2, h3 of the example inventory."""

PORT_BLOCK = 32
"""Ports one 3-host test platform needs on each address (see :func:`ports_of_block`)."""


def loopback_usable() -> str | None:
    """None when 127.0.0.2-4 can be bound and reached (Linux routes 127/8 to lo), else why not."""
    for address in ADDRESSES:
        try:
            with socket.socket() as srv:
                srv.bind((address, 0))
                srv.listen()
                with socket.create_connection(srv.getsockname(), timeout=2):
                    pass
        except OSError as exc:
            return f"{address} cannot be bound and reached here: {exc}"
    return None


def free_port_block(size: int = PORT_BLOCK) -> int:
    """The first of ``size`` consecutive ports free on 127.0.0.1 and on every loopback host now."""
    return helpers.free_port_block(size, ("127.0.0.1", *ADDRESSES))


def ports_of_block(base: int) -> dict[str, int]:
    """The port settings of a test platform whose block starts at ``base`` (the same on each host):
    those of a one-host platform, and an autoscaled pool's replicas (up to 8 from
    ``serving_replica_port``)."""
    return {**helpers.ports_of_block(base), "serving_replica_port": base + 24}


def write_loopback_inventory(
    directory: Path, home: Path, base: int, extra_vars: dict[str, Any] | None = None
) -> Path:
    """inventory/examples/loopback-3hosts.yml with every port moved into a free block and the home set."""
    doc = yaml.safe_load(LOOPBACK_INVENTORY.read_text())
    doc["all"]["vars"].update(ports_of_block(base))
    doc["all"]["vars"]["dataplat_home"] = str(home)
    doc["all"]["vars"].update(extra_vars or {})
    path = directory / "inventory.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _hex_address(field: str, v6: bool) -> tuple[str, int]:
    addr_hex, port_hex = field.split(":")
    raw = bytes.fromhex(addr_hex)
    if v6:
        # four 32-bit words, each in host (little-endian) order
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        text = socket.inet_ntop(socket.AF_INET6, raw)
        if text.startswith("::ffff:") and "." in text:
            text = text[len("::ffff:") :]
    else:
        text = socket.inet_ntop(socket.AF_INET, raw[::-1])
    return text, int(port_hex, 16)


def listening_sockets() -> dict[int, tuple[str, int]]:
    """socket inode -> (address, port) of every listening TCP socket here (/proc/net/tcp{,6})."""
    out: dict[int, tuple[str, int]] = {}
    for name, v6 in (("tcp", False), ("tcp6", True)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A":  # TCP_LISTEN
                out[int(fields[9])] = _hex_address(fields[1], v6)
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    out, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, ppid in parent.items() if ppid in frontier]
        out.extend(frontier)
    return out


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds open."""
    out: set[int] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return out
    for fd in fds:
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[len("socket:[") : -1]))
    return out


def listeners_of(pids: list[int]) -> set[tuple[str, int]]:
    """Every (address, port) the processes ``pids`` listen on."""
    listening = listening_sockets()
    return {listening[i] for pid in pids for i in socket_inodes(pid) if i in listening}


def connect_refused(address: str, port: int) -> bool:
    """True when nothing accepts a TCP connection on ``address:port``."""
    try:
        with socket.create_connection((address, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def dataplat(*args: str, timeout: float = 600) -> tuple[int, str, str]:
    """Run the ``dataplat`` command line as a user does; (exit code, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "dataplat", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=helpers.clean_env(),
    )
    return proc.returncode, proc.stdout, proc.stderr


@dataclass
class LoopbackPlatform:
    """The deployed 3-host loopback platform of a test module."""

    home: Path
    inventory: Path
    base_port: int
    up: dict[str, Any]
    """``dataplat up --json`` of the first deploy."""
