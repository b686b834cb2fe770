"""Faults injected through the Kubernetes API, and the waits that measure recovery.

The cluster counterparts of :mod:`dataplat.dr.faults`: where the local drills ``kill -9`` a
process, these delete the pod that runs it (grace period 0 by default: the container is
killed, as a crash would), scale a workload or cordon a node. Recovery is the platform's
business (CloudNativePG fails over, the StatefulSet and Deployment controllers replace
pods); the ``wait_*`` helpers only poll with a deadline and backoff and measure the time
from the injection (monotonic clock, taken just before the API call) to the first poll
that sees the platform recovered, as the local drills do.

Each injection returns an :class:`Injected` record (what, when, the victim's uid) that the
matching wait takes; each wait returns a :class:`Recovery` with the seconds measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from dataplat.k8s.cluster import Cluster, ClusterError
from dataplat.k8s.readiness import assess

__all__ = [
    "Injected",
    "Recovery",
    "cordon",
    "delete_pod",
    "delete_pool_pod",
    "delete_primary_pod",
    "delete_stream_pod",
    "pod_ready",
    "primary_pod",
    "promote",
    "scale",
    "uncordon",
    "wait_new_primary",
    "wait_pod_replaced",
    "wait_workload_ready",
]

T = TypeVar("T")

CNPG = "postgresql.cnpg.io/v1"


@dataclass(frozen=True)
class Injected:
    """A fault as injected: what, on which object, when (wall and monotonic clocks)."""

    kind: str
    target: str
    namespace: str
    t: float
    """Wall clock (``time.time()``), for logs and reports."""
    t_mono: float
    """Monotonic clock, the start of every recovery measurement."""
    uid: str = ""
    """The victim pod's uid: a pod recreated under the same name has another."""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "namespace": self.namespace,
            "t": self.t,
            "uid": self.uid,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Recovery:
    """What recovered and the seconds from the injection to the first poll that saw it."""

    seconds: float
    detail: str
    value: str = ""
    """e.g. the new primary's pod name."""

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3), "detail": self.detail, "value": self.value}


def _poll(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.1,
    max_interval: float = 1.0,
) -> T:
    """``predicate()`` until truthy, with backoff; ClusterError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ClusterError as exc:  # the API may hiccup during the very fault we inject
            last = exc
        if time.monotonic() >= deadline:
            raise ClusterError(
                f"timed out after {timeout:.0f} s waiting for {what}"
                + (f" (last error: {last})" if last else "")
            )
        time.sleep(interval)
        interval = min(interval * 1.5, max_interval)


def _pod_ready(pod: Mapping[str, Any] | None) -> bool:
    if not pod or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_ready(pod: Mapping[str, Any] | None) -> bool:
    """Whether a pod exists, is not being deleted and reports the Ready condition."""
    return _pod_ready(pod)


def _uid(obj: Mapping[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("uid") or "")


def delete_pod(
    cluster: Cluster,
    namespace: str,
    name: str,
    *,
    kind: str = "pod-delete",
    grace_period_s: int = 0,
    detail: str = "",
) -> Injected:
    """Delete one pod (grace period 0: killed, as in a crash); its uid is kept to spot the replacement."""
    pod = cluster.get("v1", "Pod", name, namespace)
    if pod is None:
        raise ClusterError(f"pod {name} does not exist in namespace {namespace}; nothing to delete")
    t, t_mono = time.time(), time.monotonic()
    cluster.delete("v1", "Pod", name, namespace, grace_period_s=grace_period_s)
    return Injected(
        kind,
        name,
        namespace,
        t,
        t_mono,
        _uid(pod),
        detail or f"pod {name} deleted with grace period {grace_period_s} s",
    )


# -- warehouse (CloudNativePG) ---------------------------------------------------------------------------


def primary_pod(cluster: Cluster, namespace: str, cluster_name: str = "warehouse") -> str:
    """The pod of the CloudNativePG primary (``status.currentPrimary``)."""
    live = cluster.get(CNPG, "Cluster", cluster_name, namespace)
    if live is None:
        raise ClusterError(f"no CloudNativePG Cluster {cluster_name} in namespace {namespace}")
    primary = (live.get("status") or {}).get("currentPrimary")
    if not primary:
        raise ClusterError(f"Cluster {cluster_name} reports no status.currentPrimary yet (not bootstrapped?)")
    return str(primary)


def delete_primary_pod(
    cluster: Cluster, namespace: str, cluster_name: str = "warehouse", grace_period_s: int = 0
) -> Injected:
    """Delete the pod of the warehouse's primary: CloudNativePG promotes a replica."""
    primary = primary_pod(cluster, namespace, cluster_name)
    return delete_pod(
        cluster,
        namespace,
        primary,
        kind="primary-pod-delete",
        grace_period_s=grace_period_s,
        detail=f"primary {primary} of Cluster {cluster_name} deleted (grace {grace_period_s} s)",
    )


def wait_new_primary(
    cluster: Cluster, injected: Injected, cluster_name: str = "warehouse", timeout: float = 120.0
) -> Recovery:
    """Until the Cluster reports a primary again whose pod is Ready and is not the deleted pod
    (another instance promoted, or the same name recreated), and the switch is complete
    (``targetPrimary == currentPrimary``)."""
    ns = injected.namespace

    def new_primary() -> str | None:
        live = cluster.get(CNPG, "Cluster", cluster_name, ns)
        status = (live or {}).get("status") or {}
        current = status.get("currentPrimary")
        if not current or status.get("targetPrimary", current) != current:
            return None
        pod = cluster.get("v1", "Pod", str(current), ns)
        if not _pod_ready(pod) or (current == injected.target and _uid(pod) == injected.uid):
            return None
        return str(current)

    primary = _poll(new_primary, timeout, f"a new primary of Cluster {cluster_name}")
    seconds = time.monotonic() - injected.t_mono
    moved = "promoted" if primary != injected.target else "recreated"
    return Recovery(seconds, f"primary {primary} {moved} after {injected.target} was deleted", primary)


def promote(cluster: Cluster, namespace: str, instance: str, cluster_name: str = "warehouse") -> Injected:
    """A planned switchover to ``instance``, as ``kubectl cnpg promote`` asks for it: the
    Cluster's ``status.targetPrimary`` set through the status subresource; CloudNativePG
    demotes the primary and promotes the instance. The record names the old primary."""
    old = primary_pod(cluster, namespace, cluster_name)
    if instance == old:
        raise ClusterError(f"{instance} is already the primary of Cluster {cluster_name}")
    if not _pod_ready(cluster.get("v1", "Pod", instance, namespace)):
        raise ClusterError(f"instance {instance} of Cluster {cluster_name} has no ready pod to promote")
    pod = cluster.get("v1", "Pod", old, namespace)
    t, t_mono = time.time(), time.monotonic()
    patch = {"status": {"targetPrimary": instance}}
    cluster.patch(CNPG, "Cluster", cluster_name, namespace, patch, subresource="status")
    detail = f"switchover of Cluster {cluster_name}: {old} -> {instance}"
    return Injected("switchover", old, namespace, t, t_mono, _uid(pod), detail)


# -- stream (NATS StatefulSet) and serving pools (Deployments) -----------------------------------------


def delete_stream_pod(
    cluster: Cluster, namespace: str, statefulset: str = "stream", ordinal: int = 0, grace_period_s: int = 0
) -> Injected:
    """Delete pod ``<statefulset>-<ordinal>`` of the NATS StatefulSet (a broker crash)."""
    name = f"{statefulset}-{ordinal}"
    return delete_pod(cluster, namespace, name, kind="broker-pod-delete", grace_period_s=grace_period_s)


def wait_pod_replaced(cluster: Cluster, injected: Injected, timeout: float = 120.0) -> Recovery:
    """Until a pod of the same name (a StatefulSet's stable identity) with a new uid is Ready."""

    def replaced() -> bool:
        pod = cluster.get("v1", "Pod", injected.target, injected.namespace)
        return _pod_ready(pod) and _uid(pod) != injected.uid

    _poll(replaced, timeout, f"pod {injected.target} to be replaced and ready")
    return Recovery(
        time.monotonic() - injected.t_mono, f"pod {injected.target} back and ready", injected.target
    )


def _pods_of(cluster: Cluster, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    live = cluster.get("apps/v1", kind, name, namespace)
    if live is None:
        raise ClusterError(f"no {kind} {name} in namespace {namespace}")
    match = ((live.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
    return cluster.list_objects("v1", "Pod", namespace, label_selector=selector)


def delete_pool_pod(
    cluster: Cluster, namespace: str, deployment: str, pod: str | None = None, grace_period_s: int = 0
) -> Injected:
    """Delete one ready pod of a serving pool's Deployment (``pod``, default: the first by name)."""
    pods = sorted(
        (p for p in _pods_of(cluster, namespace, "Deployment", deployment) if _pod_ready(p)),
        key=lambda p: p["metadata"]["name"],
    )
    if pod is not None:
        pods = [p for p in pods if p["metadata"]["name"] == pod]
    if not pods:
        raise ClusterError(f"Deployment {deployment} has no ready pod" + (f" named {pod}" if pod else ""))
    victim = pods[0]["metadata"]["name"]
    return delete_pod(
        cluster,
        namespace,
        victim,
        kind="worker-pod-delete",
        grace_period_s=grace_period_s,
        detail=f"pod {victim} of Deployment {deployment} deleted",
    )


def wait_workload_ready(
    cluster: Cluster, injected: Injected, kind: str, name: str, timeout: float = 120.0
) -> Recovery:
    """Until the Deployment or StatefulSet ``name`` is ready again (all replicas available at
    its current generation) and the deleted pod, if any, is not among its ready pods."""

    def ready() -> bool:
        live = cluster.get("apps/v1", kind, name, injected.namespace)
        if not assess(live, ("apps/v1", kind, injected.namespace, name)).ok:
            return False
        if not injected.uid:
            return True
        pods = _pods_of(cluster, injected.namespace, kind, name)
        return not any(_uid(p) == injected.uid and _pod_ready(p) for p in pods)

    _poll(ready, timeout, f"{kind} {name} to be ready")
    live = cluster.get("apps/v1", kind, name, injected.namespace) or {}
    replicas = (live.get("status") or {}).get("readyReplicas", 0)
    return Recovery(
        time.monotonic() - injected.t_mono, f"{kind}/{name} ready with {replicas} replica(s)", str(replicas)
    )


def scale(cluster: Cluster, namespace: str, kind: str, name: str, replicas: int) -> Injected:
    """Set a Deployment's or StatefulSet's replicas through its ``scale`` subresource (as an
    autoscaler does; dataplat's applied ``spec.replicas`` is not taken over)."""
    before = cluster.get("apps/v1", kind, name, namespace)
    if before is None:
        raise ClusterError(f"no {kind} {name} in namespace {namespace}")
    was = (before.get("spec") or {}).get("replicas")
    t, t_mono = time.time(), time.monotonic()
    cluster.patch("apps/v1", kind, name, namespace, {"spec": {"replicas": replicas}}, subresource="scale")
    return Injected("scale", f"{kind}/{name}", namespace, t, t_mono, "", f"replicas {was} -> {replicas}")


# -- nodes ---------------------------------------------------------------------------------------------


def _set_unschedulable(cluster: Cluster, node: str, value: bool) -> Injected:
    if cluster.get("v1", "Node", node) is None:
        raise ClusterError(f"no node {node} in the cluster")
    t, t_mono = time.time(), time.monotonic()
    cluster.patch("v1", "Node", node, None, {"spec": {"unschedulable": True if value else None}})
    return Injected(
        "cordon" if value else "uncordon",
        node,
        "",
        t,
        t_mono,
        "",
        f"node {node} {'cordoned' if value else 'uncordoned'}",
    )


def cordon(cluster: Cluster, node: str) -> Injected:
    """Mark a node unschedulable (``kubectl cordon``): running pods stay, new ones go elsewhere."""
    return _set_unschedulable(cluster, node, True)


def uncordon(cluster: Cluster, node: str) -> Injected:
    """Make a cordoned node schedulable again."""
    return _set_unschedulable(cluster, node, False)
