"""Fixtures of the benchmark tests: the shared platform with a small bank loaded (only when
it is empty), a private bench schema per module, the bench commands in the CLI."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

LOAD_SF = 0.002
LOAD_SEED = 20261121


def _customers(conninfo: str) -> int:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT to_regclass('bank.customers') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return 0
        found = conn.execute("SELECT COUNT(*) FROM bank.customers").fetchone()
        return int(found[0]) if found else 0


@pytest.fixture(scope="module")
def bank(platform) -> Path:  # type: ignore[no-untyped-def]
    """The platform's home with the bank loaded (SF 0.002 into warehouse and lake if empty)."""
    from dataplat.data.load import lake_dataset, load, warehouse_dataset
    from dataplat.platform import endpoints

    home = platform.home
    conninfo = endpoints.warehouse_conninfo(home)
    catalog, namespace = endpoints.lake_catalog(home)
    if _customers(conninfo) == 0:
        load(LOAD_SF, LOAD_SEED, conninfo=conninfo, catalog=catalog, namespace=namespace,
             targets=("warehouse", "lake"), progress=False)  # fmt: skip
    else:
        # another module loaded the warehouse alone: give the lake the same data set, so
        # both engines run on the same rows (the warehouse's data stays as it is)
        wh, lk = warehouse_dataset(conninfo), lake_dataset(catalog, namespace)
        if wh is not None and (lk is None or (lk.sf, lk.seed) != (wh.sf, wh.seed)):
            load(wh.sf, wh.seed, catalog=catalog, namespace=namespace, targets=("lake",), progress=False)
    return home  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def bench_schema(bank: Path) -> Iterator[str]:
    """A bench schema of this module's own on the warehouse, dropped afterwards."""
    import psycopg

    from dataplat.data.schema import quote_ident
    from dataplat.platform import endpoints

    name = f"bench_t{secrets.token_hex(3)}"
    yield name
    with psycopg.connect(endpoints.warehouse_conninfo(bank), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")  # type: ignore[arg-type]


@pytest.fixture
def cli_main(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``dataplat.cli.main`` with the bench and report commands registered."""
    import dataplat.cli as cli

    extra = ("dataplat.bench.cli", "dataplat.bench.report")
    monkeypatch.setattr(cli, "COMMAND_MODULES", tuple(dict.fromkeys((*cli.COMMAND_MODULES, *extra))))
    return cli.main
