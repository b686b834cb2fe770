"""Compile a :class:`~dataplat.policy.model.Policy` to PostgreSQL statements.

What the statements build (all re-runnable, applied in one transaction):

* schemas ``dataplat_policy`` (mask functions, version history, login -> branch
  mapping, consents) and ``dataplat_policy_private`` (the token key's HMAC pads; no
  privilege for anyone but the admin);
* one NOLOGIN group role per policy role and its LOGIN members (marked with a role
  comment, so roles removed from the policies are dropped);
* one masked schema per role (``bank_masked_<role>``, marked with a schema comment),
  dropped and re-created: one view per table the role may read, owned by the admin;
  each classified column is its mask expression, the row filter is the view's ``WHERE``
  and a view with a row filter is a ``security_barrier`` view (user predicates, leaky
  functions included, run only on the rows the filter lets through). A view without a
  filter hides no rows and exposes only masked expressions, so it has no barrier and
  the planner may flatten it into joins. A login's ``search_path`` is its
  role's schema, so the same SQL (``SELECT ... FROM customers``) works for every role.
  No role is resolved at read time (a shared view with a ``CASE`` per role cost 4x on
  point lookups). The views are not ``security_invoker``: the reader must not need any
  privilege on the base tables, which is what keeps them unreadable;
* column privileges on the views (``deny`` = not granted), no privilege on ``bank``.

Every identifier goes through :class:`psycopg.sql.Identifier`, every value through
:class:`psycopg.sql.Literal`, and names are also restricted at validation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from psycopg import sql

from dataplat.data.schema import TABLES, Table
from dataplat.policy.masks import FUNCTIONS_SQL, NATIVE_EXTENSION, NATIVE_FUNCTIONS_SQL
from dataplat.policy.model import MIN_HIDDEN, PARTIAL_DEFAULTS, Mask, Policy

POLICY_SCHEMA = "dataplat_policy"
PRIVATE_SCHEMA = "dataplat_policy_private"
GROUP_MARK = "dataplat-policy:group"
LOGIN_MARK = "dataplat-policy:login:"
SCHEMA_MARK = "dataplat-policy:masked"

BOOTSTRAP_SQL: tuple[str, ...] = (
    "CREATE SCHEMA IF NOT EXISTS dataplat_policy",
    "CREATE SCHEMA IF NOT EXISTS dataplat_policy_private",
    "REVOKE ALL ON SCHEMA dataplat_policy_private FROM PUBLIC",
    """CREATE TABLE IF NOT EXISTS dataplat_policy_private.token_key (
    id integer PRIMARY KEY CHECK (id = 1),
    k_ipad bytea NOT NULL,
    k_opad bytea NOT NULL,
    fingerprint text NOT NULL,
    set_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS dataplat_policy.versions (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL,
    action text NOT NULL CHECK (action IN ('apply', 'rollback')),
    source_sha256 text NOT NULL,
    sql_sha256 text NOT NULL,
    compiled_sql text NOT NULL,
    statements jsonb NOT NULL,
    source jsonb NOT NULL,
    logins jsonb NOT NULL,
    note text)""",
    "REVOKE ALL ON dataplat_policy.versions FROM PUBLIC",
    """CREATE TABLE IF NOT EXISTS dataplat_policy.login_branches (
    login name NOT NULL,
    branch_id integer NOT NULL,
    source text NOT NULL DEFAULT 'policy',
    PRIMARY KEY (login, branch_id))""",
    """CREATE TABLE IF NOT EXISTS dataplat_policy.consents (
    customer_id bigint NOT NULL,
    grantee name NOT NULL,
    purpose text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    PRIMARY KEY (customer_id, grantee, purpose))""",
)
"""The policy engine's own objects; created before anything is read, idempotent."""


@dataclass(frozen=True)
class Compiled:
    """The statements of one policy version, and their digest."""

    statements: tuple[str, ...]

    @property
    def sql(self) -> str:
        """The statements as one reviewable script."""
        return ";\n\n".join(self.statements) + ";\n"

    @property
    def sha256(self) -> str:
        """Digest of the script: equal digests mean nothing to change."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def _s(composed: sql.Composable) -> str:
    return composed.as_string(None)


def _ident(*names: str) -> sql.Identifier:
    return sql.Identifier(*names)


def _do(body: sql.Composable) -> str:
    return _s(sql.SQL("DO $dp$\nBEGIN\n{}\nEND\n$dp$").format(body))


def _create_role(name: str, login: bool) -> str:
    attrs = sql.SQL("LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE" if login else "NOLOGIN")
    return _do(
        sql.SQL(
            "  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {lit}) THEN\n"
            "    CREATE ROLE {id} {attrs};\n  END IF;"
        ).format(lit=sql.Literal(name), id=_ident(name), attrs=attrs)
    )


def _mask_expr(
    policy: Policy, table: str, column: str, kind: str, mask: Mask, native: bool = False
) -> sql.Composable:
    col = sql.SQL("t.{}").format(_ident(column))
    if mask.kind == "clear":
        return col
    if mask.kind in ("null", "deny"):
        return sql.NULL
    if mask.kind in ("token", "hash"):
        fn = "mask_token" if mask.kind == "token" else "mask_hash"
        if native:  # one InitPlan reads both pads (each costs ~2 µs per query)
            return sql.SQL(
                "dataplat_policy.{fn}("
                "(SELECT k.k_ipad || k.k_opad FROM dataplat_policy_private.token_key AS k), {col})"
            ).format(fn=_ident(fn), col=col)
        return sql.SQL(
            "dataplat_policy.{fn}((SELECT k.k_ipad FROM dataplat_policy_private.token_key AS k), "
            "(SELECT k.k_opad FROM dataplat_policy_private.token_key AS k), {col})"
        ).format(fn=_ident(fn), col=col)
    # partial
    if kind == "balance":
        round_to = mask.param("round_to", PARTIAL_DEFAULTS["balance"]["round_to"])
        return sql.SQL("dataplat_policy.mask_balance({}, {})").format(col, sql.Literal(round_to))
    if kind == "email":
        return sql.SQL("dataplat_policy.mask_email({})").format(col)
    if kind == "free_text":
        return sql.SQL("dataplat_policy.mask_free_text({})").format(col)
    params = {**PARTIAL_DEFAULTS[kind], **dict(mask.params)}
    return sql.SQL("dataplat_policy.mask_keep({}, {}, {}, {})").format(
        col,
        sql.Literal(params["keep_first"]),
        sql.Literal(params["keep_last"]),
        sql.Literal(MIN_HIDDEN.get(kind, 1)),
    )


def masked_schema(policy: Policy, role: str) -> str:
    """The schema of ``role``'s views: ``<masked_schema>_<role>`` (e.g. ``bank_masked_auditor``)."""
    return f"{policy.settings.masked_schema}_{role}"


def _row_filter(policy: Policy, role: str, table: Table) -> sql.Composable | None:
    rf = policy.roles[role].row_filter
    cols = set(table.column_names)
    if rf is None:
        return None
    src = policy.settings.source_schema
    if rf.by == "branch":
        mine = sql.SQL(
            "SELECT lb.branch_id FROM dataplat_policy.login_branches AS lb WHERE lb.login = session_user"
        )
        if "branch_id" in cols:
            return sql.SQL("t.branch_id IN ({})").format(mine)
        if "customer_id" in cols:
            return sql.SQL(
                "t.customer_id IN (SELECT c.customer_id FROM {} AS c WHERE c.branch_id IN ({}))"
            ).format(_ident(src, "customers"), mine)
        return None
    # consent
    if "customer_id" in cols:
        return sql.SQL(
            "EXISTS (SELECT FROM dataplat_policy.consents AS pc WHERE pc.customer_id = t.customer_id "
            "AND pc.grantee IN (session_user, {role}) AND pc.purpose = {purpose} AND pc.revoked_at IS NULL)"
        ).format(role=sql.Literal(role), purpose=sql.Literal(rf.purpose))
    return None


def _view(policy: Policy, table: Table, role: str, native: bool = False) -> str:
    items: list[sql.Composable] = []
    for column in table.column_names:
        cls = policy.classified(table.name, column)
        mask = policy.mask_for(role, table.name, column)
        if cls is None or mask.kind == "clear":
            items.append(sql.SQL("t.{}").format(_ident(column)))
        elif mask.kind in ("null", "deny"):
            cast = sql.SQL("numeric" if cls.kind == "balance" else "text")
            items.append(sql.SQL("NULL::{} AS {}").format(cast, _ident(column)))
        else:
            expr = _mask_expr(policy, table.name, column, cls.kind, mask, native)
            items.append(sql.SQL("{} AS {}").format(expr, _ident(column)))
    where = _row_filter(policy, role, table)
    return _s(
        sql.SQL("CREATE VIEW {view}{barrier} AS\nSELECT\n  {items}\nFROM {src} AS t{where}").format(
            view=_ident(masked_schema(policy, role), table.name),
            items=sql.SQL(",\n  ").join(items),
            src=_ident(policy.settings.source_schema, table.name),
            where=sql.SQL("\nWHERE {}").format(where) if where is not None else sql.SQL(""),
            # the barrier keeps user predicates (leaky functions) above the row filter; a view
            # without a filter hides no rows and wraps every sensitive column in its mask, so it
            # stays flattenable (a barrier there cost 2-3x on joins)
            barrier=sql.SQL(" WITH (security_barrier = true)") if where is not None else sql.SQL(""),
        )
    )


def compile_policy(policy: Policy, native: bool = False) -> Compiled:
    """The statements that put ``policy`` in force (see the module's docstring); ``native``:
    the mask functions call the C extension ``dataplat_mask`` (:mod:`dataplat.policy.native`)."""
    st: list[str] = list(BOOTSTRAP_SQL)
    src = policy.settings.source_schema
    roles = sorted(policy.roles)
    logins = sorted(policy.logins, key=lambda login: login.name)
    st += NATIVE_FUNCTIONS_SQL if native else FUNCTIONS_SQL
    st.append("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dataplat_policy FROM PUBLIC")

    for r in roles:
        st.append(_create_role(r, login=False))
        st.append(_s(sql.SQL("COMMENT ON ROLE {} IS {}").format(_ident(r), sql.Literal(GROUP_MARK))))
    for login in logins:
        st.append(_create_role(login.name, login=True))
        st.append(
            _s(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(
                    _ident(login.name), sql.Literal(LOGIN_MARK + login.role)
                )
            )
        )
        st.append(_s(sql.SQL("GRANT {} TO {}").format(_ident(login.role), _ident(login.name))))
        st.append(
            _s(
                sql.SQL("ALTER ROLE {} SET search_path = {}").format(
                    _ident(login.name), _ident(masked_schema(policy, login.role))
                )
            )
        )

    # the masked schemas, from scratch: every schema a previous version made goes
    st.append(
        _do(
            sql.SQL(
                "  DECLARE s record;\n  BEGIN\n"
                "  FOR s IN SELECT nspname FROM pg_catalog.pg_namespace\n"
                "      WHERE pg_catalog.obj_description(oid, 'pg_namespace') = {mark} ORDER BY nspname\n"
                "  LOOP\n    EXECUTE pg_catalog.format('DROP SCHEMA %I CASCADE', s.nspname);\n"
                "  END LOOP;\n  END;"
            ).format(mark=sql.Literal(SCHEMA_MARK))
        )
    )
    for r in roles:
        st.append(_s(sql.SQL("CREATE SCHEMA {}").format(_ident(masked_schema(policy, r)))))
        st.append(
            _s(
                sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                    _ident(masked_schema(policy, r)), sql.Literal(SCHEMA_MARK)
                )
            )
        )
    keep_names = sql.SQL(", ").join(sql.Literal(n) for n in [*roles, *(lg.name for lg in logins)])
    st.append(
        _do(
            sql.SQL(
                "  -- memberships the policies do not give, and roles they no longer name\n"
                "  DECLARE r record;\n  BEGIN\n"
                "  FOR r IN SELECT g.rolname AS grp, m.rolname AS member\n"
                "      FROM pg_catalog.pg_auth_members AS am\n"
                "      JOIN pg_catalog.pg_roles AS g ON g.oid = am.roleid\n"
                "      JOIN pg_catalog.pg_roles AS m ON m.oid = am.member\n"
                "      WHERE pg_catalog.shobj_description(g.oid, 'pg_authid') = {group_mark}\n"
                "        AND pg_catalog.shobj_description(m.oid, 'pg_authid') LIKE {login_like}\n"
                "        AND pg_catalog.shobj_description(m.oid, 'pg_authid') <> {login_mark} || g.rolname\n"
                "  LOOP\n"
                "    EXECUTE pg_catalog.format('REVOKE %I FROM %I', r.grp, r.member);\n"
                "  END LOOP;\n"
                "  FOR r IN SELECT rolname FROM pg_catalog.pg_roles\n"
                "      WHERE pg_catalog.shobj_description(oid, 'pg_authid') LIKE 'dataplat-policy:%'\n"
                "        AND rolname <> ALL (ARRAY[{keep}]::name[])\n"
                "      ORDER BY pg_catalog.shobj_description(oid, 'pg_authid') LIKE {login_like} DESC,\n"
                "        rolname\n"
                "  LOOP\n"
                "    EXECUTE pg_catalog.format(\n"
                "      'REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dataplat_policy FROM %I',\n"
                "      r.rolname);\n"
                "    IF pg_catalog.to_regnamespace({native}) IS NOT NULL THEN\n"
                "      EXECUTE pg_catalog.format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA %I FROM %I',\n"
                "        {native}, r.rolname);\n"
                "    END IF;\n"
                "    EXECUTE pg_catalog.format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I',\n"
                "      {src}, r.rolname);\n"
                "    EXECUTE pg_catalog.format('DROP ROLE %I', r.rolname);\n"
                "  END LOOP;\n  END;"
            ).format(
                group_mark=sql.Literal(GROUP_MARK),
                login_like=sql.Literal(LOGIN_MARK + "%"),
                login_mark=sql.Literal(LOGIN_MARK),
                keep=keep_names,
                src=sql.Literal(src),
                native=sql.Literal(NATIVE_EXTENSION),
            )
        )
    )

    for r in roles:
        st.append(_s(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(_ident(src), _ident(r))))
        st.append(
            _s(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(_ident(masked_schema(policy, r)), _ident(r)))
        )
        st.append(
            _s(sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dataplat_policy TO {}").format(_ident(r)))
        )
        if native:
            st.append(
                _s(
                    sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {} TO {}").format(
                        _ident(NATIVE_EXTENSION), _ident(r)
                    )
                )
            )
    for r in roles:
        for table in TABLES:
            if table.name not in policy.roles[r].tables:
                continue
            st.append(_view(policy, table, r, native))
            cols = [c for c in table.column_names if policy.mask_for(r, table.name, c).kind != "deny"]
            if cols:
                st.append(
                    _s(
                        sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
                            sql.SQL(", ").join(_ident(c) for c in cols),
                            _ident(masked_schema(policy, r), table.name),
                            _ident(r),
                        )
                    )
                )

    st.append("DELETE FROM dataplat_policy.login_branches WHERE source = 'policy'")
    pairs = [(lg.name, b) for lg in logins for b in lg.branch_ids]
    if pairs:
        st.append(
            _s(
                sql.SQL(
                    "INSERT INTO dataplat_policy.login_branches (login, branch_id, source)\n"
                    "VALUES {} ON CONFLICT DO NOTHING"
                ).format(
                    sql.SQL(", ").join(
                        sql.SQL("({}, {}, 'policy')").format(sql.Literal(n), sql.Literal(b)) for n, b in pairs
                    )
                )
            )
        )
    return Compiled(tuple(st))
