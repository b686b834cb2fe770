"""Put policies in force: plan, apply (one transaction), rollback, history.

The warehouse keeps every version in ``dataplat_policy.versions`` (who, when, the
sha256 of the policy files, the compiled SQL, the source YAML). Applying the policy in
force again changes nothing: the compiled SQL's digest and a digest of the catalog
objects it made (views, privileges, roles, memberships, functions) are compared with
the last version's. A failure rolls the whole transaction back, so the previous
policies stay in force.

Two secrets never enter the compiled SQL, the history or a log: the token key (from
``DATAPLAT_POLICY_TOKEN_KEY`` or ``<secrets>/policy-token-key``, created 0600 when
missing; the warehouse stores only HMAC pads in ``dataplat_policy_private``), and the
passwords of the LOGIN roles (generated, kept in ``<secrets>/policy-logins.pgpass``).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from dataplat.policy.compiler import (
    BOOTSTRAP_SQL,
    GROUP_MARK,
    LOGIN_MARK,
    SCHEMA_MARK,
    Compiled,
    compile_policy,
)
from dataplat.policy.loader import read_policy_texts
from dataplat.policy.masks import NATIVE_EXTENSION, derive_key, key_fingerprint, key_pads
from dataplat.policy.model import Login, Policy, PolicyApplyError, PolicyError

KEY_ENV = "DATAPLAT_POLICY_TOKEN_KEY"
KEY_FILE = "policy-token-key"
PGPASS_FILE = "policy-logins.pgpass"
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('dataplat-policy'))"


@dataclass(frozen=True)
class Target:
    """Where policies are applied: the admin's conninfo and the secrets folder."""

    admin_conninfo: str
    secrets_dir: Path

    @classmethod
    def from_home(cls, home: Path) -> Target:
        """The deployed platform under ``home`` (admin conninfo from ``platform.json``)."""
        from dataplat.platform.endpoints import warehouse_conninfo

        return cls(warehouse_conninfo(Path(home), role="admin"), Path(home) / "secrets")

    @property
    def pgpass(self) -> Path:
        """The LOGIN roles' password file (pgpass format, 0600)."""
        return self.secrets_dir / PGPASS_FILE

    def login_conninfo(self, login: str) -> str:
        """A conninfo for ``login`` (same hosts as the admin, password from :attr:`pgpass`)."""
        params = conninfo_to_dict(self.admin_conninfo)
        params["user"] = login
        params["passfile"] = str(self.pgpass)
        return make_conninfo("", **params)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A connection as the admin."""
        return psycopg.connect(self.admin_conninfo, **kwargs)


@dataclass(frozen=True)
class Version:
    """One row of the version history."""

    version: int
    applied_at: str
    applied_by: str
    action: str
    source_sha256: str
    sql_sha256: str
    state_sha256: str
    note: str
    statements: tuple[str, ...] = ()
    source: dict[str, str] = field(default_factory=dict)
    logins: tuple[Login, ...] = ()

    def policy(self) -> Policy | None:
        """The policy of this version, re-read from its stored YAML (None if it no longer validates)."""
        try:
            return read_policy_texts(self.source)
        except PolicyError:
            return None

    def summary(self) -> dict[str, Any]:
        """JSON-ready, without the SQL and YAML."""
        return {
            "version": self.version,
            "applied_at": self.applied_at,
            "applied_by": self.applied_by,
            "action": self.action,
            "source_sha256": self.source_sha256,
            "sql_sha256": self.sql_sha256,
            "note": self.note,
        }


@dataclass
class ApplyResult:
    """What apply / rollback did."""

    changed: bool
    version: int | None
    previous: int | None
    reasons: list[str] = field(default_factory=list)
    statements: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "changed": self.changed,
            "version": self.version,
            "previous": self.previous,
            "reasons": self.reasons,
            "statements": self.statements,
        }


# --- secrets ----------------------------------------------------------------------------


def token_key(target: Target) -> bytes:
    """The token key: ``$DATAPLAT_POLICY_TOKEN_KEY``, else the key file (created when missing)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return derive_key(env)
    path = target.secrets_dir / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    return derive_key(path.read_text().strip())


def _read_pgpass(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split(":")
            if len(parts) == 5 and parts[:3] == ["*", "*", "*"]:
                out[parts[3]] = parts[4]
    return out


def _write_pgpass(path: Path, entries: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        for login in sorted(entries):
            fh.write(f"*:*:*:{login}:{entries[login]}\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


# --- reading what is in force -------------------------------------------------------------

_VERSION_COLS = (
    "version, applied_at::text, applied_by, action, source_sha256, sql_sha256, "
    "coalesce(state_sha256, ''), coalesce(note, ''), statements, source, logins"
)


def _version(row: tuple[Any, ...]) -> Version:
    logins = tuple(Login(d["name"], d["role"], tuple(d.get("branch_ids", ()))) for d in row[10])
    return Version(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], tuple(row[8]), dict(row[9]), logins
    )


def _has_versions(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('dataplat_policy.versions') IS NOT NULL").fetchone()
    return bool(row and row[0])


def history(target: Target) -> list[Version]:
    """Every version, oldest first (empty when policies were never applied)."""
    with target.connect() as conn:
        if not _has_versions(conn):
            return []
        rows = conn.execute(
            f"SELECT {_VERSION_COLS} FROM dataplat_policy.versions ORDER BY version"
        ).fetchall()
    return [_version(r) for r in rows]


def _in_force(conn: psycopg.Connection[Any]) -> Version | None:
    if not _has_versions(conn):
        return None
    row = conn.execute(
        f"SELECT {_VERSION_COLS} FROM dataplat_policy.versions ORDER BY version DESC LIMIT 1"
    ).fetchone()
    return _version(row) if row else None


def in_force(target: Target) -> Version | None:
    """The version in force (the last applied or rolled back to), or None."""
    with target.connect() as conn:
        return _in_force(conn)


def state_digest(conn: psycopg.Connection[Any], masked_schema: str) -> str:
    """Digest of the catalog objects policies make: views of the masked schemas (definition,
    privileges, column privileges), managed roles with their memberships, and the policy
    functions. ``masked_schema`` is kept for callers; the schemas are found by their mark."""
    parts: list[Any] = []
    parts += conn.execute(
        """SELECT n.nspname, c.relname, pg_get_viewdef(c.oid), c.relacl::text, c.reloptions::text,
                  (SELECT string_agg(a.attname || '=' || a.attacl::text, ',' ORDER BY a.attnum)
                     FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE obj_description(n.oid, 'pg_namespace') = %s ORDER BY n.nspname, c.relname""",
        (SCHEMA_MARK,),
    ).fetchall()
    parts += conn.execute(
        """SELECT r.rolname, shobj_description(r.oid, 'pg_authid'), r.rolcanlogin, r.rolsuper, r.rolbypassrls,
                  (SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members am
                     JOIN pg_roles g ON g.oid = am.roleid WHERE am.member = r.oid),
                  r.rolconfig::text
             FROM pg_roles r WHERE shobj_description(r.oid, 'pg_authid') LIKE 'dataplat-policy:%%'
            ORDER BY r.rolname"""
    ).fetchall()
    parts += conn.execute(
        """SELECT p.proname, pg_get_functiondef(p.oid), p.proacl::text FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'dataplat_policy'
            ORDER BY p.proname"""
    ).fetchall()
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _stored_fingerprint(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute("SELECT fingerprint FROM dataplat_policy_private.token_key WHERE id = 1").fetchone()
    return row[0] if row else None


# --- apply ----------------------------------------------------------------------------------


def _applied_by(conn: psycopg.Connection[Any]) -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    row = conn.execute("SELECT session_user").fetchone()
    return f"{user}@{socket.gethostname()} as {row[0] if row else '?'}"


def _first_line(statement: str) -> str:
    line = statement.strip().splitlines()[0] if statement.strip() else ""
    return line if len(line) <= 120 else line[:117] + "..."


def _put_in_force(
    target: Target,
    compiled: Compiled,
    source: dict[str, str],
    source_sha256: str,
    masked_schema: str,
    logins: tuple[Login, ...],
    action: str,
    note: str,
    force: bool = False,
) -> ApplyResult:
    key = token_key(target)
    fingerprint = key_fingerprint(key)
    passwords = _read_pgpass(target.pgpass)
    with target.connect() as conn:
        try:
            conn.execute(_LOCK)
            for statement in BOOTSTRAP_SQL:
                conn.execute(statement)
            conn.execute("ALTER TABLE dataplat_policy.versions ADD COLUMN IF NOT EXISTS state_sha256 text")
            current = _in_force(conn)
            reasons: list[str] = []
            if current is None:
                reasons.append("no policy version in force")
            else:
                if current.sql_sha256 != compiled.sha256:
                    reasons.append(f"compiled SQL differs from version {current.version}")
                elif state_digest(conn, masked_schema) != current.state_sha256:
                    reasons.append(f"warehouse objects drifted from version {current.version} (re-applied)")
            if _stored_fingerprint(conn) != fingerprint:
                reasons.append("token key set or rotated")
            existing = {
                r[0]
                for r in conn.execute(
                    "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", ([lg.name for lg in logins],)
                )
            }
            missing_pw = sorted(
                lg.name for lg in logins if lg.name not in passwords or lg.name not in existing
            )
            if missing_pw:
                reasons.append("login passwords to set: " + ", ".join(missing_pw))
            if not reasons and not force:
                conn.rollback()
                return ApplyResult(
                    False,
                    current.version if current else None,
                    current.version if current else None,
                    ["nothing to change"],
                )
            for i, statement in enumerate(compiled.statements, start=1):
                try:
                    conn.execute(statement)
                except psycopg.Error as exc:
                    raise PolicyApplyError(
                        f"statement {i} of {len(compiled.statements)} failed ({_first_line(statement)}): "
                        f"{exc.diag.message_primary or exc}; nothing was changed, "
                        "the previous policies stay in force"
                    ) from exc
            ipad, opad = key_pads(key)
            conn.execute(
                """INSERT INTO dataplat_policy_private.token_key (id, k_ipad, k_opad, fingerprint)
                   VALUES (1, %s, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET k_ipad = excluded.k_ipad, k_opad = excluded.k_opad,
                   fingerprint = excluded.fingerprint, set_at = now()
                   WHERE dataplat_policy_private.token_key.fingerprint
                         IS DISTINCT FROM excluded.fingerprint""",
                (ipad, opad, fingerprint),
            )
            new_passwords = dict(passwords)
            for name in missing_pw:
                new_passwords[name] = secrets.token_urlsafe(24)
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(name), sql.Literal(new_passwords[name])
                    )
                )
            row = conn.execute(
                "SELECT coalesce(max(version), 0) + 1 FROM dataplat_policy.versions"
            ).fetchone()
            version = int(row[0]) if row else 1
            conn.execute(
                """INSERT INTO dataplat_policy.versions (version, applied_by, action, source_sha256,
                       sql_sha256,
                       state_sha256, compiled_sql, statements, source, logins, note)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    version,
                    _applied_by(conn),
                    action,
                    source_sha256,
                    compiled.sha256,
                    state_digest(conn, masked_schema),
                    compiled.sql,
                    Jsonb(list(compiled.statements)),
                    Jsonb(source),
                    Jsonb(
                        [
                            {"name": lg.name, "role": lg.role, "branch_ids": list(lg.branch_ids)}
                            for lg in logins
                        ]
                    ),
                    note or None,
                ),
            )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    if missing_pw:
        keep = {lg.name for lg in logins}
        _write_pgpass(target.pgpass, {k: v for k, v in new_passwords.items() if k in keep})
    return ApplyResult(True, version, current.version if current else None, reasons, len(compiled.statements))


MASK_MODES = ("auto", "native", "sql")
"""``--masks``: the C extension where the warehouse has it (auto), always (native), never (sql)."""


def native_masks(target: Target, mode: str = "auto") -> bool:
    """Whether the views should call the C masks: ``mode`` against what the warehouse offers."""
    if mode not in MASK_MODES:
        raise PolicyApplyError(f"masks: {mode!r} is not one of {', '.join(MASK_MODES)}")
    if mode == "sql":
        return False
    with target.connect() as conn:
        row = conn.execute(
            "SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = %s",
            (NATIVE_EXTENSION,),
        ).fetchone()
    if row is None and mode == "native":
        raise PolicyApplyError(
            f"masks: native asked for, but the warehouse has no {NATIVE_EXTENSION} extension "
            "(dataplat up installs it where the server has a C compiler and its headers; "
            "python -m dataplat.policy.native install --pg-config PATH does it by hand)"
        )
    return row is not None


def apply(
    policy: Policy, target: Target, note: str = "", force: bool = False, masks: str = "auto"
) -> ApplyResult:
    """Compile ``policy`` and put it in force in one transaction (a no-op when already in force).

    ``masks``: see :data:`MASK_MODES`; the choice is part of the compiled SQL, so switching
    is a change like any other (recorded as a version, undone by rollback)."""
    compiled = compile_policy(policy, native=native_masks(target, masks))
    return _put_in_force(
        target,
        compiled,
        policy.sources,
        policy.source_sha256,
        policy.settings.masked_schema,
        policy.logins,
        "apply",
        note,
        force,
    )


def rollback(target: Target, to_version: int | None = None) -> ApplyResult:
    """Re-apply the version before the one in force (or ``to_version``), recorded as a new version."""
    versions = history(target)
    if len(versions) < 2 and to_version is None:
        raise PolicyApplyError(
            "there is no previous policy version to roll back to"
            + (f" (only version {versions[0].version} exists)" if versions else "")
        )
    if to_version is None:
        old = versions[-2]
    else:
        found = [v for v in versions if v.version == to_version]
        if not found:
            raise PolicyApplyError(
                f"no policy version {to_version}; versions: " + ", ".join(str(v.version) for v in versions)
            )
        old = found[0]
    policy = old.policy()
    masked = policy.settings.masked_schema if policy else "bank_masked"
    compiled = Compiled(old.statements)
    return _put_in_force(
        target,
        compiled,
        old.source,
        old.source_sha256,
        masked,
        old.logins,
        "rollback",
        f"rollback to version {old.version}",
        force=True,
    )


def remove_all(target: Target, masked_schema: str = "bank_masked") -> None:
    """Remove everything policies made: the masked schema, the managed roles, the policy schemas
    (history included) and the login password file. The bank's data is not touched."""
    with target.connect() as conn:
        conn.execute(_LOCK)
        schemas = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE obj_description(oid, 'pg_namespace') = %s", (SCHEMA_MARK,)
        ).fetchall()
        for (schema,) in schemas:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        roles = conn.execute(
            "SELECT rolname, shobj_description(oid, 'pg_authid') LIKE %s FROM pg_roles "
            "WHERE shobj_description(oid, 'pg_authid') = %s OR shobj_description(oid, 'pg_authid') LIKE %s "
            "ORDER BY 2 DESC, 1",
            (LOGIN_MARK + "%", GROUP_MARK, LOGIN_MARK + "%"),
        ).fetchall()
        fn_schemas = [
            s
            for s in ("dataplat_policy", NATIVE_EXTENSION)
            if (row := conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (s,)).fetchone()) and row[0]
        ]
        for name, _is_login in roles:
            for schema in fn_schemas:
                conn.execute(
                    sql.SQL("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {} FROM {}").format(
                        sql.Identifier(schema), sql.Identifier(name)
                    )
                )
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
        conn.execute("DROP SCHEMA IF EXISTS dataplat_policy CASCADE")
        conn.execute(sql.SQL("DROP EXTENSION IF EXISTS {}").format(sql.Identifier(NATIVE_EXTENSION)))
        conn.execute("DROP SCHEMA IF EXISTS dataplat_policy_private CASCADE")
        conn.commit()
    target.pgpass.unlink(missing_ok=True)
