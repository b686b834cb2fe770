"""The generator: determinism, chunking, referential integrity, formats, scaling."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dataplat.data.generate import (
    AS_OF,
    BLOCK_CUSTOMERS,
    Plan,
    generate,
    generate_chunk,
    id_number_valid,
    luhn_valid,
    mobile_valid,
)
from dataplat.data.schema import TABLE_NAMES, TABLES, arrow_schema


def _tables(sf: float, seed: int, **kw: int) -> dict[str, pa.Table]:
    parts: dict[str, list[pa.RecordBatch]] = defaultdict(list)
    for name, batch in generate(sf, seed, **kw):
        assert batch.schema.equals(arrow_schema(name)), name
        parts[name].append(batch)
    return {name: pa.Table.from_batches(parts[name], schema=arrow_schema(name)) for name in TABLE_NAMES}


@lru_cache(maxsize=8)
def bank(sf: float = 0.002, seed: int = 7) -> dict[str, pa.Table]:
    return _tables(sf, seed)


def test_every_table_but_decisions_has_rows_at_sf_0_001() -> None:
    tables = _tables(0.001, 1)
    for name, t in tables.items():
        assert (t.num_rows == 0) == (name == "decisions"), name
    assert tables["customers"].num_rows == 1000


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = _tables(0.002, 7), bank(0.002, 7)
    assert all(a[n].equals(b[n]) for n in TABLE_NAMES)
    c = bank(0.002, 8)
    assert not c["customers"].equals(a["customers"])
    assert not c["transactions"].equals(a["transactions"])


def test_chunk_size_and_order_do_not_change_the_data() -> None:
    sf = (BLOCK_CUSTOMERS * 2 + 5_000) / 1_000_000  # three blocks, the last one partial
    small = _tables(sf, 3, chunk_customers=BLOCK_CUSTOMERS)
    big = _tables(sf, 3, chunk_customers=10 * BLOCK_CUSTOMERS)
    odd = _tables(sf, 3, chunk_customers=BLOCK_CUSTOMERS + 1)  # rounds up to two blocks
    for n in TABLE_NAMES:
        assert small[n].equals(big[n]), n
        assert small[n].equals(odd[n]), n
    # chunks made alone, in reverse order, are the same rows
    reverse = [generate_chunk(sf, 3, i, chunk_customers=BLOCK_CUSTOMERS) for i in (2, 1, 0)]
    for n in ("customers", "transactions", "holdings"):
        rows = pa.Table.from_batches([dict(chunk)[n] for chunk in reversed(reverse)])
        assert rows.equals(small[n]), n


def _ids(t: pa.Table, col: str) -> pa.Array:
    return t.column(col).combine_chunks()


def test_referential_integrity_and_unique_keys() -> None:
    tables = bank()
    for t in TABLES:
        data = tables[t.name]
        for col in t.primary_key:
            assert pc.count_distinct(data.column(col)).as_py() == data.num_rows, (t.name, col)
        for fk in t.foreign_keys:
            child = data.column(fk.columns[0])
            parent = tables[fk.ref_table].column(fk.ref_columns[0])
            present = pc.drop_null(child)
            assert pc.all(pc.is_in(present, value_set=parent.combine_chunks())).as_py() in (True, None), (
                t.name,
                fk,
            )
    # denormalised customer ids agree with the account's owner
    acc = tables["accounts"]
    owner = dict(
        zip(acc.column("account_id").to_pylist(), acc.column("customer_id").to_pylist(), strict=True)
    )
    for name in ("cards", "transactions"):
        t = tables[name]
        pairs = zip(t.column("account_id").to_pylist(), t.column("customer_id").to_pylist(), strict=True)
        assert all(owner[a] == c for a, c in pairs), name


def test_pii_formats() -> None:
    c = bank()["customers"]
    ids = c.column("id_number").to_pylist()
    assert all(id_number_valid(x) for x in ids)
    births = c.column("birth_date").to_pylist()
    genders = c.column("gender").to_pylist()
    for x, born, g in zip(ids, births, genders, strict=True):
        assert x[6:14] == born.strftime("%Y%m%d")
        assert int(x[16]) % 2 == (1 if g == "M" else 0)
    assert all(mobile_valid(x) for x in c.column("mobile").to_pylist())
    for col in ("id_number", "mobile", "email"):
        assert pc.count_distinct(c.column(col)).as_py() == c.num_rows, col
    assert all(2 <= len(n) <= 4 for n in c.column("name").to_pylist())
    cards = bank()["cards"].column("card_no").to_pylist()
    assert all(luhn_valid(x) and x.startswith("62") and len(x) in (16, 19) for x in cards)
    assert len(set(cards)) == len(cards)
    assert {len(x) for x in cards} == {16, 19}


def test_business_events_exist() -> None:
    tables = bank()
    kinds = set(tables["transactions"].column("kind").to_pylist())
    assert {"payroll_credit", "large_inflow", "transfer_out_other_bank", "card_spend", "fee"} <= kinds
    ts = tables["transactions"].column("ts")
    end = dt.datetime(AS_OF.year, AS_OF.month, AS_OF.day, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert pc.max(ts).as_py() < end
    assert pc.min(ts).as_py() >= end - dt.timedelta(days=30)
    mat = tables["holdings"].column("maturity_date")
    soon = pc.and_(
        pc.greater_equal(mat, pa.scalar(AS_OF)), pc.less(mat, pa.scalar(AS_OF + dt.timedelta(days=7)))
    )
    assert pc.sum(soon).as_py() > 0
    h = tables["holdings"]
    assert pc.all(pc.greater_equal(h.column("maturity_date"), pa.scalar(AS_OF))).as_py()
    segments = set(tables["customers"].column("segment").to_pylist())
    assert segments == {"mass", "affluent", "private"}
    assert pc.all(pc.greater(tables["transactions"].column("amount"), pa.scalar(0))).as_py()


def test_counts_scale_linearly() -> None:
    small, big = bank(0.002, 7), bank(0.008, 7)
    assert small["customers"].num_rows == 2_000 and big["customers"].num_rows == 8_000
    for name in ("accounts", "cards", "transactions", "holdings", "contact_history"):
        ratio = big[name].num_rows / small[name].num_rows
        assert 3.6 < ratio < 4.4, (name, ratio)
    per_customer = big["transactions"].num_rows / big["customers"].num_rows
    assert 18 < per_customer < 22
    assert 1.9 < big["accounts"].num_rows / big["customers"].num_rows < 2.1
    plan = Plan.of(1)
    assert (plan.customers, plan.branches, plan.blocks) == (1_000_000, 500, 1_000_000 // BLOCK_CUSTOMERS)


def test_bad_scale_factor() -> None:
    for sf in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            Plan.of(sf)


def test_keyed_permutation_is_a_bijection() -> None:
    import numpy as np

    from dataplat.data.generate import _keys, _permute

    for n in (1, 2, 7, 1000, 4097):
        out = _permute(np.arange(n), n, _keys(1, "t"))
        assert sorted(out.tolist()) == list(range(n))
    a = _permute(np.arange(1000), 10**8, _keys(1, "t"))
    assert len(set(a.tolist())) == 1000 and a.max() < 10**8
    assert not np.array_equal(a, _permute(np.arange(1000), 10**8, _keys(2, "t")))
    with pytest.raises(ValueError):
        Plan.of(101)
