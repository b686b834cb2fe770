"""Fixtures of the drill tests: slow drills are skipped unless DATAPLAT_SLOW=1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.slow`` tests of this folder unless ``DATAPLAT_SLOW=1``."""
    if os.environ.get("DATAPLAT_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow drill: set DATAPLAT_SLOW=1 to run it")
    here = Path(__file__).resolve().parent
    for item in items:
        if item.get_closest_marker("slow") and Path(str(item.fspath)).resolve().is_relative_to(here):
            item.add_marker(skip)
