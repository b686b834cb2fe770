"""Session fixtures: one real embedded platform shared by the platform tests.

The platform is deployed with ``dataplat up`` exactly as a user does it (ansible-runner
against localhost), on ports moved into a free block and under its own home, and is
torn down with ``dataplat down --purge`` at the end, keeping its logs on failure.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import PORT_BLOCK, free_port_block, shared_tmpdir, write_test_inventory  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``platform_last`` (they stop the shared platform) run after all others."""
    items.sort(key=lambda item: item.get_closest_marker("platform_last") is not None)


@dataclass
class DeployedPlatform:
    home: Path
    inventory: Path
    first_up: object  # DeployResult of the first `up`


@pytest.fixture(scope="session")
def platform() -> Iterator[DeployedPlatform]:
    from dataplat.deploy.api import down, up

    work = shared_tmpdir("dataplat-test-")
    home = work / "home"
    inventory = write_test_inventory(work, home, free_port_block(PORT_BLOCK))
    result = up(inventory)
    if not result.ok:
        logs = sorted((home / "log").glob("*.log")) if (home / "log").exists() else []
        tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)
        down(home) if (home / "platform.json").exists() else None
        pytest.fail(f"dataplat up failed: {result.run.failures}\n{tails}")
    yield DeployedPlatform(home=home, inventory=inventory, first_up=result)
    if (home / "platform.json").exists():
        down(home, purge=True)
    shutil.rmtree(work, ignore_errors=True)
