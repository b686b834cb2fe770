"""The one source of truth for the synthetic bank's tables.

Every store is derived from the declarations in :data:`TABLES`:

* PostgreSQL DDL (:func:`warehouse_ddl`, and its parts :func:`table_ddl`,
  :func:`index_ddl`, :func:`foreign_key_ddl`, :func:`drop_constraints_ddl` that the
  loader uses to build indexes and foreign keys after a bulk load),
* Arrow schemas (:func:`arrow_schema`) that the generator emits,
* Iceberg schemas (:func:`iceberg_schema`) for the lake.

Amounts are ``NUMERIC(18,2)`` in PostgreSQL and ``decimal128(18,2)`` in Arrow and
Iceberg, so sums agree to the cent between the stores. Timestamps are microseconds
in UTC (``timestamptz``) everywhere.

Columns carry a ``pii`` class (``name``, ``id_card``, ``mobile``, ``email``,
``address``, ``bank_card``) that the policy engine can start from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pyiceberg.schema import Schema as IcebergSchema

ColumnType = Literal["int", "bigint", "text", "date", "timestamptz", "money", "bool", "double"]
PiiClass = Literal["name", "id_card", "mobile", "email", "address", "bank_card"]

MONEY_PRECISION = 18
MONEY_SCALE = 2

_PG_TYPES: dict[str, str] = {
    "int": "integer",
    "bigint": "bigint",
    "text": "text",
    "date": "date",
    "timestamptz": "timestamptz",
    "money": f"numeric({MONEY_PRECISION},{MONEY_SCALE})",
    "bool": "boolean",
    "double": "double precision",
}

_ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int32(),
    "bigint": pa.int64(),
    "text": pa.string(),
    "date": pa.date32(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "money": pa.decimal128(MONEY_PRECISION, MONEY_SCALE),
    "bool": pa.bool_(),
    "double": pa.float64(),
}


@dataclass(frozen=True)
class Column:
    """One column: its logical type, nullability and, for personal data, its class."""

    name: str
    type: ColumnType
    nullable: bool = False
    pii: PiiClass | None = None
    doc: str = ""


@dataclass(frozen=True)
class ForeignKey:
    """``columns`` reference ``ref_columns`` of ``ref_table`` (same schema)."""

    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]

    def name(self, table: str) -> str:
        """Constraint name, stable so that it can be dropped and re-created."""
        return f"{table}_{'_'.join(self.columns)}_fkey"


@dataclass(frozen=True)
class Index:
    """A secondary index (primary keys are declared on the table)."""

    columns: tuple[str, ...]
    unique: bool = False

    def name(self, table: str) -> str:
        """Index name, stable so that it can be dropped and re-created."""
        return f"{table}_{'_'.join(self.columns)}_{'key' if self.unique else 'idx'}"


@dataclass(frozen=True)
class Table:
    """A table of the bank: columns, primary key, foreign keys and indexes."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    indexes: tuple[Index, ...] = ()
    generated: bool = True
    """False for tables that start empty and are written by services (decisions)."""
    doc: str = ""

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in declaration order (the order of COPY and of Arrow batches)."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        """The column called ``name``; :class:`KeyError` if there is none."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")


def _c(name: str, type_: ColumnType, nullable: bool = False, pii: PiiClass | None = None) -> Column:
    return Column(name, type_, nullable, pii)


def _fk(column: str, ref_table: str, ref_column: str | None = None) -> ForeignKey:
    return ForeignKey((column,), ref_table, (ref_column or column,))


BRANCHES = Table(
    "branches",
    (
        _c("branch_id", "int"),
        _c("name", "text"),
        _c("province", "text"),
        _c("city", "text"),
        _c("district", "text"),
        _c("region_code", "text"),
        _c("opened_at", "date"),
    ),
    ("branch_id",),
    doc="Branches; customers belong to one (relationship managers see only theirs).",
)

CUSTOMERS = Table(
    "customers",
    (
        _c("customer_id", "bigint"),
        _c("name", "text", pii="name"),
        _c("id_number", "text", pii="id_card"),
        _c("mobile", "text", pii="mobile"),
        _c("email", "text", pii="email"),
        _c("address", "text", pii="address"),
        _c("city", "text"),
        _c("branch_id", "int"),
        _c("segment", "text"),
        _c("birth_date", "date"),
        _c("gender", "text"),
        _c("opened_at", "date"),
        _c("risk_level", "int"),
        _c("marketing_consent", "bool"),
        _c("status", "text"),
    ),
    ("customer_id",),
    (_fk("branch_id", "branches"),),
    (Index(("branch_id",)), Index(("id_number",), unique=True), Index(("mobile",))),
    doc="Customers with PII; segment mass/affluent/private; risk_level C1..C5 as 1..5.",
)

ACCOUNTS = Table(
    "accounts",
    (
        _c("account_id", "bigint"),
        _c("customer_id", "bigint"),
        _c("type", "text"),
        _c("currency", "text"),
        _c("opened_at", "date"),
        _c("status", "text"),
        _c("balance", "money"),
    ),
    ("account_id",),
    (_fk("customer_id", "customers"),),
    (Index(("customer_id",)),),
    doc="Deposit accounts (current / savings / time_deposit), balance as of the data set's as-of date.",
)

CARDS = Table(
    "cards",
    (
        _c("card_id", "bigint"),
        _c("account_id", "bigint"),
        _c("customer_id", "bigint"),
        _c("card_no", "text", pii="bank_card"),
        _c("card_type", "text"),
        _c("issued_at", "date"),
        _c("expires_on", "date"),
        _c("status", "text"),
    ),
    ("card_id",),
    (_fk("account_id", "accounts"), _fk("customer_id", "customers")),
    (Index(("account_id",)), Index(("customer_id",)), Index(("card_no",), unique=True)),
    doc="UnionPay debit cards (Luhn-valid, 16 or 19 digits, starting 62) linked to an account.",
)

TRANSACTIONS = Table(
    "transactions",
    (
        _c("txn_id", "bigint"),
        _c("account_id", "bigint"),
        _c("customer_id", "bigint"),
        _c("ts", "timestamptz"),
        _c("amount", "money"),
        _c("direction", "text"),
        _c("kind", "text"),
        _c("counterparty_bank", "text", nullable=True),
        _c("channel", "text"),
    ),
    ("txn_id",),
    (_fk("account_id", "accounts"), _fk("customer_id", "customers")),
    (Index(("account_id", "ts")), Index(("customer_id", "ts"))),
    doc="30 days of ledger entries; amount is positive, direction says credit or debit.",
)

PRODUCTS = Table(
    "products",
    (
        _c("product_id", "int"),
        _c("code", "text"),
        _c("name", "text"),
        _c("category", "text"),
        _c("risk_level", "int"),
        _c("term_days", "int", nullable=True),
        _c("expected_rate", "double"),
        _c("min_amount", "money"),
        _c("currency", "text"),
        _c("launched_on", "date"),
        _c("status", "text"),
    ),
    ("product_id",),
    indexes=(Index(("code",), unique=True),),
    doc="Deposits, wealth management, funds and insurance; risk level R1..R5 as 1..5.",
)

HOLDINGS = Table(
    "holdings",
    (
        _c("holding_id", "bigint"),
        _c("customer_id", "bigint"),
        _c("product_id", "int"),
        _c("amount", "money"),
        _c("start_date", "date"),
        _c("maturity_date", "date", nullable=True),
        _c("status", "text"),
    ),
    ("holding_id",),
    (_fk("customer_id", "customers"), _fk("product_id", "products")),
    (Index(("customer_id",)), Index(("maturity_date",))),
    doc="Product holdings; term products mature on maturity_date (some within days of as-of).",
)

CAMPAIGNS = Table(
    "campaigns",
    (
        _c("campaign_id", "int"),
        _c("code", "text"),
        _c("name", "text"),
        _c("trigger", "text"),
        _c("target_segment", "text", nullable=True),
        _c("product_id", "int", nullable=True),
        _c("channel", "text"),
        _c("start_date", "date"),
        _c("end_date", "date"),
        _c("status", "text"),
    ),
    ("campaign_id",),
    (_fk("product_id", "products"),),
    (Index(("code",), unique=True),),
    doc="Marketing campaigns: nightly audiences or real-time triggers (payroll_credit, ...).",
)

CONTACT_HISTORY = Table(
    "contact_history",
    (
        _c("contact_id", "bigint"),
        _c("customer_id", "bigint"),
        _c("campaign_id", "int"),
        _c("channel", "text"),
        _c("ts", "timestamptz"),
        _c("outcome", "text"),
    ),
    ("contact_id",),
    (_fk("customer_id", "customers"), _fk("campaign_id", "campaigns")),
    (Index(("customer_id", "ts")),),
    doc="Marketing contacts (app_push / sms / rm_task) and their outcome; feeds frequency caps.",
)

DECISIONS = Table(
    "decisions",
    (
        _c("event_id", "text"),
        _c("customer_id", "bigint"),
        _c("ts", "timestamptz"),
        _c("event_type", "text"),
        _c("campaign_id", "int", nullable=True),
        _c("offer", "text", nullable=True),
        _c("channel", "text", nullable=True),
        _c("score", "double", nullable=True),
        _c("degraded", "bool"),
        _c("latency_ms", "double"),
        _c("reason", "text", nullable=True),
    ),
    ("event_id",),
    (_fk("customer_id", "customers"),),
    (Index(("customer_id", "ts")),),
    generated=False,
    doc="Real-time decisions, one per event id (the primary key makes recording idempotent).",
)

DATASET = Table(
    "dataset",
    (
        _c("name", "text"),
        _c("sf", "double"),
        _c("seed", "bigint"),
        _c("as_of", "date"),
        _c("generator_version", "text"),
        _c("generated_at", "timestamptz"),
        _c("row_counts", "text"),
    ),
    ("name",),
    generated=False,
    doc="What is loaded: one row (name 'bank') with scale factor, seed and row counts (JSON).",
)

TABLES: tuple[Table, ...] = (
    BRANCHES,
    CUSTOMERS,
    ACCOUNTS,
    CARDS,
    TRANSACTIONS,
    PRODUCTS,
    HOLDINGS,
    CAMPAIGNS,
    CONTACT_HISTORY,
    DECISIONS,
)
"""The bank's tables, parents before children."""

TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)
_BY_NAME: dict[str, Table] = {t.name: t for t in (*TABLES, DATASET)}


def get_table(table: str | Table) -> Table:
    """The :class:`Table` for a name (or the table itself)."""
    if isinstance(table, Table):
        return table
    try:
        return _BY_NAME[table]
    except KeyError:
        raise KeyError(f"unknown table {table!r}; known: {', '.join(_BY_NAME)}") from None


def _check_order() -> None:
    seen: set[str] = set()
    for t in TABLES:
        for fk in t.foreign_keys:
            if fk.ref_table not in seen:
                raise AssertionError(f"{t.name} references {fk.ref_table}, which comes later in TABLES")
        seen.add(t.name)


_check_order()


# --- PostgreSQL -----------------------------------------------------------------------


def quote_ident(name: str) -> str:
    """Quote an SQL identifier: ``a"b`` becomes ``"a""b"``."""
    if "\x00" in name:
        raise ValueError("identifier contains a NUL byte")
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    """``"schema"."name"``."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def _cols(cols: tuple[str, ...]) -> str:
    return ", ".join(quote_ident(c) for c in cols)


def table_ddl(table: str | Table, schema: str = "bank") -> str:
    """``CREATE TABLE IF NOT EXISTS`` with columns, NOT NULL and the primary key."""
    t = get_table(table)
    lines = [
        f"    {quote_ident(c.name)} {_PG_TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}" for c in t.columns
    ]
    lines.append(f"    CONSTRAINT {quote_ident(t.name + '_pkey')} PRIMARY KEY ({_cols(t.primary_key)})")
    return f"CREATE TABLE IF NOT EXISTS {qualified(schema, t.name)} (\n" + ",\n".join(lines) + "\n)"


def index_ddl(table: str | Table, schema: str = "bank") -> list[str]:
    """``CREATE [UNIQUE] INDEX IF NOT EXISTS`` for every secondary index of the table."""
    t = get_table(table)
    return [
        f"CREATE {'UNIQUE ' if ix.unique else ''}INDEX IF NOT EXISTS {quote_ident(ix.name(t.name))} "
        f"ON {qualified(schema, t.name)} ({_cols(ix.columns)})"
        for ix in t.indexes
    ]


def foreign_key_ddl(table: str | Table, schema: str = "bank") -> list[str]:
    """Idempotent foreign-key statements: drop the named constraint if present, add it (validated)."""
    t = get_table(table)
    out: list[str] = []
    for fk in t.foreign_keys:
        name = quote_ident(fk.name(t.name))
        out.append(f"ALTER TABLE {qualified(schema, t.name)} DROP CONSTRAINT IF EXISTS {name}")
        out.append(
            f"ALTER TABLE {qualified(schema, t.name)} ADD CONSTRAINT {name} "
            f"FOREIGN KEY ({_cols(fk.columns)}) "
            f"REFERENCES {qualified(schema, fk.ref_table)} ({_cols(fk.ref_columns)})"
        )
    return out


def drop_constraints_ddl(table: str | Table, schema: str = "bank") -> list[str]:
    """Drop the table's foreign keys and secondary indexes (before a bulk load)."""
    t = get_table(table)
    out = [
        f"ALTER TABLE {qualified(schema, t.name)} DROP CONSTRAINT IF EXISTS {quote_ident(fk.name(t.name))}"
        for fk in t.foreign_keys
    ]
    out += [f"DROP INDEX IF EXISTS {qualified(schema, ix.name(t.name))}" for ix in t.indexes]
    return out


def warehouse_ddl(schema: str = "bank") -> list[str]:
    """Every statement that creates the bank in PostgreSQL, idempotently, in order.

    Schema, tables with primary keys (parents first), the ``dataset`` metadata table,
    secondary indexes, then foreign keys.
    """
    stmts = [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}"]
    stmts += [table_ddl(t, schema) for t in (*TABLES, DATASET)]
    for t in TABLES:
        stmts += index_ddl(t, schema)
    for t in TABLES:
        stmts += foreign_key_ddl(t, schema)
    return stmts


# --- Arrow ----------------------------------------------------------------------------


def arrow_schema(table: str | Table) -> pa.Schema:
    """The Arrow schema of the generator's batches for ``table`` (NOT NULL -> non-nullable)."""
    t = get_table(table)
    return pa.schema([pa.field(c.name, _ARROW_TYPES[c.type], nullable=c.nullable) for c in t.columns])


# --- Iceberg --------------------------------------------------------------------------


def iceberg_schema(table: str | Table) -> IcebergSchema:
    """The pyiceberg :class:`~pyiceberg.schema.Schema`; field ids follow column order from 1,
    the primary key is the identifier."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import (
        BooleanType,
        DateType,
        DecimalType,
        DoubleType,
        IcebergType,
        IntegerType,
        LongType,
        NestedField,
        StringType,
        TimestamptzType,
    )

    types: dict[str, IcebergType] = {
        "int": IntegerType(),
        "bigint": LongType(),
        "text": StringType(),
        "date": DateType(),
        "timestamptz": TimestamptzType(),
        "money": DecimalType(MONEY_PRECISION, MONEY_SCALE),
        "bool": BooleanType(),
        "double": DoubleType(),
    }
    t = get_table(table)
    fields = [
        NestedField(field_id=i, name=c.name, field_type=types[c.type], required=not c.nullable)
        for i, c in enumerate(t.columns, start=1)
    ]
    ids = [i for i, c in enumerate(t.columns, start=1) if c.name in t.primary_key]
    return Schema(*fields, identifier_field_ids=ids)
