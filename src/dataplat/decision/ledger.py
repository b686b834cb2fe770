"""Recent decisions in memory: replays by event id and frequency caps without a warehouse read.

Every worker keeps a :class:`DecisionLedger` fed by plain NATS subscriptions to the
DECISIONS subjects of the channels (``bank.decisions.app_push|sms|rm_task``), so it sees
the contacts decided by every worker and every instance within milliseconds of their
recording, and adds its own decisions at once. Decisions without a channel (most of them
under load, once the caps are reached) are not followed: they count for no cap. It holds:

* the last ``max_events`` decisions by event id (a replayed event id is answered from
  here without reading the warehouse or scoring again; other replays are found by the
  stream's duplicate detection);
* per customer, the decisions with a channel of the last ``cap_hours`` (the longest
  frequency-cap window of the strategies), at most ``per_customer`` of them, newest kept.

A worker that starts (or reconnects) would miss what was decided just before its
subscriptions, while the warehouse does not have it yet: :func:`follow` subscribes first,
then reads the last ``backfill_s`` seconds of the same subjects from the stream, and the
service does not take requests before that is done.

The warehouse's ``bank.decisions`` is written from the stream by
:class:`~dataplat.decision.record.DecisionSink` a moment later; a customer's cached view
(:mod:`~dataplat.decision.features`) lists the decision ids it already counts, so a decision
is counted once whether the view or the ledger has it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import OrderedDict, deque
from typing import Any

from dataplat.decision.warehouse import StoredDecision

log = logging.getLogger("dataplat.decision")


class DecisionLedger:
    """Recent decisions by event id and by customer (module docstring)."""

    def __init__(self, cap_hours: float, *, max_events: int = 100_000, per_customer: int = 32) -> None:
        self.cap = dt.timedelta(hours=max(cap_hours, 0.0))
        self.max_events = max_events
        self.per_customer = per_customer
        self._events: OrderedDict[str, StoredDecision] = OrderedDict()
        self._customers: dict[int, deque[tuple[dt.datetime, str, str]]] = {}
        self.received = 0
        self.malformed = 0

    def __len__(self) -> int:
        return len(self._events)

    def add(self, d: StoredDecision) -> None:
        """Remember ``d`` (the first decision of an event id wins, as in the stream)."""
        if d.event_id in self._events:
            return
        self._events[d.event_id] = d
        if len(self._events) > self.max_events:
            self._events.popitem(last=False)
        if d.channel is None or not self.cap:
            return
        recent = self._customers.get(d.customer_id)
        if recent is None:
            recent = self._customers[d.customer_id] = deque(maxlen=self.per_customer)
        recent.append((d.ts, d.channel, d.event_id))
        if len(self._customers) > self.max_events:
            self._expire()

    def stored(self, event_id: str) -> StoredDecision | None:
        """The decision recorded under ``event_id``, when it is still remembered."""
        return self._events.get(event_id)

    def contacts(
        self,
        customer_id: int,
        since: dt.datetime,
        counted: frozenset[str] | set[str] = frozenset(),
        current: str = "",
    ) -> list[tuple[str, dt.datetime]]:
        """(channel, when) of the customer's decisions after ``since``, but those already
        ``counted`` elsewhere and the ``current`` event's own."""
        recent = self._customers.get(customer_id)
        if not recent:
            return []
        return [(ch, ts) for ts, ch, eid in recent if ts > since and eid not in counted and eid != current]

    def on_message(self, data: bytes) -> None:
        """Take one message of the DECISIONS stream (its JSON document)."""
        try:
            d = StoredDecision.from_doc(json.loads(data))
        except (ValueError, KeyError, TypeError) as exc:
            self.malformed += 1
            log.debug("ignoring a malformed decision message: %s", exc)
            return
        self.received += 1
        self.add(d)

    def _expire(self) -> None:
        """Forget customers whose remembered decisions are all older than the cap window."""
        horizon = dt.datetime.now(dt.UTC) - self.cap
        for cid in [c for c, q in self._customers.items() if not q or q[-1][0] <= horizon]:
            del self._customers[cid]

    def stats(self) -> dict[str, Any]:
        """Sizes and counters (for /readyz details and tests)."""
        return {
            "events": len(self._events),
            "customers": len(self._customers),
            "received": self.received,
            "malformed": self.malformed,
        }


async def follow(ledger: DecisionLedger, link: Any, backfill_s: float = 60.0) -> int:
    """Feed ``ledger`` from the DECISIONS subjects of the channels: plain subscriptions from
    now on (nats-py subscribes again after a reconnect), then the stream's messages of the
    last ``backfill_s`` seconds (one ephemeral consumer per subject, without acknowledgement);
    the number back-filled. ``link`` is a connected :class:`~dataplat.decision.stream.StreamLink`."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    from dataplat.decision.strategy import CHANNELS
    from dataplat.decision.stream import DECISIONS_STREAM, decision_subject

    async def on_decision(msg: Any) -> None:
        ledger.on_message(msg.data)

    subjects = [decision_subject(ch) for ch in CHANNELS]
    for subject in subjects:
        await link.nc.subscribe(subject, cb=on_decision, pending_msgs_limit=1_000_000)
    await link.nc.flush()  # the server has the subscriptions: nothing falls between them and the back-fill
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=backfill_s)
    filled = 0
    for subject in subjects:
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=start,
            inactive_threshold=10.0,
        )
        sub = await link.js.pull_subscribe(subject, stream=DECISIONS_STREAM, config=config)
        try:
            left = (await sub.consumer_info()).num_pending
            while left > 0:
                msgs = await sub.fetch(min(left, 1000), timeout=2.0)
                for m in msgs:
                    ledger.on_message(m.data)
                filled += len(msgs)
                left = msgs[-1].metadata.num_pending if msgs else 0
        finally:
            await sub.unsubscribe()
    return filled
