"""Worker processes of one ASGI server, scaled by the Kubernetes HPA rule (the decision service).

The pool supervisor (:mod:`dataplat.scaling.supervisor`) puts separate replica processes
behind a userspace proxy: each replica is held back until ready and drained before
removal, at about 1 ms per request through the proxy. The decision service cannot pay
that: its throughput is judged against a bare ASGI endpoint. So here the replicas are
**worker processes of one server sharing one listening socket**, as gunicorn's TTIN/TTOU
do, and the kernel hands connections to whichever worker accepts; nothing sits in the
request path. What the proxy gave, the workers do themselves:

* **Ready before traffic.** A worker calls ``accept`` on the shared socket only once its
  ASGI lifespan startup is complete (uvicorn creates its server after the lifespan; the
  decision service's startup reads the catalog from the warehouse and connects to the
  stream), then tells the supervisor through a pipe. A worker that is not ready never
  receives a connection.
* **Drain before removal.** The supervisor sends the worker ``SIGUSR1``: it closes its
  copy of the listening socket (the other workers keep accepting, connections queued in
  the kernel go to them), answers every request still in flight and every further
  request on its open keep-alive connections with ``Connection: close``, and exits when
  it has no connection left (or after ``--drain-timeout``: connections idle that long
  are closed). A client never sees a connection closed under a request it sent.
* **Rebalancing.** Clients keep their connections (HTTP keep-alive), so a new worker
  would only see clients that connect after it started. When a worker becomes ready the
  supervisor sends the others ``SIGUSR2``: each connection open in them then closes after
  its next answer (``Connection: close``, never under a request), its client connects
  again, and the kernel hands the new connections to the accepting workers (nginx's
  ``keepalive_requests`` does the same, by count). Which worker gets a reconnection is
  whichever accepts first: a busy worker accepts later, so a CPU-bound service such as the
  decision service spreads out; idle workers may not. ``SO_REUSEPORT`` sockets per worker
  would spread connections evenly, but a draining worker's socket would drop the
  connections queued on it (unless the kernel migrates them: ``net.ipv4.tcp_migrate_req``),
  so one shared socket it is.
* **Replacement.** A worker that exits on its own is replaced at once (backing off when it
  dies before it was ready), as a ReplicaSet replaces a lost pod.
* **Metrics per worker** come from the Prometheus multiprocess folder the workers write
  anyway (``PROMETHEUS_MULTIPROC_DIR``, one file per process): the in-flight requests of a
  worker averaged over the sync period are the growth of its latency histogram's
  ``_sum`` over the period divided by the period (Little's law; what
  ``rate(..._sum[1m])`` gives a cluster's metrics adapter); p95 latency from the
  histogram's buckets; CPU from ``/proc``.

The HPA loop, the state file (``<state-dir>/<name>.scaling.json``, the same document as a
pool's, so ``dataplat status`` shows both) and HPA patches on SIGHUP
(:mod:`dataplat.scaling.patch`) are the pool supervisor's
(:class:`dataplat.scaling.controller.ScalingController`). The workers' ``/metrics`` include
the supervisor's ``dataplat_scaling_*`` gauges (the supervisor writes into the same folder).

Used by ``python -m dataplat.decision.service ... --max-workers N`` (see
:func:`add_scaling_arguments`); the app is any ASGI factory ``module:function``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from dataplat.errors import ConfigError, DataplatError
from dataplat.scaling.controller import ScalingController, target_metrics
from dataplat.scaling.hpa import (
    DEFAULT_SYNC_PERIOD_S,
    DEFAULT_TOLERANCE,
    HPABehavior,
    HPASpec,
    ReplicaSample,
)
from dataplat.scaling.patch import clear_patch

__all__ = [
    "WorkerPoolConfig",
    "WorkerSupervisor",
    "add_scaling_arguments",
    "run_scaled_workers",
    "scaling_config_from_args",
]

STARTUP_FAILURE = 3
"""uvicorn's exit code for a worker whose startup failed."""
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class WorkerPoolConfig:
    """One scaled server: the app, the socket, the HPA and the drain settings."""

    name: str
    """The scaled object's name (state file ``<name>.scaling.json``)."""
    factory: str
    """The ASGI app factory, ``module:function``."""
    host: str
    port: int
    state_dir: Path
    spec: HPASpec
    component: str = "decision"
    sync_period_s: float = DEFAULT_SYNC_PERIOD_S
    tolerance: float = DEFAULT_TOLERANCE
    latency_histogram: str = "dataplat_decision_duration_seconds"
    """A histogram of request durations whose ``_sum`` grows by the time spent in requests."""
    latency_labels: Mapping[str, str] = field(default_factory=lambda: {"source": "http"})
    drain_timeout_s: float = 30.0
    ready_timeout_s: float = 60.0
    cpu_request: float = 1.0
    log_level: str = "warning"
    backlog: int = 2048
    graceful_timeout_s: float = 5.0

    def validate(self) -> list[str]:
        """Every problem of the configuration (empty when valid)."""
        problems = list(self.spec.validate())
        if self.sync_period_s <= 0:
            problems.append(f"--sync-period: {self.sync_period_s} must be above 0")
        if self.drain_timeout_s < 0:
            problems.append(f"--drain-timeout: {self.drain_timeout_s} must be 0 or more")
        if self.spec.minReplicas < 1:
            problems.append("--min-workers: at least 1 (a server with no worker answers nothing)")
        return problems


# --- the worker process ------------------------------------------------------------------


class _DrainGate:
    """ASGI wrapper: while the worker drains, every response says ``Connection: close``; after a
    rebalance, the next response on each connection that was open then does."""

    def __init__(self, app: Any, server: Any) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        server = self.server
        if not (server.draining or (server.rebalance and scope.get("client") in server.rebalance)):
            await self.app(scope, receive, send)
            return
        server.rebalance.discard(scope.get("client"))

        async def send_close(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_close)


def _server_class() -> type:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn's server that reports readiness and drains on SIGUSR1 (module docstring)."""

        def __init__(self, config: Any, conn: Connection, drain_timeout_s: float) -> None:
            super().__init__(config)
            self.conn = conn
            self.drain_timeout_s = drain_timeout_s
            self.draining = False
            self.drain_started: float | None = None
            self.rebalance: set[Any] = set()
            self.rebalance_until = 0.0

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            self.config.loaded_app = _DrainGate(self.config.loaded_app, self)
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self.drain)
                asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, self.rebalance_connections)
                with contextlib.suppress(OSError):
                    self.conn.send(("ready", os.getpid()))

        def drain(self) -> None:
            if self.draining:
                return
            self.draining, self.drain_started = True, time.monotonic()
            for server in self.servers:
                server.close()  # this worker stops accepting; the others go on
            for connection in list(self.server_state.connections):
                cycle = getattr(connection, "cycle", None)
                if cycle is not None and not cycle.response_complete:
                    cycle.keep_alive = False  # the answer in flight closes its connection

        def rebalance_connections(self) -> None:
            """A worker joined: every connection open now closes after its next answer, so that
            its client connects again and the kernel spreads the new connections over all workers."""
            for connection in list(self.server_state.connections):
                cycle = getattr(connection, "cycle", None)
                if cycle is not None and not cycle.response_complete:
                    cycle.keep_alive = False
                elif (client := getattr(connection, "client", None)) is not None:
                    self.rebalance.add(client)
            self.rebalance_until = time.monotonic() + 60.0

        async def on_tick(self, counter: int) -> bool:
            if self.rebalance and time.monotonic() > self.rebalance_until:
                self.rebalance.clear()  # connections idle that long: their clients left
            should_exit = bool(await super().on_tick(counter))
            if self.drain_started is None:
                return should_exit
            drained = not self.server_state.connections
            return should_exit or drained or time.monotonic() - self.drain_started >= self.drain_timeout_s

    return DrainingServer


def _run_worker(
    config: Any, conn: Connection, drain_timeout_s: float, sockets: list[socket.socket] | None = None
) -> None:  # pragma: no cover - runs in the worker process
    """A worker's main: die with the supervisor, then serve until drained or told to stop."""
    from dataplat.scaling.supervisor import _die_with_parent

    _die_with_parent()
    if os.getppid() == 1:
        raise SystemExit(0)  # the supervisor died before we could ask to follow it
    _server_class()(config, conn, drain_timeout_s).run(sockets)


# --- the supervisor ----------------------------------------------------------------------


@dataclass
class Worker:
    """One worker process and what the supervisor knows of it."""

    name: str
    process: Any
    """A ``multiprocessing`` spawn process."""
    conn: Connection
    started_at: float
    state: str = "starting"
    """``starting`` -> ``ready`` (accepting) -> ``terminating`` (draining) -> ``stopped``; or ``failed``."""
    ready_at: float | None = None
    inflight: float = 0.0
    served: int = 0
    busy_s: float = 0.0
    """The latency histogram's ``_sum`` at the last sync (seconds spent in requests)."""
    busy_at: float | None = None
    cpu_ticks: int | None = None
    cpu_at: float = 0.0

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    @property
    def live(self) -> bool:
        return self.state in ("starting", "ready")

    def to_dict(self, port: int) -> dict[str, Any]:
        """The same fields as a pool replica's (``port`` is the shared one)."""
        from dataplat.scaling.supervisor import _wall

        return {
            "name": self.name,
            "port": port,
            "pid": self.pid,
            "state": self.state,
            "healthy": True,
            "inflight": round(self.inflight, 3),
            "served": self.served,
            "started_at": _wall(self.started_at),
            "ready_after_s": None if self.ready_at is None else round(self.ready_at - self.started_at, 3),
        }


def _proc_ticks(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


class WorkerSupervisor(ScalingController):
    """The workers of one server, the shared socket and the HPA loop."""

    mode = "workers"

    def __init__(self, config: WorkerPoolConfig, metrics_dir: Path) -> None:
        from dataplat.scaling.supervisor import _Metrics

        problems = config.validate()
        if problems:
            raise ConfigError("invalid worker scaling settings:\n  " + "\n  ".join(problems))
        super().__init__(
            config.name,
            config.spec,
            config.sync_period_s,
            config.tolerance,
            config.state_dir,
            f"http://{config.host}:{config.port}",
            _Metrics(config.name),
        )
        self.config = config
        self.component = config.component
        self.metrics_dir = metrics_dir
        self.workers: list[Worker] = []
        self._seq = 0
        self._crash_backoff_s = 0.0
        self._restart_after = 0.0
        self._sock: socket.socket | None = None
        self._uv_config: Any = None
        self._hist_prev: dict[float, float] = {}
        self._hist_at: float | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket, start ``minReplicas`` workers and the loops."""
        import uvicorn

        from dataplat.serving.server import listen_socket

        c = self.config
        c.state_dir.mkdir(parents=True, exist_ok=True)
        clear_patch(c.state_dir, c.name)
        self._sock = listen_socket(c.host, c.port, backlog=c.backlog)
        self._uv_config = uvicorn.Config(
            c.factory,
            factory=True,
            host=c.host,
            port=c.port,
            http="httptools",
            loop="asyncio",
            lifespan="on",
            access_log=False,
            log_level=c.log_level,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=math.ceil(c.graceful_timeout_s),
            backlog=c.backlog,
        )
        self._event("Started", f"{c.name} on {c.host}:{c.port}, {self.target_replicas} workers to start")
        self._reconcile()
        self._spawn(self._sync_loop())
        self._spawn(self._watch_loop())
        self.write_state()

    async def stop(self) -> None:
        """Stop every worker gracefully (uvicorn's SIGTERM: finish requests in flight), close the socket."""
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        for w in self.workers:
            if w.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.graceful_timeout_s + 5
        while any(w.process.is_alive() for w in self.workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for w in self.workers:
            if w.process.is_alive():
                w.process.kill()
            w.process.join(1)
            w.state = "stopped"
        if self._sock is not None:
            self._sock.close()
        self.write_state(stopped=True)

    # --- workers ------------------------------------------------------------------------

    def _live(self) -> list[Worker]:
        return [w for w in self.workers if w.live]

    def _start_worker(self) -> Worker:
        from multiprocessing import Pipe

        from uvicorn._subprocess import get_subprocess

        self._seq += 1
        parent, child = Pipe(duplex=False)
        target = functools.partial(_run_worker, self._uv_config, child, self.config.drain_timeout_s)
        assert self._sock is not None
        process = get_subprocess(self._uv_config, target, [self._sock])
        process.start()
        child.close()
        worker = Worker(f"{self.config.name}-w{self._seq}", process, parent, time.monotonic())
        self.workers.append(worker)
        return worker

    def _reconcile(self) -> None:
        """As many live workers as ``target_replicas``: start some, or drain the extra ones."""
        if self._stopping.is_set():
            return
        live = self._live()
        missing = self.target_replicas - len(live)
        if missing > 0 and time.monotonic() >= self._restart_after:
            for _ in range(missing):
                self._start_worker()
        excess = len(live) - self.target_replicas
        if excess > 0:
            order = sorted(live, key=lambda w: (w.state == "ready", w.inflight, -w.started_at))
            for w in order[:excess]:
                w.state = "terminating"
                self._event("ReplicaDraining", f"{w.name} (pid {w.pid}): stops accepting, drains")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signal.SIGUSR1 if w.ready_at is not None else signal.SIGTERM)
                self._spawn(self._reap(w, time.monotonic()))

    async def _reap(self, w: Worker, since: float) -> None:
        """Wait for a draining worker to exit (bounded), then make sure it is gone."""
        limit = self.config.drain_timeout_s + self.config.graceful_timeout_s + 5
        while w.process.is_alive() and time.monotonic() - since < limit:
            await asyncio.sleep(0.05)
        if w.process.is_alive():
            w.process.kill()
        await asyncio.to_thread(w.process.join, 5)
        self._forget(w)
        w.state = "stopped"
        if not self._stopping.is_set():
            self._event(
                "ReplicaStopped",
                f"{w.name} stopped (scale-down): drained in {time.monotonic() - since:.2f} s "
                f"(exit {w.process.exitcode})",
            )
            self.write_state()

    def _rebalance(self, joined: Worker) -> None:
        """Tell the other ready workers to close their open connections gracefully (SIGUSR2)."""
        others = [w for w in self.workers if w.state == "ready" and w is not joined]
        for w in others:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGUSR2)

    def _forget(self, w: Worker) -> None:
        from prometheus_client import multiprocess

        if w in self.workers:
            self.workers.remove(w)
        with contextlib.suppress(OSError):
            w.conn.close()
        if w.pid:
            with contextlib.suppress(OSError):
                multiprocess.mark_process_dead(w.pid, str(self.metrics_dir))

    async def _watch_loop(self) -> None:
        """Readiness messages, workers that died, replacements: every 50 ms."""
        while True:
            changed = False
            for w in list(self.workers):
                if w.state == "starting":
                    with contextlib.suppress(OSError, EOFError):
                        if w.conn.poll():
                            w.conn.recv()
                            w.state, w.ready_at = "ready", time.monotonic()
                            self._crash_backoff_s = 0.0
                            self._event(
                                "ReplicaReady",
                                f"{w.name} (pid {w.pid}) accepting after {w.ready_at - w.started_at:.2f} s",
                            )
                            self._rebalance(w)
                            changed = True
                    if (
                        w.state == "starting"
                        and time.monotonic() - w.started_at > self.config.ready_timeout_s
                    ):
                        self._event(
                            "ReplicaNotReady", f"{w.name} not ready after {self.config.ready_timeout_s:.0f} s"
                        )
                        w.state = "terminating"
                        w.process.kill()
                        self._spawn(self._reap(w, time.monotonic()))
                        changed = True
                if w.live and not w.process.is_alive():
                    code = w.process.exitcode
                    w.state = "failed"
                    self._forget(w)
                    if w.ready_at is None:
                        self._crash_backoff_s = min(max(1.0, 2 * self._crash_backoff_s), 60.0)
                        self._restart_after = time.monotonic() + self._crash_backoff_s
                        why = " (its startup failed)" if code == STARTUP_FAILURE else ""
                        self._event(
                            "ReplicaFailed",
                            f"{w.name} (pid {w.pid}) exited with {code} while starting{why}; "
                            f"replacing it in {self._crash_backoff_s:.0f} s",
                        )
                    else:
                        self._event(
                            "ReplicaFailed", f"{w.name} (pid {w.pid}) exited with {code}; replacing it"
                        )
                    changed = True
            if len(self._live()) < self.target_replicas and time.monotonic() >= self._restart_after:
                self._reconcile()
                changed = True
            if changed:
                self.write_state()
            await asyncio.sleep(0.05)

    # --- the HPA loop -------------------------------------------------------------------

    def _worker_values(self, pid: int) -> tuple[float | None, float, int]:
        """(latency histogram ``_sum``, in-flight gauge, requests) of one worker from its metric files."""
        from prometheus_client.multiprocess import MultiProcessCollector

        files = [str(p) for p in self.metrics_dir.glob(f"*_{pid}.db")]
        if not files:
            return None, 0.0, 0
        busy: float | None = None
        inflight, served = 0.0, 0
        labels = dict(self.config.latency_labels)
        for metric in MultiProcessCollector.merge(files, accumulate=True):
            for s in metric.samples:
                if s.name == f"{self.config.latency_histogram}_sum" and all(
                    s.labels.get(k) == v for k, v in labels.items()
                ):
                    busy = (busy or 0.0) + s.value
                elif s.name == f"{self.config.latency_histogram}_count" and all(
                    s.labels.get(k) == v for k, v in labels.items()
                ):
                    served += int(s.value)
                elif s.name.endswith("_inflight") and metric.type == "gauge":
                    inflight += s.value
        return busy, inflight, served

    def _pool_p95(self, now: float) -> float | None:
        """p95 of the requests of all workers over the sync period, from the histogram's buckets."""
        from prometheus_client.multiprocess import MultiProcessCollector

        files = [str(p) for p in self.metrics_dir.glob("histogram_*.db")]
        buckets: dict[float, float] = {}
        labels = dict(self.config.latency_labels)
        for metric in MultiProcessCollector.merge(files, accumulate=True) if files else []:
            for s in metric.samples:
                if s.name == f"{self.config.latency_histogram}_bucket" and all(
                    s.labels.get(k) == v for k, v in labels.items()
                ):
                    le = float(s.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + s.value
        prev, self._hist_prev = self._hist_prev, buckets
        delta = sorted((le, n - prev.get(le, 0.0)) for le, n in buckets.items())
        total = delta[-1][1] if delta else 0.0
        if total <= 0:
            return 0.0
        rank, lower, below = 0.95 * total, 0.0, 0.0
        for le, count in delta:
            if count >= rank:
                if math.isinf(le):
                    return lower
                span = count - below
                return lower + (le - lower) * ((rank - below) / span if span > 0 else 1.0)
            lower, below = le, count
        return lower

    def samples(self, now: float) -> dict[str, Any]:
        """The metric values of this sync by metric name (consumes the period's counters)."""
        live = self._live()
        per_worker: dict[str, ReplicaSample] = {}
        for w in live:
            busy, gauge, served = self._worker_values(w.pid)
            busy = 0.0 if busy is None else busy  # no request yet: no sample of the histogram
            w.served = served
            if w.state != "ready":
                per_worker[w.name] = ReplicaSample(None, ready=w.state == "ready")
                w.inflight = gauge
                continue
            if w.busy_at is None:
                # first sync since it became ready: the window starts when it did
                span = max(now - (w.ready_at or now), 1e-3)
                value = busy / span
            else:
                value = (busy - w.busy_s) / max(now - w.busy_at, 1e-3)
            w.busy_s, w.busy_at, w.inflight = busy, now, value
            per_worker[w.name] = ReplicaSample(value)
        out: dict[str, Any] = {}
        for metric in self.controller.spec.metrics:
            if metric.type == "Pods":
                out[metric.name] = [per_worker[w.name] for w in live]
            elif metric.type == "Resource":
                vals = []
                for w in live:
                    ticks, prev, prev_at = _proc_ticks(w.pid), w.cpu_ticks, w.cpu_at
                    w.cpu_ticks, w.cpu_at = ticks, now
                    if w.state != "ready" or ticks is None or prev is None or now <= prev_at:
                        vals.append(ReplicaSample(None, ready=w.state == "ready"))
                    else:
                        pct = 100.0 * (ticks - prev) / _CLK_TCK / (now - prev_at) / self.config.cpu_request
                        vals.append(ReplicaSample(pct))
                out[metric.name] = vals
            else:
                out[metric.name] = self._pool_p95(now)
        return out

    def _ready_count(self, live: Sequence[Worker]) -> int:
        return sum(1 for w in live if w.state == "ready")

    def _replica_states(self) -> list[dict[str, Any]]:
        return [w.to_dict(self.config.port) for w in self.workers]


# --- entry points ------------------------------------------------------------------------


def add_scaling_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of a server whose workers scale (``--max-workers`` turns scaling on)."""
    g = parser.add_argument_group(
        "worker scaling (Kubernetes HPA rule; on when --max-workers is given)",
    )
    g.add_argument("--min-workers", type=int, default=None, help="minReplicas (default: --workers)")
    g.add_argument("--max-workers", type=int, default=None, help="maxReplicas")
    g.add_argument("--target-inflight", type=float, default=None, help="requests in flight per worker")
    g.add_argument("--target-p95-ms", type=float, default=None, help="p95 latency of all workers, ms")
    g.add_argument("--target-cpu", type=int, default=None, help="CPU utilisation, percent of one core")
    g.add_argument("--sync-period", type=float, default=DEFAULT_SYNC_PERIOD_S, help="seconds")
    g.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    g.add_argument("--behavior", type=Path, default=None, help="YAML: an autoscaling/v2 behavior")
    g.add_argument("--drain-timeout", type=float, default=30.0, help="seconds a removed worker may drain")
    g.add_argument("--state-dir", type=Path, default=None, help="where <name>.scaling.json goes")
    g.add_argument("--scaling-name", default=None, help="name of the scaled object (default: the component)")


def scaling_config_from_args(
    args: argparse.Namespace, factory: str, host: str, port: int, workers: int, component: str
) -> WorkerPoolConfig | None:
    """The scaling configuration the flags ask for (None: ``--max-workers`` not given)."""
    if args.max_workers is None:
        return None
    behavior = HPABehavior()
    if args.behavior:
        import yaml

        try:
            doc = yaml.safe_load(Path(args.behavior).read_text()) or {}
            behavior = HPABehavior.from_dict(doc.get("behavior", doc) if isinstance(doc, dict) else doc)
        except (OSError, yaml.YAMLError, ConfigError) as exc:
            raise ConfigError(f"--behavior {args.behavior}: {exc}") from None
    name = args.scaling_name or component
    metrics = target_metrics(
        args, name, f"dataplat_{component}_inflight", f"dataplat_{component}_p95_seconds"
    )
    if not metrics:
        raise ConfigError("--max-workers needs a target: --target-inflight, --target-p95-ms or --target-cpu")
    if args.state_dir is None:
        raise ConfigError("--max-workers needs --state-dir (where the scaling state is written)")
    min_workers = args.min_workers if args.min_workers is not None else workers
    spec = HPASpec(name, min_workers, args.max_workers, tuple(metrics), behavior)
    config = WorkerPoolConfig(
        name=name,
        factory=factory,
        host=host,
        port=port,
        state_dir=args.state_dir.resolve(),
        spec=spec,
        component=component,
        sync_period_s=args.sync_period,
        tolerance=args.tolerance,
        drain_timeout_s=args.drain_timeout,
    )
    problems = config.validate()
    if problems:
        raise ConfigError("invalid worker scaling settings:\n  " + "\n  ".join(problems))
    return config


def run_scaled_workers(
    config: WorkerPoolConfig, log_level: str = "warning", metrics_prefix: str = "dataplat-metrics-"
) -> None:
    """Run the server with scaled workers in the foreground until SIGTERM/SIGINT.

    The caller sets the app's environment first (as for
    :func:`dataplat.serving.server.run_asgi_workers`); the Prometheus multiprocess folder
    is made here and removed at the end.
    """
    metrics_dir = Path(tempfile.mkdtemp(prefix=metrics_prefix))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    config = _with_log_level(config, log_level)

    async def main() -> None:
        supervisor = WorkerSupervisor(config, metrics_dir)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, supervisor.request_stop)
        loop.add_signal_handler(signal.SIGHUP, supervisor.reload)
        await supervisor.run()

    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _with_log_level(config: WorkerPoolConfig, log_level: str) -> WorkerPoolConfig:
    from dataclasses import replace

    return replace(config, log_level=log_level)


def main(argv: list[str] | None = None) -> int:
    """``python -m dataplat.scaling.workers --app MODULE:FACTORY --listen ADDR:PORT --max-workers N ...``:
    any ASGI app factory with scaled workers, until SIGTERM/SIGINT."""
    import sys

    from dataplat.serving.server import parse_listen

    parser = argparse.ArgumentParser(
        prog="python -m dataplat.scaling.workers",
        description="An ASGI server whose worker processes scale by the Kubernetes HPA rule",
    )
    parser.add_argument("--app", required=True, help="ASGI app factory, MODULE:FUNCTION")
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8000), help="ADDR:PORT")
    parser.add_argument("--workers", type=int, default=1, help="minReplicas when --min-workers is not given")
    parser.add_argument("--component", default="app", help="names the in-flight metric and the state")
    parser.add_argument(
        "--latency-histogram",
        default="dataplat_decision_duration_seconds",
        help="histogram of request durations (its _sum gives the in-flight requests)",
    )
    parser.add_argument("--latency-label", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--log-level", default="warning")
    add_scaling_arguments(parser)
    args = parser.parse_args(argv)
    host, port = args.listen
    try:
        config = scaling_config_from_args(args, args.app, host, port, args.workers, args.component)
        if config is None:
            raise ConfigError("--max-workers is required")
        labels = dict(item.partition("=")[::2] for item in args.latency_label) or {"source": "http"}
        from dataclasses import replace

        config = replace(config, latency_histogram=args.latency_histogram, latency_labels=labels)
        run_scaled_workers(config, log_level=args.log_level)
    except DataplatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
