"""The HPA rule against the worked examples of the Kubernetes documentation.

Sections cited are from https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/
("Algorithm details", "Configurable scaling behavior" and its examples) and the
"HorizontalPodAutoscaler Walkthrough" (php-apache), plus the controller's code where the
documentation describes it only in words (pkg/controller/podautoscaler).
"""

from __future__ import annotations

import pytest

from dataplat.errors import ConfigError
from dataplat.scaling.hpa import (
    HorizontalAutoscaler,
    HPABehavior,
    HPAScalingPolicy,
    HPAScalingRules,
    HPASpec,
    MetricSpec,
    ReplicaSample,
    cpu_metric,
    format_quantity,
    inflight_metric,
    parse_quantity,
)

M = "m"  # the metric's name in the single-metric examples


def pods_metric(target: str) -> MetricSpec:
    return MetricSpec("Pods", M, "AverageValue", parse_quantity(target))


def rules(window: int, *policies: tuple[str, int, int], select: str = "Max") -> HPAScalingRules:
    return HPAScalingRules(window, select, tuple(HPAScalingPolicy(*p) for p in policies))


def hpa(
    min_r: int = 1,
    max_r: int = 100,
    target: str = "100m",
    up: HPAScalingRules | None = None,
    down: HPAScalingRules | None = None,
    metrics: tuple[MetricSpec, ...] | None = None,
) -> HorizontalAutoscaler:
    behavior = HPABehavior(scaleUp=up or HPABehavior().scaleUp, scaleDown=down or HPABehavior().scaleDown)
    spec = HPASpec("pool", min_r, max_r, metrics or (pods_metric(target),), behavior)
    return HorizontalAutoscaler(spec)


def each(n: int, value: str | float) -> list[float]:
    """``n`` ready replicas reporting the same value."""
    v = parse_quantity(value) if isinstance(value, str) else value
    return [v] * n


# --- Algorithm details ----------------------------------------------------------------


def test_ratio_doubles_and_halves() -> None:
    # "Algorithm details": "if the current metric value is 200m, and the desired value is
    # 100m, the number of replicas will be doubled, since 200.0 / 100.0 == 2.0. If the current
    # value is instead 50m, you'll halve the number of replicas, since 50.0 / 100.0 == 0.5."
    d = hpa().recommend(0, 1, each(1, "200m"))
    assert (d.raw, d.desired) == (2, 2)
    assert d.reason == "pods metric m above target"
    # halving: no scale-down window here, so the recommendation applies at once
    d = hpa(down=rules(0, ("Percent", 100, 15))).recommend(0, 4, each(4, "50m"))
    assert (d.raw, d.desired, d.reason) == (2, 2, "All metrics below target")


def test_ratio_within_tolerance_changes_nothing() -> None:
    # "Algorithm details": "The control plane skips any scaling action if the ratio is
    # sufficiently close to 1.0 (within a globally-configurable tolerance, 0.1 by default)."
    for value in ("105m", "109m", "91m", "90m"):
        d = hpa(down=rules(0, ("Percent", 100, 15))).recommend(0, 4, each(4, value))
        assert (d.raw, d.desired, d.rescale) == (4, 4, False), value
    # |1 - 1.1| is 0.10000000000000009 in float64, as in the controller (Go): 110m scales
    assert hpa().recommend(0, 4, each(4, "110m")).desired == 5
    # just outside: 111m x 4 / 100m = 4.44 -> 5; 89m x 4 / 100m = 3.56 -> 4 (ceil keeps 4)
    assert hpa().recommend(0, 4, each(4, "111m")).desired == 5
    assert hpa(down=rules(0, ("Percent", 100, 15))).recommend(0, 10, each(10, "80m")).desired == 8


def test_tolerance_per_direction() -> None:
    # HPAScalingRules.tolerance (1.33, HPAConfigurableTolerance): 5 % on the way up
    up = HPAScalingRules(0, "Max", HPABehavior().scaleUp.policies, tolerance=0.05)
    assert hpa(up=up).recommend(0, 10, each(10, "107m")).desired == 11
    assert hpa().recommend(0, 10, each(10, "107m")).desired == 10


def test_walkthrough_php_apache_rate_limited() -> None:
    # Walkthrough: CPU "has increased to 305% of the request" with a 50 % target: ceil(1 x
    # 305 / 50) = 7 replicas. The default scale-up policies (4 Pods or 100 % per 15 s,
    # selectPolicy Max) allow max(1 + 4, 2 x 1) = 5 in the first period, 7 after it.
    a = hpa(max_r=10, metrics=(cpu_metric(50),))
    d = a.recommend(0, 1, {"cpu": [305.0]})
    assert (d.raw, d.stabilized, d.desired, d.limited, d.condition) == (7, 7, 5, True, "ScaleUpLimit")
    # the same load over 5 replicas (61 % each) still asks for 7; inside the period, no more
    d = a.recommend(5, 5, {"cpu": each(5, 61.0)})
    assert (d.raw, d.desired) == (7, 5)
    d = a.recommend(15, 5, {"cpu": each(5, 61.0)})  # the event of t=0 has left the 15 s period
    assert (d.raw, d.desired, d.limited) == (7, 7, False)


# --- missing metrics and not-yet-ready pods -------------------------------------------


def test_missing_metrics_are_conservative() -> None:
    # "Algorithm details": missing metrics count as "100% of the desired value in case of a
    # scale down, and 0% in case of a scale up".
    down = rules(0, ("Percent", 100, 15))
    # scale-down: 2 replicas at 50m, 1 without a sample: (50 + 50 + 100) / 3 = 66m -> ceil(1.98) = 2
    d = hpa(down=down).recommend(0, 3, [0.05, 0.05, None])
    assert d.desired == 2
    # without the missing replica the rule would have said ceil(0.5 x 2) = 1
    assert hpa(down=down).recommend(0, 2, [0.05, 0.05]).desired == 1
    # scale-up: 2 at 300m, 1 missing counted as 0: 200m x 3 = 6 (not 300m x 2 = 6 ... same here)
    assert hpa().recommend(0, 3, [0.3, 0.3, None]).desired == 6
    # scale-up: 2 at 150m, 2 missing as 0 -> 75m: the direction would reverse -> no change
    assert hpa().recommend(0, 4, [0.15, 0.15, None, None]).desired == 4


def test_unready_pods_count_as_zero_on_scale_up() -> None:
    # "Algorithm details": not-yet-ready pods on a scale-up are assumed to consume 0 %.
    # 2 ready at 200m, 1 starting: (200 + 200 + 0) / 3 = 133m -> ceil(1.33 x 3) = 4, not 2 x 2 = 4.
    samples = [ReplicaSample(0.2), ReplicaSample(0.2), ReplicaSample(None, ready=False)]
    assert hpa().recommend(0, 3, samples).desired == 4
    # 2 ready at 150m and 2 starting: 75m average reverses the direction -> stay at 4 (no overshoot
    # while replicas start)
    samples = [ReplicaSample(0.15)] * 2 + [ReplicaSample(None, ready=False)] * 2
    assert hpa().recommend(0, 4, samples).desired == 4
    # unready pods do not hold a scale-down: they are left out of the average
    samples = [ReplicaSample(0.02), ReplicaSample(None, ready=False)]
    assert hpa(down=rules(0, ("Percent", 100, 15))).recommend(0, 2, samples).desired == 1


def test_no_samples_means_no_change() -> None:
    a = hpa()
    d = a.recommend(0, 3, [None, None, None])
    assert (d.desired, d.condition) == (3, "FailedGetMetrics")


def test_several_metrics_take_the_largest() -> None:
    # "Algorithm details": with several metrics "the largest of the desired replica counts is chosen"
    a = hpa(metrics=(inflight_metric(2), cpu_metric(70)))
    d = a.recommend(0, 2, {"dataplat_serving_inflight_requests": [2.0, 2.0], "cpu": [140.0, 140.0]})
    assert d.desired == 4
    assert d.reason == "cpu resource utilization (percentage of request) above target"
    # a metric that cannot be read blocks a scale-down proposed by the others ...
    a = hpa(metrics=(inflight_metric(2), cpu_metric(70)), down=rules(0, ("Percent", 100, 15)))
    d = a.recommend(0, 4, {"dataplat_serving_inflight_requests": [0.5] * 4, "cpu": None})
    assert (d.desired, d.condition) == (4, "FailedGetMetrics")
    # ... but not a scale-up
    d = a.recommend(1, 4, {"dataplat_serving_inflight_requests": [4.0] * 4, "cpu": None})
    assert d.desired == 8


def test_object_metric_value_and_average_value() -> None:
    # Object metric (e.g. p95 latency of the pool's Service) with a Value target:
    # ceil(ratio x ready replicas); AverageValue: ceil(value / target)
    latency = MetricSpec("Object", "p95", "Value", 0.05, {"kind": "Service", "name": "pool"})
    assert hpa(metrics=(latency,)).recommend(0, 2, 0.1).desired == 4
    assert hpa(metrics=(latency,)).recommend(0, 2, 0.1, ready_replicas=1).desired == 2
    assert hpa(metrics=(latency,)).recommend(0, 2, 0.052).desired == 2  # within tolerance
    queue = MetricSpec("External", "lag", "AverageValue", 30)
    d = hpa(metrics=(queue,)).recommend(0, 2, 200)
    assert (d.raw, d.desired) == (7, 6)  # ceil(200 / 30) = 7, the default policies allow 2 + 4


# --- stabilisation --------------------------------------------------------------------


def test_scale_down_stabilization_keeps_the_highest_recommendation() -> None:
    # "Stabilization window": "When the metrics indicate that the target should be scaled down
    # the algorithm looks into previously computed desired states, and uses the highest value
    # from the specified interval." Default scaleDown window: 300 s.
    a = hpa()
    assert a.recommend(0, 5, each(5, "100m")).desired == 5
    d = a.recommend(15, 5, each(5, "60m"))  # raw 3
    assert (d.raw, d.desired, d.condition) == (3, 5, "ScaleDownStabilized")
    assert a.recommend(30, 5, each(5, "80m")).desired == 5  # raw 4
    assert a.recommend(299, 5, each(5, "40m")).desired == 5  # raw 2; t=0's 5 still in the window
    d = a.recommend(301, 5, each(5, "40m"))  # window (1, 301]: 3, 4, 2, 2 -> 4
    assert (d.raw, d.desired) == (2, 4)
    assert a.recommend(331, 4, each(4, "50m")).desired == 2  # window (31, 331]: 2, 2, 2 -> 2


def test_a_started_controller_waits_a_whole_window_before_scaling_down() -> None:
    # maybeInitScaleDownStabilizationWindow: the first sight counts as a recommendation of
    # the current scale, so a restarted controller does not scale down at once
    a = hpa(down=rules(60, ("Percent", 100, 15)))
    assert a.recommend(0, 4, each(4, "10m")).desired == 4
    assert a.recommend(59, 4, each(4, "10m")).desired == 4
    assert a.recommend(61, 4, each(4, "10m")).desired == 1


def test_scale_up_stabilization_keeps_the_lowest_recommendation() -> None:
    # "Configurable scaling behavior": a scaleUp window (default 0: scale up at once) makes
    # a short spike wait: the lowest recommendation of the window wins.
    a = hpa(up=rules(60, ("Percent", 100, 15)))
    assert a.recommend(0, 2, each(2, "100m")).desired == 2
    d = a.recommend(15, 2, each(2, "300m"))
    assert (d.raw, d.desired, d.condition) == (6, 2, "ScaleUpStabilized")
    assert a.recommend(61, 2, each(2, "300m")).desired == 4  # window (1, 61]: 6, 6; 100 % per 15 s


# --- rate policies --------------------------------------------------------------------


def test_default_behavior_scale_up_pods_4_vs_percent_100() -> None:
    # "Default Behavior": "4 pods or a 100% of the currently running replicas may at most be
    # added every 15 seconds"; selectPolicy Max takes the policy allowing the larger change.
    assert hpa().recommend(0, 2, each(2, "1")).desired == 6  # 2 + 4 > 2 x 2
    assert hpa().recommend(0, 10, each(10, "400m")).desired == 20  # 10 x 2 > 10 + 4
    up_min = rules(0, ("Pods", 4, 15), ("Percent", 100, 15), select="Min")
    assert hpa(up=up_min).recommend(0, 10, each(10, "400m")).desired == 14
    assert hpa(up=up_min).recommend(0, 2, each(2, "1")).desired == 4
    disabled = rules(0, ("Pods", 4, 15), select="Disabled")
    d = hpa(up=disabled).recommend(0, 2, each(2, "1"))
    assert (d.desired, d.condition) == (2, "ScaleUpLimit")


def test_policy_period_counts_from_its_start() -> None:
    # the step allowed by a policy is counted from the replica count at the start of its
    # period: 2 -> 4 at t=0 uses up 100 %/15 s, so at t=10 nothing more; at t=15, 4 -> 8
    a = hpa(up=rules(0, ("Percent", 100, 15)))
    assert a.recommend(0, 2, each(2, "1")).desired == 4
    d = a.recommend(10, 4, each(4, "1"))
    assert (d.raw, d.desired, d.condition) == (40, 4, "ScaleUpLimit")
    assert a.recommend(15, 4, each(4, "1")).desired == 8


def test_scale_down_policies_example_max() -> None:
    # "Scaling policies": Pods 4 / 60 s and Percent 10 / 60 s, selectPolicy Max. "if there
    # are 80 replicas and the target has to be scaled down to 10 replicas then during the
    # first step 8 replicas will be reduced. In the next iteration when the number of replicas
    # is 72, 10% of the pods is 7.2 but the number is rounded up to 8. [...] When the number
    # of replicas falls below 40 the first policy (Pods) is applied and 4 replicas will be
    # reduced at a time."
    down = rules(0, ("Pods", 4, 60), ("Percent", 10, 60))
    a = hpa(min_r=10, down=down)
    replicas, t, steps = 80, 0, [80]
    d = a.recommend(t, replicas, each(replicas, "10m"))  # ratio 0.1: raw 8, minReplicas 10
    assert (d.raw, d.desired, d.condition) == (8, 72, "ScaleDownLimit")
    replicas = d.desired
    steps.append(replicas)
    # inside the period nothing more is removed
    assert a.recommend(30, replicas, each(replicas, "10m")).desired == 72
    while replicas > 10:
        t += 60
        d = a.recommend(t, replicas, each(replicas, "10m"))
        replicas = d.desired
        steps.append(replicas)
    assert steps == [80, 72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16, 12, 10]


def test_scale_down_policies_example_min() -> None:
    # "Scaling policies": "To ensure that no more than 5 Pods are removed per minute, you can
    # add a second scale-down policy with a fixed size of 5, and set selectPolicy to minimum."
    down = rules(0, ("Percent", 10, 60), ("Pods", 5, 60), select="Min")
    assert hpa(down=down).recommend(0, 80, each(80, "10m")).desired == 75  # 5 < 8
    assert hpa(down=down).recommend(0, 30, each(30, "10m")).desired == 27  # 3 < 5


def test_scale_down_disabled() -> None:
    # "Example: disable scale down": selectPolicy Disabled
    down = HPAScalingRules(0, "Disabled", ())
    d = hpa(down=down).recommend(0, 8, each(8, "10m"))
    assert (d.raw, d.desired) == (1, 8)


def test_limit_scale_down_rate_percent_per_minute() -> None:
    # "Example: limit scale down rate": Percent 10 / 60 s
    down = rules(0, ("Percent", 10, 60))
    assert hpa(down=down).recommend(0, 20, each(20, "10m")).desired == 18


# --- bounds ---------------------------------------------------------------------------


def test_min_max_bounds() -> None:
    a = hpa(min_r=2, max_r=3)
    d = a.recommend(0, 2, each(2, "1"))
    assert (d.raw, d.desired, d.condition) == (20, 3, "TooManyReplicas")
    d = hpa(min_r=2, max_r=5, down=rules(0, ("Percent", 100, 15))).recommend(0, 4, each(4, "0"))
    assert (d.raw, d.desired, d.condition) == (0, 2, "TooFewReplicas")
    # a current count outside the bounds is brought inside at once, whatever the metrics
    d = hpa(min_r=2, max_r=3).recommend(0, 5, each(5, "0"))
    assert (d.desired, d.reason) == (3, "Current number of replicas above Spec.MaxReplicas")
    d = hpa(min_r=2, max_r=3).recommend(0, 1, each(1, "0"))
    assert (d.desired, d.reason) == (2, "Current number of replicas below Spec.MinReplicas")


# --- the autoscaling/v2 object --------------------------------------------------------

CHART_HPA = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "decision"},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "decision"},
        "minReplicas": 2,
        "maxReplicas": 10,
        "metrics": [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "dataplat_decision_inflight_requests"},
                    "target": {"type": "AverageValue", "averageValue": "8"},
                },
            },
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
            },
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
    },
}


def test_from_dict_to_dict_round_trip_with_defaults() -> None:
    spec = HPASpec.from_dict(CHART_HPA)
    assert (spec.name, spec.minReplicas, spec.maxReplicas) == ("decision", 2, 10)
    assert spec.metrics[0] == MetricSpec("Pods", "dataplat_decision_inflight_requests", "AverageValue", 8.0)
    assert spec.behavior.scaleDown.stabilizationWindowSeconds == 60
    # what the API server defaults, spelled out
    assert spec.behavior.scaleUp == HPABehavior().scaleUp
    assert spec.behavior.scaleDown.policies == (HPAScalingPolicy("Percent", 100, 15),)
    out = spec.to_dict()
    assert out["spec"]["metrics"] == CHART_HPA["spec"]["metrics"]  # type: ignore[index]
    assert out["spec"]["behavior"]["scaleUp"] == {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    }
    assert HPASpec.from_dict(out) == spec


def test_from_dict_reports_every_problem() -> None:
    bad = {
        "minReplicas": 3,
        "maxReplicas": "x",
        "metrics": [{"type": "Pods", "pods": {"metric": {"name": "q"}, "target": {"type": "Value"}}}],
        "behavior": {"scaleDown": {"selectPolicy": "Most", "policies": [{"type": "Pod", "value": 0}]}},
    }
    with pytest.raises(ConfigError) as err:
        HPASpec.from_dict(bad)
    text = str(err.value)
    for where in (
        "spec.maxReplicas",
        "spec.metrics[0].pods.target.type",
        "spec.behavior.scaleDown.selectPolicy",
        "spec.behavior.scaleDown.policies[0].type",
        "spec.behavior.scaleDown.policies[0].value",
        "spec.behavior.scaleDown.policies[0].periodSeconds",
    ):
        assert where in text, where


def test_quantities() -> None:
    assert parse_quantity("200m") == pytest.approx(0.2)
    assert parse_quantity("2k") == 2000
    assert parse_quantity(3) == 3.0
    assert (format_quantity(0.2), format_quantity(2.0), format_quantity(1.5)) == ("200m", "2", "1500m")
    with pytest.raises(ValueError):
        parse_quantity("two")
