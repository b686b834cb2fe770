"""Load the synthetic bank into the warehouse (PostgreSQL) and the lake (Iceberg).

:func:`load` generates every chunk once and hands it to each target store:

* warehouse: one transaction that drops the bank's foreign keys and secondary
  indexes, ``TRUNCATE ... CASCADE``\\ s its tables, ``COPY ... FREEZE``\\ s the CSV
  that pyarrow writes for each batch, re-creates indexes and (validated) foreign
  keys, records the ``dataset`` row and commits. Re-running replaces the data; a
  failure leaves the previous data untouched.
* lake: one Iceberg transaction per table (overwrite, then appends), committed at
  the end together with table properties that say what is loaded.

Every store/table pair yields a :class:`TableLoad`; the ``generate`` store gives the
generator's own time.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pacsv

from dataplat.data.generate import AS_OF, DEFAULT_CHUNK_CUSTOMERS, GENERATOR_VERSION, Plan, generate
from dataplat.data.schema import (
    DATASET,
    TABLE_NAMES,
    TABLES,
    drop_constraints_ddl,
    foreign_key_ddl,
    get_table,
    iceberg_schema,
    index_ddl,
    qualified,
    quote_ident,
    table_ddl,
)
from dataplat.errors import ComponentError, ConfigError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import psycopg
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table as IcebergTable
    from pyiceberg.table import Transaction

STORES = ("warehouse", "lake")
PROPERTY_PREFIX = "dataplat."
_CSV_SLICE_ROWS = 200_000
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, batch_size=16_384)


@dataclass(frozen=True)
class TableLoad:
    """What one store got for one table: rows, seconds spent, and the rate."""

    store: str
    table: str
    rows: int
    seconds: float
    rows_per_s: float

    @classmethod
    def of(cls, store: str, table: str, rows: int, seconds: float) -> TableLoad:
        """Build one, computing ``rows_per_s`` (0 when no time was spent)."""
        return cls(store, table, rows, seconds, rows / seconds if seconds > 0 else 0.0)


@dataclass(frozen=True)
class DatasetInfo:
    """What is loaded in a store: the generator's inputs and the row counts."""

    sf: float
    seed: int
    as_of: dt.date
    generator_version: str
    generated_at: dt.datetime
    row_counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "sf": self.sf,
            "seed": self.seed,
            "as_of": self.as_of.isoformat(),
            "generator_version": self.generator_version,
            "generated_at": self.generated_at.isoformat(),
            "row_counts": dict(self.row_counts),
        }


class _Sink:
    """A store being loaded: ``begin``, ``write`` per batch, ``finish`` or ``abort``."""

    store = ""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(TABLE_NAMES, 0.0)

    def begin(self) -> None:
        raise NotImplementedError

    def write(self, table: str, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def finish(self, info: DatasetInfo) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    @contextmanager
    def timed(self, table: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[table] += time.perf_counter() - start


# --- warehouse ------------------------------------------------------------------------


def _naive_utc(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Drop the UTC zone from timestamp columns (same values): Arrow formats zoned timestamps
    some 30 times slower, and the loading session runs with ``TimeZone = UTC``."""
    arrays = list(batch.columns)
    fields = list(batch.schema)
    changed = False
    for i, f in enumerate(fields):
        if pa.types.is_timestamp(f.type) and f.type.tz is not None:
            naive = pa.timestamp(f.type.unit)
            arrays[i] = arrays[i].cast(naive)
            fields[i] = pa.field(f.name, naive, nullable=f.nullable)
            changed = True
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields)) if changed else batch


class _WarehouseSink(_Sink):
    store = "warehouse"

    def __init__(self, conninfo: str, schema: str) -> None:
        super().__init__()
        self.conninfo = conninfo
        self.schema = schema
        self.conn: psycopg.Connection[Any] | None = None

    def begin(self) -> None:
        import psycopg

        try:
            self.conn = psycopg.connect(self.conninfo, autocommit=False)
        except psycopg.OperationalError as exc:
            raise ComponentError(f"warehouse: cannot connect: {exc}".strip()) from exc
        conn = self.conn
        conn.execute("SET client_encoding TO 'UTF8'")
        conn.execute("SET TimeZone TO 'UTC'")  # the CSV carries UTC timestamps without a zone
        conn.execute("SET maintenance_work_mem TO '512MB'")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema)}")
        for t in (*TABLES, DATASET):
            conn.execute(table_ddl(t, self.schema))
        conn.commit()
        # One transaction from here to finish(): readers see the old data until the commit,
        # and COPY FREEZE into tables truncated in this transaction skips most WAL and vacuum work.
        for t in TABLES:
            for stmt in drop_constraints_ddl(t, self.schema):
                conn.execute(stmt)
        conn.execute(f"TRUNCATE {', '.join(qualified(self.schema, t.name) for t in TABLES)} CASCADE")

    def write(self, table: str, batch: pa.RecordBatch) -> None:
        assert self.conn is not None
        t = get_table(table)
        sql = (
            f"COPY {qualified(self.schema, t.name)} ({', '.join(quote_ident(c) for c in t.column_names)}) "
            "FROM STDIN WITH (FORMAT csv, FREEZE true)"
        )
        with self.timed(table), self.conn.cursor() as cur, cur.copy(sql) as copy:
            batch = _naive_utc(batch)
            for offset in range(0, batch.num_rows, _CSV_SLICE_ROWS):
                sink = pa.BufferOutputStream()
                pacsv.write_csv(batch.slice(offset, _CSV_SLICE_ROWS), sink, _CSV_OPTIONS)
                copy.write(memoryview(sink.getvalue()))

    def finish(self, info: DatasetInfo) -> None:
        assert self.conn is not None
        conn = self.conn
        for t in TABLES:
            with self.timed(t.name):
                for stmt in index_ddl(t, self.schema):
                    conn.execute(stmt)
        for t in TABLES:
            with self.timed(t.name):
                for stmt in foreign_key_ddl(t, self.schema):
                    conn.execute(stmt)
        ds = qualified(self.schema, DATASET.name)
        conn.execute(f"DELETE FROM {ds}")
        conn.execute(
            f"INSERT INTO {ds} ({', '.join(quote_ident(c) for c in DATASET.column_names)}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                self.schema,
                info.sf,
                info.seed,
                info.as_of,
                info.generator_version,
                info.generated_at,
                json.dumps(info.row_counts, sort_keys=True),
            ),
        )
        for t in TABLES:
            with self.timed(t.name):
                conn.execute(f"ANALYZE {qualified(self.schema, t.name)}")
        conn.commit()
        conn.close()

    def abort(self) -> None:
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.rollback()
            finally:
                self.conn.close()


def warehouse_dataset(conninfo: str, schema: str = "bank") -> DatasetInfo | None:
    """What :func:`load` recorded in ``"<schema>"."dataset"``; None if nothing is loaded."""
    import psycopg

    with psycopg.connect(conninfo) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            (schema, DATASET.name),
        ).fetchone()
        if not found:
            return None
        row = conn.execute(
            f"SELECT sf, seed, as_of, generator_version, generated_at, row_counts "
            f"FROM {qualified(schema, DATASET.name)} WHERE name = %s",
            (schema,),
        ).fetchone()
    if row is None:
        return None
    return DatasetInfo(float(row[0]), int(row[1]), row[2], row[3], row[4], json.loads(row[5]))


# --- lake ------------------------------------------------------------------------------


def _schema_signature(schema: Any) -> list[tuple[str, str, bool]]:
    return [(f.name, str(f.field_type), bool(f.required)) for f in schema.fields]


class _LakeSink(_Sink):
    store = "lake"

    def __init__(self, catalog: Catalog, namespace: str) -> None:
        super().__init__()
        self.catalog = catalog
        self.namespace = namespace
        self.tables: dict[str, IcebergTable] = {}
        self.txs: dict[str, Transaction] = {}
        self.written: set[str] = set()

    def begin(self) -> None:
        from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError

        try:
            self.catalog.create_namespace(self.namespace)
        except NamespaceAlreadyExistsError:
            pass
        for t in TABLES:
            ident = (self.namespace, t.name)
            with self.timed(t.name):
                wanted = iceberg_schema(t)
                try:
                    tbl = self.catalog.load_table(ident)
                    if _schema_signature(tbl.schema()) != _schema_signature(wanted):
                        self.catalog.drop_table(ident)
                        tbl = self.catalog.create_table(ident, schema=wanted)
                except NoSuchTableError:
                    tbl = self.catalog.create_table(ident, schema=wanted)
                self.tables[t.name] = tbl
                self.txs[t.name] = tbl.transaction()

    def write(self, table: str, batch: pa.RecordBatch) -> None:
        data = pa.Table.from_batches([batch])
        with self.timed(table):
            tx = self.txs[table]
            if table in self.written or self.tables[table].current_snapshot() is None:
                tx.append(data)
            else:
                tx.overwrite(data)
            self.written.add(table)

    def finish(self, info: DatasetInfo) -> None:
        from pyiceberg.expressions import AlwaysTrue

        for name, tx in self.txs.items():
            with self.timed(name):
                if name not in self.written and self.tables[name].current_snapshot() is not None:
                    tx.delete(AlwaysTrue())
                tx.set_properties(
                    {
                        f"{PROPERTY_PREFIX}sf": repr(info.sf),
                        f"{PROPERTY_PREFIX}seed": str(info.seed),
                        f"{PROPERTY_PREFIX}as_of": info.as_of.isoformat(),
                        f"{PROPERTY_PREFIX}generator_version": info.generator_version,
                        f"{PROPERTY_PREFIX}generated_at": info.generated_at.isoformat(),
                        f"{PROPERTY_PREFIX}rows": str(info.row_counts.get(name, 0)),
                        f"{PROPERTY_PREFIX}row_counts": json.dumps(info.row_counts, sort_keys=True),
                    }
                )
                tx.commit_transaction()

    def abort(self) -> None:
        self.txs.clear()  # nothing is committed before finish()


def lake_dataset(catalog: Catalog, namespace: str) -> DatasetInfo | None:
    """What :func:`load` recorded in the Iceberg table properties; None if nothing is loaded."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        props = catalog.load_table((namespace, "customers")).properties
    except NoSuchTableError:
        return None
    p = PROPERTY_PREFIX
    if f"{p}seed" not in props:
        return None
    return DatasetInfo(
        float(props[f"{p}sf"]),
        int(props[f"{p}seed"]),
        dt.date.fromisoformat(props[f"{p}as_of"]),
        props[f"{p}generator_version"],
        dt.datetime.fromisoformat(props[f"{p}generated_at"]),
        json.loads(props[f"{p}row_counts"]),
    )


# --- orchestration -----------------------------------------------------------------------


ProgressHook = Callable[[str, int], None]


@contextmanager
def _progress(enabled: bool | None, plan: Plan) -> Iterator[ProgressHook]:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda table, rows: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    expected = plan.expected_rows()
    with Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        tasks = {t: bar.add_task(t, total=max(expected[t], 1)) for t in TABLE_NAMES if expected[t]}

        def advance(table: str, rows: int) -> None:
            task = tasks.get(table)
            if task is not None:
                bar.advance(task, rows)

        yield advance


def _timed_batches(
    batches: Iterable[tuple[str, pa.RecordBatch]], seconds: dict[str, float]
) -> Iterator[tuple[str, pa.RecordBatch]]:
    it = iter(batches)
    while True:
        start = time.perf_counter()
        try:
            table, batch = next(it)
        except StopIteration:
            return
        seconds[table] = seconds.get(table, 0.0) + time.perf_counter() - start
        yield table, batch


def load(
    sf: float,
    seed: int,
    conninfo: str | None = None,
    catalog: Catalog | None = None,
    namespace: str | None = None,
    targets: Sequence[str] = STORES,
    *,
    schema: str = "bank",
    progress: bool | None = None,
    chunk_customers: int = DEFAULT_CHUNK_CUSTOMERS,
) -> list[TableLoad]:
    """Generate the bank for ``(sf, seed)`` once and load it into every store of ``targets``.

    ``conninfo`` (libpq) is needed for ``warehouse``, ``catalog`` and ``namespace`` for
    ``lake``. Re-running replaces what is there. ``progress``: a rich progress bar on
    stderr (None: only when stderr is a terminal). Returns one :class:`TableLoad` per
    store and table, after one for the generator (store ``generate``, table ``all``).
    """
    unknown = [t for t in targets if t not in STORES]
    if unknown or not targets:
        raise ConfigError(f"targets must be among {', '.join(STORES)}; got {', '.join(targets) or 'none'}")
    plan = Plan.of(sf)
    sinks: list[_Sink] = []
    if "warehouse" in targets:
        if not conninfo:
            raise ConfigError("loading the warehouse needs a conninfo")
        sinks.append(_WarehouseSink(conninfo, schema))
    if "lake" in targets:
        if catalog is None or not namespace:
            raise ConfigError("loading the lake needs an Iceberg catalog and a namespace")
        sinks.append(_LakeSink(catalog, namespace))

    generated_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rows: dict[str, int] = dict.fromkeys(TABLE_NAMES, 0)
    gen_seconds: dict[str, float] = dict.fromkeys(TABLE_NAMES, 0.0)
    begun: list[_Sink] = []
    try:
        for sink in sinks:
            sink.begin()
            begun.append(sink)
        with _progress(progress, plan) as advance:
            batches = generate(sf, seed, chunk_customers=chunk_customers, as_of=AS_OF)
            for table, batch in _timed_batches(batches, gen_seconds):
                for sink in sinks:
                    sink.write(table, batch)
                rows[table] += batch.num_rows
                advance(table, batch.num_rows)
        info = DatasetInfo(sf, seed, AS_OF, GENERATOR_VERSION, generated_at, dict(rows))
        for sink in reversed(sinks):  # the lake first: its commit is the one more likely to fail
            sink.finish(info)
    except BaseException:
        for sink in begun:
            try:
                sink.abort()
            except Exception:  # noqa: BLE001 - keep the original error
                pass
        raise
    # a chunk's tables are generated together: the generator's time is reported as a whole
    out = [TableLoad.of("generate", "all", sum(rows.values()), sum(gen_seconds.values()))]
    for sink in sinks:
        out += [TableLoad.of(sink.store, t, rows[t], sink.seconds[t]) for t in TABLE_NAMES]
    return out


def load_warehouse(
    conninfo: str, sf: float, seed: int, schema: str = "bank", progress: bool | None = None
) -> list[TableLoad]:
    """Load only the warehouse (see :func:`load`)."""
    return load(sf, seed, conninfo=conninfo, targets=("warehouse",), schema=schema, progress=progress)


def load_lake(
    catalog: Catalog, namespace: str, sf: float, seed: int, progress: bool | None = None
) -> list[TableLoad]:
    """Load only the lake (see :func:`load`)."""
    return load(sf, seed, catalog=catalog, namespace=namespace, targets=("lake",), progress=progress)
