"""The two engines the batch jobs run on, behind one small interface.

* :class:`WarehouseEngine`: PostgreSQL (the Patroni cluster's leader) through psycopg, as
  the admin user, writing into a schema the admin owns.
* :class:`LakeEngine`: an in-process DuckDB over the lake's Iceberg tables. pyiceberg plans
  each table's current snapshot; the planned Parquet data files become a view
  ``"<bank>"."<table>"`` (``read_parquet``), or, when a snapshot carries delete files,
  the table is read through pyiceberg into Arrow. Job outputs are DuckDB tables in a
  schema of the same name as the warehouse's.

Both expose the bank under the same schema name, so one SQL text serves both where the
dialects agree; where they do not, a job file overrides a section per engine.
"""

from __future__ import annotations

import abc
import time
from typing import Any

from dataplat.bench.context import BenchError
from dataplat.data.schema import TABLE_NAMES, arrow_schema, qualified, quote_ident

DIALECTS = {"warehouse": "postgres", "lake": "duckdb"}
"""The SQL dialect each engine speaks (the engine qualifier of job file sections)."""

BATCH_WORK_MEM = "256MB"
"""``work_mem`` of the warehouse's batch session: nightly jobs get room to hash in memory."""


class Engine(abc.ABC):
    """Where a batch job runs: execute statements, query rows, (re)create a table from a SELECT."""

    name = ""
    dialect = ""

    @abc.abstractmethod
    def execute(self, sql: str) -> None:
        """Run one statement, committing it."""

    @abc.abstractmethod
    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of a query."""

    @abc.abstractmethod
    def create_table_as(self, schema: str, table: str, select: str) -> float:
        """Replace ``schema.table`` with the result of ``select``; returns the seconds it took."""

    @abc.abstractmethod
    def version(self) -> str:
        """The engine's version string."""

    def count(self, schema: str, table: str) -> int:
        """Rows of ``schema.table``."""
        return int(self.query(f"SELECT COUNT(*) FROM {qualified(schema, table)}")[1][0][0])

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WarehouseEngine(Engine):
    """PostgreSQL through psycopg (autocommit; each job one transaction of DROP, CREATE, ANALYZE)."""

    name = "warehouse"
    dialect = "postgres"

    def __init__(self, conninfo: str, bench_schema: str) -> None:
        import psycopg

        try:
            self.conn = psycopg.connect(conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            raise BenchError(f"warehouse: cannot connect: {exc}".strip()) from exc
        self.conn.execute(f"SET work_mem TO '{BATCH_WORK_MEM}'")
        self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(bench_schema)}")

    def execute(self, sql: str) -> None:
        self.conn.execute(sql)  # type: ignore[arg-type]

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        cur = self.conn.execute(sql)  # type: ignore[arg-type]
        names = [d.name for d in cur.description or []]
        return names, list(cur.fetchall())

    def create_table_as(self, schema: str, table: str, select: str) -> float:
        target = qualified(schema, table)
        start = time.perf_counter()
        with self.conn.transaction():
            self.conn.execute(f"DROP TABLE IF EXISTS {target}")  # type: ignore[arg-type]
            self.conn.execute(f"CREATE TABLE {target} AS\n{select}")  # type: ignore[arg-type]
            self.conn.execute(f"ANALYZE {target}")  # type: ignore[arg-type]
        return time.perf_counter() - start

    def version(self) -> str:
        return str(self.query("SHOW server_version")[1][0][0])

    def close(self) -> None:
        self.conn.close()


class LakeEngine(Engine):
    """DuckDB (in memory) over the Iceberg tables of the lake."""

    name = "lake"
    dialect = "duckdb"

    def __init__(self, catalog: Any, namespace: str, bank_schema: str, bench_schema: str) -> None:
        import duckdb

        self.db = duckdb.connect(":memory:")
        self.db.execute("SET TimeZone = 'UTC'")
        self.setup_seconds: dict[str, float] = {}
        self.sources: dict[str, str] = {}
        self._arrow: dict[str, Any] = {}
        self.db.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(bank_schema)}")
        self.db.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(bench_schema)}")
        for table in TABLE_NAMES:
            start = time.perf_counter()
            self._attach(catalog, namespace, bank_schema, table)
            self.setup_seconds[table] = time.perf_counter() - start

    def _attach(self, catalog: Any, namespace: str, bank_schema: str, table: str) -> None:
        from pyiceberg.exceptions import NoSuchTableError

        target = qualified(bank_schema, table)
        try:
            tbl = catalog.load_table((namespace, table))
        except NoSuchTableError:
            tbl = None
        if tbl is None or tbl.current_snapshot() is None:
            empty = arrow_schema(table).empty_table()
            self._register(target, table, empty)
            self.sources[table] = "empty"
            return
        tasks = list(tbl.scan().plan_files())
        if not tasks or any(t.delete_files for t in tasks):
            self._register(target, table, tbl.scan().to_arrow())
            self.sources[table] = "arrow"
            return
        files = [t.file.file_path.removeprefix("file://") for t in tasks]
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        self.db.execute(f"CREATE OR REPLACE VIEW {target} AS SELECT * FROM read_parquet([{listing}])")
        self.sources[table] = f"parquet ({len(files)} files)"

    def _register(self, target: str, table: str, data: Any) -> None:
        name = f"_arrow_{table}"
        self._arrow[name] = data
        self.db.register(name, data)
        self.db.execute(f"CREATE OR REPLACE VIEW {target} AS SELECT * FROM {quote_ident(name)}")

    def execute(self, sql: str) -> None:
        self.db.execute(sql)

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        cur = self.db.execute(sql)
        names = [d[0] for d in cur.description or []]
        return names, list(cur.fetchall())

    def create_table_as(self, schema: str, table: str, select: str) -> float:
        start = time.perf_counter()
        self.db.execute(f"CREATE OR REPLACE TABLE {qualified(schema, table)} AS\n{select}")
        return time.perf_counter() - start

    def version(self) -> str:
        import duckdb

        return f"DuckDB {duckdb.__version__}"

    def close(self) -> None:
        self.db.close()
