"""Fixtures of the data tests: a real PostgreSQL (pgserver's binaries) and a real Iceberg
SQL catalog (sqlite), both in temporary directories, loaded once per module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_testkit import LOAD_SEED, LOAD_SF, TempPostgres, pg_bin_dir  # noqa: E402


@pytest.fixture(scope="session")
def pg() -> Iterator[TempPostgres]:
    """A PostgreSQL 16 of our own on a free 127.0.0.1 port (as user ``dataplat`` under root)."""
    if pg_bin_dir() is None:
        pytest.skip("pgserver's PostgreSQL binaries are not installed")
    server = TempPostgres.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def lake(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A pyiceberg SQL catalog (sqlite) with a file warehouse, and the namespace to use."""
    from pyiceberg.catalog.sql import SqlCatalog

    root = tmp_path_factory.mktemp("lake")
    catalog = SqlCatalog("test", uri=f"sqlite:///{root}/catalog.db", warehouse=f"file://{root}/warehouse")
    return catalog, "bank"


@pytest.fixture(scope="session")
def loaded(pg: TempPostgres, lake):  # type: ignore[no-untyped-def]
    """The bank at SF :data:`LOAD_SF` loaded into both stores; the :class:`TableLoad` list."""
    from dataplat.data.load import load

    catalog, namespace = lake
    return load(LOAD_SF, LOAD_SEED, pg.conninfo, catalog, namespace, progress=False)
