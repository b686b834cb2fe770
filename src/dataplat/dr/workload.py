"""The ledger workload: concurrent transfers whose acknowledged commits are logged by the client.

Accounts live in ``<schema>.ledger_accounts``; every transfer moves an amount between two
accounts and inserts one row into ``<schema>.ledger_transfers`` with a client-made id,
all in one transaction. The total balance never changes. Each attempt is recorded with
its outcome as the *client* saw it:

* ``acked``: COMMIT returned; the transfer must survive any failover (RPO 0);
* ``in_doubt``: the connection was lost during COMMIT; it may or may not have committed
  and is reported apart, never counted as lost;
* ``failed``: an error before COMMIT; the transaction was rolled back.

Clients reconnect by themselves through the multi-host conninfo
(``target_session_attrs=read-write``), with backoff.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class Attempt:
    """One transfer as the client saw it (wall-clock times)."""

    id: str
    client: int
    src: int
    dst: int
    amount: int
    t_start: float
    t_end: float
    outcome: str  # acked | in_doubt | failed
    server: str | None  # "host:port" of the session that ran it
    error: str = ""


class LedgerWorkload:
    """Client threads running transfers against the warehouse until :meth:`stop`."""

    def __init__(
        self,
        conninfo: str,
        clients: int = 4,
        accounts: int = 100,
        initial_balance: int = 1000,
        schema: str = "dr",
        seed: int = 1,
    ) -> None:
        self.conninfo = conninfo
        self.clients = clients
        self.accounts = accounts
        self.initial_balance = initial_balance
        self.schema = schema
        self.seed = seed
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.attempts: list[Attempt] = []
        self.connects: list[tuple[float, int, str]] = []

    @property
    def accounts_table(self) -> sql.Composable:
        return sql.Identifier(self.schema, "ledger_accounts")

    @property
    def transfers_table(self) -> sql.Composable:
        return sql.Identifier(self.schema, "ledger_transfers")

    def prepare(self) -> None:
        """(Re)create the ledger: every account at the initial balance, no transfers."""
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY, balance bigint NOT NULL)").format(
                    self.accounts_table
                )
            )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, src int NOT NULL, dst int NOT NULL, "
                    "amount bigint NOT NULL, client int NOT NULL, "
                    "committed_at timestamptz NOT NULL DEFAULT clock_timestamp())"
                ).format(self.transfers_table)
            )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, probe text NOT NULL, "
                    "at timestamptz NOT NULL DEFAULT clock_timestamp())"
                ).format(sql.Identifier(self.schema, "ledger_fence"))
            )
            with conn.transaction():
                conn.execute(
                    sql.SQL("TRUNCATE {}, {}, {}").format(
                        self.accounts_table, self.transfers_table, sql.Identifier(self.schema, "ledger_fence")
                    )
                )
                conn.execute(
                    sql.SQL("INSERT INTO {} SELECT g, %s FROM generate_series(1, %s) g").format(
                        self.accounts_table
                    ),
                    (self.initial_balance, self.accounts),
                )

    def start(self) -> None:
        """Start the client threads."""
        self._stop.clear()
        for i in range(self.clients):
            t = threading.Thread(target=self._client, args=(i,), name=f"ledger-{i}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, timeout: float = 30.0) -> list[str]:
        """Stop the clients; returns the names of threads still stuck (e.g. in a COMMIT)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self._threads if t.is_alive()]

    def _record(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)

    def snapshot(self) -> list[Attempt]:
        """The attempts recorded so far (a copy)."""
        with self._lock:
            return list(self.attempts)

    def _connect(self, client: int) -> psycopg.Connection | None:
        backoff = 0.02
        while not self._stop.is_set():
            try:
                conn = psycopg.connect(self.conninfo, connect_timeout=2)
                server = f"{conn.info.host}:{conn.info.port}"
                with self._lock:
                    self.connects.append((time.time(), client, server))
                return conn
            except psycopg.Error:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 0.25)
        return None

    def _client(self, client: int) -> None:
        rng = random.Random(self.seed * 1000 + client)
        conn: psycopg.Connection | None = None
        seq = 0
        upd = sql.SQL("UPDATE {} SET balance = balance + %s WHERE id = %s").format(self.accounts_table)
        ins = sql.SQL("INSERT INTO {} (id, src, dst, amount, client) VALUES (%s, %s, %s, %s, %s)").format(
            self.transfers_table
        )
        try:
            while not self._stop.is_set():
                if conn is None or conn.closed:
                    conn = self._connect(client)
                    if conn is None:
                        return
                server = f"{conn.info.host}:{conn.info.port}"
                seq += 1
                tid = f"c{client}-{seq}"
                src, dst = rng.sample(range(1, self.accounts + 1), 2)
                amount = rng.randint(1, 50)
                phase = "body"
                t0 = time.time()
                try:
                    with conn.cursor() as cur:
                        # lock the lower id first: concurrent transfers never deadlock
                        for acct, delta in sorted(((src, -amount), (dst, amount))):
                            cur.execute(upd, (delta, acct))
                        cur.execute(ins, (tid, src, dst, amount, client))
                    phase = "commit"
                    conn.commit()
                    self._record(Attempt(tid, client, src, dst, amount, t0, time.time(), "acked", server))
                except psycopg.Error as exc:
                    lost = conn.closed or conn.broken
                    outcome = "in_doubt" if phase == "commit" and lost else "failed"
                    self._record(
                        Attempt(
                            tid,
                            client,
                            src,
                            dst,
                            amount,
                            t0,
                            time.time(),
                            outcome,
                            server,
                            f"{type(exc).__name__}: {str(exc).strip()[:200]}",
                        )
                    )
                    if lost:
                        conn.close()
                        conn = None
                    else:
                        try:
                            conn.rollback()
                        except psycopg.Error:
                            conn.close()
                            conn = None
        finally:
            if conn is not None:
                conn.close()

    def dump(self, path: Path) -> None:
        """Every attempt as one JSON line (the raw log of the run)."""
        with path.open("w") as fh:
            for a in self.snapshot():
                fh.write(json.dumps(asdict(a)) + "\n")
