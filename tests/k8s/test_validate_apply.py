"""Offline validation of single objects, and the apply diff on fake live objects.

No Kubernetes API server can run here (no Docker, no kind, no binaries), so the diff
that ``up --target k8s --dry-run`` will print is tested against live objects written
the way the kubernetes client returns them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from dataplat.errors import ConfigError
from dataplat.inventory.model import Origin
from dataplat.k8s.apply import plan_apply
from dataplat.k8s.render import Manifest, render_inventory
from dataplat.k8s.validate import validate_object, validate_objects
from dataplat.k8s.values import Values

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventory" / "examples" / "xinchuang-3az.yml"


def deployment(**container: Any) -> dict[str, Any]:
    c = {"name": "app", "image": "registry.example.com/app:1.0"} | container
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "dataplat"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [c]}},
        },
    }


def test_builtin_kinds_strict_schema() -> None:
    assert validate_object(deployment()) == []
    problems = validate_object(deployment(imagePullPolcy="Always"))
    assert problems and "imagePullPolcy" in problems[0][1]
    assert problems[0][0] == ("spec", "template", "spec", "containers", 0)


def test_dataplat_rules_latest_and_inline_secrets() -> None:
    assert any("tag latest" in m for _, m in validate_object(deployment(image="nats:latest")))
    assert any("no tag" in m for _, m in validate_object(deployment(image="nats")))
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}}
    assert any("inline data" in m for _, m in validate_object(secret))


def test_custom_resources_against_crd_schemas() -> None:
    sm = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "endpoints": [{"port": "metrics", "interval": "15s"}],
        },
    }
    assert validate_object(sm) == []
    bad = copy.deepcopy(sm)
    del bad["spec"]["endpoints"]
    assert any("'endpoints' is a required property" in m for _, m in validate_object(bad))
    cluster = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "w"},
        "spec": {
            "instances": 3,
            "storage": {"size": "1Gi"},
            "postgresql": {"synchronous": {"method": "all", "number": 1}},
        },
    }
    msgs = validate_object(cluster)
    assert msgs and msgs[0][0] == ("spec", "postgresql", "synchronous", "method")
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}}
    assert any("no schema for the custom resource Widget" in m for _, m in validate_object(unknown))


def test_unknown_kubernetes_version_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not known to kubernetes-validate"):
        validate_object(deployment(), k8s_version="9.99")


def test_manifest_error_traced_back_to_the_inventory_value(tmp_path: Path) -> None:
    inv = str(tmp_path / "inv.yml")
    values = Values(
        "decision", {"minReplicas": "three"}, {("minReplicas",): Origin(inv, 42, 5, "all.vars.x")}
    )
    obj = deployment()
    obj["spec"]["replicas"] = "three"
    problems = validate_objects(
        [Manifest("decision", "charts/decision/t.yaml.j2", obj)], {"decision": values}, inventory_file=inv
    )
    assert len(problems) == 1
    assert (problems[0].file, problems[0].line, problems[0].field) == (inv, 42, "all.vars.x")
    assert "Deployment/app.spec.replicas" in problems[0].message


def live_copy(obj: dict[str, Any]) -> dict[str, Any]:
    """What the API server would return for an applied object: status, uid, defaults added."""
    live = copy.deepcopy(obj)
    live["metadata"] |= {
        "uid": "0d6c",
        "resourceVersion": "7",
        "creationTimestamp": "2025-01-01T00:00:00Z",
        "managedFields": [{"manager": "dataplat"}],
    }
    live["status"] = {"observedGeneration": 1}
    if live["kind"] == "Deployment":
        live["spec"]["progressDeadlineSeconds"] = 600  # a defaulted field dataplat does not set
    return live


def test_plan_apply_on_fake_live_objects() -> None:
    result = render_inventory(EXAMPLE)
    objects = result.objects
    live = [live_copy(o) for o in objects]
    diff = plan_apply(objects, live)
    assert diff.empty and diff.summary()["unchanged"] == len(objects)

    # a scaled-down pool, a missing ConfigMap, a stale object of ours, and someone else's object
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in live}
    by_name[("Deployment", "serving-a800")]["spec"]["replicas"] = 1
    live.remove(by_name[("ConfigMap", "lake-catalog")])
    stale = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "serving-old",
            "namespace": "dataplat",
            "labels": {"app.kubernetes.io/part-of": "dataplat"},
        },
    }
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kube-root-ca.crt", "namespace": "dataplat"},
    }
    diff = plan_apply(objects, [*live, stale, foreign])
    assert [c.key[3] for c in diff.of("create")] == ["lake-catalog"]
    (update,) = diff.of("update")
    assert update.key[1:] == ("Deployment", "dataplat", "serving-a800")
    assert [(f.path, f.live, f.desired) for f in update.fields] == [("spec.replicas", 1, 2)]
    assert [c.key[3] for c in diff.of("prune")] == ["serving-old"]
    text = diff.render()
    assert "~ update    Deployment/serving-a800" in text and "spec.replicas: 1 -> 2" in text
    assert "1 to create, 1 to update, 1 to prune" in text
    assert diff.to_dict()["summary"] == {"create": 1, "update": 1, "unchanged": len(objects) - 2, "prune": 1}


def test_plan_apply_quantities_compare_by_value() -> None:
    desired = deployment()
    desired["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    live = live_copy(desired)
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "1"
    assert plan_apply([desired], [live]).empty
