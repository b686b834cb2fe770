"""The warehouse: set-up of the application database and the cluster's state.

The cluster itself is Patroni's: its REST API says who leads; PostgreSQL's own views
(pg_stat_replication, pg_last_wal_replay_lsn) say how far the standbys are.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql


@dataclass
class SetupResult:
    """What :func:`setup_database` created; ``changed`` when anything was."""

    created: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created)


def _ensure_role(
    cur: psycopg.Cursor, name: str, password: str, options: sql.Composable, result: SetupResult
) -> None:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
    if cur.fetchone() is None:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN ").format(sql.Identifier(name)) + options)
        result.created.append(f"role {name}")
    # the password is (re)set each time: the secret file is the source of truth;
    # ALTER ROLE with the same password changes nothing visible, so it is not reported
    cur.execute(
        sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password))
    )


def setup_database(
    conninfo: str,
    superuser_password: str,
    database: str,
    admin_user: str,
    admin_password: str,
    app_user: str,
    app_password: str,
    schema: str = "bank",
) -> SetupResult:
    """Create (if missing) the admin and app roles, the database and the bank's schema.

    ``conninfo`` reaches the primary as the superuser (multi-host strings with
    ``target_session_attrs=read-write`` do). Idempotent.
    """
    result = SetupResult()
    with psycopg.connect(conninfo, password=superuser_password, autocommit=True) as conn:
        cur = conn.cursor()
        _ensure_role(cur, admin_user, admin_password, sql.SQL("CREATEDB CREATEROLE"), result)
        _ensure_role(cur, app_user, app_password, sql.SQL("NOSUPERUSER"), result)
        cur.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(admin_user)))
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if cur.fetchone() is None:
            cur.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(admin_user)
                )
            )
            result.created.append(f"database {database}")
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    params["dbname"] = database
    with psycopg.connect(
        psycopg.conninfo.make_conninfo(**params), password=superuser_password, autocommit=True
    ) as conn:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,))
        before = cur.fetchone()[0]
    # the schema is created by the admin, so the admin owns every table
    with psycopg.connect(
        psycopg.conninfo.make_conninfo(**{**params, "user": admin_user}), password=admin_password
    ) as conn:
        cur = conn.cursor()
        for statement in _bank_ddl(schema):
            cur.execute(statement)
        cur.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.Identifier(app_user))
        )
        cur.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(app_user)
            )
        )
        cur.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT, INSERT, UPDATE ON TABLES TO {}"
            ).format(sql.Identifier(schema), sql.Identifier(app_user))
        )
        cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,))
        after = cur.fetchone()[0]
    if after != before:
        result.created.append(f"{after - before} tables in schema {schema}")
    return result


def _bank_ddl(schema: str) -> list[str]:
    from dataplat.data.schema import warehouse_ddl

    return list(warehouse_ddl(schema))


def patroni_cluster(rest_urls: list[str], timeout: float = 2.0) -> dict[str, Any]:
    """Patroni's ``/cluster`` from the first member that answers."""
    last: Exception | None = None
    for url in rest_urls:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/cluster", timeout=timeout) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError) as exc:
            last = exc
    raise ConnectionError(f"no Patroni member answered at {', '.join(rest_urls)}: {last}")
