"""Who can see which column how, who changed the policies when, and plan diffs.

The matrix has one cell per role x ``table.column``: ``clear``, ``partial``, ``token``,
``hash``, ``null`` or ``deny``, with the row filter when the role has one
(``partial, rows: branch``). It is computed from the policy in force as stored in the
warehouse's version history, so it says what is enforced, not what a checkout says.
"""

from __future__ import annotations

import csv
import difflib
import io
from dataclasses import dataclass, field
from typing import Any

from dataplat.data.schema import TABLES
from dataplat.policy.compiler import compile_policy
from dataplat.policy.model import Policy


@dataclass(frozen=True)
class Cell:
    """What one role gets for one column."""

    role: str
    table: str
    column: str
    kind: str
    level: int | None
    mask: str
    row_filter: str

    @property
    def label(self) -> str:
        """``partial`` or ``partial, rows: branch``."""
        if self.row_filter and self.mask != "deny":
            return f"{self.mask}, rows: {self.row_filter}"
        return self.mask

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "role": self.role,
            "table": self.table,
            "column": self.column,
            "kind": self.kind,
            "level": self.level,
            "mask": self.mask,
            "row_filter": self.row_filter or None,
            "row_filtered": bool(self.row_filter) and self.mask != "deny",
        }


def matrix(policy: Policy, classified_only: bool = False) -> list[Cell]:
    """Every role x column (of every bank table; only classified columns if asked)."""
    cells: list[Cell] = []
    for table in TABLES:
        for col in table.columns:
            cls = policy.classified(table.name, col.name)
            if classified_only and cls is None:
                continue
            for role in sorted(policy.roles):
                rf = policy.roles[role].row_filter
                mask = policy.mask_for(role, table.name, col.name)
                cells.append(
                    Cell(
                        role,
                        table.name,
                        col.name,
                        cls.kind if cls else "",
                        cls.level if cls else None,
                        mask.label(),
                        rf.label() if rf else "",
                    )
                )
    return cells


def matrix_text(cells: list[Cell]) -> str:
    """The matrix as a text table: one row per column, one column per role."""
    roles = sorted({c.role for c in cells})
    cols = list(dict.fromkeys(f"{c.table}.{c.column}" for c in cells))
    by = {(f"{c.table}.{c.column}", c.role): c for c in cells}
    width = max([len(c) for c in cols] + [6]) + 2
    colw = max([len(r) for r in roles] + [14]) + 2
    lines = ["column".ljust(width) + "kind/level".ljust(14) + "".join(r.ljust(colw) for r in roles)]
    for key in cols:
        first = by[(key, roles[0])]
        kl = f"{first.kind}/{first.level}" if first.kind else "-"
        lines.append(key.ljust(width) + kl.ljust(14) + "".join(by[(key, r)].label.ljust(colw) for r in roles))
    return "\n".join(line.rstrip() for line in lines)


def matrix_csv(cells: list[Cell]) -> str:
    """The matrix as CSV, one line per role x column."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["role", "table", "column", "kind", "level", "mask", "row_filter"])
    for c in cells:
        writer.writerow([c.role, c.table, c.column, c.kind, c.level or "", c.mask, c.row_filter])
    return out.getvalue()


# --- plan --------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What apply would change, against the version in force."""

    in_force: int | None
    changes: list[str] = field(default_factory=list)
    sql_diff: str = ""
    sql_changed: bool = True

    @property
    def changed(self) -> bool:
        """True when apply would do anything."""
        return bool(self.changes) or self.sql_changed

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "in_force": self.in_force,
            "changed": self.changed,
            "changes": self.changes,
            "sql_changed": self.sql_changed,
            "sql_diff": self.sql_diff,
        }


def diff(
    old: Policy | None, new: Policy, old_sql: str = "", old_version: int | None = None, native: bool = False
) -> Plan:
    """A readable diff: roles, logins, table grants, row filters, masks per role x column,
    then the compiled SQL (``native``: over the C masks) as a unified diff."""
    plan = Plan(old_version)
    ch = plan.changes
    new_sql = compile_policy(new, native=native).sql
    plan.sql_changed = new_sql != old_sql
    plan.sql_diff = "".join(
        difflib.unified_diff(
            old_sql.splitlines(keepends=True),
            new_sql.splitlines(keepends=True),
            f"version {old_version}" if old_version else "(nothing in force)",
            "policies",
        )
    )
    old_roles = old.roles if old else {}
    for r in sorted(set(new.roles) | set(old_roles)):
        if r not in old_roles:
            ch.append(f"+ role {r} (NOLOGIN group)")
        elif r not in new.roles:
            ch.append(f"- role {r} (dropped with its logins' membership)")
    old_logins = {lg.name: lg for lg in old.logins} if old else {}
    new_logins = {lg.name: lg for lg in new.logins}
    for n in sorted(set(new_logins) | set(old_logins)):
        a, b = old_logins.get(n), new_logins.get(n)
        if a is None and b is not None:
            ch.append(
                f"+ login {n} -> {b.role}" + (f" (branches {list(b.branch_ids)})" if b.branch_ids else "")
            )
        elif b is None and a is not None:
            ch.append(f"- login {n}")
        elif a != b and a is not None and b is not None:
            ch.append(f"~ login {n}: {a.role} {list(a.branch_ids)} -> {b.role} {list(b.branch_ids)}")
    if old and old.settings != new.settings:
        ch.append(f"~ settings: {old.settings} -> {new.settings}")
    for r in sorted(new.roles):
        if r not in old_roles:
            continue
        ra, rb = old_roles[r], new.roles[r]
        for t in sorted(set(ra.tables) | set(rb.tables)):
            if t in rb.tables and t not in ra.tables:
                ch.append(f"+ {r} may read {t}")
            elif t in ra.tables and t not in rb.tables:
                ch.append(f"- {r} may no longer read {t}")
        if ra.row_filter != rb.row_filter:
            la = ra.row_filter.label() if ra.row_filter else "none"
            lb = rb.row_filter.label() if rb.row_filter else "none"
            ch.append(f"~ {r} row filter: {la} -> {lb}")
    if old:
        before = {(c.role, c.table, c.column): c.mask for c in matrix(old)}
        for c in matrix(new):
            prev = before.get((c.role, c.table, c.column))
            if prev is not None and prev != c.mask and c.role in old_roles:
                if "deny" in (prev, c.mask) and (
                    c.table not in old_roles[c.role].tables or c.table not in new.roles[c.role].tables
                ):
                    continue  # reported as a table grant change
                ch.append(f"~ {c.role} x {c.table}.{c.column}: {prev} -> {c.mask}")
        old_cls = old.classification
        for key in sorted(set(old_cls) | set(new.classification)):
            a_c, b_c = old_cls.get(key), new.classification.get(key)
            if a_c is None and b_c is not None:
                ch.append(f"+ classified {key} as {b_c.kind}/level {b_c.level}")
            elif b_c is None and a_c is not None:
                ch.append(f"- {key} no longer classified (was {a_c.kind})")
            elif a_c and b_c and (a_c.kind, a_c.level) != (b_c.kind, b_c.level):
                ch.append(f"~ {key}: {a_c.kind}/level {a_c.level} -> {b_c.kind}/level {b_c.level}")
    else:
        ch.append(
            f"+ schema {new.settings.masked_schema}: views over {new.settings.source_schema} for "
            f"{len(new.roles)} role(s), {len(new.classification)} classified column(s)"
        )
    if not ch and plan.sql_changed:
        ch.append("~ compiled SQL differs (see --sql)")
    return plan
