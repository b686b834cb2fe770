"""Helpers shared by the integration tests (no fixtures here: see conftest.py)."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO = Path(__file__).resolve().parents[1]
LOCAL_INVENTORY = REPO / "inventory" / "local.yml"

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``predicate`` with backoff until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the condition may throw until it holds
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_exc})"
            )
        time.sleep(interval)
        interval = min(interval * 1.5, 1.0)


def shared_tmpdir(prefix: str) -> Path:
    """A temporary folder the unprivileged service user can enter (pytest's tmp_path is 0700 under root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def free_port_block(size: int, addresses: Sequence[str] = ("127.0.0.1",)) -> int:
    """The first of ``size`` consecutive ports that are free on every one of ``addresses`` now.

    The search starts at a random place, so concurrent test runs rarely pick the same block.
    """
    import random

    start = random.randrange(20000, 39000)
    for base in [*range(start, 40000 - size, size + 7), *range(20000, start, size + 7)]:
        if all(_free(base + i, addresses) for i in range(size)):
            return base
    raise RuntimeError("no block of free ports found")


def _free(port: int, addresses: Sequence[str] = ("127.0.0.1",)) -> bool:
    for address in addresses:
        with socket.socket() as s:
            try:
                s.bind((address, port))
            except OSError:
                return False
    return True


PORT_BLOCK = 26
"""Ports one test platform needs (see :func:`ports_of_block`)."""


def ports_of_block(base: int) -> dict[str, int]:
    """The port settings of a test platform whose block starts at ``base``.

    Four ports per warehouse setting leave room for up to four members per host.
    """
    return {
        "warehouse_pg_port": base,
        "warehouse_rest_port": base + 4,
        "warehouse_raft_port": base + 8,
        "warehouse_witness_raft_port": base + 12,
        "stream_client_port": base + 13,
        "stream_monitor_port": base + 14,
        "stream_cluster_port": base + 15,
        "metrics_port": base + 16,
        "serving_port": base + 17,
        "decision_port": base + 21,
    }


def write_test_inventory(
    directory: Path, home: Path, base: int, extra_vars: dict[str, Any] | None = None
) -> Path:
    """inventory/local.yml with every port moved into a free block and the home set."""
    doc = yaml.safe_load(LOCAL_INVENTORY.read_text())
    ports = ports_of_block(base)
    doc["all"]["vars"].update(ports)
    doc["all"]["vars"]["dataplat_home"] = str(home)
    doc["all"]["vars"].update(extra_vars or {})
    path = directory / "inventory.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATAPLAT_HOME", None)
    env.pop("DATAPLAT_INVENTORY", None)
    return env
