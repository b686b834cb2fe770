"""The HPA controller part shared by the pool supervisor and the worker scaler.

Both :class:`dataplat.scaling.supervisor.Supervisor` (replica processes behind a proxy) and
:class:`dataplat.scaling.workers.WorkerSupervisor` (worker processes sharing one socket) run
the same loop: every sync period read the metrics, let the HPA rule decide, record the
decision as an event, reconcile the replicas and write the state file
``<state-dir>/<name>.scaling.json``; on SIGHUP apply the HPA patch (:mod:`dataplat.scaling.patch`).
:class:`ScalingController` is that loop; a subclass says how it samples its replicas, how
many are ready, how it reconciles them and what the state document adds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dataplat.errors import ConfigError
from dataplat.scaling.hpa import (
    Decision,
    HorizontalAutoscaler,
    HPASpec,
    MetricSpec,
    cpu_metric,
    inflight_metric,
    latency_metric,
)
from dataplat.scaling.patch import Controller, apply_patch, read_patch

__all__ = ["EVENTS_KEPT", "ScalingController", "state_path", "target_metrics"]

EVENTS_KEPT = 20


def state_path(state_dir: Path, pool: str) -> Path:
    """Where the supervisor of ``pool`` writes its state."""
    return Path(state_dir) / f"{pool}.scaling.json"


def target_metrics(args: argparse.Namespace, name: str, inflight: str, latency: str) -> list[MetricSpec]:
    """The metrics the flags ``--target-inflight``, ``--target-p95-ms`` and ``--target-cpu`` ask
    for, in that order: ``inflight`` and ``latency`` name the in-flight and p95 metrics,
    ``name`` the scaled object the p95 is of."""
    metrics: list[MetricSpec] = []
    if args.target_inflight is not None:
        metrics.append(inflight_metric(args.target_inflight, inflight))
    if args.target_p95_ms is not None:
        metrics.append(latency_metric(args.target_p95_ms / 1000, name, latency))
    if args.target_cpu is not None:
        metrics.append(cpu_metric(args.target_cpu))
    return metrics


class ScalingController:
    """The HPA loop, the events, the state file and the patches of one scaled object.

    Subclasses implement :meth:`samples`, :meth:`_ready_count`, :meth:`_reconcile` and
    :meth:`_replica_states`, and give ``metrics`` (the supervisor's ``_Metrics``)."""

    component: str
    """``component`` of the state document."""
    mode: str
    """``mode`` of the state document: ``replicas`` or ``workers``."""

    def __init__(
        self,
        name: str,
        spec: HPASpec,
        sync_period_s: float,
        tolerance: float,
        state_dir: Path,
        endpoint: str,
        metrics: Any,
    ) -> None:
        self.name = name
        self.state_dir = state_dir
        self.endpoint = endpoint
        self.hpa = HorizontalAutoscaler(spec, tolerance=tolerance)
        self.base = Controller(spec, sync_period_s, tolerance)
        self.controller = self.base
        """The HPA and controller flags in force: the deployed ones, or a patch's (:meth:`reload`)."""
        self.patch: dict[str, Any] | None = None
        self._wake = asyncio.Event()
        self.target_replicas = spec.minReplicas
        """The scale's ``spec.replicas``: what the HPA last decided."""
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.last_decision: Decision | None = None
        self.metrics = metrics
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        metrics.min.labels(name).set(spec.minReplicas)
        metrics.max.labels(name).set(spec.maxReplicas)
        for metric in spec.metrics:
            metrics.target.labels(name, metric.name).set(metric.target)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start ``minReplicas`` replicas and the loops."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop every replica gracefully."""
        raise NotImplementedError

    async def run(self) -> None:
        """Start, then serve until :meth:`request_stop` (SIGTERM/SIGINT)."""
        await self.start()
        await self._stopping.wait()
        await self.stop()

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop."""
        self._stopping.set()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- what a subclass gives ------------------------------------------------------------

    def samples(self, now: float) -> dict[str, Any]:
        """The metric values of this sync, by metric name (consumes the period's counters)."""
        raise NotImplementedError

    def _live(self) -> Sequence[Any]:
        """Replicas that count towards the scale (starting or ready, not being removed)."""
        raise NotImplementedError

    def _ready_count(self, live: Sequence[Any]) -> int:
        """How many of the ``live`` replicas are ready (receive traffic)."""
        raise NotImplementedError

    def _reconcile(self) -> None:
        """As many live replicas as ``target_replicas``."""
        raise NotImplementedError

    def _replica_states(self) -> list[dict[str, Any]]:
        """Each replica as the state document lists it."""
        raise NotImplementedError

    # --- the HPA loop -------------------------------------------------------------------

    def sync(self, now: float | None = None) -> Decision:
        """One HPA reconcile: read the metrics, decide, record, and reconcile the replicas."""
        now = time.monotonic() if now is None else now
        values = self.samples(now)
        current = self.target_replicas
        ready = self._ready_count(self._live())
        decision = self.hpa.recommend(now, current, values, ready_replicas=ready)
        self.last_decision = decision
        for status in decision.metrics:
            if status.current is not None:
                self.metrics.metric.labels(self.name, status.name).set(status.current)
        if decision.rescale:
            kind = "ScaleUp" if decision.desired > current else "ScaleDown"
            self.target_replicas = decision.desired
            self._event(
                kind,
                f"New size: {decision.desired}; reason: {decision.reason}",
                from_replicas=current,
                to_replicas=decision.desired,
                decision=decision,
            )
            self._reconcile()
        self.write_state()
        return decision

    async def _sync_loop(self) -> None:
        next_at = time.monotonic() + self.controller.sync_period_s
        while True:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_at - time.monotonic()))
            if self._wake.is_set():  # a patch changed the period: a new one starts now
                next_at = time.monotonic() + self.controller.sync_period_s
                continue
            next_at += self.controller.sync_period_s
            self.sync()

    # --- HPA patches --------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: apply the patch file over the deployed HPA, or restore it when there is none."""
        try:
            doc = read_patch(self.state_dir, self.name)
            controller = self.base if doc is None else apply_patch(self.base, doc)
        except ConfigError as exc:
            self._event("HPAPatchRejected", str(exc))
            self.write_state()
            return
        self.controller, self.patch = controller, doc
        self.hpa.spec, self.hpa.tolerance = controller.spec, controller.tolerance
        self.metrics.min.labels(self.name).set(controller.spec.minReplicas)
        self.metrics.max.labels(self.name).set(controller.spec.maxReplicas)
        self._event("HPAPatched" if doc else "HPARestored", json.dumps(doc) if doc else "deployed HPA")
        self._wake.set()
        self.write_state()

    # --- state --------------------------------------------------------------------------

    def _event(
        self,
        kind: str,
        message: str,
        from_replicas: int | None = None,
        to_replicas: int | None = None,
        decision: Decision | None = None,
    ) -> None:
        event: dict[str, Any] = {
            "time": round(time.time(), 3),
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "type": kind,
            "message": message,
        }
        if from_replicas is not None:
            event.update({"from": from_replicas, "to": to_replicas})
        if decision is not None:
            event.update(
                {
                    "reason": decision.reason,
                    "condition": decision.condition,
                    "raw": decision.raw,
                    "stabilized": decision.stabilized,
                    "metrics": decision.to_dict()["metrics"],
                }
            )
        self.events.append(event)
        self.metrics.events.labels(self.name, kind).inc()
        print(f"{event['at']} {self.name} {kind}: {message}", flush=True)

    def state(self, stopped: bool = False) -> dict[str, Any]:
        """What ``dataplat status`` shows: current, desired, bounds, metric, replicas, events."""
        d, spec = self.last_decision, self.controller.spec
        live = self._live()
        ready = self._ready_count(live)
        m, name = self.metrics, self.name
        m.current.labels(name).set(0 if stopped else self.target_replicas)
        m.desired.labels(name).set(d.desired if d else self.target_replicas)
        m.ready.labels(name).set(0 if stopped else ready)
        return {
            "pool": name,
            "component": self.component,
            "mode": self.mode,
            "pid": os.getpid(),
            "running": not stopped,
            "updated_at": round(time.time(), 3),
            "endpoint": self.endpoint,
            "current": 0 if stopped else self.target_replicas,
            "desired": d.desired if d else self.target_replicas,
            "running_replicas": len(live),
            "ready": 0 if stopped else ready,
            "minReplicas": spec.minReplicas,
            "maxReplicas": spec.maxReplicas,
            "sync_period_s": self.controller.sync_period_s,
            "tolerance": self.controller.tolerance,
            "patch": self.patch,
            "metrics": [
                {"name": s.name, "current": s.current, "target": s.target, "ratio": s.ratio}
                for s in (d.metrics if d else ())
            ]
            or [
                {"name": mt.name, "current": None, "target": mt.target, "ratio": None} for mt in spec.metrics
            ],
            "last_decision": d.to_dict() if d else None,
            "replicas": self._replica_states(),
            "events": list(self.events),
            "hpa": spec.to_dict(),
        }

    def write_state(self, stopped: bool = False) -> None:
        """Write :meth:`state` to ``<state_dir>/<name>.scaling.json`` atomically."""
        path = state_path(self.state_dir, self.name)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.state(stopped), indent=1) + "\n")
        tmp.replace(path)
