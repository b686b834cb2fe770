"""Scaled worker processes on one shared socket (the decision service's kind of scaling), for real.

A real ``python -m dataplat.scaling.workers`` serving a tiny ASGI app (``scaling_asgi.py``)
whose startup takes 1 s, with minReplicas 1 / maxReplicas 3, 2 requests in flight per
worker as the target, a 1 s sync period and a 2 s scale-down window. Eight clients on
keep-alive connections first send 100 ms requests back to back: the server grows to 3
workers, and no worker answers before it was ready. Then the clients slow down (a 20 ms
request every 300 ms, connections kept open): the server shrinks to 1, the removed workers
drain their keep-alive connections, and no request fails. A worker killed with SIGKILL
is replaced. An HPA patch (SIGHUP) raises minReplicas at once, and its removal restores
the deployed HPA.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dataplat.scaling.patch import send_patch
from dataplat.scaling.supervisor import format_state, read_state

HERE = Path(__file__).resolve().parent
NAME = "workers-test"
BEHAVIOR = """\
scaleDown:
  stabilizationWindowSeconds: 2
  policies: [{type: Percent, value: 100, periodSeconds: 1}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    state_dir: Path
    log: Path

    def state(self) -> dict[str, Any]:
        return read_state(self.state_dir, NAME) or {}

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    behavior = tmp_path / "behavior.yml"
    behavior.write_text(BEHAVIOR)
    log = tmp_path / "server.log"
    argv = [sys.executable, "-m", "dataplat.scaling.workers", "--app", "scaling_asgi:create_app"]
    argv += ["--listen", f"127.0.0.1:{port}", "--component", "app", "--scaling-name", NAME]
    argv += ["--latency-histogram", "scaling_test_duration_seconds", "--state-dir", str(tmp_path)]
    argv += ["--min-workers", "1", "--max-workers", "3", "--target-inflight", "2", "--sync-period", "1"]
    argv += ["--behavior", str(behavior), "--drain-timeout", "5"]
    env = {**os.environ, "PYTHONPATH": str(HERE), "SCALING_TEST_STARTUP_S": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    srv = Server(proc, port, tmp_path, log)
    yield srv
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Load:
    """Clients on keep-alive connections: every answer's (time, worker pid), every failure."""

    url: str
    ms: int = 100
    think_s: float = 0.0
    answers: list[tuple[float, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self) -> None:
        connector = aiohttp.TCPConnector(limit=1, force_close=False)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as s:
            while not self.stop.is_set():
                try:
                    async with s.get(f"{self.url}/slow?ms={self.ms}") as resp:
                        body = await resp.text()
                        if resp.status != 200:
                            self.failures.append(f"HTTP {resp.status}")
                        else:
                            self.answers.append((time.time(), int(body)))
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                if self.think_s:
                    await asyncio.sleep(self.think_s)


async def wait_until(pred: Any, timeout: float, what: str, srv: Server) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        assert srv.proc.poll() is None, f"the server exited:\n{srv.output()}"
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {format_state(srv.state())}\n{srv.output()}")


def test_workers_grow_drain_shrink_and_are_replaced_without_failures(server: Server) -> None:
    url = f"http://127.0.0.1:{server.port}"

    async def drill() -> None:
        await wait_until(lambda: server.state().get("ready") == 1, 30, "one ready worker", server)
        load = Load(url)
        clients = [asyncio.create_task(load.client()) for _ in range(8)]

        # grows under load
        await wait_until(lambda: server.state().get("ready") == 3, 30, "3 ready workers", server)
        grown = server.state()
        assert [e for e in grown["events"] if e["type"] == "ScaleUp"], grown["events"]
        ready_at = {
            r["pid"]: r["started_at"] + r["ready_after_s"] for r in grown["replicas"] if r["ready_after_s"]
        }
        # the clients were rebalanced: workers that joined answer requests too (which of them gets
        # a burst of reconnections is the kernel's choice: whichever accepts first)
        first = min(ready_at, key=lambda pid: ready_at[pid])
        await wait_until(
            lambda: {pid for _, pid in load.answers} - {first}, 20, "a new worker answering", server
        )
        # no worker answered before it was ready (it accepts only after its startup)
        first_answer: dict[int, float] = {}
        for t, pid in load.answers:
            first_answer.setdefault(pid, t)
        for pid, t in first_answer.items():
            assert t >= ready_at[pid] - 0.05, (pid, t, ready_at[pid])

        # the load drops: shrinks to 1, the removed workers drain their open connections
        load.ms, load.think_s = 20, 0.3
        await wait_until(
            lambda: (
                (s := server.state()).get("ready") == 1 and all(r["state"] == "ready" for r in s["replicas"])
            ),
            30,
            "scale-in to 1 worker, drained",
            server,
        )
        await asyncio.sleep(1.0)
        load.stop.set()
        await asyncio.gather(*clients)
        shrunk = server.state()
        stopped = [e for e in shrunk["events"] if e["type"] == "ReplicaStopped"]
        assert len(stopped) >= 2, shrunk["events"]
        assert load.failures == [], load.failures[:5]
        assert len(load.answers) > 100

        # a killed worker is replaced, and the server answers again
        victim = shrunk["replicas"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        await wait_until(
            lambda: (s := server.state()).get("ready") == 1 and s["replicas"][0]["pid"] != victim,
            30,
            "the killed worker replaced",
            server,
        )
        assert any(e["type"] == "ReplicaFailed" for e in server.state()["events"])
        async with aiohttp.ClientSession() as s, s.get(f"{url}/pid") as resp:
            assert resp.status == 200 and int(await resp.text()) != victim

        # an HPA patch applies at once (minReplicas 2); removing it restores the deployed HPA
        pid = int(server.state()["pid"])
        send_patch(server.state_dir, NAME, pid, {"minReplicas": 2, "syncPeriodSeconds": 0.5})
        await wait_until(lambda: server.state().get("ready") == 2, 30, "the patched minReplicas", server)
        patched = server.state()
        assert patched["patch"]["minReplicas"] == 2 and patched["sync_period_s"] == 0.5
        send_patch(server.state_dir, NAME, pid, None)
        await wait_until(lambda: server.state().get("patch") is None, 10, "the deployed HPA back", server)
        assert server.state()["minReplicas"] == 1 and server.state()["sync_period_s"] == 1.0

    asyncio.run(drill())
    os.killpg(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(30) == 0, server.output()
    final = server.state()
    assert final["running"] is False and final["current"] == 0
