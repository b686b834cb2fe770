"""The online feature cache: a customer's view read from the warehouse once, used for a while.

A decision needs the customer (segment, consent, holdings, next maturity), the model's
features over the last 30 days and the recent contacts (:func:`~dataplat.decision.warehouse.read_customers`,
one prepared query for a batch of customers). Reading them for every event costs a
warehouse round trip and most of the service's CPU; they change slowly (balances and
30-day sums by the day, holdings with the nightly batch), so each worker keeps them, like
the online store of a feature store:

* An entry is used for events whose time is within ``ttl_s`` of when the entry was read,
  and only while it is younger than ``ttl_s``; otherwise the customer is read again as of
  the event (an event replayed from yesterday gets yesterday's features, exactly as
  before). Misses of concurrent requests share one query (:class:`~dataplat.decision.batching.Batcher`).
* At most ``capacity`` customers, least recently used first out. :meth:`FeatureCache.keep_fresh`
  runs in the background: it reads the first ``capacity`` customers at start, ``chunk``
  per query, then every ``ttl_s / 4`` reads again the entries older than ``ttl_s / 2``
  (refresh ahead), so that a decision rarely waits for the warehouse because its
  customer's entry just expired.
* What changes per decision is not cached: the frequency caps count the cached contacts
  plus the recent decisions of :class:`~dataplat.decision.ledger.DecisionLedger`, and a
  replayed event id is found in the ledger or the stream (:mod:`~dataplat.decision.record`).

``ttl_s`` 0 turns the cache off: every decision reads its customer as of the event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from dataplat.decision.batching import Batcher, QueueFull
from dataplat.decision.warehouse import (
    ConnectionPool,
    CustomerKey,
    CustomerView,
    Overloaded,
    WarehouseUnavailable,
    read_customers,
    unavailable,
)

log = logging.getLogger("dataplat.decision")


class FeatureCache:
    """Customers' views by id, read through from the warehouse (module docstring)."""

    def __init__(
        self,
        pool: ConnectionPool,
        cap_hours: float,
        *,
        ttl_s: float = 300.0,
        capacity: int = 100_000,
        timeout_s: float = 1.0,
        readers: int = 2,
        max_pending: int = 1024,
        chunk: int = 500,
    ) -> None:
        self.pool = pool
        self.cap = dt.timedelta(hours=max(cap_hours, 0.0))
        self.ttl_s = ttl_s
        self.capacity = capacity
        self.timeout_s = timeout_s
        self.chunk = chunk
        self._entries: OrderedDict[int, tuple[float, dt.datetime, CustomerView | None]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.preloaded = 0
        self.refreshed = 0
        self.reads: Batcher[CustomerKey, CustomerView | None] = Batcher(
            lambda keys: read_customers(pool, keys, timeout_s),
            name="features",
            runners=readers,
            max_pending=max_pending,
            wrap=unavailable,
        )

    def start(self) -> None:
        """Start the readers (inside the running event loop)."""
        self.reads.start()

    async def stop(self) -> None:
        """Stop the readers; reads still queued fail with :class:`WarehouseUnavailable`."""
        await self.reads.stop(WarehouseUnavailable("the service is stopping"))

    def __len__(self) -> int:
        return len(self._entries)

    def _put(self, customer_id: int, as_of: dt.datetime, view: CustomerView | None) -> None:
        if view is not None and view.stored is not None:
            view = replace(view, stored=None)  # per event, not per customer
        self._entries[customer_id] = (time.monotonic(), as_of, view)
        self._entries.move_to_end(customer_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def cached(self, customer_id: int, ref: dt.datetime) -> tuple[bool, CustomerView | None]:
        """(hit, view) for an event of ``customer_id`` at ``ref`` (no I/O)."""
        entry = self._entries.get(customer_id)
        if entry is None or self.ttl_s <= 0:
            return False, None
        read_at, as_of, view = entry
        if time.monotonic() - read_at > self.ttl_s or abs((ref - as_of).total_seconds()) > self.ttl_s:
            return False, None
        self._entries.move_to_end(customer_id)
        return True, view

    async def view(self, customer_id: int, ref: dt.datetime, event_id: str) -> CustomerView | None:
        """The customer as of ``ref`` (None: no such customer); from the cache when it may be,
        else read (with the decision stored under ``event_id``, if any)."""
        hit, view = self.cached(customer_id, ref)
        if hit:
            self.hits += 1
            return view
        self.misses += 1
        try:
            view = await self.reads.submit(
                CustomerKey(customer_id, ref, ref - self.cap, event_id), self.timeout_s
            )
        except QueueFull as exc:
            raise Overloaded(str(exc)) from None
        except TimeoutError:
            raise WarehouseUnavailable(f"no features within {self.timeout_s * 1000:.0f} ms") from None
        now = dt.datetime.now(dt.UTC)
        if self.ttl_s > 0 and abs((ref - now).total_seconds()) <= self.ttl_s:
            self._put(customer_id, ref, view)
        return view

    async def keep_fresh(self, pause_s: float = 0.01) -> None:
        """Preload, then refresh ahead until cancelled (module docstring)."""
        if self.ttl_s <= 0 or self.capacity <= 0:
            return
        await self.preload(pause_s)
        while True:
            await asyncio.sleep(self.ttl_s / 4)
            await self.refresh(self.ttl_s / 2, pause_s)

    async def refresh(self, older_than_s: float, pause_s: float = 0.01) -> int:
        """Read again, as of now, the entries read more than ``older_than_s`` ago (their
        places in the LRU order stay); the number refreshed. Stops quietly on a warehouse error."""
        horizon = time.monotonic() - older_than_s
        stale = [c for c, (read_at, _, _) in list(self._entries.items()) if read_at < horizon]
        done = 0
        async for now, part, views in self._read_chunks(
            stale, lambda c: c in self._entries, "refresh", pause_s
        ):
            read_at = time.monotonic()
            for c, v in zip(part, views, strict=True):
                if c in self._entries:
                    self._entries[c] = (read_at, now, v)  # an update keeps the LRU position
                    done += 1
        self.refreshed += done
        return done

    async def preload(self, pause_s: float = 0.01) -> int:
        """Read the first ``capacity`` customers into the cache, ``chunk`` at a time (in the
        background at start; stops quietly when the warehouse cannot answer)."""
        if self.ttl_s <= 0 or self.capacity <= 0:
            return 0
        try:
            async with asyncio.timeout(10.0), self.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT customer_id FROM bank.customers ORDER BY customer_id LIMIT %s", (self.capacity,)
                )
                ids = [int(r[0]) for r in await cur.fetchall()]
        except Exception as exc:  # noqa: BLE001 - the cache fills on demand instead
            log.info("feature cache not preloaded: %s", exc)
            return 0
        async for now, part, views in self._read_chunks(
            ids, lambda c: c not in self._entries, "preload", pause_s
        ):
            for c, v in zip(part, views, strict=True):
                if c not in self._entries:
                    self._put(c, now, v)
                    self.preloaded += 1
        return self.preloaded

    async def _read_chunks(
        self, ids: list[int], wanted: Callable[[int], bool], what: str, pause_s: float
    ) -> AsyncIterator[tuple[dt.datetime, list[int], list[CustomerView | None]]]:
        """(as of, customers, their views) for the ``wanted`` ones of ``ids``, read as of now,
        ``chunk`` per query with a pause between; ends quietly on a warehouse error (entries
        are then read on demand)."""
        for i in range(0, len(ids), self.chunk):
            part = [c for c in ids[i : i + self.chunk] if wanted(c)]
            if not part:
                continue
            now = dt.datetime.now(dt.UTC)
            keys = [CustomerKey(c, now, now - self.cap, "") for c in part]
            try:
                views = await read_customers(self.pool, keys, max(self.timeout_s, 5.0))
            except Exception as exc:  # noqa: BLE001 - see the docstring
                log.info("feature cache %s stopped at customer %d: %s", what, part[0], exc)
                return
            yield now, part, views
            await asyncio.sleep(pause_s)
