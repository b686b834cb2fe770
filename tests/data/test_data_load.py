"""Loading a real PostgreSQL and a real Iceberg catalog, and agreeing between them."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from decimal import Decimal

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from data_testkit import LOAD_SEED, LOAD_SF

from dataplat.data.generate import generate
from dataplat.data.load import TableLoad, lake_dataset, load, warehouse_dataset
from dataplat.data.schema import TABLE_NAMES, TABLES, qualified


def _pg_counts(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {qualified('bank', t)}").fetchone()[0] for t in TABLE_NAMES
        }


def _lake_table(catalog, name: str) -> pa.Table:  # type: ignore[no-untyped-def]
    return catalog.load_table(("bank", name)).scan().to_arrow()


def _generated_counts() -> Counter[str]:
    counts: Counter[str] = Counter(dict.fromkeys(TABLE_NAMES, 0))
    for name, batch in generate(LOAD_SF, LOAD_SEED):
        counts[name] += batch.num_rows
    return counts


def test_load_reports_every_store_and_table(loaded: list[TableLoad]) -> None:
    stores = Counter(r.store for r in loaded)
    assert stores == {"generate": 1, "warehouse": len(TABLES), "lake": len(TABLES)}
    assert all(r.rows >= 0 and r.seconds >= 0 for r in loaded)


def test_row_counts_agree_between_generator_warehouse_and_lake(loaded, pg, lake) -> None:  # type: ignore[no-untyped-def]
    catalog, _ = lake
    expected = _generated_counts()
    assert _pg_counts(pg.conninfo) == expected
    assert {t: _lake_table(catalog, t).num_rows for t in TABLE_NAMES} == expected
    assert {r.table: r.rows for r in loaded if r.store == "warehouse"} == expected


@pytest.mark.parametrize(
    ("table", "column"), [("holdings", "amount"), ("accounts", "balance"), ("transactions", "amount")]
)
def test_totals_match_to_the_cent(loaded, pg, lake, table: str, column: str) -> None:  # type: ignore[no-untyped-def]
    import duckdb

    catalog, _ = lake
    with psycopg.connect(pg.conninfo) as conn:
        pg_total = conn.execute(f'SELECT sum("{column}") FROM {qualified("bank", table)}').fetchone()[0]
    arrow = _lake_table(catalog, table)
    arrow_total = pc.sum(arrow.column(column)).as_py()
    duck = duckdb.connect()
    duck.register("lake_table", arrow)
    duck_total = duck.execute(f'SELECT sum("{column}") FROM lake_table').fetchone()[0]
    assert isinstance(pg_total, Decimal) and pg_total > 0
    assert pg_total == arrow_total == Decimal(duck_total)


def test_timestamps_agree(loaded, pg, lake) -> None:  # type: ignore[no-untyped-def]
    catalog, _ = lake
    with psycopg.connect(pg.conninfo) as conn:
        lo, hi = conn.execute("SELECT min(ts), max(ts) FROM bank.transactions").fetchone()
    ts = _lake_table(catalog, "transactions").column("ts")
    assert (lo, hi) == (pc.min(ts).as_py(), pc.max(ts).as_py())


def test_foreign_keys_hold_in_the_warehouse(loaded, pg) -> None:  # type: ignore[no-untyped-def]
    declared = {(t.name, fk.name(t.name)) for t in TABLES for fk in t.foreign_keys}
    with psycopg.connect(pg.conninfo) as conn:
        rows = conn.execute(
            "SELECT c.conrelid::regclass::text, c.conname, c.convalidated FROM pg_constraint c "
            "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'bank' AND c.contype = 'f'"
        ).fetchall()
        found = {(rel.split(".")[-1], name) for rel, name, _ in rows}
        assert declared <= found
        assert all(valid for _, _, valid in rows)
        orphans = conn.execute(
            "SELECT count(*) FROM bank.transactions t LEFT JOIN bank.accounts a USING (account_id) "
            "WHERE a.account_id IS NULL"
        ).fetchone()[0]
        assert orphans == 0
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'bank'")}
        assert {"transactions_customer_id_ts_idx", "cards_card_no_key", "decisions_pkey"} <= indexes


def test_reload_is_idempotent_and_replaces_decisions(loaded, pg, lake) -> None:  # type: ignore[no-untyped-def]
    catalog, namespace = lake
    with psycopg.connect(pg.conninfo) as conn:
        conn.execute(
            "INSERT INTO bank.decisions (event_id, customer_id, ts, event_type, degraded, latency_ms) "
            "VALUES ('e-1', 1, now(), 'payroll_credit', false, 3.5)"
        )
    before = _pg_counts(pg.conninfo)
    snapshots = len(catalog.load_table((namespace, "customers")).snapshots())
    again = load(LOAD_SF, LOAD_SEED, pg.conninfo, catalog, namespace, progress=False)
    after = _pg_counts(pg.conninfo)
    assert after == {**before, "decisions": 0}
    assert {r.table: r.rows for r in again if r.store == "lake"} == {t: after[t] for t in TABLE_NAMES}
    assert {t: _lake_table(catalog, t).num_rows for t in TABLE_NAMES} == after
    assert len(catalog.load_table((namespace, "customers")).snapshots()) > snapshots  # history is kept


def test_what_is_loaded_is_recorded(loaded, pg, lake) -> None:  # type: ignore[no-untyped-def]
    catalog, namespace = lake
    pg_info = warehouse_dataset(pg.conninfo)
    lake_info = lake_dataset(catalog, namespace)
    assert pg_info is not None and lake_info is not None
    for info in (pg_info, lake_info):
        assert (info.sf, info.seed) == (LOAD_SF, LOAD_SEED)
        assert info.row_counts == dict(_generated_counts())
    assert warehouse_dataset(pg.conninfo, schema="nothing_here") is None
    assert lake_dataset(catalog, "nothing_here") is None


def test_cli_loads_one_store_and_prints_json(pg, monkeypatch, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dataplat.data import cli
    from dataplat.platform import endpoints

    monkeypatch.setattr(
        endpoints, "warehouse_conninfo", lambda home, role="admin": pg.conninfo, raising=False
    )
    parser = argparse.ArgumentParser(prog="dataplat")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["data", "load", "--sf", "0.001", "--seed", "5", "--target", "warehouse", "--schema", "cli_bank",
         "--home", str(tmp_path), "--json"]
    )  # fmt: skip
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["targets"] == ["warehouse"]
    rows = {r["table"]: r["rows"] for r in doc["loads"] if r["store"] == "warehouse"}
    assert rows["customers"] == 1000
    info = warehouse_dataset(pg.conninfo, schema="cli_bank")
    assert info is not None and info.seed == 5


def test_lake_only_load_with_progress_bar(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("p", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}/w")
    results = load(0.001, 9, catalog=catalog, namespace="p", targets=("lake",), progress=True)
    assert {r.store for r in results} == {"generate", "lake"}
    assert catalog.load_table(("p", "customers")).scan().to_arrow().num_rows == 1000
    assert capsys.readouterr().out == ""  # the bar goes to stderr


def test_load_needs_its_stores() -> None:
    from dataplat.errors import ConfigError

    with pytest.raises(ConfigError):
        load(0.001, 1, targets=("warehouse",))
    with pytest.raises(ConfigError):
        load(0.001, 1, targets=("lake",))
    with pytest.raises(ConfigError):
        load(0.001, 1, conninfo="host=x", targets=("nowhere",))
