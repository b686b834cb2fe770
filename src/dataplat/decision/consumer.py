"""The JetStream consumer: events from ``bank.events.>`` (stream EVENTS) become decisions
published on ``bank.decisions.<channel>`` (stream DECISIONS).

One durable pull consumer (``decision``, explicit acknowledgement, at most
``max_ack_pending`` unacknowledged messages) shared by every worker: each worker fetches
batches of at most ``batch`` messages and decides them concurrently. A message is
acknowledged only after its decision is recorded, that is published on DECISIONS and
acknowledged by JetStream (:mod:`~dataplat.decision.record`), so nothing is lost when a
worker dies; a redelivered event is a replay: its decision is not published again.

==============================  ======================================================
malformed event, no customer    terminated (``term``): never redelivered, counted invalid
warehouse or stream down,       ``nak`` with a delay: redelivered later
overloaded
==============================  ======================================================

The published document is the HTTP answer plus the row's fields, ``event_published_at``
(the producer's ``published_at``, epoch seconds) and ``decided_at``; end-to-end latency
(published_at to the decision's recording acknowledged) is the histogram
``dataplat_decision_e2e_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from dataplat.decision.engine import Engine
from dataplat.decision.events import EventError, parse_event
from dataplat.decision.metrics import DecisionMetrics
from dataplat.decision.stream import EVENTS_STREAM, EVENTS_SUBJECT, StreamLink, pull_forever
from dataplat.errors import ComponentError

log = logging.getLogger("dataplat.decision")

DURABLE = "decision"
"""The durable consumer's name (KEDA scales on its lag: charts/decision, keda.consumer)."""


class EventConsumer:
    """Fetch, decide, acknowledge (module docstring)."""

    def __init__(
        self,
        link: StreamLink,
        engine: Engine,
        metrics: DecisionMetrics,
        *,
        durable: str = DURABLE,
        batch: int = 32,
        max_ack_pending: int = 512,
        ack_wait_s: float = 30.0,
        retry_delay_s: float = 1.0,
    ) -> None:
        self.link = link
        self.engine = engine
        self.metrics = metrics
        self.durable = durable
        self.batch = batch
        self.max_ack_pending = max_ack_pending
        self.ack_wait_s = ack_wait_s
        self.retry_delay_s = retry_delay_s
        self.handled = 0

    async def run(self) -> None:
        """Consume until cancelled; (re)subscribes with backoff when the stream is not there."""
        await self.link.wait_connected(3600.0)  # the service runs the link
        await pull_forever(
            self.link,
            EVENTS_SUBJECT,
            self.durable,
            EVENTS_STREAM,
            self._loop,
            "consumer",
            max_ack_pending=self.max_ack_pending,
            ack_wait_s=self.ack_wait_s,
        )

    async def _loop(self, sub: JetStreamContext.PullSubscription) -> None:
        # nats-py's fetch(n) returns only when n messages came or the timeout passed, so a
        # batch fetch at a low event rate would hold each event up to the timeout. Wait
        # for one message and start deciding it, then take what is already there (a short
        # second fetch, which lingers a few ms when nothing is); at most `batch` events are
        # decided at once.
        slots = asyncio.Semaphore(self.batch)
        running: set[asyncio.Task[None]] = set()

        async def one(m: Msg) -> None:
            try:
                await self.handle(m)
            finally:
                slots.release()

        def start(msgs: list[Msg]) -> None:
            for m in msgs:
                task = asyncio.get_running_loop().create_task(one(m))
                running.add(task)
                task.add_done_callback(running.discard)

        try:
            while True:
                await slots.acquire()
                try:
                    msgs = await sub.fetch(1, timeout=1.0)
                except (nats.errors.TimeoutError, TimeoutError):
                    slots.release()
                    continue  # nothing to consume within the second: fetch again
                except BaseException:
                    slots.release()
                    raise
                start(msgs)
                free = 0
                while free < self.batch - 1 and not slots.locked():
                    await slots.acquire()
                    free += 1
                if free:
                    more: list[Msg] = []
                    with suppress(nats.errors.TimeoutError, TimeoutError):
                        more = await sub.fetch(free, timeout=0.005)
                    for _ in range(free - len(more)):
                        slots.release()
                    start(more)
        finally:
            # the events being decided finish (bounded by the engine's own timeouts)
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def handle(self, msg: Msg) -> None:
        """Decide one message (recording it), acknowledge (module docstring)."""
        started = time.perf_counter()
        try:
            event = parse_event(msg.data)
        except EventError as exc:
            log.warning(
                "dropping a malformed event on %s: %s (field %s)", msg.subject, exc.message, exc.field
            )
            self.metrics.requests.labels("stream", "invalid").inc()
            await _settle(msg.term())
            return
        try:
            decision, fresh = await self.engine.decide(event, started)
        except EventError as exc:
            log.warning("dropping event %s: %s", event.event_id, exc.message)
            self.metrics.requests.labels("stream", "invalid").inc()
            await _settle(msg.term())
            return
        except ComponentError as exc:
            self.metrics.requests.labels("stream", "unavailable").inc()
            log.warning("event %s not decided now (%s); redelivered later", event.event_id, exc)
            await _settle(msg.nak(delay=self.retry_delay_s))
            return
        # recorded = published on DECISIONS (the engine's last step), so the event is done
        now = time.time()
        if event.published_at is not None and fresh:
            self.metrics.e2e.observe(max(now - event.published_at, 0.0))
        self.metrics.requests.labels("stream", "decided" if fresh else "replayed").inc()
        self.metrics.duration.labels("stream").observe(time.perf_counter() - started)
        self.handled += 1
        await _settle(msg.ack())


async def _settle(aw: object) -> None:
    """Acknowledge / nak / term, bounded; a failure here means redelivery, which is safe."""
    with suppress(Exception):
        async with asyncio.timeout(2.0):
            await aw  # type: ignore[misc]
