"""The ``lake-rollback`` drill: one Iceberg table rolled back to the snapshot before a bad batch.

The drill (re)creates its own table in the lake's namespace, appends good batches (one
snapshot each), then a bad batch; it rolls the table back with
``manage_snapshots().rollback_to_snapshot`` and applies the retention policy
(``keep_last`` snapshots of the current branch, plus any younger than ``max_age_s``)
with ``maintenance.expire_snapshots().by_ids``. Checked: the table's content equals
its content before the bad batch; every other table of the namespace kept its metadata
(untouched); exactly the snapshots the policy promises remain, each still readable.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pyarrow as pa
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import LongType, NestedField

from dataplat.dr.context import DrillContext, DrillError
from dataplat.dr.results import Repetition
from dataplat.platform import endpoints

SCHEMA = Schema(
    NestedField(1, "batch", LongType(), required=True),
    NestedField(2, "id", LongType(), required=True),
    NestedField(3, "amount", LongType(), required=True),
)


def _batch(batch: int, rows: int, amount: int) -> pa.Table:
    return pa.table(
        {
            "batch": pa.array([batch] * rows, pa.int64()),
            "id": pa.array(range(batch * rows, batch * rows + rows), pa.int64()),
            "amount": pa.array([amount] * rows, pa.int64()),
        },
        schema=pa.schema(
            [
                pa.field("batch", pa.int64(), nullable=False),
                pa.field("id", pa.int64(), nullable=False),
                pa.field("amount", pa.int64(), nullable=False),
            ]
        ),
    )


def content_digest(table: Table, snapshot_id: int | None = None) -> tuple[int, str]:
    """(rows, sha256 of the rows sorted by id) of a table at a snapshot (default: current)."""
    arrow = (
        table.scan(snapshot_id=snapshot_id).to_arrow().sort_by([("batch", "ascending"), ("id", "ascending")])
    )
    h = hashlib.sha256()
    for col in ("batch", "id", "amount"):
        h.update(arrow.column(col).to_pylist().__repr__().encode())
    return arrow.num_rows, h.hexdigest()


def ancestors(table: Table) -> list[int]:
    """Snapshot ids of the current branch, newest first."""
    out: list[int] = []
    snap = table.current_snapshot()
    while snap is not None:
        out.append(snap.snapshot_id)
        snap = table.snapshot_by_id(snap.parent_snapshot_id) if snap.parent_snapshot_id else None
    return out


def promised_snapshots(table: Table, keep_last: int, max_age_s: float, now_ms: int) -> set[int]:
    """What the retention policy keeps: the last ``keep_last`` of the current branch and the young."""
    keep = set(ancestors(table)[: max(1, keep_last)])
    keep |= {s.snapshot_id for s in table.snapshots() if now_ms - s.timestamp_ms < max_age_s * 1000}
    return keep


def run_repetition(ctx: DrillContext) -> Repetition:
    """Good batches, a bad batch, rollback, expiry, checks."""
    sc = ctx.scenario
    rep = Repetition(ctx.index)
    catalog, ns = endpoints.lake_catalog(ctx.home)
    ident = f"{ns}.{sc.fault['table']}"
    try:
        catalog.drop_table(ident)
    except NoSuchTableError:
        pass
    others = {
        ".".join(t): catalog.load_table(t).metadata_location
        for t in catalog.list_tables(ns)
        if t[-1] != sc.fault["table"]
    }
    table = catalog.create_table(ident, schema=SCHEMA)
    rows = int(sc.fault["rows_per_batch"])
    for b in range(1, int(sc.fault["good_batches"]) + 1):
        table.append(_batch(b, rows, 10))
    good = table.current_snapshot()
    if good is None:
        raise DrillError(f"{ident} has no snapshot after the good batches (good_batches must be >= 1)")
    before = content_digest(table)
    rep.event("good batches committed", time.time())
    t_fault = time.time()
    table.append(_batch(999, rows, -10_000))
    rep.t_fault = t_fault
    rep.event("bad batch committed", t_fault)
    bad = table.current_snapshot()
    assert bad is not None
    t0 = time.time()
    table.manage_snapshots().rollback_to_snapshot(good.snapshot_id).commit()
    t1 = time.time()
    rep.event("rolled back", t1)
    rep.metrics["rollback_s"] = round(t1 - t0, 3)
    table = catalog.load_table(ident)
    now_ms = int(time.time() * 1000)
    promised = promised_snapshots(
        table, int(sc.workload["keep_last"]), float(sc.workload["max_age_s"]), now_ms
    )
    doomed = [s.snapshot_id for s in table.snapshots() if s.snapshot_id not in promised]
    if doomed:
        table.maintenance.expire_snapshots().by_ids(doomed).commit()
    rep.event(f"expired {len(doomed)} snapshot(s)", time.time())
    rep.info.update(
        table=ident,
        good_snapshot=good.snapshot_id,
        bad_snapshot=bad.snapshot_id,
        expired=doomed,
        promised=sorted(promised),
    )
    ctx.log(f"{ident}: rolled back to {good.snapshot_id} in {t1 - t0:.3f} s; expired {len(doomed)}")
    state: dict[str, Any] = {"catalog": catalog, "table": ident, "others": others}
    ctx.before_checks(state)

    table = catalog.load_table(ident)
    cur = table.current_snapshot()
    after = content_digest(table)
    if "rolled_back" in sc.checks:
        ok = cur is not None and cur.snapshot_id == good.snapshot_id and after == before
        rep.check(
            "rolled_back",
            ok,
            f"current snapshot {cur.snapshot_id if cur else None} (expected "
            f"{good.snapshot_id}); {after[0]} rows, content "
            f"{'equal to' if after == before else 'DIFFERENT from'} the content before the bad batch",
        )
    if "others_untouched" in sc.checks:
        changed = sorted(n for n, loc in others.items() if catalog.load_table(n).metadata_location != loc)
        rep.check(
            "others_untouched",
            not changed,
            f"{len(others)} other table(s): {len(changed)} changed"
            + (f" ({', '.join(changed)})" if changed else ""),
            changed=changed,
        )
    if "retention" in sc.checks:
        remaining = {s.snapshot_id for s in table.snapshots()}
        unreadable = []
        for sid in sorted(remaining):
            try:
                content_digest(table, sid)
            except Exception as exc:  # noqa: BLE001 - any failure to read a kept snapshot fails the check
                unreadable.append(f"{sid}: {exc}")
        ok = remaining == promised and not unreadable
        rep.check(
            "retention",
            ok,
            f"{len(remaining)} snapshot(s) remain, the policy (keep_last "
            f"{sc.workload['keep_last']}, max_age_s {sc.workload['max_age_s']}) promises {len(promised)}; "
            f"missing {sorted(promised - remaining)}, extra {sorted(remaining - promised)}, "
            f"unreadable {len(unreadable)}",
            unreadable=unreadable,
        )
    return rep
