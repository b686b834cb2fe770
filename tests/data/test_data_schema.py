"""The schema module: one declaration, three derived schemas."""

from __future__ import annotations

import pyarrow as pa

from dataplat.data import schema as s


def test_tables_are_parents_first_and_complete() -> None:
    names = [t.name for t in s.TABLES]
    assert names[0] == "branches" and "decisions" in names
    for i, t in enumerate(s.TABLES):
        for fk in t.foreign_keys:
            assert fk.ref_table in names[:i]
            ref = s.get_table(fk.ref_table)
            assert ref.primary_key == fk.ref_columns
        assert set(t.primary_key) <= set(t.column_names)


def test_quote_ident_escapes() -> None:
    assert s.quote_ident("bank") == '"bank"'
    assert s.quote_ident('a"b') == '"a""b"'
    assert s.qualified("my schema", "t") == '"my schema"."t"'


def test_warehouse_ddl_quotes_and_is_idempotent_sql() -> None:
    ddl = s.warehouse_ddl('we"ird')
    assert ddl[0] == 'CREATE SCHEMA IF NOT EXISTS "we""ird"'
    creates = [x for x in ddl if x.startswith("CREATE TABLE")]
    assert len(creates) == len(s.TABLES) + 1  # + dataset
    assert all("IF NOT EXISTS" in x for x in creates)
    assert any("numeric(18,2)" in x for x in creates)
    fks = [x for x in ddl if "FOREIGN KEY" in x]
    assert len(fks) == sum(len(t.foreign_keys) for t in s.TABLES)


def test_money_types_agree_across_stores() -> None:
    from pyiceberg.types import DecimalType

    for t in s.TABLES:
        arrow = s.arrow_schema(t)
        ice = s.iceberg_schema(t)
        assert arrow.names == list(t.column_names) == [f.name for f in ice.fields]
        for col in t.columns:
            if col.type == "money":
                assert arrow.field(col.name).type == pa.decimal128(18, 2)
                assert ice.find_field(col.name).field_type == DecimalType(18, 2)
            assert arrow.field(col.name).nullable == col.nullable
            assert ice.find_field(col.name).required == (not col.nullable)
        assert [ice.find_field(i).name for i in ice.identifier_field_ids] == list(t.primary_key)


def test_pii_columns_are_classified() -> None:
    classes = {(t.name, c.name): c.pii for t in s.TABLES for c in t.columns if c.pii}
    assert classes[("customers", "id_number")] == "id_card"
    assert classes[("customers", "mobile")] == "mobile"
    assert classes[("cards", "card_no")] == "bank_card"
