"""PoolRouter: priority routing, fallback to the next pool, AllPoolsDown, timeouts, breakers."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serving_testkit import ServerProcess, free_port, start_server

from dataplat.serving.client import (
    AllPoolsDown,
    CircuitBreaker,
    InferenceRejected,
    PoolRouter,
    PoolSpec,
    pools_from_placement,
)
from dataplat.serving.model import FEATURE_NAMES, ModelVersion

ROW = np.zeros((1, len(FEATURE_NAMES)), dtype=np.float32)


@pytest.fixture
def two_pools(published: ModelVersion, work: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    repo = published.path.parents[1]
    first = start_server(repo, work, "serving-nvidia-0", pool="nvidia")
    second = start_server(repo, work, "serving-cpu-0", pool="cpu")
    yield first, second
    first.stop()
    second.stop()


def test_falls_back_to_the_next_pool_then_raises_all_pools_down(
    two_pools: tuple[ServerProcess, ServerProcess],
) -> None:
    first, second = two_pools
    pools = [PoolSpec("cpu", (second.url,), "cpu", 100), PoolSpec("nvidia", (first.url,), "nvidia", 10)]

    async def run() -> None:
        async with PoolRouter(pools, timeout_s=2.0, deadline_s=5.0, breaker_threshold=2) as router:
            assert [p.name for p in router.pools] == ["nvidia", "cpu"]
            health = await router.health("propensity", refresh=True)
            assert health == {"nvidia": {first.url: True}, "cpu": {second.url: True}}
            res = await router.infer("propensity", ROW)
            assert (
                res.pool == "nvidia" and res.fallbacks == 0 and res.outputs["probabilities"].shape == (1, 5)
            )

            first.stop()
            for _ in range(3):
                res = await router.infer("propensity", ROW)
                assert res.pool == "cpu" and res.endpoint == second.url
                assert res.fallbacks == 1
            # two refused connections in a row opened the first pool's breaker
            assert router.breaker_states()[first.url] == "open"
            assert (await router.health("propensity", refresh=True))["nvidia"] == {first.url: False}

            second.stop()
            with pytest.raises(AllPoolsDown) as info:
                await router.infer("propensity", ROW)
            assert [a[0] for a in info.value.attempts] == ["nvidia", "cpu"]
            assert "not ready" in info.value.attempts[0][2]

    asyncio.run(run())


def test_rejected_request_does_not_fall_back(server: ServerProcess) -> None:
    async def run() -> None:
        pools = [PoolSpec("a", (server.url,), priority=1), PoolSpec("b", (server.url,), priority=2)]
        async with PoolRouter(pools, timeout_s=2.0, deadline_s=5.0) as router:
            with pytest.raises(InferenceRejected) as info:
                await router.infer("propensity", np.zeros((1, 3)))
            assert info.value.field == "inputs[0].shape"
            assert set(router.breaker_states().values()) == {"closed"}

    asyncio.run(run())


async def _fake_server(status_line: bytes | None) -> tuple[asyncio.AbstractServer, str]:
    """A server that answers every request with ``status_line`` (or never answers)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                length = next(
                    (int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length")), 0
                )
                await reader.readexactly(length)
                if status_line is None:
                    await asyncio.sleep(3600)
                body = b'{"error":"overloaded"}'
                writer.write(
                    status_line + b"\r\ncontent-type: application/json\r\n"
                    b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    return srv, f"http://127.0.0.1:{port}"


def test_saturated_or_hanging_pools_fall_back_within_the_timeout(server: ServerProcess) -> None:
    async def run() -> None:
        shedding, shed_url = await _fake_server(b"HTTP/1.1 503 Service Unavailable")
        hanging, hang_url = await _fake_server(None)
        pools = [
            PoolSpec("ascend", (hang_url,), "ascend", 5),
            PoolSpec("nvidia", (shed_url,), "nvidia", 10),
            PoolSpec("cpu", (server.url,), "cpu", 100),
        ]
        try:
            async with PoolRouter(pools, timeout_s=0.2, deadline_s=2.0, breaker_threshold=3) as router:
                t0 = time.monotonic()
                res = await router.infer("propensity", ROW)
                elapsed = time.monotonic() - t0
                assert res.pool == "cpu" and res.fallbacks == 2
                assert 0.2 <= elapsed < 1.5
                # 503 is load shedding, not a fault: that breaker stays closed
                assert router.breaker_states()[shed_url] == "closed"
                # the deadline bounds the whole call, fallbacks included
                with pytest.raises(AllPoolsDown) as info:
                    await router.infer("propensity", ROW, deadline_s=0.1)
                assert any("timed out" in a[2] or "deadline" in a[2] for a in info.value.attempts)
        finally:
            for srv in (shedding, hanging):
                srv.close()

    asyncio.run(run())


def test_nothing_listening_is_all_pools_down_quickly() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"

    async def run() -> None:
        async with PoolRouter([PoolSpec("cpu", (url,))], timeout_s=0.5) as router:
            t0 = time.monotonic()
            with pytest.raises(AllPoolsDown, match="cpu"):
                await router.infer("propensity", ROW)
            assert time.monotonic() - t0 < 0.5

    asyncio.run(run())
    with pytest.raises(AllPoolsDown, match="no pool declared"):
        asyncio.run(PoolRouter([]).infer("propensity", ROW))


def test_circuit_breaker_states() -> None:
    now = [0.0]
    b = CircuitBreaker(threshold=2, reset_s=1.0, clock=lambda: now[0])
    assert b.state == "closed" and b.allow()
    b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 1.5
    assert b.state == "half_open"
    assert b.allow() and not b.allow()  # one trial only
    b.failure()
    assert b.state == "open"
    now[0] = 3.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow()


def test_pools_from_placement() -> None:
    port = free_port()
    instances = [
        {"component": "serving", "name": "serving-cpu-0", "address": "10.0.0.5", "ports": {"http": port},
         "pool": "cpu", "accelerator": "cpu"},
        {"component": "serving", "name": "serving-gpu-0", "address": "10.0.1.7", "ports": {"http": 58100},
         "pool": "gpu", "accelerator": "nvidia"},
        {"component": "serving", "name": "serving-gpu-1", "address": "10.0.1.8", "ports": {"http": 58100},
         "pool": "gpu", "accelerator": "nvidia"},
        {"component": "warehouse", "name": "pg-0", "address": "10.0.0.1", "ports": {"pg": 5432}},
    ]  # fmt: skip
    settings = [{"name": "cpu", "accelerator": "cpu", "priority": 100}, {"name": "gpu", "priority": 10}]
    pools = pools_from_placement(instances, settings)
    assert [(p.name, p.accelerator, p.priority) for p in pools] == [
        ("gpu", "nvidia", 10),
        ("cpu", "cpu", 100),
    ]
    assert pools[0].urls == ("http://10.0.1.7:58100", "http://10.0.1.8:58100")
    assert pools[1].urls == (f"http://10.0.0.5:{port}",)


def test_a_plain_server_has_no_discovery_and_is_used_as_it_is(server: ServerProcess) -> None:
    """A URL without the supervisor's discovery route (an OIP server itself; Triton or
    MLServer alike) answers 404 there: the router stops asking and sends to the URL."""

    async def run() -> None:
        async with PoolRouter([PoolSpec("cpu", (server.url,))], timeout_s=2.0, deadline_s=5.0) as router:
            assert await router.discover() == {server.url: None}
            router.start_discovery(interval_s=0.05)
            await asyncio.sleep(0.3)
            assert router._discovery_task is not None and router._discovery_task.done()  # gave up asking
            res = await router.infer("propensity", ROW)
            assert res.endpoint == server.url and res.fallbacks == 0

    asyncio.run(run())
