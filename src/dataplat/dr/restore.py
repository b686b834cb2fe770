"""The ``table-restore`` drill: one table back to a point in time, the rest untouched.

1. checksum the table and every other table of its schema, note the server's time T;
2. the mistake (the scenario's SQL) damages the table; the WAL segment holding it is
   switched and archived;
3. a scratch PostgreSQL (pgserver's binaries, its own socket and port, run as the
   service user when root) is made from the base backup
   (``<home>/warehouse/backups/base-initial/base.tar.gz``) and replays the WAL archive
   up to ``recovery_target_time = T``, then promotes;
4. the table's rows are copied back into the live table in one transaction (a temp table
   filled by COPY, then delete-missing + upsert by primary key, so foreign keys pointing
   at unchanged rows hold), while the platform keeps serving;
5. checked: the table equals its checksum at T; every other table is unchanged.

``restore_s`` runs from the start of step 3 to the commit of step 4.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from dataplat.config import RunAs
from dataplat.deploy.api import binaries
from dataplat.dr.context import DrillContext, DrillError, poll
from dataplat.dr.results import Repetition
from dataplat.platform import endpoints


def table_checksum(conn: psycopg.Connection, schema: str, table: str) -> tuple[int, str]:
    """(rows, order-independent sum of the rows' md5) of a table: equal multisets, equal sums."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)::text "
            "FROM {} t"
        ).format(sql.Identifier(schema, table))
    ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def _tables(conn: psycopg.Connection, schema: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)
        )
    ]


def _columns(conn: psycopg.Connection, schema: str, table: str) -> tuple[list[str], list[str]]:
    cols = [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum",
            (f"{sql.Identifier(schema, table).as_string(conn)}",),
        )
    ]
    pk = [
        r[0]
        for r in conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
            (f"{sql.Identifier(schema, table).as_string(conn)}",),
        )
    ]
    return cols, pk


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ScratchInstance:
    """A throw-away PostgreSQL recovered from the base backup and the WAL archive."""

    def __init__(self, root: Path, bin_dir: Path, user: str | None) -> None:
        self.root = root
        self.data = root / "data"
        self.bin_dir = bin_dir
        self.user = user
        self.port = _free_port()
        self.log = root / "postgres.log"

    def _cmd(self, *argv: str) -> list[str]:
        return (["runuser", "-u", self.user, "--"] if self.user else []) + list(argv)

    def _run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                self._cmd(*argv), capture_output=True, text=True, timeout=timeout, check=True
            )
        except subprocess.CalledProcessError as exc:
            raise DrillError(
                f"{Path(argv[0]).name} failed ({exc.returncode}): {exc.stderr.strip()[-800:]}\n"
                f"{self._log_tail()}"
            ) from None
        except subprocess.TimeoutExpired:
            raise DrillError(
                f"{Path(argv[0]).name} did not finish in {timeout:.0f} s\n{self._log_tail()}"
            ) from None

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""

    def create(self, base_tar: Path, archive: Path, target_time: str) -> None:
        """Unpack the base backup and configure recovery to ``target_time``, then promotion."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user and os.geteuid() == 0:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run("mkdir", "-m", "0700", str(self.data))
        self._run("tar", "-xzf", str(base_tar), "-C", str(self.data))
        for name in ("standby.signal", "postmaster.pid", "postmaster.opts"):
            self._run("rm", "-f", str(self.data / name))
        settings = {
            "port": str(self.port),
            "listen_addresses": "",
            "unix_socket_directories": str(self.root),
            "hba_file": str(self.data / "pg_hba.conf"),
            "ident_file": str(self.data / "pg_ident.conf"),
            "archive_mode": "off",
            "primary_conninfo": "",
            "primary_slot_name": "",
            "synchronous_standby_names": "",
            "hot_standby": "off",
            "shared_buffers": "128MB",
            "restore_command": f"cp {archive}/%f %p",
            "recovery_target_time": target_time,
            "recovery_target_timeline": "latest",
            "recovery_target_action": "promote",
            "logging_collector": "off",
            "cluster_name": "dataplat-drill-scratch",
        }
        auto = "".join(f"{k} = '{v.replace(chr(39), chr(39) * 2)}'\n" for k, v in settings.items())
        hba = "local all all trust\n"
        script = (
            f"cat >> {self.data}/postgresql.auto.conf <<'EOF'\n# drill scratch instance\n{auto}EOF\n"
            f"printf '{hba}' > {self.data}/pg_hba.conf\ntouch {self.data}/recovery.signal\n"
        )
        self._run("sh", "-c", script)

    def start(self, timeout: float) -> None:
        """Start and wait until recovery reached the target and the instance accepts connections."""
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(int(timeout)),
            "start",
            timeout=timeout + 10,
        )

    def wait_promoted(self, dbname: str, timeout: float) -> None:
        """Wait until recovery reached its target and the instance was promoted (writable)."""

        def promoted() -> bool:
            with psycopg.connect(self.conninfo(dbname), connect_timeout=2) as conn:
                return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]  # type: ignore[index]

        try:
            poll(promoted, timeout, "the scratch instance to reach the target time and promote")
        except DrillError as exc:
            raise DrillError(f"{exc}\n{self._log_tail()}") from None

    def conninfo(self, dbname: str) -> str:
        return f"host={self.root} port={self.port} user=postgres dbname={dbname} connect_timeout=5"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                self._cmd(
                    str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
                ),
                capture_output=True,
                timeout=60,
            )

    def remove(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)


def copy_back(live: psycopg.Connection, scratch: psycopg.Connection, schema: str, table: str) -> int:
    """Replace the live table's rows by the scratch instance's, in one transaction; returns rows copied."""
    cols, pk = _columns(live, schema, table)
    target = sql.Identifier(schema, table)
    collist = sql.SQL(", ").join(map(sql.Identifier, cols))
    rows = 0
    with live.transaction():
        live.execute(
            sql.SQL("CREATE TEMP TABLE dr_restore (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(target)
        )
        with (
            scratch.cursor().copy(
                sql.SQL("COPY {} ({}) TO STDOUT (FORMAT binary)").format(target, collist)
            ) as src,
            live.cursor().copy(
                sql.SQL("COPY dr_restore ({}) FROM STDIN (FORMAT binary)").format(collist)
            ) as dst,
        ):
            for block in src:
                dst.write(block)
        rows = live.execute("SELECT count(*) FROM dr_restore").fetchone()[0]  # type: ignore[index]
        if pk:
            match = sql.SQL(" AND ").join(sql.SQL("r.{c} = t.{c}").format(c=sql.Identifier(c)) for c in pk)
            live.execute(
                sql.SQL("DELETE FROM {} t WHERE NOT EXISTS (SELECT 1 FROM dr_restore r WHERE {})").format(
                    target, match
                )
            )
            others = [c for c in cols if c not in pk]
            update = (
                sql.SQL("DO UPDATE SET ")
                + sql.SQL(", ").join(
                    sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in others
                )
                if others
                else sql.SQL("DO NOTHING")
            )
            live.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM dr_restore ON CONFLICT ({}) ").format(
                    target, collist, collist, sql.SQL(", ").join(map(sql.Identifier, pk))
                )
                + update
            )
        else:
            live.execute(sql.SQL("DELETE FROM {}").format(target))
            live.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM dr_restore").format(target, collist, collist)
            )
    return int(rows)


def switch_wal(platform: endpoints.Platform) -> str:
    """Close the current WAL segment (as the superuser) so it is archived; returns its name."""
    secret = platform.home / "secrets" / "warehouse-superuser"
    try:
        password = secret.read_text().split()[0]
    except (OSError, IndexError) as exc:
        raise DrillError(f"cannot read the superuser password from {secret}: {exc}") from None
    conninfo = endpoints.conninfo(platform, platform.by_component("warehouse"), role="postgres")
    with psycopg.connect(conninfo, password=password, autocommit=True) as conn:
        return str(conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0])  # type: ignore[index]


def run_repetition(ctx: DrillContext) -> Repetition:
    """One point-in-time restore of one table."""
    sc, platform = ctx.scenario, ctx.platform
    rep = Repetition(ctx.index)
    qualified = str(sc.fault["table"])
    schema, _, table = qualified.rpartition(".")
    schema = schema or "public"
    backup = platform.home / "warehouse" / "backups" / "base-initial" / "base.tar.gz"
    archive = platform.home / "warehouse" / "archive"
    if not backup.exists():
        raise DrillError(f"no base backup at {backup} (dataplat up takes it at first start)")
    database = platform.settings["warehouse"]["database"]
    live_conninfo = endpoints.conninfo(platform, platform.by_component("warehouse"))
    with psycopg.connect(live_conninfo, autocommit=True) as live:
        tables = _tables(live, schema)
        if table not in tables:
            raise DrillError(f"table {schema}.{table} does not exist in the warehouse")
        before = table_checksum(live, schema, table)
        if before[0] < int(sc.workload["min_rows"]):
            raise DrillError(
                f"{schema}.{table} has {before[0]} rows (< {sc.workload['min_rows']}); "
                "load the bank first: dataplat data load --sf 0.1"
            )
        others = [t for t in tables if t != table] if sc.workload["others"] == "schema" else []
        at_target = {t: table_checksum(live, schema, t) for t in others}
        target_time = str(live.execute("SELECT clock_timestamp()::text").fetchone()[0])  # type: ignore[index]
        rep.event("point in time T", time.time())
        mistake = sc.fault["sql"].replace("{table}", sql.Identifier(schema, table).as_string(live))
        t_fault = time.time()
        live.execute(mistake)  # type: ignore[arg-type]
        rep.t_fault = t_fault
        rep.event("mistake committed", t_fault)
        damaged = table_checksum(live, schema, table)
        if damaged == before:
            raise DrillError(f"the mistake ({mistake}) changed nothing in {qualified}: nothing to restore")
    seg = switch_wal(platform)
    poll(
        lambda: (archive / seg).exists(),
        ctx.timeout("archive_s"),
        f"WAL segment {seg} in the archive {archive}",
    )
    rep.event(f"WAL {seg} archived", time.time())
    ctx.log(f"{qualified}: {before[0]} rows at T={target_time}; mistake damaged it; restoring")

    t_start = time.time()
    rep.event("restore starts", t_start)
    user = RunAs.current().user if os.geteuid() == 0 else None
    scratch = ScratchInstance(ctx.rep_dir / "scratch", Path(binaries()["dataplat_pg_bin"]), user)
    try:
        scratch.create(backup, archive, target_time)
        scratch.start(ctx.timeout("recovery_s"))
        scratch.wait_promoted(database, ctx.timeout("recovery_s"))
        rep.event("scratch instance recovered to T", time.time())
        with psycopg.connect(live_conninfo, autocommit=True) as live:
            before_copy = {t: table_checksum(live, schema, t) for t in others}
        with (
            psycopg.connect(scratch.conninfo(database), autocommit=True) as src,
            psycopg.connect(live_conninfo, autocommit=True) as live,
        ):
            copied = copy_back(live, src, schema, table)
        t_done = time.time()
        rep.event("table copied back", t_done)
    finally:
        scratch.stop()
        scratch.remove()
    rep.metrics["restore_s"] = round(t_done - t_start, 3)
    rep.info.update(
        table=qualified,
        target_time=target_time,
        rows_at_target=before[0],
        copied=copied,
        wal_segment=seg,
        other_tables=len(others),
    )
    ctx.log(f"restored {copied} rows in {t_done - t_start:.2f} s")
    state: dict[str, Any] = {"schema": schema, "table": table, "others": others, "conninfo": live_conninfo}
    ctx.before_checks(state)
    with psycopg.connect(live_conninfo, autocommit=True) as live:
        after = table_checksum(live, schema, table)
        rep.check(
            "restored_equal",
            after == before,
            f"{qualified}: {after[0]} rows, checksum "
            f"{'equal to' if after == before else 'DIFFERENT from'} its content at T ({before[0]} rows)",
            before=list(before),
            after=list(after),
        )
        if "others_unchanged" in sc.checks:
            now = {t: table_checksum(live, schema, t) for t in others}
            changed = sorted(t for t in others if now[t] != before_copy[t])
            drift = sorted(t for t in others if before_copy[t] != at_target[t])
            rep.check(
                "others_unchanged",
                not changed,
                f"{len(others)} other table(s) of {schema}: "
                f"{len(changed)} changed by the restore"
                + (f" ({', '.join(changed)})" if changed else "")
                + (f"; changed by the live platform meanwhile: {', '.join(drift)}" if drift else ""),
                changed=changed,
            )
    return rep
