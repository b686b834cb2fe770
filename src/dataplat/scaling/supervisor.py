"""The local pool supervisor: a serving pool that scales itself by the Kubernetes HPA rule.

Run it as::

    python -m dataplat.scaling.supervisor --pool cpu --listen 127.0.0.1:58100 --repo DIR \\
        --replica-ports 58110 --state-dir DIR --min 1 --max 3 --target-inflight 4 \\
        [--sync-period 15] [--behavior FILE.yml]

Design: what Kubernetes does with a Deployment, a Service and an HPA, in one asyncio process.

* **Replicas are separate** ``dataplat.serving.server`` **processes on their own ports**
  (pods), each in its own session so the whole replica (uvicorn's supervisor and its
  worker) is stopped or lost together. Not workers of one server: uvicorn's workers share
  one listening socket, so the kernel, not us, picks who gets a connection; a new worker
  cannot be held back until it is ready, one being removed cannot be drained of the
  keep-alive connections the kernel gave it, and nothing counts in-flight requests per
  worker. Separate processes give each of those per replica, and killing one is the same
  drill as losing a pod.
* **A reverse proxy on the pool's port** (the Service) sends each request to the *ready*
  replica with the fewest requests in flight. A replica is ready once its
  ``/v2/health/ready`` answers 200 (a readiness probe, polled with backoff); a failed
  health check or a refused connection takes it out of routing until a check passes again.
  Inference is a pure function, so a request whose replica fails before answering
  (connection refused or reset, or 503 shedding) is sent to another replica: losing a
  replica or scaling fails no request. With no ready replica at all (the only one was
  lost) the proxy waits, bounded, for one instead of failing at once.
* **Endpoint discovery**: ``GET /dataplat/v1/endpoints`` on the pool's port lists the
  ready replicas, for clients that balance over them themselves (no proxy hop; the decision
  service's pool router does). A replica chosen for removal leaves that list at once and
  keeps serving for ``--deregistration-delay`` before it drains. The in-flight metric is then
  the larger of the proxy's view and the replica's own (the growth of its request-duration
  ``_sum`` over the period, scraped from its ``/metrics``), so direct traffic scales the pool too.
* **Scale-down drains**: the replica chosen (not ready first, then fewest in flight, then
  the newest, like a ReplicaSet) leaves routing at once, its requests in flight finish
  (bounded by ``--drain-timeout``, the ``terminationGracePeriodSeconds``), then it gets
  SIGTERM, and SIGKILL if it does not exit.
* **The HPA** (:class:`~dataplat.scaling.hpa.HorizontalAutoscaler`) runs every
  ``--sync-period`` on the proxy's own measurements: the average number of requests in
  flight on each replica over the last period (time-weighted: Little's law concurrency,
  what a Prometheus ``avg_over_time`` of the gauge gives the cluster's adapter), or the
  pool's p95 latency over the period, or each replica's CPU (``/proc``, percent of
  ``--cpu-request``). Starting replicas count as not ready (0 on a scale-up), as pending
  pods do. A replica that dies is replaced at once (the ReplicaSet's job, not the HPA's).
* **State** goes to ``<state-dir>/<pool>.scaling.json`` (current, desired, bounds, the
  metric, each replica, the last scaling events with their reason) after every sync and
  event, written atomically; ``dataplat status`` reads it. Prometheus metrics are served at
  ``/metrics`` on the pool's port (each replica's own ``/metrics`` stays on its port).
* **Patches**: SIGHUP applies ``<state-dir>/<pool>.hpa-patch.json`` over the HPA the
  supervisor was started with, or restores that HPA when the file is gone
  (:mod:`dataplat.scaling.patch`; the scaling drill shortens the windows this way).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from dataplat.errors import ConfigError, PortInUseError
from dataplat.scaling.controller import ScalingController, state_path, target_metrics
from dataplat.scaling.hpa import (
    DEFAULT_SYNC_PERIOD_S,
    DEFAULT_TOLERANCE,
    HPABehavior,
    HPASpec,
    ReplicaSample,
)
from dataplat.scaling.patch import clear_patch

__all__ = [
    "Replica",
    "Supervisor",
    "SupervisorConfig",
    "format_state",
    "main",
    "pool_states",
    "read_state",
    "state_path",
]

INFLIGHT_METRIC = "dataplat_serving_inflight_requests"
REPLICA_DURATION = "dataplat_serving_request_duration_seconds"
"""The replicas' histogram of inference durations (:mod:`dataplat.serving.server`)."""
DISCOVERY_PATH = "/dataplat/v1/endpoints"
LATENCY_METRIC = "dataplat_pool_p95_latency_seconds"

_HOP_HEADERS = ("content-type", "retry-after")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def read_state(state_dir: Path, pool: str) -> dict[str, Any] | None:
    """The last state written by the supervisor of ``pool`` (None when there is none).

    ``running`` is False when the supervisor that wrote it is no longer alive (killed
    before it could say so), whatever the file says.
    """
    try:
        doc: dict[str, Any] = json.loads(state_path(state_dir, pool).read_text())
    except (OSError, ValueError):
        return None
    if doc.get("running") and not _pid_alive(int(doc.get("pid") or 0)):
        doc["running"] = False
        doc["stale"] = True
    return doc


def pool_states(state_dir: Path) -> list[dict[str, Any]]:
    """Every pool supervisor's state under ``state_dir``, by pool name (for ``dataplat status``)."""
    out = []
    for path in sorted(Path(state_dir).glob("*.scaling.json")):
        doc = read_state(state_dir, path.name[: -len(".scaling.json")])
        if doc is not None:
            out.append(doc)
    return out


def format_state(doc: dict[str, Any], events: int = 5) -> list[str]:
    """Lines for a human: ``pool: current 2, desired 3 (min 1, max 3), ready 2; metric ...``, then events."""
    metrics = ", ".join(
        f"{m['name']} {'-' if m.get('current') is None else round(m['current'], 3)}/{m['target']:g}"
        for m in doc.get("metrics", [])
    )
    lines = [
        f"{doc['pool']}: current {doc['current']}, desired {doc['desired']} "
        f"(min {doc['minReplicas']}, max {doc['maxReplicas']}), ready {doc['ready']}"
        f"{'' if doc.get('running') else ' [supervisor not running]'}; {metrics}"
    ]
    scaling = [e for e in doc.get("events", []) if e["type"] in ("ScaleUp", "ScaleDown", "ReplicaFailed")]
    for e in scaling[-events:]:
        lines.append(f"  {e['at']} {e['type']}: {e['message']}")
    return lines


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class SupervisorConfig:
    """Everything one pool supervisor needs."""

    pool: str
    repo: Path
    state_dir: Path
    spec: HPASpec
    host: str = "127.0.0.1"
    port: int = 58100
    replica_port_start: int = 58110
    replica_host: str = "127.0.0.1"
    sync_period_s: float = DEFAULT_SYNC_PERIOD_S
    tolerance: float = DEFAULT_TOLERANCE
    workers_per_replica: int = 1
    max_inflight_per_worker: int = 64
    drain_timeout_s: float = 30.0
    deregistration_delay_s: float = 2.0
    """How long a replica chosen for removal keeps serving after it left the endpoint list
    (``GET /dataplat/v1/endpoints``), for clients that route to replicas themselves."""
    ready_timeout_s: float = 60.0
    health_period_s: float = 1.0
    request_timeout_s: float = 10.0
    no_replica_wait_s: float = 15.0
    """How long a request waits for a ready replica when there is none."""
    cpu_request: float = 1.0
    """Cores per replica that CPU utilisation is a percentage of (the pod's CPU request)."""
    log_dir: Path | None = None
    python: str = sys.executable

    def validate(self) -> list[str]:
        """Every problem of the configuration (empty when valid)."""
        problems = list(self.spec.validate())
        if self.sync_period_s <= 0:
            problems.append(f"--sync-period: {self.sync_period_s} must be above 0")
        if self.workers_per_replica < 1:
            problems.append("--workers: at least 1")
        if not self.repo.is_dir():
            problems.append(
                f"--repo: {self.repo} is not a directory (build it: python -m dataplat.serving.model)"
            )
        if not 0 < self.replica_port_start < 65536:
            problems.append(f"--replica-ports: {self.replica_port_start} is not a port")
        return problems


@dataclass
class Replica:
    """One replica: a server process on its own port, and the proxy's counters for it."""

    name: str
    port: int
    proc: asyncio.subprocess.Process
    started_at: float
    state: str = "starting"
    """``starting`` -> ``ready`` (routed) -> ``terminating`` (draining) -> ``stopped``; or ``failed``."""
    healthy: bool = True
    ready_at: float | None = None
    inflight: int = 0
    served: int = 0
    _area: float = 0.0
    _area_since: float = field(default_factory=time.monotonic)
    _last_change: float = field(default_factory=time.monotonic)
    _cpu_ticks: int | None = None
    _cpu_at: float = 0.0
    _busy: tuple[float, float] | None = None
    """(the replica's own request-duration ``_sum``, when scraped) at the last sync."""
    scraped_inflight: float | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pid(self) -> int:
        """The replica's main process (its process group and session leader)."""
        return self.proc.pid

    @property
    def routable(self) -> bool:
        """Whether the proxy may send it requests."""
        return self.state == "ready" and self.healthy

    def _account(self, now: float) -> None:
        self._area += self.inflight * (now - self._last_change)
        self._last_change = now

    def begin(self) -> None:
        """A request goes to this replica."""
        self._account(time.monotonic())
        self.inflight += 1
        self.idle.clear()

    def end(self) -> None:
        """A request to this replica has finished."""
        self._account(time.monotonic())
        self.inflight -= 1
        self.served += 1
        if self.inflight == 0:
            self.idle.set()

    def average_inflight(self, now: float) -> float:
        """Time-weighted in-flight requests since the last call (then restart the window)."""
        self._account(now)
        span = now - self._area_since
        value = self._area / span if span > 0 else float(self.inflight)
        self._area, self._area_since = 0.0, now
        return value

    def cpu_percent(self, now: float, cores: float) -> float | None:
        """CPU used by the replica's processes since the last call, percent of ``cores``."""
        ticks = _group_cpu_ticks(self.pid)
        prev, prev_at = self._cpu_ticks, self._cpu_at
        self._cpu_ticks, self._cpu_at = ticks, now
        if prev is None or now <= prev_at:
            return None
        return 100.0 * (ticks - prev) / _CLK_TCK / (now - prev_at) / cores

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (for the state file)."""
        return {
            "name": self.name,
            "port": self.port,
            "pid": self.pid,
            "state": self.state,
            "healthy": self.healthy,
            "inflight": self.inflight,
            "served": self.served,
            "started_at": _wall(self.started_at),
            "ready_after_s": None if self.ready_at is None else round(self.ready_at - self.started_at, 3),
        }


def _group_cpu_ticks(pgid: int) -> int:
    """utime + stime of every process in the process group ``pgid`` (the replica's)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total


def _wall(mono: float) -> float:
    """A monotonic time as seconds since the epoch."""
    return round(time.time() - (time.monotonic() - mono), 3)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """PR_SET_PDEATHSIG: a replica gets SIGTERM when the supervisor dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class _Metrics:
    """The supervisor's and the proxy's Prometheus metrics (their own registry)."""

    def __init__(self, pool: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r, labels = self.registry, ["pool"]
        self.current = Gauge(
            "dataplat_scaling_current_replicas", "Replicas the pool should run", labels, registry=r
        )
        self.desired = Gauge(
            "dataplat_scaling_desired_replicas", "The HPA rule's last decision", labels, registry=r
        )
        self.ready = Gauge(
            "dataplat_scaling_ready_replicas", "Replicas receiving traffic", labels, registry=r
        )
        self.min = Gauge("dataplat_scaling_min_replicas", "minReplicas", labels, registry=r)
        self.max = Gauge("dataplat_scaling_max_replicas", "maxReplicas", labels, registry=r)
        self.metric = Gauge(
            "dataplat_scaling_metric_value",
            "Current value of a scaling metric",
            ["pool", "metric"],
            registry=r,
        )
        self.target = Gauge(
            "dataplat_scaling_metric_target", "Target of a scaling metric", ["pool", "metric"], registry=r
        )
        self.events = Counter(
            "dataplat_scaling_events_total",
            "Scaling and replica events by type",
            ["pool", "type"],
            registry=r,
        )
        self.inflight = Gauge(
            "dataplat_pool_inflight_requests", "Requests in flight at the proxy", labels, registry=r
        )
        self.requests = Counter(
            "dataplat_pool_requests_total",
            "Requests through the proxy by status",
            ["pool", "status"],
            registry=r,
        )
        self.retries = Counter(
            "dataplat_pool_retries_total",
            "Requests sent to another replica after a failure",
            labels,
            registry=r,
        )
        self.latency = Histogram(
            "dataplat_pool_request_duration_seconds",
            "Time from request to response at the proxy",
            labels,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.pool = pool

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class NoReplica(Exception):
    """No ready replica could take the request within the wait."""


class Supervisor(ScalingController):
    """One pool: its replicas, the proxy in front of them and the HPA loop."""

    component = "serving"
    mode = "replicas"

    def __init__(self, config: SupervisorConfig) -> None:
        problems = config.validate()
        if problems:
            raise ConfigError("invalid pool supervisor settings:\n  " + "\n  ".join(problems))
        super().__init__(
            config.pool,
            config.spec,
            config.sync_period_s,
            config.tolerance,
            config.state_dir,
            f"http://{config.host}:{config.port}",
            _Metrics(config.pool),
        )
        self.config = config
        self.replicas: list[Replica] = []
        self._seq = 0
        self._reserved_ports: set[int] = set()
        self._crash_backoff_s = 0.0
        self._ready_changed = asyncio.Event()
        self._reconcile_now = asyncio.Event()
        self._latencies: deque[tuple[float, float]] = deque(maxlen=100_000)
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.inflight = 0

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool's port, start ``minReplicas`` replicas and the loops."""
        c = self.config
        c.state_dir.mkdir(parents=True, exist_ok=True)
        clear_patch(c.state_dir, c.pool)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=c.request_timeout_s, sock_connect=1.0),
            trust_env=False,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, c.host, c.port, backlog=1024, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            await self._session.close()
            raise PortInUseError(
                f"cannot listen on {c.host}:{c.port} for pool {c.pool}: {exc.strerror}"
            ) from None
        self._event(
            "Started", f"pool {c.pool} on {c.host}:{c.port}, {self.target_replicas} replicas to start"
        )
        self._reconcile()
        self._spawn(self._sync_loop())
        self._spawn(self._health_loop())
        self._spawn(self._reconcile_loop())
        self.write_state()

    async def stop(self) -> None:
        """Drain and stop every replica, close the port."""
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        for replica in list(self.replicas):
            if replica.state not in ("stopped", "failed"):
                replica.state = "terminating"
        await asyncio.gather(*(self._stop_replica(r, "pool stopped") for r in list(self.replicas)))
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self.write_state(stopped=True)

    # --- replicas -----------------------------------------------------------------------

    def _live(self) -> list[Replica]:
        """Replicas that count towards the scale (starting or ready, not being removed)."""
        return [r for r in self.replicas if r.state in ("starting", "ready")]

    def _free_port(self) -> int:
        used = {r.port for r in self.replicas} | self._reserved_ports
        from dataplat.deploy.daemon import port_in_use

        c = self.config
        span = max(4 * self.controller.spec.maxReplicas, 32)
        for port in range(c.replica_port_start, c.replica_port_start + span):
            if port not in used and not port_in_use(c.replica_host, port):
                self._reserved_ports.add(port)  # until the replica is in self.replicas
                return port
        raise PortInUseError(
            f"no free port for a replica of pool {c.pool} from {c.replica_port_start}; change --replica-ports"
        )

    def _log_file(self) -> Path:
        """The replicas' log file (their stdout and stderr)."""
        return (self.config.log_dir or self.config.state_dir) / f"{self.config.pool}.replicas.log"

    async def _start_replica(self) -> Replica:
        c = self.config
        self._seq += 1
        name = f"{c.pool}-r{self._seq}"
        port = self._free_port()
        argv = [c.python, "-m", "dataplat.serving.server", "--repo", str(c.repo)]
        argv += ["--listen", f"{c.replica_host}:{port}", "--workers", str(c.workers_per_replica)]
        argv += ["--max-inflight", str(c.max_inflight_per_worker), "--pool", c.pool, "--log-level", "warning"]
        self._log_file().parent.mkdir(parents=True, exist_ok=True)
        log = open(self._log_file(), "ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        except BaseException:
            self._reserved_ports.discard(port)
            raise
        finally:
            log.close()
        replica = Replica(name, port, proc, time.monotonic())
        replica.idle.set()
        self.replicas.append(replica)
        self._reserved_ports.discard(port)
        self._spawn(self._watch(replica))
        self._spawn(self._wait_ready(replica))
        return replica

    async def _wait_ready(self, replica: Replica) -> None:
        """The readiness probe of a starting replica: poll with backoff, bounded."""
        assert self._session is not None
        url = f"http://{self.config.replica_host}:{replica.port}/v2/health/ready"
        deadline = time.monotonic() + self.config.ready_timeout_s
        delay = 0.05
        while replica.state == "starting" and time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=1.0)) as resp:
                    if resp.status == 200:
                        replica.state, replica.ready_at = "ready", time.monotonic()
                        self._crash_backoff_s = 0.0
                        replica._area_since = replica._last_change = replica.ready_at
                        self._event(
                            "ReplicaReady",
                            f"{replica.name} on port {replica.port} ready after "
                            f"{replica.ready_at - replica.started_at:.2f} s",
                        )
                        self._ready_changed.set()
                        self._ready_changed = asyncio.Event()
                        self.write_state()
                        return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        if replica.state == "starting":
            self._event(
                "ReplicaNotReady", f"{replica.name} not ready after {self.config.ready_timeout_s:.0f} s"
            )
            replica.state = "terminating"
            await self._stop_replica(replica, "never became ready")
            self._reconcile_now.set()

    async def _watch(self, replica: Replica) -> None:
        """Notice a replica that exits on its own (killed, crashed): replace it at once."""
        code = await replica.proc.wait()
        if replica.state in ("starting", "ready"):
            replica.state = "failed"
            self._kill_group(replica, signal.SIGKILL)  # its worker may outlive it
            self.replicas.remove(replica)
            if replica.ready_at is None:
                # it never became ready: back off before the next start (CrashLoopBackOff)
                self._crash_backoff_s = min(max(1.0, 2 * self._crash_backoff_s), 60.0)
                self._event(
                    "ReplicaFailed",
                    f"{replica.name} (pid {replica.pid}) exited with {code} while starting; "
                    f"replacing it in {self._crash_backoff_s:.0f} s (log: {self._log_file()})",
                )
                self.write_state()
                await asyncio.sleep(self._crash_backoff_s)
            else:
                self._event(
                    "ReplicaFailed", f"{replica.name} (pid {replica.pid}) exited with {code}; replacing it"
                )
                self.write_state()
            self._reconcile_now.set()

    def _kill_group(self, replica: Replica, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(replica.pid, sig)

    async def _stop_replica(self, replica: Replica, why: str) -> None:
        """Drain (no new requests, wait for those in flight, bounded), then SIGTERM, then SIGKILL.

        On a scale-down the replica first keeps serving for ``deregistration_delay_s``: it has
        left the proxy's routing and the endpoint list at once, and clients that send to
        replicas directly see that list change within their discovery interval."""
        t0 = time.monotonic()
        if why == "scale-down" and self.config.deregistration_delay_s > 0:
            await asyncio.sleep(self.config.deregistration_delay_s)
        pending = replica.inflight
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(replica.idle.wait(), self.config.drain_timeout_s)
        drained = time.monotonic() - t0
        if replica.proc.returncode is None:
            self._kill_group(replica, signal.SIGTERM)
            try:
                await asyncio.wait_for(replica.proc.wait(), 10.0)
            except TimeoutError:
                self._kill_group(replica, signal.SIGKILL)
                await replica.proc.wait()
        self._kill_group(replica, signal.SIGKILL)  # anything left of the group
        replica.state = "stopped"
        if replica in self.replicas:
            self.replicas.remove(replica)
        if not self._stopping.is_set():
            self._event(
                "ReplicaStopped",
                f"{replica.name} stopped ({why}): {pending} requests in flight drained in {drained:.2f} s",
            )
            self.write_state()

    def _reconcile(self) -> None:
        """The ReplicaSet's job: as many live replicas as ``target_replicas``."""
        if self._stopping.is_set():
            return
        live = self._live()
        for _ in range(self.target_replicas - len(live)):
            self._spawn(self._start_replica())
        excess = len(live) - self.target_replicas
        if excess > 0:
            # not ready first, then the fewest requests in flight, then the newest
            order = sorted(live, key=lambda r: (r.state == "ready", r.inflight, -r.started_at))
            for replica in order[:excess]:
                replica.state = "terminating"
                self._event(
                    "ReplicaDraining", f"{replica.name}: {replica.inflight} requests in flight to finish"
                )
                self._spawn(self._stop_replica(replica, "scale-down"))

    async def _reconcile_loop(self) -> None:
        while True:
            await self._reconcile_now.wait()
            self._reconcile_now.clear()
            self._reconcile()

    # --- health -------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        """Readiness probes of ready replicas: a failing one leaves routing until it passes again."""
        assert self._session is not None
        while True:
            await asyncio.sleep(self.config.health_period_s)
            for replica in [r for r in self.replicas if r.state == "ready"]:
                await self._probe(replica, 1.0)

    async def _probe(self, replica: Replica, timeout_s: float) -> bool:
        """One readiness probe; a replica that fails it leaves routing until one passes."""
        assert self._session is not None
        url = f"http://{self.config.replica_host}:{replica.port}/v2/health/ready"
        ok = False
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                ok = resp.status == 200
        if ok != replica.healthy and replica.state == "ready":
            replica.healthy = ok
            self._event("ReplicaHealth", f"{replica.name} {'passes' if ok else 'fails'} its readiness probe")
        return ok

    # --- the HPA loop -------------------------------------------------------------------

    def samples(self, now: float) -> dict[str, Any]:
        """The metric values of this sync, by metric name (consumes the period's counters)."""
        live = self._live()
        out: dict[str, Any] = {}
        for metric in self.controller.spec.metrics:
            if metric.type == "Pods":
                out[metric.name] = [
                    ReplicaSample(max(r.average_inflight(now), r.scraped_inflight or 0.0))
                    if r.routable
                    else ReplicaSample(None, ready=False)
                    for r in live
                ]
            elif metric.type == "Resource":
                vals: list[ReplicaSample] = []
                for r in live:
                    cpu = r.cpu_percent(now, self.config.cpu_request)
                    vals.append(
                        ReplicaSample(cpu, ready=r.routable) if r.routable else ReplicaSample(None, False)
                    )
                out[metric.name] = vals
            else:
                out[metric.name] = self._p95(now)
        return out

    def _p95(self, now: float) -> float | None:
        cutoff = now - self.controller.sync_period_s
        values = sorted(lat for t, lat in self._latencies if t > cutoff)
        if not values:
            return 0.0
        return values[min(len(values) - 1, math.ceil(0.95 * len(values)) - 1)]

    def _ready_count(self, live: Sequence[Replica]) -> int:
        return sum(1 for r in live if r.routable)

    # --- the proxy ----------------------------------------------------------------------

    def _pick(self, exclude: set[str]) -> Replica | None:
        candidates = [r for r in self.replicas if r.routable and r.name not in exclude]
        if not candidates:
            return None
        return min(candidates, key=lambda r: (r.inflight, r.served))

    async def _pick_or_wait(self, exclude: set[str], deadline: float) -> Replica:
        while True:
            replica = self._pick(exclude)
            if replica is not None:
                return replica
            if exclude and self._pick(set()) is not None:
                exclude.clear()  # every ready replica tried once: try them again
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping.is_set():
                raise NoReplica()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._ready_changed.wait(), min(remaining, 0.25))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/metrics":
            body, ctype = self.metrics.exposition()
            return web.Response(body=body, headers={"Content-Type": ctype})
        if path == "/v2/health/live":
            return web.json_response({"live": True})
        if path == DISCOVERY_PATH:
            # client-side load balancing (EndpointSlices): the replicas routed to now
            replicas = [
                {"name": r.name, "url": f"http://{self.config.replica_host}:{r.port}", "ready": True}
                for r in self.replicas
                if r.routable
            ]
            return web.json_response({"pool": self.config.pool, "replicas": replicas})
        if path == "/v2/health/ready":
            ready = any(r.routable for r in self.replicas)
            return web.json_response({"ready": ready}, status=200 if ready else 503)
        return await self._forward(request)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        m, pool = self.metrics, self.config.pool
        t0 = time.monotonic()
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() == "content-type"}
        deadline = t0 + self.config.no_replica_wait_s
        tried: set[str] = set()
        self.inflight += 1
        m.inflight.labels(pool).inc()
        status = 502
        try:
            attempts = max(3, 2 * self.controller.spec.maxReplicas)
            for attempt in range(attempts):
                try:
                    replica = await self._pick_or_wait(tried, deadline)
                except NoReplica:
                    status = 503
                    return web.json_response(
                        {"error": f"pool {pool} has no ready replica"},
                        status=503,
                        headers={"Retry-After": "1"},
                    )
                if attempt:
                    m.retries.labels(pool).inc()
                tried.add(replica.name)
                url = f"http://{self.config.replica_host}:{replica.port}{request.path_qs}"
                replica.begin()
                try:
                    async with self._session.request(request.method, url, data=body, headers=headers) as resp:
                        data = await resp.read()
                        if resp.status == 503 and attempt + 1 < attempts:
                            continue  # the replica sheds load: another may take it
                        status = resp.status
                        out = {k: v for k, v in resp.headers.items() if k.lower() in _HOP_HEADERS}
                        return web.Response(status=resp.status, body=data, headers=out)
                except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
                    # refused or reset before an answer: the replica is gone or going; inference
                    # is pure, so another replica answers instead
                    # (a killed replica is only reaped a moment later: probe it now, so the
                    # retries wait for a ready replica instead of hitting this one again)
                    if replica.state == "ready" and (
                        replica.proc.returncode is not None or not await self._probe(replica, 0.2)
                    ):
                        replica.healthy = False
                    continue
                finally:
                    replica.end()
            status = 503
            return web.json_response({"error": f"pool {pool}: every replica failed"}, status=503)
        finally:
            self.inflight -= 1
            now = time.monotonic()
            m.inflight.labels(pool).dec()
            m.requests.labels(pool, str(status)).inc()
            m.latency.labels(pool).observe(now - t0)
            self._latencies.append((now, now - t0))

    # --- state --------------------------------------------------------------------------

    def _replica_states(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.replicas]


# --- command line -------------------------------------------------------------------------


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"must be ADDR:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def build_spec(args: argparse.Namespace) -> HPASpec:
    """The HPA of the pool: the ``--behavior`` file (a ``behavior`` mapping or a whole HPA), then flags."""
    base: HPASpec | None = None
    behavior = HPABehavior()
    if args.behavior:
        import yaml

        try:
            doc = yaml.safe_load(Path(args.behavior).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"--behavior {args.behavior}: {exc}") from None
        try:
            if isinstance(doc, dict) and ("spec" in doc or "metrics" in doc or "maxReplicas" in doc):
                base = HPASpec.from_dict(doc, name=args.pool)
                behavior = base.behavior
            else:
                behavior = HPABehavior.from_dict(doc.get("behavior", doc) if isinstance(doc, dict) else doc)
        except ConfigError as exc:
            raise ConfigError(f"--behavior {args.behavior}: {exc}") from None
    metrics = target_metrics(args, args.pool, INFLIGHT_METRIC, LATENCY_METRIC)
    if base is None:
        if not metrics:
            raise ConfigError("give a target: --target-inflight, --target-p95-ms or --target-cpu")
        return HPASpec(
            args.pool, args.min if args.min is not None else 1, args.max or 1, tuple(metrics), behavior
        )
    return replace(
        base,
        name=args.pool,
        minReplicas=args.min if args.min is not None else base.minReplicas,
        maxReplicas=args.max if args.max is not None else base.maxReplicas,
        metrics=tuple(metrics) or base.metrics,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the pool supervisor; runs until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m dataplat.scaling.supervisor",
        description="A serving pool that scales by the Kubernetes HPA rule",
    )
    parser.add_argument("--pool", required=True, help="pool name")
    parser.add_argument(
        "--listen", type=_parse_listen, default=("127.0.0.1", 58100), help="the pool's ADDR:PORT"
    )
    parser.add_argument("--repo", required=True, type=Path, help="model repository")
    parser.add_argument("--replica-ports", type=int, default=58110, help="first port of the replicas")
    parser.add_argument("--state-dir", required=True, type=Path, help="where <pool>.scaling.json goes")
    parser.add_argument("--min", type=int, default=None, help="minReplicas (default 1)")
    parser.add_argument("--max", type=int, default=None, help="maxReplicas")
    parser.add_argument("--target-inflight", type=float, default=None, help="in-flight requests per replica")
    parser.add_argument("--target-p95-ms", type=float, default=None, help="pool p95 latency, ms")
    parser.add_argument(
        "--target-cpu", type=int, default=None, help="CPU utilisation, percent of --cpu-request"
    )
    parser.add_argument("--cpu-request", type=float, default=1.0, help="cores per replica")
    parser.add_argument("--sync-period", type=float, default=DEFAULT_SYNC_PERIOD_S, help="seconds")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    parser.add_argument(
        "--behavior", type=Path, default=None, help="YAML: an autoscaling/v2 behavior, or an HPA"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes per replica")
    parser.add_argument("--max-inflight", type=int, default=64, help="per replica worker (503 beyond)")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="seconds")
    parser.add_argument(
        "--deregistration-delay",
        type=float,
        default=2.0,
        help="seconds a replica being removed keeps serving after it left the endpoint list",
    )
    parser.add_argument("--log-dir", type=Path, default=None)
    parser.add_argument("--print-hpa", action="store_true", help="print the HPA object (YAML) and exit")
    args = parser.parse_args(argv)
    try:
        spec = build_spec(args)
        if args.print_hpa:
            import yaml

            print(yaml.safe_dump(spec.to_dict(), sort_keys=False), end="")
            return 0
        host, port = args.listen
        config = SupervisorConfig(
            pool=args.pool,
            repo=args.repo.resolve(),
            state_dir=args.state_dir.resolve(),
            spec=spec,
            host=host,
            port=port,
            replica_host=host,  # replicas on the pool's own address (its host's), never another
            replica_port_start=args.replica_ports,
            sync_period_s=args.sync_period,
            tolerance=args.tolerance,
            workers_per_replica=args.workers,
            max_inflight_per_worker=args.max_inflight,
            drain_timeout_s=args.drain_timeout,
            deregistration_delay_s=args.deregistration_delay,
            cpu_request=args.cpu_request,
            log_dir=args.log_dir,
        )
        return asyncio.run(_serve(config))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except PortInUseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


async def _serve(config: SupervisorConfig) -> int:
    supervisor = Supervisor(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, supervisor.request_stop)
    loop.add_signal_handler(signal.SIGHUP, supervisor.reload)
    await supervisor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
