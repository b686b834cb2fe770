"""The lake: an Iceberg SQL catalog and the bank's tables."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError


@dataclass
class LakeSetup:
    created: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created)


def open_catalog(name: str, uri: str, warehouse: str) -> Catalog:
    """The SQL catalog (SQLite locally, any SQLAlchemy URL in clusters)."""
    return SqlCatalog(name, uri=uri, warehouse=warehouse)


def ensure_tables(catalog: Catalog, namespace: str) -> LakeSetup:
    """The namespace and every table of the bank's schema exist (created empty if missing)."""
    from dataplat.data.schema import TABLES, iceberg_schema

    result = LakeSetup()
    try:
        catalog.create_namespace(namespace)
        result.created.append(f"namespace {namespace}")
    except NamespaceAlreadyExistsError:
        pass
    existing = {ident[-1] for ident in catalog.list_tables(namespace)}
    for table in TABLES:
        if table.name not in existing:
            catalog.create_table(f"{namespace}.{table.name}", schema=iceberg_schema(table))
            result.created.append(f"table {namespace}.{table.name}")
    return result
