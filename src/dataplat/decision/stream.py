"""The service's link to NATS JetStream: connect (and keep reconnecting).

Decisions go to ``bank.decisions.<channel>`` (``none`` when no offer was made) on the
stream DECISIONS with the header ``Nats-Msg-Id`` set to the event id
(:mod:`~dataplat.decision.record`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import suppress

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

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
        """Connect, retrying with backoff (0.2 s doubling to 5 s); returns once connected."""
        if not self.servers:
            self.last_error = "no stream servers configured"
            return
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
                log.warning("stream not reachable at %s (%s); retrying in %.1f s", self.servers, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
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
