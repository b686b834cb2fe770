"""The Kubernetes HorizontalPodAutoscaler rule (``autoscaling/v2``), pure and deterministic.

This is the controller of ``kubernetes/pkg/controller/podautoscaler`` written out in Python
so that a local pool supervisor scales exactly as a cluster will, from the same parameters:

1. **Replica calculator** (``replica_calculator.go``): for each metric,
   ``usageRatio = currentMetricValue / target`` and
   ``desired = ceil(usageRatio × readyReplicas)``; no change while
   ``|1 − usageRatio| <= tolerance`` (0.1). Per-replica values are averaged in milli-units
   with integer division as the controller does. Replicas without a sample count as using
   the target on a scale-down and 0 on a scale-up; not-ready replicas count as 0 on a
   scale-up; when that reverses the direction, nothing changes.
2. **Several metrics** (``computeReplicasForMetrics``): the largest recommendation wins; if
   a metric could not be read and the others would scale down, nothing changes.
3. **Bounds first** (``reconcileAutoscaler``): a current count outside
   ``[minReplicas, maxReplicas]`` is brought inside at once.
4. **Stabilisation** (``stabilizeRecommendationWithBehaviors``): the recommendation is
   clamped between the lowest recommendation of the scale-up window and the highest of the
   scale-down window (defaults 0 s and 300 s).
5. **Rate policies** (``convertDesiredReplicasWithBehaviorRate``,
   ``calculateScaleUpLimitWithScalingRules``, ``calculateScaleDownLimitWithBehaviors``):
   each policy (``Pods`` n or ``Percent`` p per ``periodSeconds``) allows a step counted
   from the replica count at the start of its period; ``selectPolicy`` ``Max`` takes the
   policy that allows the largest change, ``Min`` the smallest, ``Disabled`` none; then
   ``minReplicas``/``maxReplicas``.

Names are those of the API (``minReplicas``, ``stabilizationWindowSeconds``,
``selectPolicy``, ``periodSeconds`` ...), and :meth:`HPASpec.from_dict` /
:meth:`HPASpec.to_dict` read and write the ``autoscaling/v2`` object, so the parameters of a
local drill are emitted unchanged as the cluster's HPA (or a KEDA ScaledObject's
``advanced.horizontalPodAutoscalerConfig.behavior``).

Time is whatever the caller passes as ``now`` (seconds, monotonic or wall clock): the rule
never reads a clock, so tests replay the documentation's examples step by step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dataplat.errors import ConfigError

__all__ = [
    "DEFAULT_SYNC_PERIOD_S",
    "DEFAULT_TOLERANCE",
    "Decision",
    "HPABehavior",
    "HPAScalingPolicy",
    "HPAScalingRules",
    "HPASpec",
    "HorizontalAutoscaler",
    "MetricSpec",
    "ReplicaSample",
    "ScaleEvent",
    "format_quantity",
    "parse_quantity",
]

DEFAULT_TOLERANCE = 0.1
"""``--horizontal-pod-autoscaler-tolerance`` of kube-controller-manager."""
DEFAULT_SYNC_PERIOD_S = 15.0
"""``--horizontal-pod-autoscaler-sync-period`` of kube-controller-manager."""

POLICY_TYPES = ("Pods", "Percent")
SELECT_POLICIES = ("Max", "Min", "Disabled")
METRIC_TYPES = ("Pods", "Resource", "Object", "External")
TARGET_TYPES = ("AverageValue", "Value", "Utilization")
_TARGET_FIELD = {"AverageValue": "averageValue", "Value": "value", "Utilization": "averageUtilization"}


# --- quantities -----------------------------------------------------------------------

_SUFFIX = {
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}  # fmt: skip
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def parse_quantity(value: str | float | int) -> float:
    """A Kubernetes quantity (``"200m"``, ``"1.5"``, ``"2k"``, ``"512Mi"``, or a number) as a float."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise ValueError(f"not a quantity: {value!r} (e.g. 2, 1.5, 200m, 2k)")
    return float(m.group(1)) * _SUFFIX[m.group(2) or ""]


def _milli(value: float) -> int:
    """``Quantity.MilliValue()``: milli-units, rounded up."""
    return math.ceil(round(value * 1000, 6))


def format_quantity(value: float) -> str:
    """A quantity as the API writes it: ``"2"`` for whole numbers, else milli-units (``"1500m"``)."""
    milli = _milli(value)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


# --- the spec -------------------------------------------------------------------------


@dataclass(frozen=True)
class HPAScalingPolicy:
    """One rate policy: at most ``value`` pods (``Pods``) or percent (``Percent``) per ``periodSeconds``."""

    type: str
    value: int
    periodSeconds: int

    def to_dict(self) -> dict[str, Any]:
        """The ``HPAScalingPolicy`` object."""
        return {"type": self.type, "value": self.value, "periodSeconds": self.periodSeconds}


@dataclass(frozen=True)
class HPAScalingRules:
    """``HPAScalingRules``: the stabilisation window and rate policies of one direction."""

    stabilizationWindowSeconds: int
    selectPolicy: str = "Max"
    policies: tuple[HPAScalingPolicy, ...] = ()
    tolerance: float | None = None
    """Per-direction tolerance (``HPAConfigurableTolerance``, alpha in 1.33); None: the controller's."""

    def to_dict(self) -> dict[str, Any]:
        """The ``HPAScalingRules`` object."""
        doc: dict[str, Any] = {
            "stabilizationWindowSeconds": self.stabilizationWindowSeconds,
            "selectPolicy": self.selectPolicy,
            "policies": [p.to_dict() for p in self.policies],
        }
        if self.tolerance is not None:
            doc["tolerance"] = format_quantity(self.tolerance)
        return doc

    @property
    def longest_period(self) -> int:
        """The longest ``periodSeconds`` of the policies (how long scale events matter)."""
        return max((p.periodSeconds for p in self.policies), default=0)


def default_scale_up() -> HPAScalingRules:
    """Kubernetes' default: no window; add 4 pods or 100 % per 15 s, whichever is more."""
    return HPAScalingRules(
        stabilizationWindowSeconds=0,
        selectPolicy="Max",
        policies=(HPAScalingPolicy("Pods", 4, 15), HPAScalingPolicy("Percent", 100, 15)),
    )


def default_scale_down() -> HPAScalingRules:
    """Kubernetes' default: a 300 s window; remove up to 100 % per 15 s."""
    return HPAScalingRules(
        stabilizationWindowSeconds=300, selectPolicy="Max", policies=(HPAScalingPolicy("Percent", 100, 15),)
    )


@dataclass(frozen=True)
class HPABehavior:
    """``HorizontalPodAutoscalerBehavior``: rules for scaling up and down."""

    scaleUp: HPAScalingRules = field(default_factory=default_scale_up)
    scaleDown: HPAScalingRules = field(default_factory=default_scale_down)

    def to_dict(self) -> dict[str, Any]:
        """The ``behavior`` object, every default spelled out."""
        return {"scaleUp": self.scaleUp.to_dict(), "scaleDown": self.scaleDown.to_dict()}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None, where: str = "behavior") -> HPABehavior:
        """Read a ``behavior`` mapping; missing fields take Kubernetes' defaults (as the API server does)."""
        problems: list[str] = []
        behavior = _behavior(doc, where, problems)
        if problems:
            raise ConfigError(_problem_message(problems))
        return behavior


@dataclass(frozen=True)
class MetricSpec:
    """One entry of ``spec.metrics``: what to measure and the target per replica or in all.

    ``name`` is the metric's name (``pods.metric.name`` ...) or, for ``Resource``, the
    resource (``cpu``); ``target`` is in the metric's units (a percentage for ``Utilization``).
    """

    type: str
    name: str
    target_type: str
    target: float
    described_object: Mapping[str, str] | None = None
    """``object.describedObject`` of an ``Object`` metric."""

    @property
    def label(self) -> str:
        """How the controller names the metric in its events (``pods metric X`` ...)."""
        if self.type == "Pods":
            return f"pods metric {self.name}"
        if self.type == "Resource":
            if self.target_type == "Utilization":
                return f"{self.name} resource utilization (percentage of request)"
            return f"{self.name} resource"
        if self.type == "Object":
            kind = (self.described_object or {}).get("kind", "Object")
            return f"{kind} metric {self.name}"
        return f"external metric {self.name}"

    def to_dict(self) -> dict[str, Any]:
        """The ``MetricSpec`` object."""
        value: Any = int(self.target) if self.target_type == "Utilization" else format_quantity(self.target)
        target = {"type": self.target_type, _TARGET_FIELD[self.target_type]: value}
        if self.type == "Resource":
            return {"type": "Resource", "resource": {"name": self.name, "target": target}}
        body: dict[str, Any] = {"metric": {"name": self.name}, "target": target}
        if self.type == "Object":
            body["describedObject"] = dict(self.described_object or {})
        return {"type": self.type, self.type.lower(): body}


def inflight_metric(target: float, name: str = "dataplat_serving_inflight_requests") -> MetricSpec:
    """A ``Pods`` metric: average in-flight requests per replica, aiming at ``target``."""
    return MetricSpec("Pods", name, "AverageValue", float(target))


def cpu_metric(utilization_percent: int) -> MetricSpec:
    """A ``Resource`` metric: average CPU utilisation (percentage of the request)."""
    return MetricSpec("Resource", "cpu", "Utilization", float(utilization_percent))


def latency_metric(target_s: float, pool: str, name: str = "dataplat_pool_p95_latency_seconds") -> MetricSpec:
    """An ``Object`` metric of the pool's Service: p95 latency, aiming at ``target_s`` (``Value``)."""
    return MetricSpec(
        "Object", name, "Value", float(target_s), {"apiVersion": "v1", "kind": "Service", "name": pool}
    )


@dataclass(frozen=True)
class HPASpec:
    """``HorizontalPodAutoscalerSpec`` (autoscaling/v2) plus the object's name."""

    name: str
    minReplicas: int
    maxReplicas: int
    metrics: tuple[MetricSpec, ...]
    behavior: HPABehavior = field(default_factory=HPABehavior)
    scaleTargetRef: Mapping[str, str] | None = None
    """Default: ``{apiVersion: apps/v1, kind: Deployment, name: <name>}``."""

    def validate(self) -> list[str]:
        """Every problem of the spec (empty when valid)."""
        problems: list[str] = []
        if self.minReplicas < 0:
            problems.append(f"spec.minReplicas: {self.minReplicas} must be 0 or more")
        if self.maxReplicas < 1:
            problems.append(f"spec.maxReplicas: {self.maxReplicas} must be 1 or more")
        if self.maxReplicas < self.minReplicas:
            problems.append(
                f"spec.maxReplicas: {self.maxReplicas} is below spec.minReplicas {self.minReplicas}"
            )
        if not self.metrics:
            problems.append("spec.metrics: at least one metric is needed")
        for i, m in enumerate(self.metrics):
            if m.target <= 0:
                problems.append(f"spec.metrics[{i}]: the target of {m.name} must be above 0")
        return problems

    def to_dict(self) -> dict[str, Any]:
        """The whole ``HorizontalPodAutoscaler`` object, ready to apply to a cluster."""
        ref = dict(self.scaleTargetRef or {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name})
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": self.name},
            "spec": {
                "scaleTargetRef": ref,
                "minReplicas": self.minReplicas,
                "maxReplicas": self.maxReplicas,
                "metrics": [m.to_dict() for m in self.metrics],
                "behavior": self.behavior.to_dict(),
            },
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], name: str | None = None) -> HPASpec:
        """Read a ``HorizontalPodAutoscaler`` object or its bare ``spec``; every problem reported at once.

        Raises :class:`~dataplat.errors.ConfigError` naming each bad field.
        """
        problems: list[str] = []
        if not isinstance(doc, Mapping):
            raise ConfigError(f"an HPA must be a mapping, got {type(doc).__name__}")
        spec = doc.get("spec", doc) if "spec" in doc else doc
        if not isinstance(spec, Mapping):
            raise ConfigError("spec: must be a mapping")
        meta = doc.get("metadata") or {}
        ref = spec.get("scaleTargetRef")
        hpa_name = name or meta.get("name") or (ref or {}).get("name") or "pool"
        min_r = _int(spec.get("minReplicas", 1), "spec.minReplicas", problems)
        max_r = _int(spec.get("maxReplicas"), "spec.maxReplicas", problems)
        metrics: list[MetricSpec] = []
        raw_metrics = spec.get("metrics")
        if not isinstance(raw_metrics, list) or not raw_metrics:
            problems.append("spec.metrics: a list of at least one metric is needed")
        else:
            for i, m in enumerate(raw_metrics):
                parsed = _metric(m, f"spec.metrics[{i}]", problems)
                if parsed is not None:
                    metrics.append(parsed)
        behavior = _behavior(spec.get("behavior"), "spec.behavior", problems)
        result = cls(
            name=str(hpa_name),
            minReplicas=min_r if min_r is not None else 1,
            maxReplicas=max_r if max_r is not None else 1,
            metrics=tuple(metrics),
            behavior=behavior,
            scaleTargetRef=dict(ref) if isinstance(ref, Mapping) else None,
        )
        if not problems:
            problems.extend(result.validate())
        if problems:
            raise ConfigError(_problem_message(problems))
        return result


def _problem_message(problems: Sequence[str]) -> str:
    return "invalid HorizontalPodAutoscaler:\n  " + "\n  ".join(problems)


def _int(value: Any, where: str, problems: list[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        problems.append(f"{where}: must be an integer, got {value!r}")
        return None
    return value


def _rules(doc: Any, default: HPAScalingRules, where: str, problems: list[str]) -> HPAScalingRules:
    if doc is None:
        return default
    if not isinstance(doc, Mapping):
        problems.append(f"{where}: must be a mapping")
        return default
    window = doc.get("stabilizationWindowSeconds", default.stabilizationWindowSeconds)
    window_i = _int(window, f"{where}.stabilizationWindowSeconds", problems)
    if window_i is not None and not 0 <= window_i <= 3600:
        problems.append(f"{where}.stabilizationWindowSeconds: {window_i} must be within 0..3600")
    select = doc.get("selectPolicy", default.selectPolicy)
    if select not in SELECT_POLICIES:
        problems.append(f"{where}.selectPolicy: {select!r} must be one of {', '.join(SELECT_POLICIES)}")
    policies = default.policies
    raw = doc.get("policies")
    if raw is not None:
        if not isinstance(raw, list) or (not raw and select != "Disabled"):
            problems.append(f"{where}.policies: a list of at least one policy is needed")
        else:
            parsed: list[HPAScalingPolicy] = []
            for i, p in enumerate(raw):
                pw = f"{where}.policies[{i}]"
                if not isinstance(p, Mapping):
                    problems.append(f"{pw}: must be a mapping with type, value, periodSeconds")
                    continue
                if p.get("type") not in POLICY_TYPES:
                    problems.append(f"{pw}.type: {p.get('type')!r} must be Pods or Percent")
                value = _int(p.get("value"), f"{pw}.value", problems)
                period = _int(p.get("periodSeconds"), f"{pw}.periodSeconds", problems)
                if value is not None and value <= 0:
                    problems.append(f"{pw}.value: {value} must be above 0")
                if period is not None and not 0 < period <= 1800:
                    problems.append(f"{pw}.periodSeconds: {period} must be within 1..1800")
                if value is not None and period is not None:
                    parsed.append(HPAScalingPolicy(str(p.get("type")), value, period))
            policies = tuple(parsed)
    tolerance = default.tolerance
    if doc.get("tolerance") is not None:
        try:
            tolerance = parse_quantity(doc["tolerance"])
        except ValueError as exc:
            problems.append(f"{where}.tolerance: {exc}")
    return HPAScalingRules(
        stabilizationWindowSeconds=window_i if window_i is not None else default.stabilizationWindowSeconds,
        selectPolicy=str(select),
        policies=policies,
        tolerance=tolerance,
    )


def _behavior(doc: Any, where: str, problems: list[str]) -> HPABehavior:
    if doc is None:
        return HPABehavior()
    if not isinstance(doc, Mapping):
        problems.append(f"{where}: must be a mapping with scaleUp and/or scaleDown")
        return HPABehavior()
    return HPABehavior(
        scaleUp=_rules(doc.get("scaleUp"), default_scale_up(), f"{where}.scaleUp", problems),
        scaleDown=_rules(doc.get("scaleDown"), default_scale_down(), f"{where}.scaleDown", problems),
    )


def _metric(doc: Any, where: str, problems: list[str]) -> MetricSpec | None:
    if not isinstance(doc, Mapping) or doc.get("type") not in METRIC_TYPES:
        problems.append(f"{where}.type: must be one of {', '.join(METRIC_TYPES)}")
        return None
    mtype = str(doc["type"])
    key = mtype.lower()
    body = doc.get(key)
    if not isinstance(body, Mapping):
        problems.append(f"{where}.{key}: missing (a {mtype} metric needs it)")
        return None
    if mtype == "Resource":
        name = body.get("name")
    else:
        name = (body.get("metric") or {}).get("name") if isinstance(body.get("metric"), Mapping) else None
    if not name:
        problems.append(f"{where}.{key}: the metric's name is missing")
        return None
    target = body.get("target")
    if not isinstance(target, Mapping) or target.get("type") not in TARGET_TYPES:
        problems.append(f"{where}.{key}.target.type: must be one of {', '.join(TARGET_TYPES)}")
        return None
    ttype = str(target["type"])
    allowed = {"Pods": ("AverageValue",), "Resource": ("Utilization", "AverageValue")}.get(
        mtype, ("Value", "AverageValue")
    )
    if ttype not in allowed:
        problems.append(f"{where}.{key}.target.type: a {mtype} metric takes {' or '.join(allowed)}")
        return None
    fname = _TARGET_FIELD[ttype]
    try:
        value = parse_quantity(target.get(fname))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        problems.append(f"{where}.{key}.target.{fname}: a quantity is needed, got {target.get(fname)!r}")
        return None
    described = body.get("describedObject") if mtype == "Object" else None
    obj = dict(described) if isinstance(described, Mapping) else None
    return MetricSpec(mtype, str(name), ttype, value, obj)


# --- the controller -------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaSample:
    """One replica's value of a per-replica metric.

    ``value`` None: the replica has no sample (a *missing* pod); ``ready`` False: it is not
    serving yet (a *pending*/unready pod: counted as 0 on a scale-up, else left out).
    """

    value: float | None
    ready: bool = True


MetricValue = Sequence[ReplicaSample | float | None] | float | None
"""Per-replica samples (``Pods``/``Resource``) or one value (``Object``/``External``); None: unreadable."""


@dataclass(frozen=True)
class ScaleEvent:
    """A change of scale the controller made (``timestampedScaleEvent`` plus the reason)."""

    time: float
    from_replicas: int
    to_replicas: int
    reason: str

    @property
    def change(self) -> int:
        """Replicas added (positive) or removed (negative)."""
        return self.to_replicas - self.from_replicas


@dataclass(frozen=True)
class MetricStatus:
    """What one metric said this round: its current value, ratio to target and replica proposal."""

    name: str
    current: float | None
    target: float
    ratio: float | None
    proposal: int | None
    error: str | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome of one reconcile: scale to ``desired``.

    ``raw`` is the metrics' recommendation, ``stabilized`` that after the windows, ``desired``
    that after the rate policies and bounds; ``limited`` says whether policies or bounds cut
    ``stabilized``. ``reason`` is the controller's rescale reason (``pods metric X above
    target``, ``All metrics below target``, ``Current number of replicas below
    Spec.MinReplicas`` ...), ``condition`` the reason of its ``ScalingLimited``/``AbleToScale``
    condition (``ScaleUpLimit``, ``TooManyReplicas``, ``ScaleDownStabilized`` ...).
    """

    time: float
    current: int
    desired: int
    reason: str
    raw: int
    stabilized: int
    limited: bool
    condition: str
    metrics: tuple[MetricStatus, ...] = ()

    @property
    def rescale(self) -> bool:
        """Whether the scale changes."""
        return self.desired != self.current

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly record."""
        return {
            "time": self.time,
            "current": self.current,
            "desired": self.desired,
            "raw": self.raw,
            "stabilized": self.stabilized,
            "limited": self.limited,
            "reason": self.reason,
            "condition": self.condition,
            "metrics": [
                {
                    "name": m.name,
                    "current": m.current,
                    "target": m.target,
                    "ratio": m.ratio,
                    "proposal": m.proposal,
                    **({"error": m.error} if m.error else {}),
                }
                for m in self.metrics
            ],
        }


class MetricUnavailable(Exception):
    """No usable sample of a metric (the controller's ``FailedGetPodsMetric`` ...)."""


class HorizontalAutoscaler:
    """One HPA's controller state: the recommendations and scale events it remembers.

    Call :meth:`recommend` once per sync period with the current scale and metric values,
    then apply :attr:`Decision.desired`; the decision is recorded as applied (as the
    controller records an event after a successful ``updateScale``).
    """

    def __init__(self, spec: HPASpec, tolerance: float = DEFAULT_TOLERANCE) -> None:
        problems = spec.validate()
        if problems:
            raise ConfigError(_problem_message(problems))
        self.spec = spec
        self.tolerance = tolerance
        self._recommendations: list[tuple[float, int]] = []
        self._up_events: list[ScaleEvent] = []
        self._down_events: list[ScaleEvent] = []
        self._seen = False
        self.last_decision: Decision | None = None

    # --- public -------------------------------------------------------------------------

    @property
    def recommendations(self) -> list[tuple[float, int]]:
        """(time, unstabilised recommendation) of the windows, oldest first."""
        return list(self._recommendations)

    @property
    def scale_events(self) -> list[ScaleEvent]:
        """The scale events the rate policies still count, oldest first."""
        return sorted(self._up_events + self._down_events, key=lambda e: e.time)

    def recommend(
        self,
        now: float,
        current_replicas: int,
        metric_values: Mapping[str, MetricValue] | MetricValue,
        *,
        ready_replicas: int | None = None,
    ) -> Decision:
        """One reconcile at time ``now`` (seconds) with ``current_replicas`` (the scale's spec).

        ``metric_values``: by metric name, or, for a spec with one metric, the value itself.
        ``ready_replicas`` (default: ``current_replicas``) is what ``Value`` targets of
        ``Object``/``External`` metrics multiply by.
        """
        spec = self.spec
        values = self._by_name(metric_values)
        self._prune(now)
        if not self._seen:
            # maybeInitScaleDownStabilizationWindow: a controller that has just started (or a
            # supervisor restarted) acts as if it had recommended the current scale, so it
            # does not scale down before a whole window has been seen
            self._seen = True
            self._recommendations.append((now, current_replicas))
        min_r, max_r = spec.minReplicas, spec.maxReplicas
        if current_replicas == 0 and min_r != 0:
            reason = "scaling is disabled since the replica count of the target is zero"
            return self._decided(Decision(now, 0, 0, reason, 0, 0, False, "ScalingDisabled"))
        if current_replicas > max_r or current_replicas < min_r:
            bound, word, cond = (max_r, "above Spec.MaxReplicas", "TooManyReplicas")
            if current_replicas < min_r:
                bound, word, cond = (min_r, "below Spec.MinReplicas", "TooFewReplicas")
            reason = f"Current number of replicas {word}"
            return self._applied(Decision(now, current_replicas, bound, reason, bound, bound, True, cond))

        ready = current_replicas if ready_replicas is None else ready_replicas
        statuses, raw, metric_label, error = self._compute_for_metrics(current_replicas, values, ready)
        if raw is None:
            reason = f"failed to compute desired replicas: {error}"
            cur = current_replicas
            return self._decided(
                Decision(now, cur, cur, reason, cur, cur, False, "FailedGetMetrics", statuses)
            )
        reason = ""
        if raw > current_replicas:
            reason = f"{metric_label} above target"
        elif raw < current_replicas:
            reason = "All metrics below target"
        stabilized, stab_reason = self._stabilize(now, current_replicas, raw)
        desired, limit_reason = self._limit_rate(now, current_replicas, stabilized)
        if desired != stabilized:
            condition = limit_reason
        elif stabilized != raw:
            condition = stab_reason
        else:
            condition = limit_reason
        reason = reason or "no change recommended"
        limited = desired != stabilized
        return self._applied(
            Decision(now, current_replicas, desired, reason, raw, stabilized, limited, condition, statuses)
        )

    # --- steps --------------------------------------------------------------------------

    def _by_name(self, metric_values: Mapping[str, MetricValue] | MetricValue) -> dict[str, MetricValue]:
        if isinstance(metric_values, Mapping):
            return dict(metric_values)
        if len(self.spec.metrics) != 1:
            raise ValueError("this HPA has several metrics: pass metric_values by metric name")
        return {self.spec.metrics[0].name: metric_values}

    def _tolerance(self, ratio: float) -> float:
        rules = self.spec.behavior.scaleUp if ratio > 1.0 else self.spec.behavior.scaleDown
        return self.tolerance if rules.tolerance is None else rules.tolerance

    def _compute_for_metrics(
        self, current: int, values: Mapping[str, MetricValue], ready: int
    ) -> tuple[tuple[MetricStatus, ...], int | None, str, str | None]:
        """``computeReplicasForMetrics``: the largest proposal; None when it must not scale."""
        statuses: list[MetricStatus] = []
        best: int | None = None
        label = ""
        invalid: list[str] = []
        for metric in self.spec.metrics:
            try:
                proposal, usage, ratio = self._replicas_for(metric, current, values.get(metric.name), ready)
            except MetricUnavailable as exc:
                invalid.append(f"{metric.label}: {exc}")
                statuses.append(MetricStatus(metric.name, None, metric.target, None, None, str(exc)))
                continue
            statuses.append(MetricStatus(metric.name, usage, metric.target, ratio, proposal))
            if best is None or proposal > best:
                best, label = proposal, metric.label
        if invalid and (best is None or best < current):
            return tuple(statuses), None, "", "; ".join(invalid)
        return tuple(statuses), best, label, None

    def _replicas_for(
        self, metric: MetricSpec, current: int, value: MetricValue, ready: int
    ) -> tuple[int, float, float]:
        """(proposal, current usage, usage ratio) of one metric (``replica_calculator.go``)."""
        if metric.type in ("Pods", "Resource"):
            if value is None or isinstance(value, int | float):
                raise MetricUnavailable("no per-replica samples")
            samples = [s if isinstance(s, ReplicaSample) else ReplicaSample(s) for s in value]
            return self._plain_metric_replicas(metric, current, samples)
        if value is None or not isinstance(value, int | float):
            raise MetricUnavailable("no value")
        usage = _milli(float(value))
        target = _milli(metric.target)
        if metric.target_type == "AverageValue":
            # GetObjectPerPodMetricReplicas / GetExternalPerPodMetricReplicas
            ratio = usage / (target * current)
            proposal = current
            if abs(1.0 - ratio) > self._tolerance(ratio):
                proposal = math.ceil(usage / target)
            return proposal, math.ceil(usage / current) / 1000, ratio
        ratio = usage / target
        if current == 0:
            return math.ceil(ratio), usage / 1000, ratio
        if abs(1.0 - ratio) <= self._tolerance(ratio):
            return current, usage / 1000, ratio
        return math.ceil(ratio * ready), usage / 1000, ratio

    def _plain_metric_replicas(
        self, metric: MetricSpec, current: int, samples: Sequence[ReplicaSample]
    ) -> tuple[int, float, float]:
        """``calcPlainMetricReplicas`` / ``GetResourceReplicas``: missing and unready replicas."""
        utilization = metric.target_type == "Utilization"
        target = int(metric.target) if utilization else _milli(metric.target)
        values: list[int] = []
        unready = missing = 0
        for s in samples:
            if not s.ready:
                unready += 1
            elif s.value is None:
                missing += 1
            else:
                values.append(int(s.value) if utilization else _milli(s.value))
        if not values:
            raise MetricUnavailable("did not receive metrics for any ready replica")

        def ratio_of(vals: Sequence[int]) -> tuple[float, int]:
            usage = sum(vals) // len(vals)
            return usage / target, usage

        ratio, usage = ratio_of(values)
        shown = float(usage) if utilization else usage / 1000
        scale_up_with_unready = unready > 0 and ratio > 1.0
        if not scale_up_with_unready and missing == 0:
            if abs(1.0 - ratio) <= self._tolerance(ratio):
                return current, shown, ratio
            return math.ceil(ratio * len(values)), shown, ratio
        filled = list(values)
        if missing:
            filled += [target if ratio < 1.0 else 0] * missing
        if scale_up_with_unready:
            filled += [0] * unready
        new_ratio, _ = ratio_of(filled)
        if (
            abs(1.0 - new_ratio) <= self._tolerance(new_ratio)
            or (ratio < 1.0 < new_ratio)
            or (ratio > 1.0 > new_ratio)
        ):
            return current, shown, ratio
        proposal = math.ceil(new_ratio * len(filled))
        if (new_ratio < 1.0 and proposal > current) or (new_ratio > 1.0 and proposal < current):
            return current, shown, ratio
        return proposal, shown, ratio

    def _stabilize(self, now: float, current: int, desired: int) -> tuple[int, str]:
        """``stabilizeRecommendationWithBehaviors``: clamp between the windows' min and max."""
        up_cutoff = now - self.spec.behavior.scaleUp.stabilizationWindowSeconds
        down_cutoff = now - self.spec.behavior.scaleDown.stabilizationWindowSeconds
        up_rec = down_rec = desired
        for t, rec in self._recommendations:
            if t > up_cutoff:
                up_rec = min(rec, up_rec)
            if t > down_cutoff:
                down_rec = max(rec, down_rec)
        recommendation = max(current, up_rec)
        recommendation = min(recommendation, down_rec)
        self._recommendations.append((now, desired))
        reason = "ScaleUpStabilized" if desired >= current else "ScaleDownStabilized"
        return recommendation, reason

    def _limit_rate(self, now: float, current: int, desired: int) -> tuple[int, str]:
        """``convertDesiredReplicasWithBehaviorRate``: rate policies, then min/max."""
        spec = self.spec
        if desired > current:
            limit = max(self._scale_up_limit(now, current), current)
            if spec.maxReplicas > limit:
                allowed, reason = limit, "ScaleUpLimit"
            else:
                allowed, reason = spec.maxReplicas, "TooManyReplicas"
            if desired > allowed:
                return allowed, reason
        elif desired < current:
            limit = min(self._scale_down_limit(now, current), current)
            if spec.minReplicas < limit:
                allowed, reason = limit, "ScaleDownLimit"
            else:
                allowed, reason = spec.minReplicas, "TooFewReplicas"
            if desired < allowed:
                return allowed, reason
        return desired, "DesiredWithinRange"

    def _change_in_period(self, now: float, period: int, events: Sequence[ScaleEvent]) -> int:
        cutoff = now - period
        return sum(abs(e.change) for e in events if e.time > cutoff)

    def _scale_up_limit(self, now: float, current: int) -> int:
        """``calculateScaleUpLimitWithScalingRules``."""
        rules = self.spec.behavior.scaleUp
        if rules.selectPolicy == "Disabled":
            return current
        pick = min if rules.selectPolicy == "Min" else max
        result: int | None = None
        for p in rules.policies:
            start = (
                current
                - self._change_in_period(now, p.periodSeconds, self._up_events)
                + self._change_in_period(now, p.periodSeconds, self._down_events)
            )
            if p.type == "Pods":
                proposed = start + p.value
            else:
                proposed = math.ceil(float(start) * (1 + float(p.value) / 100))
            result = proposed if result is None else pick(result, proposed)
        return current if result is None else result

    def _scale_down_limit(self, now: float, current: int) -> int:
        """``calculateScaleDownLimitWithBehaviors``."""
        rules = self.spec.behavior.scaleDown
        if rules.selectPolicy == "Disabled":
            return current
        pick = max if rules.selectPolicy == "Min" else min
        result: int | None = None
        for p in rules.policies:
            start = (
                current
                - self._change_in_period(now, p.periodSeconds, self._up_events)
                + self._change_in_period(now, p.periodSeconds, self._down_events)
            )
            if p.type == "Pods":
                proposed = start - p.value
            else:
                proposed = int(float(start) * (1 - float(p.value) / 100))
            result = proposed if result is None else pick(result, proposed)
        return current if result is None else result

    # --- history ------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        b = self.spec.behavior
        keep = max(b.scaleUp.stabilizationWindowSeconds, b.scaleDown.stabilizationWindowSeconds)
        self._recommendations = [(t, r) for t, r in self._recommendations if t > now - keep]
        period = max(b.scaleUp.longest_period, b.scaleDown.longest_period)
        self._up_events = [e for e in self._up_events if e.time > now - period]
        self._down_events = [e for e in self._down_events if e.time > now - period]

    def _applied(self, decision: Decision) -> Decision:
        """Record the scale event of a decision that changes the scale (``storeScaleEvent``)."""
        if decision.rescale:
            event = ScaleEvent(decision.time, decision.current, decision.desired, decision.reason)
            (self._up_events if event.change > 0 else self._down_events).append(event)
        return self._decided(decision)

    def _decided(self, decision: Decision) -> Decision:
        self.last_decision = decision
        return decision


def with_behavior(spec: HPASpec, behavior: HPABehavior) -> HPASpec:
    """``spec`` with another ``behavior``."""
    return replace(spec, behavior=behavior)
