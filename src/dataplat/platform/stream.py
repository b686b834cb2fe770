"""The stream: NATS JetStream streams the platform uses, and the broker's health."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nats
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError


@dataclass(frozen=True)
class StreamSpec:
    """A stream as declared in roles/stream/defaults (``stream_streams``)."""

    name: str
    subjects: tuple[str, ...]
    max_age_s: float = 7 * 86400
    replicas: int = 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamSpec:
        return cls(
            name=str(d["name"]),
            subjects=tuple(d["subjects"]),
            max_age_s=float(d.get("max_age_s", 7 * 86400)),
            replicas=int(d.get("replicas", 1)),
        )

    def config(self, nodes: int) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            max_age=self.max_age_s,
            num_replicas=max(1, min(self.replicas, nodes)),
            duplicate_window=120.0,
        )


async def _ensure(servers: Sequence[str], specs: Sequence[StreamSpec], nodes: int) -> list[str]:
    changed: list[str] = []
    nc = await nats.connect(servers=list(servers), connect_timeout=5, max_reconnect_attempts=2)
    try:
        js = nc.jetstream(timeout=10)
        for spec in specs:
            want = spec.config(nodes)
            try:
                info = await js.stream_info(spec.name)
            except NotFoundError:
                await js.add_stream(want)
                changed.append(f"created {spec.name}")
                continue
            have = info.config
            if (
                sorted(have.subjects or []) != sorted(want.subjects or [])
                or (have.max_age or 0) != want.max_age
                or (have.num_replicas or 1) != want.num_replicas
            ):
                await js.update_stream(want)
                changed.append(f"updated {spec.name}")
    finally:
        await nc.close()
    return changed


def ensure_streams(servers: Sequence[str], specs: Sequence[StreamSpec]) -> list[str]:
    """Create or update the streams; returns what changed (empty when nothing did)."""
    return asyncio.run(_ensure(servers, specs, nodes=len(servers)))


def monitor(url: str, path: str = "/varz", timeout: float = 2.0) -> dict[str, Any]:
    """A JSON document of nats-server's HTTP monitoring endpoint."""
    with urllib.request.urlopen(f"{url.rstrip('/')}{path}", timeout=timeout) as resp:
        return json.loads(resp.read())
