"""Recording decisions: the DECISIONS stream first, the warehouse from the stream.

A decision is recorded when JetStream has acknowledged it on ``bank.decisions.<channel>``
(stream DECISIONS, replicated R3 on a cluster) with the header ``Nats-Msg-Id`` set to its
event id. That is the only write on a decision's path (one round trip to the stream, no
warehouse commit), and it is what makes a decision idempotent: JetStream stores one
message per ``Nats-Msg-Id`` within the stream's duplicate window and answers a second
publish with ``duplicate: true`` and the sequence of the first, which
:class:`StreamRecorder` reads back (``STREAM.MSG.GET``) and answers instead, marked replayed.

:class:`DecisionSink` writes the stream into ``bank.decisions``: a durable pull consumer
(``decision-sink``, explicit acknowledgement). One worker of each service instance runs
it, the one holding the instance's lock file (another takes over within
``lock_retry_s`` when it exits). It fetches up to ``batch`` messages (waiting at most
``linger_s`` for a batch to fill), inserts them in one statement (the documents as one
JSON array, ``ON CONFLICT (event_id) DO NOTHING``) and acknowledges them only after the
commit, so a crash or a warehouse outage loses nothing: the messages are delivered again
and the insert skips what is there. A batch with a malformed document is written row by
row and the malformed message terminated. The
lag from a decision to its commit in the warehouse (the oldest of each batch) is the
histogram ``dataplat_decision_stage_seconds{stage="sink"}``.

Exactly once holds within the duplicate window (2 minutes by default), and beyond it for
the event ids a worker still remembers (:class:`~dataplat.decision.ledger.DecisionLedger`)
or finds in the warehouse (events older than the feature cache's tolerance are read from
the warehouse, with the decision stored under their id). An event id reused later than all
of these gets a new decision on the stream; the warehouse keeps the first.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats.errors
import psycopg

from dataplat.decision.ledger import DecisionLedger
from dataplat.decision.stream import (
    DECISIONS_PREFIX,
    DECISIONS_STREAM,
    StreamLink,
    decision_subject,
    pull_forever,
)
from dataplat.decision.warehouse import (
    SINK_SQL,
    ConnectionPool,
    StoredDecision,
    WarehouseUnavailable,
)
from dataplat.errors import ComponentError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from dataplat.decision.metrics import DecisionMetrics

log = logging.getLogger("dataplat.decision")

SINK_DURABLE = "decision-sink"


class StreamUnavailable(ComponentError):
    """The stream did not acknowledge a decision in time (or is not connected): answered 503."""


class StreamRecorder:
    """Records a decision on the DECISIONS stream; returns the first decision of a replayed
    event id (module docstring)."""

    def __init__(
        self, link: StreamLink, ledger: DecisionLedger, metrics: DecisionMetrics, timeout_s: float = 2.0
    ) -> None:
        self.link = link
        self.ledger = ledger
        self.metrics = metrics
        self.timeout_s = timeout_s

    async def record(self, row: StoredDecision, doc: dict[str, Any]) -> StoredDecision | None:
        """Publish ``doc`` (the decision ``row`` as the stream's document); None when this call
        recorded it, else the decision recorded first under its event id. Counted in
        ``dataplat_decision_published_total`` by result."""
        try:
            first = await self._record(row, doc)
        except StreamUnavailable:
            self.metrics.published.labels("failed").inc()
            raise
        self.metrics.published.labels("ok" if first is None else "duplicate").inc()
        return first

    async def _record(self, row: StoredDecision, doc: dict[str, Any]) -> StoredDecision | None:
        js = self.link.js
        if js is None or not self.link.connected:
            raise StreamUnavailable(f"stream not connected ({self.link.last_error or 'connecting'})")
        payload = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            ack = await js.publish(
                decision_subject(row.channel),
                payload,
                timeout=self.timeout_s,
                headers={"Nats-Msg-Id": row.event_id},
            )
        except (nats.errors.TimeoutError, TimeoutError):
            raise StreamUnavailable(
                f"recording the decision took over {self.timeout_s * 1000:.0f} ms (it may still be "
                "recorded; the same event id answers the same decision)"
            ) from None
        except Exception as exc:  # noqa: BLE001 - nats-py raises many types: no stream, no responders...
            raise StreamUnavailable(f"recording the decision failed: {type(exc).__name__}: {exc}") from None
        if not ack.duplicate:
            self.ledger.add(row)
            return None
        first = self.ledger.stored(row.event_id)
        if first is not None:
            return first
        try:
            msg = await js.get_msg(DECISIONS_STREAM, seq=ack.seq)
            first = StoredDecision.from_doc(json.loads(msg.data or b"{}"))
        except Exception as exc:  # noqa: BLE001 - as above
            raise StreamUnavailable(
                f"event {row.event_id} was decided before, but its decision (stream sequence {ack.seq}) "
                f"cannot be read: {type(exc).__name__}: {exc}"
            ) from None
        self.ledger.add(first)
        return first


class DecisionSink:
    """Writes the DECISIONS stream into ``bank.decisions`` (module docstring)."""

    def __init__(
        self,
        link: StreamLink,
        pool: ConnectionPool,
        metrics: DecisionMetrics,
        lock_path: Path,
        *,
        durable: str = SINK_DURABLE,
        stream: str = DECISIONS_STREAM,
        subjects: str = DECISIONS_PREFIX + ">",
        batch: int = 1000,
        linger_s: float = 0.2,
        max_ack_pending: int = 20_000,
        ack_wait_s: float = 30.0,
        retry_delay_s: float = 1.0,
        lock_retry_s: float = 2.0,
    ) -> None:
        self.link = link
        self.pool = pool
        self.metrics = metrics
        self.lock_path = lock_path
        self.durable = durable
        self.stream = stream
        self.subjects = subjects
        self.batch = batch
        self.linger_s = linger_s
        self.max_ack_pending = max_ack_pending
        self.ack_wait_s = ack_wait_s
        self.retry_delay_s = retry_delay_s
        self.lock_retry_s = lock_retry_s
        self.written = 0
        self.active = False
        self.last_error = ""

    async def _lock(self) -> int:
        """Wait until this process holds the instance's sink lock; the open descriptor."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                await asyncio.sleep(self.lock_retry_s)
            except BaseException:
                os.close(fd)
                raise

    async def run(self) -> None:
        """Write until cancelled, once this worker holds the lock; (re)subscribes with
        backoff when the stream is not there."""
        fd = await self._lock()
        self.active = True
        try:
            await self._run()
        finally:
            self.active = False
            os.close(fd)  # releases the lock: another worker takes over

    async def _run(self) -> None:
        await self.link.wait_connected(3600.0)

        def note(error: str) -> None:
            self.last_error = error

        await pull_forever(
            self.link,
            self.subjects,
            self.durable,
            self.stream,
            self._loop,
            "sink",
            max_ack_pending=self.max_ack_pending,
            ack_wait_s=self.ack_wait_s,
            on_error=note,
        )

    async def _loop(self, sub: Any) -> None:
        while True:
            try:
                msgs = await sub.fetch(1, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            # the rest of a batch, for at most linger_s (a fetch returns with what is there)
            deadline = time.monotonic() + self.linger_s
            while len(msgs) < self.batch:
                left = deadline - time.monotonic()
                if left <= 0.001:
                    break
                try:
                    msgs += await sub.fetch(self.batch - len(msgs), timeout=left)
                except (nats.errors.TimeoutError, TimeoutError):
                    break
            await self.write(msgs)

    async def write(self, msgs: list[Any]) -> None:
        """Insert the decisions of ``msgs``, then acknowledge them; on a warehouse error
        nothing is acknowledged (they come again after ``retry_delay_s``)."""
        t0 = time.perf_counter()
        try:
            async with self.pool.connection() as conn:
                try:
                    await _insert(conn, msgs)
                    good = msgs
                except (psycopg.errors.DataError, psycopg.errors.IntegrityError):
                    good = await self._write_each(conn, msgs)
        except (ComponentError, psycopg.Error) as exc:
            self.last_error = str(exc)
            log.warning(
                "sink: %d decision(s) not written (%s); retrying in %.1f s",
                len(msgs),
                exc,
                self.retry_delay_s,
            )
            for m in msgs:
                with suppress(Exception):
                    await m.nak(delay=self.retry_delay_s)
            await asyncio.sleep(self.retry_delay_s)
            return
        self.metrics.stage.labels("sink_write").observe(time.perf_counter() - t0)
        for m in good:
            with suppress(Exception):
                await m.ack()
        self.written += len(good)
        with suppress(Exception):  # the oldest of the batch: its time from decision to warehouse
            oldest = json.loads(msgs[0].data)["decided_at"]
            self.metrics.stage.labels("sink").observe(max(time.time() - float(oldest), 0.0))

    async def _write_each(self, conn: Any, msgs: list[Any]) -> list[Any]:
        """The slow path of a batch that failed as a whole: each message on its own; one that
        is not a decision, or that the table refuses (a customer no longer there), is
        terminated with a warning instead of blocking the stream. The messages written."""
        good: list[Any] = []
        for m in msgs:
            try:
                StoredDecision.from_doc(json.loads(m.data))  # a decision at all?
                await _insert(conn, [m])
                good.append(m)
            except (
                ValueError,
                KeyError,
                TypeError,
                psycopg.errors.DataError,
                psycopg.errors.IntegrityError,
            ) as exc:
                log.warning("sink: dropping decision message %s on %s: %s", _seq(m), m.subject, exc)
                with suppress(Exception):
                    await m.term()
        return good


async def _insert(conn: Any, msgs: list[Any]) -> None:
    """The decisions of ``msgs`` into ``bank.decisions``: their documents as one JSON array."""
    docs = b",".join(m.data for m in msgs).decode()
    await conn.execute(SINK_SQL, ("[" + docs + "]",), prepare=True)


def _seq(m: Any) -> str:
    with suppress(Exception):
        return f"#{m.metadata.sequence.stream}"
    return "?"


def sink_lock_path(port: int) -> Path:
    """The lock file that elects one sink per service instance (beside the instance's metrics
    files when it has them)."""
    base = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or "/tmp"  # noqa: S108 - a lock, no data
    return Path(base) / f"dataplat-decision-sink-{port}.lock"


__all__ = ["DecisionSink", "StreamRecorder", "StreamUnavailable", "WarehouseUnavailable", "sink_lock_path"]
