"""Query the warehouse as every policy role and look for what must not be there.

For each role, one of its LOGIN members connects and runs the checks of :data:`CHECKS`.
Values and every text the server sends back (rows, plans, error messages, notices)
go through the detectors: resident ID numbers with a valid check digit, Luhn-valid
card numbers, mainland mobiles, e-mail addresses, and the exact raw values of a sample
the admin reads from the base tables. A detector hit in a column the policy shows in
clear to that role is expected; anywhere else it is a LEAK, and so is a denied column
that can be read, a row outside the role's filter, or a base table that answers.

The known bypasses are tried, not assumed away: predicates, ORDER BY, GROUP BY and
joins on masked columns with known raw values, EXPLAIN ANALYZE, ``pg_stats`` /
``pg_statistic``, casts whose errors echo values, leaky user functions (temporary
plpgsql functions with a tiny cost, and built-ins shadowed through ``search_path`` where
the role can create functions), COPY, cursors, direct access to the base tables and
to the token key.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

import psycopg
from psycopg import sql

from dataplat.data.generate import id_number_valid, luhn_valid, mobile_valid
from dataplat.data.schema import TABLES, Table
from dataplat.policy.apply import Target, token_key
from dataplat.policy.compiler import masked_schema
from dataplat.policy.masks import apply_mask, mask_free_text
from dataplat.policy.model import PARTIAL_DEFAULTS, Login, Mask, Policy

CHECKS: tuple[str, ...] = (
    "read",
    "row_filter",
    "where",
    "order_by",
    "group_by",
    "join",
    "explain",
    "pg_stats",
    "cast_error",
    "function",
    "copy",
    "cursor",
    "base_tables",
    "token_key",
)
"""The checks, in report order."""

PASS, LEAK, FAIL, NA = "pass", "LEAK", "FAIL", "n/a"
_RANK = {NA: 0, PASS: 1, FAIL: 2, LEAK: 3}

_ID_RE = re.compile(r"(?<![0-9A-Za-z_])[0-9]{17}[0-9Xx](?![0-9A-Za-z_])")
_CARD_RE = re.compile(r"(?<![0-9A-Za-z_])[0-9]{15,19}(?![0-9A-Za-z_])")
_MOBILE_RE = re.compile(r"(?<![0-9A-Za-z_])1[0-9]{10}(?![0-9A-Za-z_])")
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_TEXTUAL = ("text",)


@dataclass
class Finding:
    """One check for one role: its status and, when not a pass, what was seen."""

    role: str
    login: str
    check: str
    status: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "role": self.role,
            "login": self.login,
            "check": self.check,
            "status": self.status,
            "detail": self.detail,
        }


@dataclass
class VerifyReport:
    """Every finding; :attr:`ok` when nothing leaked and no check failed to run."""

    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no finding is a LEAK or a FAIL."""
        return all(f.status in (PASS, NA) for f in self.findings)

    def cell(self, role: str, check: str) -> str:
        """The worst status of ``role`` x ``check``."""
        statuses = [f.status for f in self.findings if f.role == role and f.check == check]
        return max(statuses, key=lambda s: _RANK[s]) if statuses else NA

    @property
    def roles(self) -> list[str]:
        """Roles in the report, in order of appearance."""
        return list(dict.fromkeys(f.role for f in self.findings))

    def problems(self) -> list[Finding]:
        """Findings that are a LEAK or a FAIL."""
        return [f for f in self.findings if f.status in (LEAK, FAIL)]

    def table(self) -> str:
        """The role x check matrix as text."""
        width = max([len(r) for r in self.roles] + [4])
        head = "role".ljust(width) + "  " + "  ".join(c[:11].ljust(11) for c in CHECKS)
        lines = [head, "-" * len(head)]
        for role in self.roles:
            lines.append(role.ljust(width) + "  " + "  ".join(self.cell(role, c).ljust(11) for c in CHECKS))
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: ok, the matrix and every non-pass finding."""
        return {
            "ok": self.ok,
            "checks": list(CHECKS),
            "matrix": {r: {c: self.cell(r, c) for c in CHECKS} for r in self.roles},
            "problems": [f.as_dict() for f in self.problems()],
            "findings": [f.as_dict() for f in self.findings],
        }


# --- detectors ------------------------------------------------------------------------------


class Detector:
    """Finds personal data in values and in free text (plans, messages, notices)."""

    def __init__(self, raw: dict[str, str]) -> None:
        self.raw = raw
        """raw value -> ``table.column`` it was read from (the admin's sample)."""
        self._long = sorted((v for v in raw if len(v) >= 6), key=len, reverse=True)

    def value(self, value: object) -> list[str]:
        """Why ``value`` (one column value) is personal data; empty when it is not."""
        if value is None or isinstance(value, (bool, int, float, Decimal)):
            return []
        text = str(value)
        hits = self.text(text)
        if text in self.raw and not any(self.raw[text] in h for h in hits):
            hits.append(f"raw value of {self.raw[text]}")
        return hits

    def text(self, text: str) -> list[str]:
        """Every ID number, card number, mobile, e-mail or long raw value inside ``text``."""
        hits: list[str] = []
        for m in _ID_RE.findall(text):
            if id_number_valid(m.upper()):
                hits.append(f"ID number {_redact(m)}")
        for m in _CARD_RE.findall(text):
            if len(m) >= 16 and luhn_valid(m) and not id_number_valid(m):
                hits.append(f"card number {_redact(m)}")
        for m in _MOBILE_RE.findall(text):
            if mobile_valid(m):
                hits.append(f"mobile {_redact(m)}")
        for m in _EMAIL_RE.findall(text):
            hits.append(f"e-mail {_redact(m)}")
        for v in self._long:
            if v in text:
                hits.append(f"raw value of {self.raw[v]} ({_redact(v)})")
        return hits


def ties_in_raw_order(rows: list[tuple[Any, Any]], raw: dict[Any, Any]) -> bool | None:
    """Whether rows sorted by a masked column put rows with equal masked values in the order
    of their raw values (the sort used the raw values: a leak); None without evidence.

    ``rows`` are (key, masked value) in the order the server returned them, ``raw`` the
    raw value per key. Evidence needs ties of rows whose raw values differ: they come out
    in raw order by chance once in n! / prod(k!) per group (k counting equal raw values,
    whose relative order says nothing); below 1 in 10,000 there is no evidence.
    """
    groups: dict[Any, list[str]] = {}
    for key, masked in rows:
        groups.setdefault(masked, []).append(str(raw[key]))
    log_odds = 0.0  # log of the arrangements, by lgamma: n! overflows a float
    for raws in groups.values():
        log_odds += math.lgamma(len(raws) + 1)
        log_odds -= sum(math.lgamma(count + 1) for count in Counter(raws).values())
    if log_odds < math.log(1e4):
        return None
    return all(raws == sorted(raws) for raws in groups.values() if len(set(raws)) > 2)


def _redact(value: str) -> str:
    """Enough of a value to find it again, not enough to leak it into the report."""
    return value[:2] + "…" + value[-2:] if len(value) > 6 else "…"


# --- helpers ------------------------------------------------------------------------------


def _pk(table: Table) -> str:
    return table.primary_key[0]


def _q(
    conn: psycopg.Connection[Any],
    query: sql.Composable | str,
    params: Iterable[Any] | None = None,
    notices: list[str] | None = None,
) -> tuple[list[tuple[Any, ...]], str | None]:
    """Run a query; (rows, None) or ([], error text including detail/context)."""
    try:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        rows = cur.fetchall() if cur.description else []
        return rows, None
    except psycopg.Error as exc:
        d = exc.diag
        return [], " | ".join(
            x for x in (d.sqlstate, d.message_primary, d.message_detail, d.context, d.message_hint) if x
        )


def _denied(err: str | None) -> bool:
    return err is not None and (err.startswith("42501") or "permission denied" in err)


@dataclass
class _Ctx:
    policy: Policy
    target: Target
    detector: Detector
    raw_rows: dict[str, dict[Any, dict[str, Any]]]  # table -> pk -> row
    key: bytes
    sample: int


class _RoleRun:
    def __init__(self, ctx: _Ctx, role: str, login: Login, conn: psycopg.Connection[Any]) -> None:
        self.ctx, self.role, self.login, self.conn = ctx, role, login, conn
        self.findings: list[Finding] = []
        self.notices: list[str] = []
        conn.add_notice_handler(
            lambda d: self.notices.append(
                " ".join(x for x in (d.message_primary, d.message_detail, d.context) if x)
            )
        )
        self.masked = masked_schema(ctx.policy, role)
        self.src = ctx.policy.settings.source_schema

    def add(self, check: str, status: str, detail: str = "") -> None:
        self.findings.append(Finding(self.role, self.login.name, check, status, detail))

    def view(self, table: Table) -> sql.Composable:
        return sql.Identifier(self.masked, table.name)

    def mask(self, table: Table, column: str) -> Mask:
        return self.ctx.policy.mask_for(self.role, table.name, column)

    def tables(self) -> list[Table]:
        return [t for t in TABLES if t.name in self.ctx.policy.roles[self.role].tables]

    def masked_text_columns(self, table: Table) -> list[str]:
        """Classified text columns the role can read and does not see in clear."""
        out = []
        for c in table.columns:
            cls = self.ctx.policy.classified(table.name, c.name)
            if cls is None or c.type != "text":
                continue
            if self.mask(table, c.name).kind in ("clear", "deny"):
                continue
            out.append(c.name)
        return out

    def scan(self, check: str, what: str, text: str) -> bool:
        hits = self.ctx.detector.text(text)
        if hits:
            self.add(check, LEAK, f"{what}: " + "; ".join(sorted(set(hits))[:5]))
            return True
        return False

    def raw_values(self, table: Table, column: str, limit: int = 20) -> list[str]:
        """Raw values of the admin's sample that the column's masking must hide (free text
        with no digit and no e-mail address in it has nothing to hide, as in :func:`_admin_sample`)."""
        cls = self.ctx.policy.classified(table.name, column)
        free_text = cls is not None and cls.kind == "free_text"
        values = (
            str(r[column])
            for r in self.ctx.raw_rows.get(table.name, {}).values()
            if r.get(column) is not None
        )
        return [v for v in values if not (free_text and mask_free_text(v) == v)][:limit]

    # --- the checks -------------------------------------------------------------------

    def read(self) -> None:
        leaks = 0
        for table in self.tables():
            granted = [c.name for c in table.columns if self.mask(table, c.name).kind != "deny"]
            for c in table.columns:
                if self.mask(table, c.name).kind == "deny":
                    _rows, err = _q(
                        self.conn,
                        sql.SQL("SELECT {} FROM {} LIMIT 1").format(sql.Identifier(c.name), self.view(table)),
                    )
                    if not _denied(err):
                        self.add("read", LEAK, f"{table.name}.{c.name} is denied by policy but readable")
                        leaks += 1
            if not granted:
                continue
            pk = _pk(table)
            cols = [pk, *[c for c in granted if c != pk]]
            rows, err = _q(
                self.conn,
                sql.SQL("SELECT {} FROM {} ORDER BY {} LIMIT {}").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c in cols),
                    self.view(table),
                    sql.Identifier(pk),
                    sql.Literal(self.ctx.sample),
                ),
            )
            if err:
                self.add("read", FAIL, f"{table.name}: {err}")
                continue
            raw_by_pk = self.ctx.raw_rows.get(table.name, {})
            for row in rows:
                values = dict(zip(cols, row, strict=True))
                raw = raw_by_pk.get(values[pk])
                for col, value in values.items():
                    cls = self.ctx.policy.classified(table.name, col)
                    mask = self.mask(table, col)
                    if cls is not None and mask.kind == "clear":
                        continue
                    hits = self.ctx.detector.value(value)
                    if hits:
                        what = "unclassified column" if cls is None else f"{mask.label()} column"
                        self.add("read", LEAK, f"{what} {table.name}.{col}: {'; '.join(hits)}")
                        leaks += 1
                        continue
                    if cls is None or raw is None:
                        continue
                    expected = apply_mask(cls.kind, mask, raw.get(col), self.ctx.key)
                    if cls.kind == "balance" and expected is not None and value is not None:
                        if Decimal(str(value)) != Decimal(str(expected)):
                            self.add("read", LEAK, f"{table.name}.{col}: {mask.label()} not applied")
                            leaks += 1
                    elif value != expected:
                        self.add(
                            "read", LEAK, f"{table.name}.{col}: {mask.label()} expected, got something else"
                        )
                        leaks += 1
                if leaks > 20:
                    return
        if not leaks:
            self.add("read", PASS)

    def allowed_customers(self) -> set[int] | None:
        rf = self.ctx.policy.roles[self.role].row_filter
        if rf is None:
            return None
        with self.ctx.target.connect(autocommit=True) as admin:
            if rf.by == "branch":
                rows = admin.execute(
                    sql.SQL(
                        "SELECT customer_id FROM {} WHERE branch_id = ANY(%s) OR branch_id IN "
                        "(SELECT branch_id FROM dataplat_policy.login_branches WHERE login = %s)"
                    ).format(sql.Identifier(self.src, "customers")),
                    (list(self.login.branch_ids), self.login.name),
                ).fetchall()
            else:
                rows = admin.execute(
                    "SELECT customer_id FROM dataplat_policy.consents "
                    "WHERE grantee IN (%s, %s) AND purpose = %s "
                    "AND revoked_at IS NULL",
                    (self.login.name, self.role, rf.purpose),
                ).fetchall()
        return {r[0] for r in rows}

    def row_filter(self, allowed: set[int] | None) -> None:
        if allowed is None:
            self.add("row_filter", NA, "no row filter")
            return
        bad = 0
        seen = 0
        for table in self.tables():
            if "customer_id" not in table.column_names or self.mask(table, "customer_id").kind == "deny":
                continue
            rows, err = _q(self.conn, sql.SQL("SELECT DISTINCT customer_id FROM {}").format(self.view(table)))
            if err:
                self.add("row_filter", FAIL, f"{table.name}: {err}")
                continue
            outside = [r[0] for r in rows if r[0] not in allowed]
            seen += len(rows)
            if outside:
                bad += 1
                self.add(
                    "row_filter", LEAK, f"{table.name}: {len(outside)} customer(s) outside the filter visible"
                )
            hidden = next(
                (c for c in sorted(self.ctx.raw_rows.get("customers", {})) if c not in allowed), None
            )
            if hidden is not None:
                rows, err = _q(
                    self.conn,
                    sql.SQL("SELECT count(*) FROM {} WHERE customer_id = %s").format(self.view(table)),
                    (hidden,),
                )
                if rows and rows[0][0]:
                    bad += 1
                    self.add("row_filter", LEAK, f"{table.name}: a filtered-out customer found by WHERE")
        if not bad:
            self.add("row_filter", PASS, f"{seen} visible customer id(s), all inside the filter")

    def where_join_group(self) -> None:
        bad = {"where": 0, "join": 0, "group_by": 0}
        tried = 0
        for table in self.tables():
            for col in self.masked_text_columns(table):
                raws = self.raw_values(table, col)
                if not raws:
                    continue
                tried += 1
                view, c = self.view(table), sql.Identifier(col)
                rows, err = _q(
                    self.conn, sql.SQL("SELECT count(*) FROM {} WHERE {} = ANY(%s)").format(view, c), (raws,)
                )
                if rows and rows[0][0]:
                    bad["where"] += 1
                    self.add(
                        "where", LEAK, f"{table.name}.{col}: WHERE on raw values found {rows[0][0]} row(s)"
                    )
                prefix = [r[: max(len(r) - 2, 1)] + "%" for r in raws if len(r) >= 8][:5]
                if prefix:
                    rows, err = _q(
                        self.conn,
                        sql.SQL("SELECT count(*) FROM {} WHERE {} LIKE ANY(%s)").format(view, c),
                        (prefix,),
                    )
                    if rows and rows[0][0]:
                        bad["where"] += 1
                        self.add("where", LEAK, f"{table.name}.{col}: LIKE on raw prefixes matched")
                rows, err = _q(
                    self.conn,
                    sql.SQL(
                        "SELECT count(*) FROM {} AS v JOIN unnest(%s::text[]) AS p(x) ON v.{} = p.x"
                    ).format(view, c),
                    (raws,),
                )
                if rows and rows[0][0]:
                    bad["join"] += 1
                    self.add(
                        "join", LEAK, f"{table.name}.{col}: join with raw values matched {rows[0][0]} row(s)"
                    )
                rows, err = _q(
                    self.conn,
                    sql.SQL(
                        "SELECT {c}, count(*) FROM {v} GROUP BY {c} HAVING {c} = ANY(%s) OR count(*) > 0 "
                        "ORDER BY 2 DESC LIMIT 50"
                    ).format(c=c, v=view),
                    (raws,),
                )
                for key, _n in rows:
                    hits = self.ctx.detector.value(key)
                    if hits:
                        bad["group_by"] += 1
                        self.add("group_by", LEAK, f"{table.name}.{col}: group key {'; '.join(hits)}")
                        break
        for check, n in bad.items():
            if not n:
                self.add(check, PASS if tried else NA, "" if tried else "no masked text column")

    def order_by(self) -> None:
        verdicts = 0
        for table in self.tables():
            pk = _pk(table)
            raw_rows = self.ctx.raw_rows.get(table.name, {})
            if not raw_rows or self.mask(table, pk).kind == "deny":
                continue
            pks = list(raw_rows)
            for col in self.masked_text_columns(table):
                rows, err = _q(
                    self.conn,
                    sql.SQL("SELECT {pk}, {c} FROM {v} WHERE {pk} = ANY(%s) ORDER BY {c}").format(
                        pk=sql.Identifier(pk), c=sql.Identifier(col), v=self.view(table)
                    ),
                    (pks,),
                )
                if err or len(rows) < 10:
                    continue
                tied_in_raw_order = ties_in_raw_order(rows, {k: raw_rows[k].get(col) for k, _ in rows})
                if tied_in_raw_order is None:
                    continue
                verdicts += 1
                if tied_in_raw_order:
                    self.add(
                        "order_by",
                        LEAK,
                        f"{table.name}.{col}: rows with equal masked values come "
                        "in the order of the raw values",
                    )
                    return
        self.add(
            "order_by",
            PASS if verdicts else NA,
            "" if verdicts else "no masked column with enough ties to tell",
        )

    def explain(self) -> None:
        leaked = False
        for table in self.tables():
            cols = self.masked_text_columns(table)
            if not cols:
                continue
            col = cols[0]
            raws = self.raw_values(table, col, 1)
            probe = raws[0][::-1] if raws else "x"
            rows, err = _q(
                self.conn,
                sql.SQL(
                    "EXPLAIN (ANALYZE, VERBOSE, BUFFERS, SETTINGS) SELECT * FROM {v} WHERE {c} <> %s"
                ).format(v=self.view(table), c=sql.Identifier(col)),
                (probe,),
            )
            if err and _denied(err):  # SELECT * needs every column
                rows, err = _q(
                    self.conn,
                    sql.SQL("EXPLAIN (ANALYZE, VERBOSE, BUFFERS) SELECT {c} FROM {v} WHERE {c} <> %s").format(
                        v=self.view(table), c=sql.Identifier(col)
                    ),
                    (probe,),
                )
            text = "\n".join(r[0] for r in rows) + (err or "")
            leaked |= self.scan("explain", f"EXPLAIN of {table.name}", text)
        if not leaked:
            self.add("explain", PASS)

    def pg_stats(self) -> None:
        rows, err = _q(
            self.conn,
            "SELECT tablename, attname, most_common_vals::text, histogram_bounds::text FROM pg_stats "
            "WHERE schemaname = ANY(%s)",
            ([self.src, self.masked],),
        )
        leaked = False
        if err:
            self.add("pg_stats", FAIL, f"pg_stats: {err}")
        for tbl, att, mcv, hist in rows:
            leaked |= self.scan("pg_stats", f"pg_stats {tbl}.{att}", f"{mcv or ''} {hist or ''}")
        rows, err = _q(self.conn, "SELECT count(*) FROM pg_catalog.pg_statistic")
        if not _denied(err):
            self.add("pg_stats", LEAK, "pg_statistic is readable")
            leaked = True
        if not leaked:
            self.add("pg_stats", PASS, f"{len(rows)} pg_stats row(s) visible")

    def cast_error(self) -> None:
        leaked = False
        for table in self.tables():
            for col in self.masked_text_columns(table):
                for target in ("integer", "numeric", "date", "jsonb"):
                    for shape in (
                        "SELECT {c}::{t} FROM {v}",
                        "SELECT count(*) FROM {v} WHERE {c}::{t} IS NULL",
                    ):
                        _rows, err = _q(
                            self.conn,
                            sql.SQL(shape).format(
                                c=sql.Identifier(col), t=sql.SQL(target), v=self.view(table)
                            ),
                        )
                        if err:
                            leaked |= self.scan("cast_error", f"{table.name}.{col}::{target}", err)
        if not leaked:
            self.add("cast_error", PASS)

    def function(self, allowed: set[int] | None) -> None:
        _rows, err = _q(
            self.conn,
            """CREATE OR REPLACE FUNCTION pg_temp.dp_leak(text) RETURNS boolean
            LANGUAGE plpgsql COST 0.0000001
            AS $f$ BEGIN RAISE NOTICE 'dp_leak:%', $1; RETURN true; END $f$""",
        )
        leaked = False
        if err:
            self.add("function", PASS, f"cannot create a function: {err[:80]}")
        else:
            for table in self.tables():
                cols = self.masked_text_columns(table)
                for col in cols:
                    self.notices.clear()
                    _q(
                        self.conn,
                        sql.SQL("SELECT count(*) FROM {v} WHERE pg_temp.dp_leak({c}::text)").format(
                            v=self.view(table), c=sql.Identifier(col)
                        ),
                    )
                    leaked |= self.scan(
                        "function", f"leaky function on {table.name}.{col}", "\n".join(self.notices)
                    )
                if allowed is not None and "customer_id" in table.column_names:
                    self.notices.clear()
                    _q(
                        self.conn,
                        sql.SQL("SELECT count(*) FROM {v} WHERE pg_temp.dp_leak(customer_id::text)").format(
                            v=self.view(table)
                        ),
                    )
                    ids = {
                        int(n.split(":", 1)[1].split()[0])
                        for n in self.notices
                        if n.startswith("dp_leak:") and n.split(":", 1)[1].split()[0].isdigit()
                    }
                    if ids - allowed:
                        leaked = True
                        self.add(
                            "function",
                            LEAK,
                            f"leaky function saw {len(ids - allowed)} filtered-out "
                            f"customer(s) of {table.name}",
                        )
        # shadowing built-ins through search_path needs CREATE on some schema
        rows, err = _q(
            self.conn,
            "SELECT n.nspname FROM pg_namespace n WHERE has_schema_privilege(n.oid, 'CREATE') "
            "AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast%%'",
        )
        for (schema,) in rows:
            self.notices.clear()
            shadow = sql.Identifier(schema, "sha256")
            _q(
                self.conn,
                sql.SQL(
                    "CREATE FUNCTION {}(bytea) RETURNS bytea LANGUAGE plpgsql AS "
                    "$f$ BEGIN RAISE NOTICE 'dp_shadow:%', convert_from(substr($1, 65), 'UTF8'); "
                    "RETURN $1; END $f$"
                ).format(shadow),
            )
            _q(self.conn, sql.SQL("SET search_path = {}, pg_catalog").format(sql.Identifier(schema)))
            for table in self.tables():
                for col in self.masked_text_columns(table):
                    _q(
                        self.conn,
                        sql.SQL("SELECT {} FROM {} LIMIT 20").format(sql.Identifier(col), self.view(table)),
                    )
            _q(self.conn, "RESET search_path")
            _q(self.conn, sql.SQL("DROP FUNCTION IF EXISTS {}(bytea)").format(shadow))
            leaked |= self.scan("function", f"built-in shadowed in schema {schema}", "\n".join(self.notices))
        if not leaked and not err:
            self.add("function", PASS)

    def copy(self) -> None:
        leaked = False
        for table in self.tables():
            cols = self.masked_text_columns(table)
            if cols:
                try:
                    out = bytearray()
                    with self.conn.cursor().copy(
                        sql.SQL("COPY (SELECT {} FROM {} LIMIT {}) TO STDOUT").format(
                            sql.SQL(", ").join(sql.Identifier(c) for c in cols),
                            self.view(table),
                            sql.Literal(self.ctx.sample),
                        )
                    ) as cp:
                        for chunk in cp:
                            out += chunk
                    leaked |= self.scan("copy", f"COPY of {table.name}", out.decode(errors="replace"))
                except psycopg.Error as exc:
                    self.add("copy", FAIL, f"COPY from the masked view failed: {exc.diag.message_primary}")
        for table in TABLES:
            try:
                with self.conn.cursor().copy(
                    sql.SQL("COPY (SELECT * FROM {} LIMIT 1) TO STDOUT").format(
                        sql.Identifier(self.src, table.name)
                    )
                ) as cp:
                    for _chunk in cp:
                        pass
                self.add("copy", LEAK, f"COPY {self.src}.{table.name} is allowed")
                leaked = True
            except psycopg.Error:
                pass
        if not leaked:
            self.add("copy", PASS)

    def cursor(self) -> None:
        leaked = False
        for table in self.tables():
            cols = self.masked_text_columns(table)
            if not cols:
                continue
            try:
                with self.conn.transaction():
                    self.conn.execute(
                        sql.SQL("DECLARE dp_cur NO SCROLL CURSOR FOR SELECT {} FROM {}").format(
                            sql.SQL(", ").join(sql.Identifier(c) for c in cols), self.view(table)
                        )
                    )
                    rows = self.conn.execute("FETCH 100 FROM dp_cur").fetchall()
                    self.conn.execute("CLOSE dp_cur")
                text = "\n".join(" ".join(str(v) for v in r) for r in rows)
                leaked |= self.scan("cursor", f"cursor over {table.name}", text)
            except psycopg.Error as exc:
                self.add("cursor", FAIL, f"cursor over the masked view failed: {exc.diag.message_primary}")
        try:
            with self.conn.transaction():
                self.conn.execute(
                    sql.SQL("DECLARE dp_raw CURSOR FOR SELECT * FROM {}").format(
                        sql.Identifier(self.src, "customers")
                    )
                )
                self.conn.execute("FETCH 1 FROM dp_raw")
            self.add("cursor", LEAK, f"a cursor over {self.src}.customers is allowed")
            leaked = True
        except psycopg.Error:
            pass
        if not leaked:
            self.add("cursor", PASS)

    def base_tables(self) -> None:
        open_ = []
        for table in TABLES:
            _rows, err = _q(
                self.conn, sql.SQL("SELECT FROM {} LIMIT 1").format(sql.Identifier(self.src, table.name))
            )
            if not _denied(err):
                open_.append(table.name)
        if open_:
            self.add("base_tables", LEAK, f"{self.src} tables readable: {', '.join(open_)}")
        else:
            self.add("base_tables", PASS)

    def token_key(self) -> None:
        _rows, err = _q(self.conn, "SELECT * FROM dataplat_policy_private.token_key")
        rows2, err2 = _q(self.conn, "SELECT compiled_sql FROM dataplat_policy.versions LIMIT 1")
        if not _denied(err):
            self.add("token_key", LEAK, "the token key table is readable")
        elif not _denied(err2) and rows2:
            self.add("token_key", LEAK, "the policy history is readable")
        else:
            self.add("token_key", PASS)


def _admin_sample(policy: Policy, target: Target, sample: int) -> tuple[dict[str, str], dict[str, Any]]:
    raw: dict[str, str] = {}
    rows_by_table: dict[str, dict[Any, dict[str, Any]]] = {}
    src = policy.settings.source_schema
    with target.connect(autocommit=True) as admin:
        for table in TABLES:
            interesting = [
                c.name
                for c in table.columns
                if c.pii or policy.classified(table.name, c.name) or c.type in _TEXTUAL
            ]
            cols = [_pk(table), *[c for c in interesting if c != _pk(table)]]
            rows = admin.execute(
                sql.SQL("SELECT {} FROM {} ORDER BY {} LIMIT {}").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c in cols),
                    sql.Identifier(src, table.name),
                    sql.Identifier(_pk(table)),
                    sql.Literal(sample),
                )
            ).fetchall()
            rows_by_table[table.name] = {r[0]: dict(zip(cols, r, strict=True)) for r in rows}
            sensitive = {c.name for c in table.columns if c.pii or policy.classified(table.name, c.name)}
            free_text = {
                c.name
                for c in table.columns
                if (cls := policy.classified(table.name, c.name)) is not None and cls.kind == "free_text"
            }
            for r in rows:
                for c, v in zip(cols, r, strict=True):
                    if c in sensitive and isinstance(v, str) and len(v) >= 2:
                        if c in free_text and mask_free_text(v) == v:
                            # free text holding no digits and no e-mail address: nothing in
                            # it is personal data, so reading it as it is is no leak
                            continue
                        raw.setdefault(v, f"{table.name}.{c}")
            admin.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(src, table.name)))
    return raw, rows_by_table


def verify(
    policy: Policy, target: Target, sample: int = 200, roles: Iterable[str] | None = None
) -> VerifyReport:
    """Run every check for every role (or ``roles``) with its first login; see :data:`CHECKS`."""
    raw, rows_by_table = _admin_sample(policy, target, sample)
    ctx = _Ctx(policy, target, Detector(raw), rows_by_table, token_key(target), sample)
    report = VerifyReport()
    for role in roles or sorted(policy.roles):
        login = policy.roles[role].logins[0]
        try:
            conn = psycopg.connect(target.login_conninfo(login.name), autocommit=True)
        except psycopg.Error as exc:
            for check in CHECKS:
                report.findings.append(Finding(role, login.name, check, FAIL, f"cannot connect: {exc}"))
            continue
        with conn:
            conn.execute("SET statement_timeout = '30s'")
            run = _RoleRun(ctx, role, login, conn)
            allowed = run.allowed_customers()
            steps: tuple[tuple[str, Callable[[], None]], ...] = (
                ("read", run.read),
                ("row_filter", partial(run.row_filter, allowed)),
                ("where", run.where_join_group),
                ("order_by", run.order_by),
                ("explain", run.explain),
                ("pg_stats", run.pg_stats),
                ("cast_error", run.cast_error),
                ("function", partial(run.function, allowed)),
                ("copy", run.copy),
                ("cursor", run.cursor),
                ("base_tables", run.base_tables),
                ("token_key", run.token_key),
            )
            for check, step in steps:
                try:
                    step()
                except psycopg.Error as exc:
                    run.add(check, FAIL, f"{type(exc).__name__}: {exc}")
            report.findings += run.findings
    return report


__all__ = ["CHECKS", "Detector", "Finding", "VerifyReport", "verify", "PARTIAL_DEFAULTS"]
