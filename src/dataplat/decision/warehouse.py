"""The warehouse side of a decision: connections, the customer's features, recording.

* :class:`ConnectionPool` - a small bounded pool of psycopg async connections. Acquiring
  waits at most ``acquire_timeout_s``; a connection that saw any error is closed, and the
  next one is opened with the conninfo's ``target_session_attrs=read-write``, which finds
  the new primary after a Patroni failover. (psycopg_pool is not a dependency; this is
  the part of it the service needs.)
* :func:`read_customer` - everything a decision needs about a customer in one prepared
  query: the customer row, the model's features (:data:`~dataplat.serving.model.FEATURE_NAMES`,
  computed as of the event), held products, the next maturity, recent contacts and
  decisions for the frequency caps, and the decision already stored under the event id.
* :data:`SINK_SQL` - inserts documents of the DECISIONS stream with ``ON CONFLICT
  (event_id) DO NOTHING``, many in one statement; the sink that writes the stream into the
  warehouse uses it (:class:`~dataplat.decision.record.DecisionSink`).
* :class:`StoredDecision` - a row of ``bank.decisions``, and the same decision as a
  document of the DECISIONS stream.

The ``reason`` column holds JSON: ``{"strategy": ..., "reasons": [...], "pool": ...}``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from dataplat.decision.rules import Catalog, Customer, Product
from dataplat.errors import ComponentError
from dataplat.serving.model import FEATURE_NAMES


class WarehouseUnavailable(ComponentError):
    """The warehouse did not answer in time (or at all); the caller answers 503."""


class Overloaded(ComponentError):
    """A bounded queue is full; the caller sheds the request (503)."""


class ConnectionPool:
    """A bounded pool of autocommit async connections (module docstring)."""

    def __init__(
        self,
        conninfo: str,
        size: int = 4,
        *,
        acquire_timeout_s: float = 1.0,
        connect_timeout_s: float = 3.0,
        statement_timeout_ms: int = 2000,
        application_name: str = "dataplat-decision",
        synchronous_commit: str = "on",
    ) -> None:
        self.conninfo = conninfo
        self.size = size
        self.acquire_timeout_s = acquire_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_ms = statement_timeout_ms
        self.application_name = application_name
        self.synchronous_commit = synchronous_commit
        self._sem = asyncio.Semaphore(size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._closed = False
        self.reconnects = 0

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                conn = await psycopg.AsyncConnection.connect(
                    self.conninfo,
                    autocommit=True,
                    prepare_threshold=0,
                    application_name=self.application_name,
                    options=(
                        # generic plans: the statements are prepared once and their custom
                        # plans cost ~1 ms of planning per execution (measured) for nothing
                        f"-c statement_timeout={self.statement_timeout_ms} -c TimeZone=UTC "
                        "-c plan_cache_mode=force_generic_plan "
                        f"-c synchronous_commit={self.synchronous_commit}"
                    ),
                )
        except TimeoutError:
            raise WarehouseUnavailable(
                f"no read-write warehouse member answered within {self.connect_timeout_s:g} s"
            ) from None
        except psycopg.Error as exc:
            # the message names hosts and ports, never the password (it comes from a passfile)
            raise WarehouseUnavailable(f"cannot connect to the warehouse: {exc}".strip()) from None
        self.reconnects += 1
        return conn

    @asynccontextmanager
    async def connection(self, timeout_s: float | None = None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection for the duration of the block; :class:`WarehouseUnavailable` when none
        is free within the timeout or none can be opened."""
        if self._closed:
            raise WarehouseUnavailable("the connection pool is closed")
        try:
            async with asyncio.timeout(timeout_s if timeout_s is not None else self.acquire_timeout_s):
                await self._sem.acquire()
        except TimeoutError:
            raise Overloaded(f"all {self.size} warehouse connections busy") from None
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            while self._idle and conn is None:
                candidate = self._idle.pop()
                conn = None if candidate.closed or candidate.broken else candidate
            if conn is None:
                conn = await self._connect()
            try:
                yield conn
            except BaseException as exc:
                # any error (timeout, cancellation, a failover) may leave the session in an
                # unknown state: close it, the next user opens a fresh one
                with suppress(Exception):
                    await conn.close()
                conn = None
                if isinstance(exc, psycopg.OperationalError):
                    # the server went away (failover, restart): the idle connections point
                    # at it too, and each would fail its next user in turn
                    await self._drop_idle()
                raise
        finally:
            if conn is not None and not self._closed and not conn.closed and not conn.broken:
                self._idle.append(conn)
            elif conn is not None:
                with suppress(Exception):
                    await conn.close()
            self._sem.release()

    async def _drop_idle(self) -> None:
        while self._idle:
            with suppress(Exception):
                await self._idle.pop().close()

    async def close(self) -> None:
        """Close the idle connections; connections in use are closed when they come back."""
        self._closed = True
        await self._drop_idle()


# --- features -------------------------------------------------------------------------

CUSTOMER_SQL = """
SELECT e.ord, c.segment, c.risk_level, c.marketing_consent, c.status, c.gender,
       (e.ref::date - c.birth_date) AS age_days,
       greatest(e.ref::date - c.opened_at, 0) AS tenure_days,
       a.n_accounts, a.bal_current, a.bal_savings, a.bal_time_deposit,
       t.payroll, t.large_inflow, t.n_large_inflow, t.out_other, t.n_out_other, t.card_spend,
       t.n_txn, t.credit, t.debit,
       h.n_before, h.amount_before, h.categories_before, h.last_start, h.held, h.next_maturity,
       ch.n30, ch.converted30, ch.channels, ch.tss,
       d.channels, d.tss, d.eids,
       x.event_id, x.customer_id, x.ts, x.event_type, x.campaign_id, x.offer, x.channel, x.score,
       x.degraded, x.latency_ms, x.reason
FROM unnest(%(cids)s::int8[], %(refs)s::timestamptz[], %(sinces)s::timestamptz[], %(eids)s::text[])
     WITH ORDINALITY AS e(cid, ref, since, eid, ord)
CROSS JOIN LATERAL (
    SELECT * FROM bank.customers WHERE customer_id = e.cid LIMIT 1) c
CROSS JOIN LATERAL (
    SELECT count(*) AS n_accounts,
           coalesce(sum(balance) FILTER (WHERE type = 'current'), 0)::float8 AS bal_current,
           coalesce(sum(balance) FILTER (WHERE type = 'savings'), 0)::float8 AS bal_savings,
           coalesce(sum(balance) FILTER (WHERE type = 'time_deposit'), 0)::float8 AS bal_time_deposit
    FROM bank.accounts WHERE customer_id = c.customer_id) a
CROSS JOIN LATERAL (
    SELECT coalesce(sum(amount) FILTER (WHERE kind = 'payroll_credit'), 0)::float8 AS payroll,
           coalesce(sum(amount) FILTER (WHERE kind = 'large_inflow'), 0)::float8 AS large_inflow,
           count(*) FILTER (WHERE kind = 'large_inflow') AS n_large_inflow,
           coalesce(sum(amount) FILTER (WHERE kind = 'transfer_out_other_bank'), 0)::float8 AS out_other,
           count(*) FILTER (WHERE kind = 'transfer_out_other_bank') AS n_out_other,
           coalesce(sum(amount) FILTER (WHERE kind = 'card_spend'), 0)::float8 AS card_spend,
           count(*) AS n_txn,
           coalesce(sum(amount) FILTER (WHERE direction = 'credit'), 0)::float8 AS credit,
           coalesce(sum(amount) FILTER (WHERE direction <> 'credit'), 0)::float8 AS debit
    FROM bank.transactions
    WHERE customer_id = c.customer_id AND ts > e.ref - interval '30 days' AND ts <= e.ref) t
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE h.start_date < e.ref::date) AS n_before,
           coalesce(sum(h.amount) FILTER (WHERE h.start_date < e.ref::date), 0)::float8 AS amount_before,
           array_agg(DISTINCT p.category) FILTER (WHERE h.start_date < e.ref::date) AS categories_before,
           max(h.start_date) FILTER (WHERE h.start_date < e.ref::date) AS last_start,
           array_agg(h.product_id) FILTER (WHERE h.status = 'active') AS held,
           min(h.maturity_date) FILTER (WHERE h.status = 'active' AND h.maturity_date >= e.ref::date)
               AS next_maturity
    FROM bank.holdings h JOIN bank.products p ON p.product_id = h.product_id
    WHERE h.customer_id = c.customer_id) h
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE ts > e.ref - interval '30 days') AS n30,
           count(*) FILTER (WHERE ts > e.ref - interval '30 days' AND outcome = 'converted') AS converted30,
           array_agg(channel) FILTER (WHERE ts > e.since) AS channels,
           array_agg(ts) FILTER (WHERE ts > e.since) AS tss
    FROM bank.contact_history
    WHERE customer_id = c.customer_id AND ts <= e.ref AND ts > least(e.since, e.ref - interval '30 days')) ch
CROSS JOIN LATERAL (
    SELECT array_agg(channel) AS channels, array_agg(ts) AS tss, array_agg(event_id) AS eids
    FROM bank.decisions
    WHERE customer_id = c.customer_id AND ts > e.since AND channel IS NOT NULL AND event_id <> e.eid) d
LEFT JOIN bank.decisions x ON x.event_id = e.eid
"""

SINK_SQL = """
INSERT INTO bank.decisions
    (event_id, customer_id, ts, event_type, campaign_id, offer, channel, score, degraded, latency_ms, reason)
SELECT d->>'event_id', (d->>'customer_id')::int8,
       coalesce((d->>'ts')::timestamptz, to_timestamp((d->>'decided_at')::float8)),
       coalesce(d->>'event_type', ''), (d->>'campaign_id')::int4, d->'offer'->>'product_id', d->>'channel',
       (d->>'score')::float8, coalesce((d->>'degraded')::bool, false),
       coalesce((d->>'latency_ms')::float8, 0),
       jsonb_strip_nulls(
           jsonb_build_object('strategy', d->'strategy', 'reasons', d->'reasons', 'pool', d->'pool'))::text
FROM jsonb_array_elements(%s::text::jsonb) AS d
ON CONFLICT (event_id) DO NOTHING
"""
"""The documents of the DECISIONS stream, as one JSON array, into ``bank.decisions``: the
same row as :meth:`StoredDecision.from_doc` reads from a document (``reason`` holds
strategy, reasons and pool as JSON)."""

_COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
_CATEGORIES = ("deposit", "wealth_management", "fund", "insurance")


@dataclass(frozen=True)
class StoredDecision:
    """A row of ``bank.decisions`` (``reason`` decoded): what the engine records, and what it
    reads back for a replayed event id."""

    event_id: str
    customer_id: int
    ts: dt.datetime
    event_type: str
    campaign_id: int | None
    offer: str | None
    channel: str | None
    score: float | None
    degraded: bool
    latency_ms: float
    strategy: str
    reasons: tuple[str, ...]
    pool: str | None = None

    def stream_fields(self) -> dict[str, Any]:
        """What the DECISIONS stream's document carries beyond the HTTP answer, so that the
        row can be written from it (:meth:`from_doc`)."""
        return {
            "event_type": self.event_type,
            "campaign_id": self.campaign_id,
            "pool": self.pool,
            "ts": self.ts.isoformat(),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> StoredDecision:
        """From a document of the DECISIONS stream (the HTTP answer plus :meth:`stream_fields`);
        KeyError/ValueError/TypeError for a document that is not one."""
        offer = doc.get("offer") or {}
        ts = (
            dt.datetime.fromisoformat(doc["ts"])
            if doc.get("ts")
            else dt.datetime.fromtimestamp(float(doc["decided_at"]), dt.UTC)
        )
        score = doc.get("score")
        return cls(
            event_id=str(doc["event_id"]),
            customer_id=int(doc["customer_id"]),
            ts=ts,
            event_type=str(doc.get("event_type") or ""),
            campaign_id=doc.get("campaign_id"),
            offer=offer.get("product_id"),
            channel=doc.get("channel"),
            score=float(score) if score is not None else None,
            degraded=bool(doc.get("degraded")),
            latency_ms=float(doc.get("latency_ms") or 0.0),
            strategy=str(doc.get("strategy") or ""),
            reasons=tuple(str(r) for r in doc.get("reasons") or ()),
            pool=doc.get("pool"),
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StoredDecision:
        """From the 11 columns of ``bank.decisions`` in declaration order."""
        try:
            meta = json.loads(row[10]) if row[10] else {}
        except ValueError:
            meta = {"reasons": [row[10]]}
        if not isinstance(meta, dict):
            meta = {"reasons": [str(meta)]}
        return cls(
            event_id=row[0],
            customer_id=int(row[1]),
            ts=row[2],
            event_type=row[3],
            campaign_id=row[4],
            offer=row[5],
            channel=row[6],
            score=row[7],
            degraded=bool(row[8]),
            latency_ms=float(row[9]),
            strategy=str(meta.get("strategy", "")),
            reasons=tuple(str(r) for r in meta.get("reasons", [])),
            pool=meta.get("pool"),
        )


@dataclass(frozen=True)
class CustomerView:
    """What :func:`read_customer` returns: the customer for the rules, the model's features,
    and the decision already stored under the event id (None when there is none)."""

    customer: Customer
    features: np.ndarray
    """float32 [1, len(FEATURE_NAMES)]"""
    stored: StoredDecision | None = None
    decision_ids: frozenset[str] = frozenset()
    """The event ids of the recorded decisions counted in ``customer.contacts``."""


def _log1p(x: float) -> float:
    return math.log1p(max(x, 0.0))


def build_view(customer_id: int, ref: dt.datetime, row: Sequence[Any]) -> CustomerView:
    """The :class:`CustomerView` of one row of :data:`CUSTOMER_SQL`."""
    (segment, risk, consent, status, gender, age_days, tenure_days,
     n_acc, bal_cur, bal_sav, bal_td,
     payroll, inflow, n_inflow, out_other, n_out_other, spend, n_txn, credit, debit,
     n_before, amount_before, cats_before, last_start, held, next_maturity,
     n30, conv30, ch_channels, ch_ts, d_channels, d_ts, d_eids) = row[:33]  # fmt: skip
    x = np.zeros((1, len(FEATURE_NAMES)), dtype=np.float32)
    f = x[0]
    f[_COL["age_years"]] = age_days / 365.25
    f[_COL["tenure_years"]] = tenure_days / 365.25
    for s in ("mass", "affluent", "private"):
        f[_COL[f"segment_{s}"]] = segment == s
    f[_COL["risk_level"]] = risk
    f[_COL["marketing_consent"]] = bool(consent)
    f[_COL["dormant"]] = status == "dormant"
    f[_COL["gender_male"]] = gender == "M"
    f[_COL["n_accounts"]] = n_acc
    f[_COL["log_balance_current"]] = _log1p(bal_cur)
    f[_COL["log_balance_savings"]] = _log1p(bal_sav)
    f[_COL["log_balance_time_deposit"]] = _log1p(bal_td)
    f[_COL["payroll_customer"]] = payroll > 0
    f[_COL["log_payroll_30d"]] = _log1p(payroll)
    f[_COL["log_large_inflow_30d"]] = _log1p(inflow)
    f[_COL["n_large_inflow_30d"]] = n_inflow
    f[_COL["log_transfer_out_other_bank_30d"]] = _log1p(out_other)
    f[_COL["n_transfer_out_other_bank_30d"]] = n_out_other
    f[_COL["log_card_spend_30d"]] = _log1p(spend)
    f[_COL["n_txn_30d"]] = n_txn
    f[_COL["log_credit_30d"]] = _log1p(credit)
    f[_COL["log_debit_30d"]] = _log1p(debit)
    f[_COL["n_holdings_before"]] = n_before
    f[_COL["log_holdings_amount_before"]] = _log1p(amount_before)
    cats = set(cats_before or ())
    for c in _CATEGORIES:
        f[_COL[f"held_{c}_before"]] = c in cats
    ref_date = ref.astimezone(dt.UTC).date()
    f[_COL["days_since_last_holding"]] = min((ref_date - last_start).days, 3650) if last_start else 3650
    f[_COL["n_contacts_30d"]] = n30
    f[_COL["n_converted_contacts_30d"]] = conv30
    contacts = list(zip(ch_channels or (), ch_ts or (), strict=True))
    contacts += list(zip(d_channels or (), d_ts or (), strict=True))
    customer = Customer(
        customer_id=customer_id,
        segment=segment,
        risk_level=int(risk),
        marketing_consent=bool(consent),
        status=status,
        held_products=frozenset(held or ()),
        next_maturity=next_maturity,
        contacts=contacts,
    )
    stored = StoredDecision.from_row(row[33:]) if row[33] is not None else None
    return CustomerView(customer, x, stored, frozenset(d_eids or ()))


@dataclass(frozen=True)
class CustomerKey:
    """What a features read needs: the customer, as of when, the cap window, the event id."""

    customer_id: int
    ref: dt.datetime
    since: dt.datetime
    event_id: str


async def read_customers(
    pool: ConnectionPool, keys: Sequence[CustomerKey], timeout_s: float = 1.0
) -> list[CustomerView | None]:
    """The customers of ``keys`` in one round trip (None for a customer that does not exist)."""
    params = {
        "cids": [k.customer_id for k in keys],
        "refs": [k.ref for k in keys],
        "sinces": [k.since for k in keys],
        "eids": [k.event_id for k in keys],
    }
    try:
        async with asyncio.timeout(timeout_s), pool.connection() as conn:
            cur = await conn.execute(CUSTOMER_SQL, params, prepare=True)
            rows = await cur.fetchall()
    except TimeoutError:
        raise WarehouseUnavailable(
            f"reading {len(keys)} customer(s) took over {timeout_s * 1000:.0f} ms"
        ) from None
    except psycopg.Error as exc:
        raise WarehouseUnavailable(f"reading customers failed: {exc}".strip()) from None
    out: list[CustomerView | None] = [None] * len(keys)
    for row in rows:
        i = int(row[0]) - 1
        out[i] = build_view(keys[i].customer_id, keys[i].ref, row[1:])
    return out


async def read_customer(
    pool: ConnectionPool, customer_id: int, ref: dt.datetime, cap_hours: float, event_id: str,
    timeout_s: float = 1.0,
) -> CustomerView | None:  # fmt: skip
    """One customer as of ``ref`` (None when there is no such customer)."""
    since = ref - dt.timedelta(hours=max(cap_hours, 0.0))
    return (await read_customers(pool, [CustomerKey(customer_id, ref, since, event_id)], timeout_s))[0]


async def read_catalog(pool: ConnectionPool, timeout_s: float = 3.0) -> Catalog:
    """Products and campaigns (read once at start: they change with releases, not per event)."""
    try:
        async with asyncio.timeout(timeout_s), pool.connection() as conn:
            cur = await conn.execute("SELECT product_id, code, name, category, risk_level FROM bank.products")
            products = {r[1]: Product(int(r[0]), r[1], r[2], r[3], int(r[4])) for r in await cur.fetchall()}
            cur = await conn.execute("SELECT campaign_id, code FROM bank.campaigns")
            campaigns = {r[1]: int(r[0]) for r in await cur.fetchall()}
    except TimeoutError:
        raise WarehouseUnavailable(f"reading the catalogue took over {timeout_s:g} s") from None
    except psycopg.Error as exc:
        raise WarehouseUnavailable(f"reading the catalogue failed: {exc}".strip()) from None
    return Catalog(products, campaigns)


async def ping(pool: ConnectionPool, timeout_s: float = 1.0) -> bool:
    """Whether a read-write member answers ``SELECT 1`` in time."""
    try:
        async with asyncio.timeout(timeout_s), pool.connection() as conn:
            await conn.execute("SELECT 1")
        return True
    except (TimeoutError, ComponentError, psycopg.Error):
        return False


def unavailable(exc: Exception) -> Exception:
    """A batch's unexpected error as :class:`WarehouseUnavailable` (component errors pass through)."""
    return exc if isinstance(exc, ComponentError) else WarehouseUnavailable(f"{type(exc).__name__}: {exc}")
