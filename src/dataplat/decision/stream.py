"""The service's link to NATS JetStream: connect (and keep reconnecting).

Decisions go to ``bank.decisions.<channel>`` (``none`` when no offer was made) on the
stream DECISIONS with the header ``Nats-Msg-Id`` set to the event id
(:mod:`~dataplat.decision.record`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

log = logging.getLogger("dataplat.decision")

DECISIONS_STREAM = "DECISIONS"
EVENTS_STREAM = "EVENTS"
EVENTS_SUBJECT = "bank.events.>"
DECISIONS_PREFIX = "bank.decisions."


def decision_subject(channel: str | None) -> str:
    """The subject a decision is published on."""
    return DECISIONS_PREFIX + (channel or "none")


class StreamLink:
    """One NATS connection per worker; :meth:`run` connects and retries with backoff until it
    succeeds (nats-py then reconnects by itself)."""

    def __init__(
        self, servers: Sequence[str], name: str = "dataplat-decision", timeout_s: float = 2.0
    ) -> None:
        self.servers = list(servers)
        self.name = name
        self.timeout_s = timeout_s
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self._ready = asyncio.Event()
        self._connecting = asyncio.Lock()
        self.last_error = ""

    @property
    def connected(self) -> bool:
        """Whether the connection is up now."""
        return self.nc is not None and self.nc.is_connected

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait (bounded) for the first connection."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            return False
        return self.connected

    async def run(self) -> None:
        """Connect, retrying with backoff (0.2 s doubling to 5 s); returns once connected (a
        second caller waits for the first's connection instead of opening another)."""
        if not self.servers:
            self.last_error = "no stream servers configured"
            return
        async with self._connecting:
            delay = 0.2
            while self.nc is None:
                try:
                    self.nc = await nats.connect(
                        servers=self.servers,
                        name=self.name,
                        connect_timeout=2,
                        allow_reconnect=True,
                        max_reconnect_attempts=-1,
                        reconnect_time_wait=0.5,
                        error_cb=self._on_error,
                        disconnected_cb=self._on_disconnect,
                    )
                except Exception as exc:  # noqa: BLE001 - nats-py raises several types on connect
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning(
                        "stream not reachable at %s (%s); retrying in %.1f s", self.servers, exc, delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            if self.js is None:
                self.js = self.nc.jetstream(timeout=self.timeout_s)
            self._ready.set()

    async def _on_error(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"

    async def _on_disconnect(self) -> None:
        log.warning("stream connection lost; reconnecting")

    async def close(self) -> None:
        """Drain and close the connection (bounded)."""
        if self.nc is not None and not self.nc.is_closed:
            with suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.nc.drain()
            with suppress(Exception):
                await self.nc.close()


async def pull_forever(
    link: StreamLink,
    subject: str,
    durable: str,
    stream: str,
    body: Callable[[Any], Awaitable[None]],
    what: str,
    *,
    max_ack_pending: int,
    ack_wait_s: float,
    on_error: Callable[[str], None] | None = None,
) -> None:
    """Pull-subscribe the durable consumer ``durable`` (explicit acknowledgement, from the
    stream's start, at most ``max_ack_pending`` unacknowledged, redelivered after
    ``ack_wait_s``) to ``subject`` on ``stream`` and run ``body(sub)`` until cancelled;
    subscribes again, with backoff (0.2 s doubling to 5 s), when the stream is not there or
    ``body`` fails. ``on_error`` hears each failure as text."""
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        max_ack_pending=max_ack_pending,
        ack_wait=ack_wait_s,
        filter_subject=subject,
    )
    delay = 0.2
    while True:
        try:
            if link.js is None:
                raise ConnectionError(f"stream not connected ({link.last_error or 'connecting'})")
            sub = await link.js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - stream missing, broker down: retry
            if on_error is not None:
                on_error(f"{type(exc).__name__}: {exc}")
            log.warning("%s cannot subscribe to %s on %s: %s; retrying", what, subject, stream, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        delay = 0.2
        try:
            await body(sub)
        except asyncio.CancelledError:
            with suppress(Exception):
                await sub.unsubscribe()
            raise
        except Exception as exc:  # noqa: BLE001 - keep going after a broker hiccup
            if on_error is not None:
                on_error(f"{type(exc).__name__}: {exc}")
            log.warning("%s loop failed: %s: %s; subscribing again", what, type(exc).__name__, exc)
            await asyncio.sleep(delay)
