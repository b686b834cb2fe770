"""Fixtures of the scaling tests: a model repository with the propensity model of a tiny bank,
a bank in the shared platform's warehouse; slow tests are skipped unless DATAPLAT_SLOW=1."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

BANK_SF = 0.002
BANK_SEED = 7


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.slow`` tests of this folder unless ``DATAPLAT_SLOW=1``."""
    if os.environ.get("DATAPLAT_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow drill: set DATAPLAT_SLOW=1 to run it")
    here = Path(__file__).resolve().parent
    for item in items:
        if item.get_closest_marker("slow") and Path(str(item.fspath)).resolve().is_relative_to(here):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def bank(platform) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """The shared platform's home with customers in the warehouse (a tiny bank is loaded only when
    there are none); the decisions the scaling drills record are deleted afterwards."""
    import psycopg

    from dataplat.data.load import load_warehouse
    from dataplat.platform import endpoints

    conninfo = endpoints.warehouse_conninfo(platform.home)
    with psycopg.connect(conninfo) as conn:
        empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM bank.customers)").fetchone()[0]  # type: ignore[index]
    if empty:
        load_warehouse(conninfo, sf=BANK_SF, seed=BANK_SEED, progress=False)
    yield platform.home
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DELETE FROM bank.decisions WHERE event_id LIKE 'scaling-%'")


@pytest.fixture(scope="session")
def scaling_work() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dataplat-scaling-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def model_repo(scaling_work: Path) -> Path:
    """A model repository holding one version of the propensity model (SF 0.002, a second or two)."""
    from dataplat.serving.model import train_and_publish

    repo = scaling_work / "repo"
    train_and_publish(repo, sf=0.002, seed=7)
    return repo
