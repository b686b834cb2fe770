"""Fixtures of the multi-host tests: the example inventory of three hosts on loopback
addresses (127.0.0.2-4), deployed for real with ``dataplat up -i`` on a free port block
under its own home, and torn down with ``dataplat down --purge`` at the end.

Slow tests of this folder (``@pytest.mark.slow``) run only with ``DATAPLAT_SLOW=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from helpers import shared_tmpdir  # noqa: E402
from multihost_testkit import (  # noqa: E402
    LoopbackPlatform,
    dataplat,
    free_port_block,
    loopback_usable,
    write_loopback_inventory,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.slow`` tests of this folder unless ``DATAPLAT_SLOW=1``."""
    if os.environ.get("DATAPLAT_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow drill: set DATAPLAT_SLOW=1 to run it")
    for item in items:
        if item.get_closest_marker("slow") and Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(skip)


def _logs(home: Path) -> str:
    logs = sorted((home / "log").glob("*.log")) if (home / "log").exists() else []
    return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)


@pytest.fixture(scope="module")
def loopback_platform() -> Iterator[LoopbackPlatform]:
    """The 3-host loopback example, deployed by ``dataplat up -i`` (ports moved into a free block)."""
    why = loopback_usable()
    if why:
        pytest.skip(why)
    work = shared_tmpdir("dataplat-multihost-")
    home = work / "home"
    base = free_port_block()
    inventory = write_loopback_inventory(work, home, base)
    rc, out, err = dataplat("up", "-i", str(inventory), "--json")
    if rc != 0:
        tails = _logs(home)
        if (home / "platform.json").exists():
            dataplat("down", "--home", str(home), "--purge")
        pytest.fail(f"dataplat up -i {inventory} failed (exit {rc}):\n{out[-4000:]}\n{err[-4000:]}\n{tails}")
    yield LoopbackPlatform(home=home, inventory=inventory, base_port=base, up=json.loads(out))
    if (home / "platform.json").exists():
        dataplat("down", "--home", str(home), "--purge")
    shutil.rmtree(work, ignore_errors=True)
