"""``up``, ``status`` and ``down`` of the Kubernetes target, on top of :mod:`~dataplat.k8s.cluster`.

:func:`up` checks that the cluster serves every kind the render needs (one error naming
every missing operator, before anything changes), reads the live objects, computes the
diff (:func:`~dataplat.k8s.apply.plan_apply`), then applies what changed with server-side
apply in dependency order (:data:`KIND_ORDER`: namespaces, policies, config, services,
workloads, then custom resources of operators), prunes the platform's objects that are no
longer rendered, and waits for readiness (:mod:`~dataplat.k8s.readiness`). ``dry_run``
stops after the diff: only GET and LIST requests are made.

Two rules keep repeated ``up`` runs quiet:

* a workload scaled by an autoscaler (HPA or KEDA ScaledObject ``scaleTargetRef``) keeps
  its live ``spec.replicas`` while that is within the autoscaler's bounds, so ``up`` never
  undoes a scale-out;
* objects another controller owns (``ownerReferences``: pods, ReplicaSets, PVCs of a
  StatefulSet, what CloudNativePG creates) are never pruned, whatever labels they carry.

:func:`down` deletes in reverse order. PersistentVolumeClaims are kept unless ``purge``:
the namespace is not deleted, StatefulSet claims stay (Kubernetes' default retention) and
CloudNativePG's claims are released from their ``Cluster`` owner before it is deleted, so
garbage collection leaves them. ``purge`` deletes the claims and the namespace too.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dataplat.k8s.apply import PART_OF, ApplyDiff, Key, object_key, plan_apply
from dataplat.k8s.cluster import Cluster, ClusterError, kind_label
from dataplat.k8s.readiness import (
    WORKLOAD_KINDS,
    Readiness,
    ReadinessTimeoutError,
    WaitResult,
    assess,
    bad_conditions,
    wait_ready,
)

__all__ = [
    "KIND_ORDER",
    "PRUNE_KINDS",
    "ClusterStatus",
    "DownResult",
    "UpResult",
    "apply_order",
    "cluster_status",
    "down",
    "plan",
    "up",
]

KIND_ORDER: tuple[str, ...] = (
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "NetworkAttachmentDefinition",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "Ingress",
)
"""Apply order by kind (Helm's install order, with Multus networks before the pods that attach
to them); kinds not listed (custom resources: CloudNativePG ``Cluster``, ``ServiceMonitor``,
``ScaledObject`` ...) come after, in render order. ``down`` uses the reverse."""

PRUNE_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("v1", "Secret"),
    ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition"),
    ("keda.sh/v1alpha1", "ScaledObject"),
)
"""Kinds searched for objects of the platform that are no longer rendered (the charts' kinds;
kinds the cluster does not serve are skipped). Namespaces and claims are never pruned."""

Step = Callable[[str, str, str], None]
"""Progress callback: (action, object label, detail)."""


def _rank(kind: str) -> int:
    try:
        return KIND_ORDER.index(kind)
    except ValueError:
        return len(KIND_ORDER)


def apply_order(objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``objects`` sorted by :data:`KIND_ORDER`, render order kept within a kind."""
    return [dict(o) for o in sorted(objects, key=lambda o: _rank(str(o.get("kind", ""))))]


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _owned(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("ownerReferences"))


def autoscaled(objects: Iterable[Mapping[str, Any]]) -> dict[Key, tuple[int, int]]:
    """Workloads an HPA or a KEDA ScaledObject scales -> (min, max) replicas."""
    out: dict[Key, tuple[int, int]] = {}
    for o in objects:
        spec = o.get("spec") or {}
        ns = str((o.get("metadata") or {}).get("namespace") or "")
        ref = spec.get("scaleTargetRef") or {}
        if o.get("kind") == "HorizontalPodAutoscaler":
            bounds = (int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1)))
        elif o.get("kind") == "ScaledObject":
            bounds = (int(spec.get("minReplicaCount", 0)), int(spec.get("maxReplicaCount", 100)))
        else:
            continue
        key = (
            str(ref.get("apiVersion", "apps/v1")),
            str(ref.get("kind", "Deployment")),
            ns,
            str(ref.get("name")),
        )
        out[key] = bounds
    return out


def with_autoscaled_replicas(
    objects: Sequence[Mapping[str, Any]], live: Mapping[Key, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``objects``, where an autoscaled workload's ``spec.replicas`` is the live one when in bounds."""
    scaled = autoscaled(objects)
    out = []
    for o in objects:
        key = object_key(o)
        current = live.get(key)
        if key in scaled and current is not None and "replicas" in (o.get("spec") or {}):
            replicas = (current.get("spec") or {}).get("replicas")
            low, high = scaled[key]
            if isinstance(replicas, int) and low <= replicas <= high:
                o = copy.deepcopy(dict(o))
                o["spec"]["replicas"] = replicas
        out.append(dict(o))
    return out


@dataclass
class Plan:
    """The objects to apply (in order), the live objects and the diff between them."""

    desired: list[dict[str, Any]]
    live: dict[Key, dict[str, Any]]
    diff: ApplyDiff


def live_objects(
    cluster: Cluster, objects: Sequence[Mapping[str, Any]], namespace: str
) -> tuple[dict[Key, dict[str, Any]], list[dict[str, Any]]]:
    """The live counterpart of each rendered object, and the platform's other live objects
    (labelled part-of dataplat, in ``namespace``, owned by no controller) that prune may delete."""
    live: dict[Key, dict[str, Any]] = {}
    for o in objects:
        current = cluster.get_object(o)
        if current is not None:
            live[object_key(o)] = current
    wanted = {object_key(o) for o in objects}
    extra: list[dict[str, Any]] = []
    selector = f"{PART_OF[0]}={PART_OF[1]}"
    for api_version, kind in PRUNE_KINDS:
        if not cluster.serves(api_version, kind):
            continue
        for item in cluster.list_objects(api_version, kind, namespace, label_selector=selector):
            key = object_key(item)
            if key not in wanted and not _owned(item) and key[2] == namespace:
                extra.append(item)
    extra.sort(key=lambda o: -_rank(str(o.get("kind", ""))))  # dependents first, as down deletes
    return live, extra


def plan(
    cluster: Cluster, objects: Sequence[Mapping[str, Any]], namespace: str, *, prune: bool = True
) -> Plan:
    """What ``up`` would change: MissingAPIError first if a kind is not served, then the diff."""
    cluster.require(objects)
    ordered = apply_order(objects)
    live, extra = live_objects(cluster, ordered, namespace)
    desired = with_autoscaled_replicas(ordered, live)
    diff = plan_apply(desired, [*live.values(), *(extra if prune else [])])
    return Plan(desired, live, diff)


@dataclass
class UpResult:
    """What ``up --target k8s`` did (or, with ``dry_run``, would do)."""

    host: str
    context: str | None
    namespace: str
    dry_run: bool
    diff: ApplyDiff
    applied: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    forced: bool = False
    readiness: WaitResult | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": "k8s",
            "ok": self.ok,
            "host": self.host,
            "context": self.context,
            "namespace": self.namespace,
            "dry_run": self.dry_run,
            "diff": self.diff.to_dict(),
            "applied": self.applied,
            "recreated": self.recreated,
            "pruned": self.pruned,
            "forced": self.forced,
            "readiness": self.readiness.to_dict() if self.readiness else None,
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }


def _wait_gone(cluster: Cluster, keys: Sequence[Key], timeout: float) -> list[Key]:
    """Poll until the objects are gone; the keys still there at the deadline."""
    deadline = time.monotonic() + timeout
    interval = 0.2
    remaining = list(keys)
    while remaining:
        remaining = [k for k in remaining if cluster.get(k[0], k[1], k[3], k[2] or None) is not None]
        if not remaining or time.monotonic() >= deadline:
            break
        time.sleep(interval)
        interval = min(interval * 1.5, 2.0)
    return remaining


def up(
    cluster: Cluster,
    objects: Sequence[Mapping[str, Any]],
    namespace: str,
    *,
    dry_run: bool = False,
    force: bool = False,
    prune: bool = True,
    wait: bool = True,
    timeout: float = 600.0,
    poll_interval: float = 1.0,
    on_step: Step | None = None,
    on_ready: Callable[[Readiness], None] | None = None,
) -> UpResult:
    """Apply ``objects`` (rendered, any order) to the cluster and wait until they are ready.

    Raises MissingAPIError (nothing applied) and ApplyConflictError (with the hint to
    force); a readiness timeout is returned in ``error`` with every reason.
    """
    started = time.monotonic()
    step = on_step or (lambda _a, _l, _d: None)
    p = plan(cluster, objects, namespace, prune=prune)
    result = UpResult(cluster.host, cluster.context, namespace, dry_run, p.diff, forced=force)
    if dry_run:
        result.seconds = time.monotonic() - started
        return result
    by_key = {object_key(o): o for o in p.desired}
    for change in p.diff.changes:
        api, kind, ns, name = change.key
        label = f"{kind}/{name}"
        if change.action in ("create", "update"):
            obj = by_key[change.key]
            if change.action == "update" and kind == "Job":
                # a Job's pod template is immutable: run the new one instead of failing the apply
                cluster.delete(api, kind, name, ns or None, propagation="Background")
                if _wait_gone(cluster, [change.key], 60.0):
                    raise ClusterError(f"{kind_label(obj)} changed and its old run is not gone after 60 s")
                result.recreated.append(label)
            cluster.apply(obj, force=force)
            result.applied.append(label)
            step(change.action, label, ", ".join(f.path for f in change.fields[:4]))
        elif change.action == "prune":
            if cluster.delete(api, kind, name, ns or None):
                result.pruned.append(label)
            step("prune", label, "no longer rendered")
    if wait:
        try:
            result.readiness = wait_ready(
                cluster, p.desired, timeout=timeout, interval=poll_interval, on_change=on_ready
            )
        except ReadinessTimeoutError as exc:
            result.error = str(exc)
    result.seconds = time.monotonic() - started
    return result


# -- status -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectStatus:
    """One workload (or autoscaler) of the platform as the cluster reports it."""

    component: str
    readiness: Readiness
    rendered: bool = True
    """False: live and labelled part-of dataplat, but the inventory no longer renders it."""

    def to_dict(self) -> dict[str, Any]:
        return {"component": self.component, "rendered": self.rendered, **self.readiness.to_dict()}


@dataclass
class ClusterStatus:
    """``status --target k8s``: every workload's readiness, the warehouse primary, autoscalers."""

    host: str
    context: str | None
    namespace: str
    objects: list[ObjectStatus] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """Every rendered workload is ready."""
        return all(o.readiness.ok for o in self.objects if o.rendered)

    @property
    def primary(self) -> str | None:
        """The CloudNativePG primary (``status.currentPrimary``) of the warehouse."""
        return next((o.readiness.primary for o in self.objects if o.readiness.primary), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": "k8s",
            "host": self.host,
            "context": self.context,
            "namespace": self.namespace,
            "healthy": self.healthy,
            "warehouse_primary": self.primary,
            "objects": [o.to_dict() for o in self.objects],
        }


def _autoscaler_readiness(live: Mapping[str, Any] | None, key: Key) -> Readiness:
    if live is None:
        return assess(None, key)
    spec, status = live.get("spec") or {}, live.get("status") or {}
    if live.get("kind") == "ScaledObject":
        low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", "?")
        active: dict[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Active"), {}
        )
        summary = f"bounds {low}-{high}, active={active.get('status', '?')}"
        return Readiness(key, "present", summary)
    current, desired = status.get("currentReplicas"), status.get("desiredReplicas")
    summary = f"{'?' if current is None else current} replicas, desired {'?' if desired is None else desired}"
    summary += f" (bounds {spec.get('minReplicas', 1)}-{spec.get('maxReplicas', '?')})"
    return Readiness(key, "present", summary, desired, current, conditions=bad_conditions(status))


def cluster_status(cluster: Cluster, manifests: Sequence[Any], namespace: str) -> ClusterStatus:
    """Readiness of every rendered workload and autoscaler (``manifests``: render's Manifest
    records), plus live workloads of the platform that are no longer rendered."""
    report = ClusterStatus(cluster.host, cluster.context, namespace)
    watched = {
        *WORKLOAD_KINDS,
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("keda.sh/v1alpha1", "ScaledObject"),
    }
    rendered: set[Key] = set()
    for m in manifests:
        key = object_key(m.obj)
        if (key[0], key[1]) not in watched:
            continue
        rendered.add(key)
        live = cluster.get_object(m.obj) if cluster.serves(key[0], key[1]) else None
        r = (
            _autoscaler_readiness(live, key)
            if key[1] in ("HorizontalPodAutoscaler", "ScaledObject")
            else assess(live, key)
        )
        report.objects.append(ObjectStatus(m.component, r))
    selector = f"{PART_OF[0]}={PART_OF[1]}"
    for api_version, kind in sorted(WORKLOAD_KINDS):
        if not cluster.serves(api_version, kind):
            continue
        for item in cluster.list_objects(api_version, kind, namespace, label_selector=selector):
            if object_key(item) not in rendered and not _owned(item):
                component = ((item.get("metadata") or {}).get("labels") or {}).get(
                    "app.kubernetes.io/name", "?"
                )
                report.objects.append(ObjectStatus(component, assess(item), rendered=False))
    return report


# -- down -------------------------------------------------------------------------------------------


@dataclass
class DownResult:
    """What ``down --target k8s`` deleted, kept and could not remove."""

    host: str
    context: str | None
    namespace: str
    purge: bool
    deleted: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    kept_claims: list[str] = field(default_factory=list)
    deleted_claims: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.remaining

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": "k8s",
            "ok": self.ok,
            "host": self.host,
            "context": self.context,
            "namespace": self.namespace,
            "purge": self.purge,
            "deleted": self.deleted,
            "absent": self.absent,
            "kept_claims": self.kept_claims,
            "deleted_claims": self.deleted_claims,
            "remaining": self.remaining,
            "seconds": round(self.seconds, 3),
        }


def _claims_of(cluster: Cluster, obj: Mapping[str, Any], namespace: str) -> list[dict[str, Any]]:
    """The PersistentVolumeClaims a StatefulSet or a CloudNativePG Cluster made."""
    kind = obj.get("kind")
    name = (obj.get("metadata") or {}).get("name", "")
    if kind == "Cluster":
        selector = f"cnpg.io/cluster={name}"
    elif kind == "StatefulSet":
        match = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not match:
            return []
        selector = _selector(match)
    else:
        return []
    return cluster.list_objects("v1", "PersistentVolumeClaim", namespace, label_selector=selector)


def _release_claim(cluster: Cluster, claim: Mapping[str, Any], owner: Mapping[str, Any]) -> None:
    """Drop ``owner`` from the claim's ownerReferences so deleting the owner leaves the claim."""
    meta = claim.get("metadata") or {}
    refs = meta.get("ownerReferences") or []
    owner_meta = owner.get("metadata") or {}
    keep = [
        r
        for r in refs
        if not (r.get("kind") == owner.get("kind") and r.get("name") == owner_meta.get("name"))
    ]
    if len(keep) != len(refs):
        cluster.patch(
            "v1",
            "PersistentVolumeClaim",
            str(meta["name"]),
            meta.get("namespace"),
            {"metadata": {"ownerReferences": keep or None}},
        )


def down(
    cluster: Cluster,
    objects: Sequence[Mapping[str, Any]],
    namespace: str,
    *,
    purge: bool = False,
    timeout: float = 300.0,
    on_step: Step | None = None,
) -> DownResult:
    """Delete the platform's objects in reverse apply order (live leftovers of earlier renders
    first); keep PersistentVolumeClaims and the namespace unless ``purge``."""
    started = time.monotonic()
    step = on_step or (lambda _a, _l, _d: None)
    result = DownResult(cluster.host, cluster.context, namespace, purge)
    served = [o for o in objects if cluster.serves(str(o.get("apiVersion")), str(o.get("kind")))]
    ordered = apply_order(served)
    _, extra = live_objects(cluster, ordered, namespace)
    namespaces = [o for o in ordered if o.get("kind") == "Namespace"]
    targets = [*extra, *reversed([o for o in ordered if o.get("kind") != "Namespace"])]
    deleted_keys: list[Key] = []
    for obj in targets:
        api, kind, ns, name = object_key(obj)
        for claim in _claims_of(cluster, obj, namespace):
            claim_name = f"PersistentVolumeClaim/{claim['metadata']['name']}"
            if purge:
                continue
            if kind == "Cluster":
                _release_claim(cluster, claim, obj)
            if claim_name not in result.kept_claims:
                result.kept_claims.append(claim_name)
        if cluster.delete(api, kind, name, ns or None):
            result.deleted.append(f"{kind}/{name}")
            deleted_keys.append((api, kind, ns, name))
            step("delete", f"{kind}/{name}", "")
        else:
            result.absent.append(f"{kind}/{name}")
    if purge:
        claims = cluster.list_objects("v1", "PersistentVolumeClaim", namespace)
        platform = [
            c
            for c in claims
            if ((c.get("metadata") or {}).get("labels") or {}).get(PART_OF[0]) == PART_OF[1]
            or "cnpg.io/cluster" in ((c.get("metadata") or {}).get("labels") or {})
        ]
        for c in platform:
            if cluster.delete("v1", "PersistentVolumeClaim", c["metadata"]["name"], namespace):
                result.deleted_claims.append(f"PersistentVolumeClaim/{c['metadata']['name']}")
                step("delete", f"PersistentVolumeClaim/{c['metadata']['name']}", "purge")
        for obj in namespaces:
            api, kind, ns, name = object_key(obj)
            if cluster.delete(api, kind, name, None):
                result.deleted.append(f"{kind}/{name}")
                deleted_keys.append((api, kind, ns, name))
                step("delete", f"{kind}/{name}", "purge: everything left in it goes too")
    gone_by = max(0.0, timeout - (time.monotonic() - started))
    result.remaining = [f"{k[1]}/{k[3]}" for k in _wait_gone(cluster, deleted_keys, gone_by)]
    result.seconds = time.monotonic() - started
    return result
