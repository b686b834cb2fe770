"""Whether the platform's objects are ready in a cluster, and why not.

:func:`assess` reads one live object the way its controller reports it: Deployments and
StatefulSets by their updated and available replicas at the observed generation, Jobs by
completion, CloudNativePG clusters by ``status.readyInstances`` and ``status.phase``
(``currentPrimary`` is kept for status and drills). :func:`wait_ready` polls with a
deadline and backoff, reports every change of state, and on timeout raises
:class:`ReadinessTimeoutError` naming each object that is not ready and why: its
conditions, its pods (unschedulable, image pull back-off, crash loops) and its recent
warning events (:func:`explain`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dataplat.k8s.apply import Key, object_key
from dataplat.k8s.cluster import Cluster, ClusterError

__all__ = [
    "WORKLOAD_KINDS",
    "Readiness",
    "ReadinessFailedError",
    "ReadinessTimeoutError",
    "WaitResult",
    "assess",
    "bad_conditions",
    "explain",
    "pod_selector",
    "wait_ready",
]

State = Literal["ready", "progressing", "failed", "missing", "present"]

WORKLOAD_KINDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
        ("postgresql.cnpg.io/v1", "Cluster"),
    }
)
"""Kinds whose readiness is more than existing: the wait follows these."""

CNPG_HEALTHY = "Cluster in healthy state"

_POSITIVE = {
    "Available",
    "Ready",
    "Progressing",
    "Complete",
    "PodScheduled",
    "ContainersReady",
    "Initialized",
}
_NEGATIVE = {"ReplicaFailure", "Failed", "Degraded", "FailureTarget"}


@dataclass(frozen=True)
class Readiness:
    """One object's readiness: its state, replica counts and what its status says."""

    key: Key
    state: State
    summary: str = ""
    desired: int | None = None
    ready: int | None = None
    primary: str | None = None
    """CloudNativePG: ``status.currentPrimary``."""
    conditions: tuple[str, ...] = ()
    """Conditions that say something is wrong, as ``Type=Status Reason: message``."""

    @property
    def ok(self) -> bool:
        """Ready, or (for kinds without readiness) present."""
        return self.state in ("ready", "present")

    @property
    def label(self) -> str:
        return f"{self.key[1]}/{self.key[3]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": self.key[0],
            "kind": self.key[1],
            "namespace": self.key[2],
            "name": self.key[3],
            "state": self.state,
            "summary": self.summary,
            "desired": self.desired,
            "ready": self.ready,
            "primary": self.primary,
            "conditions": list(self.conditions),
        }


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def bad_conditions(status: Mapping[str, Any]) -> tuple[str, ...]:
    """Conditions that report a problem: a positive one False, a negative one True."""
    out = []
    for c in status.get("conditions") or []:
        ctype, cstatus = str(c.get("type", "")), str(c.get("status", ""))
        if (ctype in _POSITIVE and cstatus == "False") or (ctype in _NEGATIVE and cstatus == "True"):
            text = f"{ctype}={cstatus}"
            if c.get("reason"):
                text += f" {c['reason']}"
            if c.get("message"):
                text += f": {c['message']}"
            out.append(text)
    return tuple(out)


def _generation_seen(obj: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    gen = (obj.get("metadata") or {}).get("generation")
    seen = status.get("observedGeneration")
    return gen is None or seen is None or _int(seen) >= _int(gen)


def assess(live: Mapping[str, Any] | None, key: Key | None = None) -> Readiness:
    """The readiness of one live object (``None``: it does not exist; then ``key`` names it)."""
    if live is None:
        assert key is not None
        return Readiness(key, "missing", "not found in the cluster")
    key = object_key(live)
    api, kind = key[0], key[1]
    spec = live.get("spec") or {}
    status = live.get("status") or {}
    bad = bad_conditions(status)
    if (api, kind) == ("apps/v1", "Deployment"):
        want = _int(spec.get("replicas"), 1)
        updated, available = _int(status.get("updatedReplicas")), _int(status.get("availableReplicas"))
        total = _int(status.get("replicas"))
        summary = f"{available}/{want} available"
        if any(c.startswith("Progressing=False ProgressDeadlineExceeded") for c in bad):
            return Readiness(key, "failed", summary, want, available, conditions=bad)
        ok = _generation_seen(live, status) and updated >= want and available >= want and total <= updated
        if not ok and total > updated:
            summary += f", {total - updated} old replica(s) still running"
        return Readiness(key, "ready" if ok else "progressing", summary, want, available, conditions=bad)
    if (api, kind) == ("apps/v1", "StatefulSet"):
        want = _int(spec.get("replicas"), 1)
        ready, updated = _int(status.get("readyReplicas")), _int(status.get("updatedReplicas"))
        revisions_ok = status.get("currentRevision") == status.get("updateRevision")
        ok = _generation_seen(live, status) and ready >= want and (updated >= want or revisions_ok)
        return Readiness(
            key, "ready" if ok else "progressing", f"{ready}/{want} ready", want, ready, conditions=bad
        )
    if (api, kind) == ("apps/v1", "DaemonSet"):
        want = _int(status.get("desiredNumberScheduled"))
        ready = _int(status.get("numberReady"))
        ok = (
            _generation_seen(live, status)
            and ready >= want
            and _int(status.get("updatedNumberScheduled")) >= want
        )
        return Readiness(
            key, "ready" if ok else "progressing", f"{ready}/{want} ready", want, ready, conditions=bad
        )
    if (api, kind) == ("batch/v1", "Job"):
        want = _int(spec.get("completions"), 1)
        done = _int(status.get("succeeded"))
        if any(c.startswith("Failed=True") for c in bad):
            return Readiness(
                key,
                "failed",
                f"failed after {_int(status.get('failed'))} attempt(s)",
                want,
                done,
                conditions=bad,
            )
        if done >= want:
            return Readiness(key, "ready", "complete", want, done)
        active, failed = _int(status.get("active")), _int(status.get("failed"))
        summary = f"{done}/{want} complete, {active} running" + (
            f", {failed} failed attempt(s)" if failed else ""
        )
        return Readiness(key, "progressing", summary, want, done, conditions=bad)
    if (api, kind) == ("postgresql.cnpg.io/v1", "Cluster"):
        want = _int(spec.get("instances"), 1)
        ready = _int(status.get("readyInstances"))
        phase = str(status.get("phase") or "no status yet")
        primary = status.get("currentPrimary") or None
        summary = f"{ready}/{want} instances ready, {phase}" + (f", primary {primary}" if primary else "")
        if status.get("phaseReason"):
            summary += f" ({status['phaseReason']})"
        ok = ready >= want and phase == CNPG_HEALTHY
        return Readiness(
            key, "ready" if ok else "progressing", summary, want, ready, primary=primary, conditions=bad
        )
    return Readiness(key, "present", "exists")


def pod_selector(live: Mapping[str, Any]) -> str | None:
    """The label selector of the pods an object runs (None for kinds without pods)."""
    kind = live.get("kind")
    name = (live.get("metadata") or {}).get("name", "")
    if kind == "Cluster":
        return f"cnpg.io/cluster={name}"
    match = ((live.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if kind == "Job" and not match:
        return f"job-name={name}"
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job") and match:
        return ",".join(f"{k}={v}" for k, v in sorted(match.items()))
    return None


def _pod_problems(pod: Mapping[str, Any]) -> list[str]:
    name = (pod.get("metadata") or {}).get("name", "?")
    status = pod.get("status") or {}
    out = []
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            out.append(
                f"pod {name}: not scheduled ({c.get('reason', '')}): {c.get('message', '')}".rstrip(": ")
            )
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        state = cs.get("state") or {}
        if "waiting" in state and (state["waiting"] or {}).get("reason") not in (None, "ContainerCreating"):
            w = state["waiting"]
            out.append(
                f"pod {name}: container {cs.get('name')}: {w.get('reason')}: {w.get('message', '')}".rstrip(
                    ": "
                )
            )
        last = (cs.get("lastState") or {}).get("terminated")
        if last and _int(last.get("exitCode")) != 0:
            out.append(
                f"pod {name}: container {cs.get('name')} last exited {last.get('exitCode')} "
                f"({last.get('reason', '')}), restarts {cs.get('restartCount', 0)}"
            )
    if not out:
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        if ready is not None and ready.get("status") != "True":
            out.append(
                f"pod {name}: {status.get('phase', '?')}, not ready"
                + (f" ({ready.get('reason')}: {ready.get('message', '')})" if ready.get("reason") else "")
            )
    return out


def _event_lines(events: Sequence[Mapping[str, Any]], limit: int) -> list[str]:
    warnings = [e for e in events if e.get("type") == "Warning"]
    out = []
    for e in warnings[-limit:]:
        count = _int(e.get("count"), 1)
        out.append(
            f"event {e.get('reason', '?')} on {(e.get('involvedObject') or {}).get('name', '?')}: "
            f"{str(e.get('message', '')).strip()}" + (f" (x{count})" if count > 1 else "")
        )
    return out


def explain(
    cluster: Cluster, readiness: Readiness, live: Mapping[str, Any] | None, max_pods: int = 3
) -> list[str]:
    """Why an object is not ready: its bad conditions, its unready pods, recent warning events.

    Best effort: a failing lookup adds a line saying so instead of raising.
    """
    lines = [f"condition {c}" for c in readiness.conditions]
    if live is None:
        return lines or ["not found in the cluster"]
    ns = readiness.key[2]
    kind, name = readiness.key[1], readiness.key[3]
    try:
        events = cluster.events(ns, kind, name)
        lines.extend(_event_lines(events, 3))
        selector = pod_selector(live)
        if selector:
            pods = [
                p for p in cluster.list_objects("v1", "Pod", ns, label_selector=selector) if _pod_problems(p)
            ]
            for p in pods[:max_pods]:
                lines.extend(_pod_problems(p))
                pod_name = (p.get("metadata") or {}).get("name", "")
                lines.extend(_event_lines(cluster.events(ns, "Pod", pod_name), 2))
            if len(pods) > max_pods:
                lines.append(f"... and {len(pods) - max_pods} more pod(s) not ready")
            if not pods and readiness.state != "ready" and not lines:
                lines.append(f"no pod matches {selector} yet")
    except ClusterError as exc:
        lines.append(f"(could not read pods or events: {exc})")
    return lines


class ReadinessTimeoutError(ClusterError):
    """Objects were not ready by the deadline; ``not_ready`` and ``reasons`` say which and why."""

    verb = "timed out after {seconds:.0f} s waiting for readiness"

    def __init__(self, seconds: float, not_ready: list[Readiness], reasons: Mapping[Key, list[str]]) -> None:
        self.seconds = seconds
        self.not_ready = not_ready
        self.reasons = dict(reasons)
        lines = [self.verb.format(seconds=seconds) + f"; {len(not_ready)} object(s) not ready:"]
        for r in not_ready:
            lines.append(f"  {r.label} ({r.state}): {r.summary}")
            lines.extend(f"      {line}" for line in self.reasons.get(r.key, []))
        super().__init__("\n".join(lines))


class ReadinessFailedError(ReadinessTimeoutError):
    """An object reached a state it does not leave by itself (a failed Job, a stalled rollout)."""

    verb = "gave up after {seconds:.0f} s: a rollout failed"


@dataclass
class WaitResult:
    """The final readiness of every object waited for, and how long it took."""

    objects: list[Readiness] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3), "objects": [r.to_dict() for r in self.objects]}


def wait_ready(
    cluster: Cluster,
    objects: Iterable[Mapping[str, Any]],
    *,
    timeout: float = 600.0,
    interval: float = 1.0,
    max_interval: float = 5.0,
    on_change: Callable[[Readiness], None] | None = None,
) -> WaitResult:
    """Poll the workloads among ``objects`` until every one is ready.

    ``on_change`` sees each object's readiness at first and whenever its state or summary
    changes (the progress display). :class:`ReadinessFailedError` as soon as one fails for
    good; :class:`ReadinessTimeoutError` after ``timeout`` s, naming what is not ready and why.
    """
    watched = [o for o in objects if (str(o.get("apiVersion")), str(o.get("kind"))) in WORKLOAD_KINDS]
    started = time.monotonic()
    deadline = started + timeout
    seen: dict[Key, tuple[str, str]] = {}
    while True:
        current: list[tuple[Readiness, dict[str, Any] | None]] = []
        for obj in watched:
            live = cluster.get_object(obj)
            r = assess(live, object_key(obj))
            current.append((r, live))
            if on_change is not None and seen.get(r.key) != (r.state, r.summary):
                on_change(r)
            seen[r.key] = (r.state, r.summary)
        failed = [(r, live) for r, live in current if r.state == "failed"]
        pending = [(r, live) for r, live in current if not r.ok]
        elapsed = time.monotonic() - started
        if not pending:
            return WaitResult([r for r, _ in current], elapsed)
        if failed or time.monotonic() >= deadline:
            culprits = failed or pending
            reasons = {r.key: explain(cluster, r, live) for r, live in culprits}
            error = ReadinessFailedError if failed else ReadinessTimeoutError
            raise error(elapsed, [r for r, _ in culprits], reasons)
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, max_interval)
