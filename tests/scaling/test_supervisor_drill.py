"""A real short drill of the pool supervisor: real server processes, a real closed-loop load.

Supervisor with minReplicas 1 / maxReplicas 3, a target of 1 request in flight per replica,
a 1 s sync period and a 3 s scale-down window. Eight clients raise the pool's in-flight
count: the pool grows to 3 with no failed request; one replica is killed with SIGKILL under
load: it is replaced, no request fails; the load drops to one client: the pool shrinks to
1, draining the replicas it removes, no request fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dataplat.scaling.supervisor import format_state, read_state

POOL = "drill"
BEHAVIOR = """\
# scale-down window and period shortened for the drill; scale-up: Kubernetes' defaults
scaleDown:
  stabilizationWindowSeconds: 3
  selectPolicy: Max
  policies:
    - {type: Percent, value: 100, periodSeconds: 1}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(n: int) -> int:
    """The first of ``n`` consecutive free ports (the replicas')."""
    for _ in range(50):
        start = free_port()
        if start + n < 65536 and all(_free(start + i) for i in range(n)):
            return start
    raise RuntimeError("no block of free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Pool:
    proc: subprocess.Popen[bytes]
    port: int
    state_dir: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def state(self) -> dict[str, Any]:
        return read_state(self.state_dir, POOL) or {}

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@pytest.fixture
def pool(model_repo: Path, scaling_work: Path) -> Iterator[Pool]:
    state_dir = scaling_work / "state"
    behavior = scaling_work / "behavior.yml"
    behavior.write_text(BEHAVIOR)
    port, replica_ports = free_port(), free_port_block(12)
    argv = [sys.executable, "-m", "dataplat.scaling.supervisor", "--pool", POOL]
    argv += ["--listen", f"127.0.0.1:{port}", "--repo", str(model_repo)]
    argv += ["--replica-ports", str(replica_ports), "--state-dir", str(state_dir)]
    argv += ["--min", "1", "--max", "3", "--target-inflight", "1", "--sync-period", "1"]
    argv += ["--behavior", str(behavior), "--drain-timeout", "10"]
    log = scaling_work / "supervisor.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    p = Pool(proc, port, state_dir, log)
    try:
        wait_for(lambda: p.state().get("ready", 0) >= 1, 30, p, "the first replica ready")
        yield p
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for r in (read_state(state_dir, POOL) or {}).get("replicas", []):
            try:
                os.killpg(r["pid"], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def wait_for(cond: Callable[[], bool], timeout: float, pool: Pool, what: str) -> float:
    """Poll ``cond`` with backoff until it holds; the seconds it took."""
    t0 = time.monotonic()
    delay = 0.05
    while not cond():
        if pool.proc.poll() is not None:
            raise AssertionError(f"the supervisor exited ({pool.proc.returncode}):\n{pool.output()}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not {what} after {timeout:.0f} s: {json.dumps(pool.state())[:3000]}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    return time.monotonic() - t0


@dataclass
class Load:
    """A closed-loop load: ``concurrency`` clients each sending one request after another."""

    url: str
    body: bytes
    concurrency: int = 0
    max_requests: int = 200_000
    results: list[tuple[float, float, int | str]] = field(default_factory=list)
    """(time sent, latency s, HTTP status or the exception's name) of every request."""
    stop: bool = False

    async def client(self, session: aiohttp.ClientSession, i: int) -> None:
        url = f"{self.url}/v2/models/propensity/infer"
        while not self.stop and len(self.results) < self.max_requests:
            if i >= self.concurrency:
                await asyncio.sleep(0.05)
                continue
            t0 = time.monotonic()
            outcome: int | str
            try:
                async with session.post(
                    url, data=self.body, headers={"Content-Type": "application/json"}
                ) as r:
                    await r.read()
                    outcome = r.status
            except Exception as exc:  # noqa: BLE001 - every failure is a result of the drill
                outcome = type(exc).__name__
            self.results.append((t0, time.monotonic() - t0, outcome))

    def failures(self, since: float = 0.0) -> list[tuple[float, float, int | str]]:
        return [r for r in self.results if r[0] >= since and r[2] != 200]

    def latency_ms(self, since: float, until: float) -> dict[str, float]:
        lats = sorted(r[1] for r in self.results if since <= r[0] < until and r[2] == 200)
        if not lats:
            return {"n": 0}
        pick = lambda q: round(1000 * lats[min(len(lats) - 1, int(q * len(lats)))], 2)  # noqa: E731
        return {"n": len(lats), "p50": pick(0.5), "p95": pick(0.95), "p99": pick(0.99)}


async def _in_thread(fn: Callable[[], Any]) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


def test_drill_grows_replaces_and_shrinks_without_failures(pool: Pool) -> None:
    asyncio.run(_drill(pool))


async def _drill(pool: Pool) -> None:
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        async with session.get(f"{pool.url}/v2/models/propensity") as r:
            n_features = (await r.json())["inputs"][0]["shape"][1]
        row = [0.5] * n_features
        body = json.dumps(
            {"inputs": [{"name": "features", "shape": [1, n_features], "datatype": "FP32", "data": row}]}
        ).encode()
        load = Load(pool.url, body)
        clients = [asyncio.create_task(load.client(session, i)) for i in range(8)]
        report: dict[str, Any] = {}
        try:
            # 1. step up: 8 clients in a closed loop -> the pool grows to 3, every request served
            t_up = time.monotonic()
            load.concurrency = 8
            report["decide_scale_out_s"] = await _in_thread(
                lambda: wait_for(lambda: pool.state().get("current", 0) >= 2, 20, pool, "scaled out")
            )
            report["all_ready_s"] = await _in_thread(
                lambda: wait_for(lambda: pool.state().get("ready", 0) == 3, 30, pool, "3 replicas ready")
            )
            # endpoint discovery lists the ready replicas, each answering inference itself
            async with session.get(f"{pool.url}/dataplat/v1/endpoints") as r:
                listed = (await r.json())["replicas"]
            assert len(listed) == 3 and {e["url"] for e in listed} == {
                f"http://127.0.0.1:{x['port']}" for x in pool.state()["replicas"] if x["state"] == "ready"
            }
            async with session.post(
                f"{listed[-1]['url']}/v2/models/propensity/infer",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as r:
                assert r.status == 200
            await asyncio.sleep(2)
            t_kill = time.monotonic()
            report["latency_1_replica_to_3_ms"] = load.latency_ms(t_up, t_kill)
            assert load.failures() == [], load.failures()[:10]

            # 2. a replica killed with SIGKILL under load is replaced
            victim = next(r for r in pool.state()["replicas"] if r["state"] == "ready")
            os.killpg(victim["pid"], signal.SIGKILL)

            def replaced() -> bool:
                s = pool.state()
                pids = {r["pid"] for r in s.get("replicas", []) if r["state"] == "ready"}
                return s.get("ready") == 3 and victim["pid"] not in pids

            report["replaced_s"] = await _in_thread(
                lambda: wait_for(replaced, 30, pool, "the killed replica replaced")
            )
            await asyncio.sleep(1)
            t_down = time.monotonic()
            report["latency_kill_ms"] = load.latency_ms(t_kill, t_down)
            assert load.failures() == [], load.failures()[:10]

            # 3. step down to one client (at most 1 in flight in all: ceil(n x avg / 1) = 1): the pool
            # shrinks to 1 after the 3 s window, draining, no request fails
            load.concurrency = 1

            def shrunk() -> bool:
                s = pool.state()
                return s.get("current") == 1 and len(s.get("replicas", [])) == 1

            report["scale_in_s"] = await _in_thread(lambda: wait_for(shrunk, 30, pool, "scaled in to 1"))
            await asyncio.sleep(1)
            report["latency_scale_in_ms"] = load.latency_ms(t_down, time.monotonic())
        finally:
            load.stop = True
            await asyncio.gather(*clients, return_exceptions=True)
    state = pool.state()
    report["victim"] = victim["name"]
    report["requests"] = len(load.results)
    report["failed"] = len(load.failures())
    report["events"] = [f"{e['type']}: {e['message']}" for e in state["events"]]
    print(json.dumps(report, indent=1))
    assert load.failures() == [], load.failures()[:10]
    kinds = [e["type"] for e in state["events"]]
    failed = [e["message"] for e in state["events"] if e["type"] == "ReplicaFailed"]
    assert failed == [f"{victim['name']} (pid {victim['pid']}) exited with -9; replacing it"]
    assert "ScaleUp" in kinds and "ScaleDown" in kinds and "ReplicaFailed" in kinds
    up = next(e for e in state["events"] if e["type"] == "ScaleUp")
    assert up["reason"] == "pods metric dataplat_serving_inflight_requests above target"
    down = [e for e in state["events"] if e["type"] == "ScaleDown"][-1]
    assert (down["to"], down["reason"]) == (1, "All metrics below target")
    stopped = [e for e in state["events"] if e["type"] == "ReplicaStopped"]
    assert len(stopped) >= 2 and all("scale-down" in e["message"] for e in stopped)
    assert (state["minReplicas"], state["maxReplicas"], state["current"]) == (1, 3, 1)
    assert format_state(state)[0].startswith("drill: current 1, desired 1 (min 1, max 3), ready 1;")


def test_router_sends_to_discovered_replicas_and_loses_none_with_one(pool: Pool) -> None:
    """The decision service's pool router reads the supervisor's endpoint list and sends
    inference straight to the replicas (no proxy hop); a replica SIGKILLed under it costs no
    request: the attempt on it fails and the next endpoint (another replica, or the proxy,
    which holds the request until the replacement is ready) answers."""
    asyncio.run(_discovery(pool))


async def _discovery(pool: Pool) -> None:
    from dataplat.serving.client import PoolRouter, PoolSpec

    async with PoolRouter([PoolSpec(POOL, (pool.url,))], timeout_s=10.0, deadline_s=20.0) as router:
        listed = await router.discover()
        replicas = {
            f"http://127.0.0.1:{r['port']}" for r in pool.state()["replicas"] if r["state"] == "ready"
        }
        assert set(listed[pool.url] or ()) == replicas and replicas
        meta_url = f"{pool.url}/v2/models/propensity"
        async with aiohttp.ClientSession(trust_env=False) as session, session.get(meta_url) as r:
            n_features = (await r.json())["inputs"][0]["shape"][1]
        X = [[0.5] * n_features]
        first = [await router.infer("propensity", X) for _ in range(20)]
        assert {res.endpoint for res in first} <= replicas  # never through the proxy
        served_by_proxy = sum(r["served"] for r in pool.state()["replicas"])

        router.start_discovery(interval_s=0.2)
        stop = False
        outcomes: list[str] = []

        async def client() -> None:
            while not stop:
                try:
                    res = await router.infer("propensity", X)
                    outcomes.append(res.endpoint)
                except Exception as exc:  # noqa: BLE001 - every failure is a result of the test
                    outcomes.append(f"failed: {exc}")

        tasks = [asyncio.create_task(client()) for _ in range(4)]
        try:
            await asyncio.sleep(1.0)
            victim = next(r for r in pool.state()["replicas"] if r["state"] == "ready")
            os.killpg(victim["pid"], signal.SIGKILL)
            await _in_thread(
                lambda: wait_for(
                    lambda: any(
                        r["state"] == "ready" and r["pid"] != victim["pid"] for r in pool.state()["replicas"]
                    ),
                    30,
                    pool,
                    "a replacement replica ready",
                )
            )
            await asyncio.sleep(1.5)  # discovery picks the replacement up
        finally:
            stop = True
            await asyncio.gather(*tasks)
        failed = [o for o in outcomes if o.startswith("failed")]
        assert not failed, failed[:3]
        new = {f"http://127.0.0.1:{r['port']}" for r in pool.state()["replicas"] if r["state"] == "ready"}
        assert outcomes and set(outcomes[-8:]) <= new  # the replacement serves directly
        # the proxy carried at most the requests held while no replica was listed
        assert sum(r["served"] for r in pool.state()["replicas"]) - served_by_proxy <= outcomes.count(
            pool.url
        )
