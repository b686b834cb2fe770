"""``up`` / ``status`` / ``down --target k8s`` against a fake Kubernetes API server.

Every test here uses the fake API of ``fakeapi.py`` because no Kubernetes API server can
run on this machine (no Docker, no kind, no kube-apiserver binaries). The fake answers
discovery and the requests the official client makes, so these tests show what dataplat
sends (server-side apply with its field manager, order, prune, deletes) and how it reads
what comes back (readiness, reasons, primary). What only a real cluster can show (the
API server's own SSA merge and conflict detection, admission webhooks of the operators,
controllers really starting pods) is not covered here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakeapi import FakeKubernetes, pod

from dataplat.cli import main
from dataplat.k8s import applier
from dataplat.k8s.apply import object_key
from dataplat.k8s.cluster import ApplyConflictError, Cluster, MissingAPIError, connect
from dataplat.k8s.readiness import Readiness
from dataplat.k8s.render import RenderResult, render_inventory

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventory" / "examples" / "xinchuang-3az.yml"
NS = "dataplat"


@pytest.fixture(scope="module")
def rendered() -> RenderResult:
    result = render_inventory(EXAMPLE)
    assert result.ok, result.problems
    return result


@pytest.fixture
def fake() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(auto_ready=True) as server:
        yield server


@pytest.fixture
def kubeconfig(fake: FakeKubernetes, tmp_path: Path) -> Path:
    return fake.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def cluster(kubeconfig: Path, tmp_path: Path) -> Cluster:
    return connect(kubeconfig=kubeconfig, discovery_cache=tmp_path / "discovery.json")


def _path(obj: dict[str, Any], plural: str) -> str:
    api = obj["apiVersion"]
    base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
    ns = obj["metadata"].get("namespace")
    return (
        f"{base}/namespaces/{ns}/{plural}/{obj['metadata']['name']}"
        if ns
        else f"{base}/{plural}/{obj['metadata']['name']}"
    )


def _up(cluster: Cluster, objects: list[dict[str, Any]], **kw: Any) -> applier.UpResult:
    kw.setdefault("poll_interval", 0.02)
    return applier.up(cluster, objects, NS, **kw)


def test_every_rendered_object_is_server_side_applied_in_order(fake, cluster, rendered):
    """Fake API (no Kubernetes API server can run here): each rendered object of the example
    inventory is sent once as server-side apply with field manager dataplat, namespace first,
    operators' custom resources after the built-in kinds, nothing forced."""
    result = _up(cluster, rendered.objects)
    assert result.ok, result.error
    patches = fake.calls("PATCH")
    assert len(patches) == len(rendered.objects) == 29
    for req in patches:
        assert req.content_type == "application/apply-patch+yaml"
        assert req.query.get("fieldManager") == "dataplat"
        assert "force" not in req.query
    plurals = {k.kind: k.plural for k in fake.kinds()}
    sent = [r.path for r in patches]
    assert sorted(sent) == sorted(_path(o, plurals[o["kind"]]) for o in rendered.objects)
    kinds = [r.body["kind"] for r in patches]
    assert kinds[0] == "Namespace"
    assert kinds.index("ConfigMap") < kinds.index("StatefulSet")
    assert kinds.index("NetworkAttachmentDefinition") < kinds.index("Deployment")
    assert max(kinds.index(k) for k in ("Deployment", "StatefulSet", "Job")) < kinds.index("Cluster")
    # what the server holds is what was rendered (the body was the object itself)
    for obj in rendered.objects:
        stored = fake.get(obj["kind"], obj["metadata"]["name"])
        assert stored is not None and stored["spec" if "spec" in obj else "metadata"]
        assert stored["metadata"]["managedFields"][0]["manager"] == "dataplat"
    assert result.readiness is not None and all(r.ok for r in result.readiness.objects)


def test_second_up_changes_nothing(fake, cluster, rendered):
    """Fake API (no Kubernetes API server can run here): after one up, a dry run shows an
    empty diff although the server added uids, defaults and status; a second up writes nothing."""
    assert _up(cluster, rendered.objects).ok
    fake.clear_requests()
    dry = _up(cluster, rendered.objects, dry_run=True)
    assert dry.diff.empty, dry.diff.render()
    assert dry.diff.summary()["unchanged"] == 29
    again = _up(cluster, rendered.objects)
    assert again.ok and again.applied == [] and again.pruned == []
    assert fake.writes() == []
    assert {r.method for r in fake.calls()} == {"GET"}


def test_changed_inventory_value_shows_in_the_dry_run_diff(
    fake, kubeconfig, cluster, rendered, tmp_path, capsys
):
    """Fake API (no Kubernetes API server can run here): a changed inventory value is an
    update of the field it renders to in ``up --target k8s --dry-run``, and nothing is written."""
    assert _up(cluster, rendered.objects).ok
    inv = tmp_path / "inventory.yml"
    inv.write_text(
        EXAMPLE.read_text().replace("warehouse_max_connections: 1000", "warehouse_max_connections: 2000")
    )
    fake.clear_requests()
    rc = main(["up", "--target", "k8s", "-i", str(inv), "--kubeconfig", str(kubeconfig), "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "~ update    Cluster/warehouse -n dataplat (postgresql.cnpg.io/v1)" in out
    assert "spec.postgresql.parameters.max_connections: '1000' -> '2000'" in out
    assert "0 to create, 1 to update, 0 to prune, 28 unchanged" in out
    assert fake.writes() == []
    rc = main(
        ["up", "--target", "k8s", "-i", str(inv), "--kubeconfig", str(kubeconfig), "--dry-run", "--json"]
    )
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["dry_run"] and doc["diff"]["summary"]["update"] == 1


def test_prune_deletes_what_is_no_longer_rendered(fake, cluster, rendered, tmp_path):
    """Fake API (no Kubernetes API server can run here): a serving pool removed from the
    inventory has its Deployment and Service pruned; objects owned by a controller or not
    labelled part-of dataplat are left alone; --no-prune keeps everything."""
    assert _up(cluster, rendered.objects).ok
    labels = {"app.kubernetes.io/part-of": "dataplat", "app.kubernetes.io/name": "serving"}
    owned = pod("serving-cpu-abc", labels)
    owned["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "serving-cpu-5d8f", "uid": "x"}]
    fake.put(owned)
    fake.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "not-ours", "namespace": NS}})
    inv = tmp_path / "inventory.yml"
    inv.write_text(
        EXAMPLE.read_text().replace(
            "      - name: cpu\n        accelerator: cpu\n        priority: 100\n        replicas: 2\n", ""
        )
    )
    fewer = render_inventory(inv)
    assert fewer.ok
    out = _up(cluster, fewer.objects, dry_run=True).diff.render()
    assert "- prune     Deployment/serving-cpu -n dataplat (apps/v1)" in out
    assert "- prune     Service/serving-cpu -n dataplat (v1)" in out
    # the decision service's pool list changes with the pools
    assert "~ update    Deployment/decision -n dataplat (apps/v1)" in out
    assert "0 to create, 1 to update, 2 to prune, 26 unchanged" in out
    fake.clear_requests()
    assert _up(cluster, fewer.objects, prune=False).ok
    assert [(r.method, r.path.rsplit("/", 1)[1]) for r in fake.writes()] == [("PATCH", "decision")]
    assert fake.get("Deployment", "serving-cpu") is not None
    fake.clear_requests()
    assert _up(cluster, fewer.objects).pruned == ["Deployment/serving-cpu", "Service/serving-cpu"]
    assert [r.path for r in fake.calls("DELETE")] == [
        "/apis/apps/v1/namespaces/dataplat/deployments/serving-cpu",
        "/api/v1/namespaces/dataplat/services/serving-cpu",
    ]
    assert fake.get("Deployment", "serving-cpu") is None
    assert fake.get("Pod", "serving-cpu-abc") is not None
    assert fake.get("ConfigMap", "not-ours") is not None


def test_readiness_wait_reports_progress_until_ready(fake, cluster, rendered):
    """Fake API (no Kubernetes API server can run here): objects start "not ready"; the fake
    marks them ready after a moment (as their controllers would); the wait reports each
    workload waiting, then ready."""
    fake.auto_ready = False
    seen: list[Readiness] = []
    timers: list[threading.Timer] = []

    def on_ready(r: Readiness) -> None:
        seen.append(r)
        if not timers:  # the wait has begun: every object is applied
            timers.append(threading.Timer(0.3, fake.mark_ready))
            timers[0].start()

    try:
        result = _up(cluster, rendered.objects, timeout=10, on_ready=on_ready)
    finally:
        for t in timers:
            t.cancel()
    assert result.ok, result.error
    assert result.readiness is not None and result.readiness.seconds >= 0.3
    by_label: dict[str, list[str]] = {}
    for r in seen:
        by_label.setdefault(r.label, []).append(r.state)
    for label in ("Deployment/decision", "StatefulSet/stream", "Job/stream-streams", "Cluster/warehouse"):
        assert by_label[label][0] == "progressing" and by_label[label][-1] == "ready", (
            label,
            by_label[label],
        )
    first = next(r for r in seen if r.label == "Deployment/decision")
    assert first.summary == "0/3 available"
    last = [r for r in seen if r.label == "Cluster/warehouse"][-1]
    assert last.primary == "warehouse-1" and "3/3 instances ready" in last.summary


def test_readiness_timeout_names_what_is_not_ready_and_why(fake, kubeconfig, cluster, rendered, capsys):
    """Fake API (no Kubernetes API server can run here): one pool cannot be scheduled; the
    timeout names that Deployment, its condition, the pending pod's scheduler message and
    the warning event, and nothing that is ready."""
    fake.auto_ready = False
    assert _up(cluster, rendered.objects, wait=False).ok
    fake.mark_ready()
    fake.update(
        "Deployment",
        "serving-a800",
        status={"availableReplicas": 0, "updatedReplicas": 2, "readyReplicas": 0},
    )
    fake.update(
        "Deployment",
        "serving-a800",
        status={
            "conditions": [
                {
                    "type": "Available",
                    "status": "False",
                    "reason": "MinimumReplicasUnavailable",
                    "message": "Deployment does not have minimum availability.",
                }
            ]
        },
    )
    selector = fake.get("Deployment", "serving-a800")["spec"]["selector"]["matchLabels"]
    msg = "0/9 nodes are available: 3 Insufficient nvidia.com/gpu, 6 node(s) didn't match node affinity."
    fake.put(pod("serving-a800-7c9d-x1", selector, ready=False, unschedulable=msg))
    fake.put(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "ev1", "namespace": NS},
            "involvedObject": {"kind": "Pod", "name": "serving-a800-7c9d-x1"},
            "type": "Warning",
            "reason": "FailedScheduling",
            "message": msg,
            "count": 4,
        }
    )
    result = _up(cluster, rendered.objects, timeout=0.5)
    assert not result.ok
    err = result.error or ""
    assert "timed out after" in err and "1 object(s) not ready" in err
    assert "Deployment/serving-a800 (progressing): 0/2 available" in err
    assert "Available=False MinimumReplicasUnavailable" in err
    assert "pod serving-a800-7c9d-x1: not scheduled (Unschedulable): 0/9 nodes are available" in err
    assert "event FailedScheduling on serving-a800-7c9d-x1" in err and "(x4)" in err
    assert "Deployment/decision" not in err
    rc = main(
        ["up", "--target", "k8s", "-i", str(EXAMPLE), "--kubeconfig", str(kubeconfig), "--timeout", "0.3"]
    )
    captured = capsys.readouterr()
    assert (
        rc == 1
        and "Deployment/serving-a800" in captured.err
        and "Insufficient nvidia.com/gpu" in captured.err
    )


def test_a_failed_job_ends_the_wait_at_once(fake, cluster, rendered):
    """Fake API (no Kubernetes API server can run here): a Job that failed for good is not
    waited for until the timeout."""
    assert _up(cluster, rendered.objects, wait=False).ok
    fake.update(
        "Job",
        "stream-streams",
        status={
            "failed": 11,
            "succeeded": 0,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ],
        },
    )
    result = _up(cluster, rendered.objects, timeout=30)
    assert not result.ok and "a rollout failed" in (result.error or "")
    assert "Failed=True BackoffLimitExceeded" in (result.error or "")
    assert result.seconds < 5


def test_missing_crds_name_the_operators_and_nothing_is_applied(kubeconfig, tmp_path, capsys, rendered):
    """Fake API (no Kubernetes API server can run here) without CloudNativePG's and Multus'
    CRDs: one error names both operators, before any object is written."""
    with FakeKubernetes(crd_groups=frozenset({"monitoring.coreos.com", "keda.sh"})) as bare:
        kc = bare.write_kubeconfig(tmp_path / "bare-kubeconfig")
        cluster = connect(kubeconfig=kc, discovery_cache=tmp_path / "bare-cache.json")
        with pytest.raises(MissingAPIError) as info:
            _up(cluster, rendered.objects)
        text = str(info.value)
        assert "Cluster (postgresql.cnpg.io/v1): install the CloudNativePG operator" in text
        assert "ScheduledBackup (postgresql.cnpg.io/v1)" in text
        assert "NetworkAttachmentDefinition (k8s.cni.cncf.io/v1): install Multus CNI" in text
        assert "nothing was applied" in text
        assert bare.writes() == []
        rc = main(["up", "--target", "k8s", "-i", str(EXAMPLE), "--kubeconfig", str(kc), "--dry-run"])
        assert rc == 1 and "CloudNativePG operator" in capsys.readouterr().err
        assert bare.writes() == []


def test_conflicts_are_forced_only_when_asked(fake, cluster, rendered):
    """Fake API (no Kubernetes API server can run here): a field another manager owns stops
    the apply with a hint; --force-conflicts sends force=true."""
    decision = next(
        o for o in rendered.objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "decision"
    )
    fake.conflicts[object_key(decision)] = "kubectl-edit"
    with pytest.raises(ApplyConflictError, match="re-run with --force-conflicts"):
        _up(cluster, rendered.objects)
    forced = _up(cluster, rendered.objects, force=True)
    assert forced.ok and forced.forced
    req = [r for r in fake.calls("PATCH", "/deployments/decision")][-1]
    assert req.query.get("force", "").lower() == "true" and req.query.get("fieldManager") == "dataplat"


def test_autoscaled_replicas_are_not_undone(fake, cluster, rendered):
    """Fake API (no Kubernetes API server can run here): after the HPA scaled the decision
    service within its bounds, up shows no change and sends nothing."""
    assert _up(cluster, rendered.objects).ok
    cluster.patch("apps/v1", "Deployment", "decision", NS, {"spec": {"replicas": 5}}, subresource="scale")
    fake.clear_requests()
    dry = _up(cluster, rendered.objects, dry_run=True)
    assert dry.diff.empty, dry.diff.render()
    hpa = rendered.get("HorizontalPodAutoscaler", "decision")["spec"]
    cluster.patch(
        "apps/v1",
        "Deployment",
        "decision",
        NS,
        {"spec": {"replicas": hpa["maxReplicas"] + 1}},
        subresource="scale",
    )
    out_of_bounds = _up(cluster, rendered.objects, dry_run=True)
    assert [c.label for c in out_of_bounds.diff.of("update")] == ["Deployment/decision -n dataplat (apps/v1)"]


def test_status_shows_replicas_primary_and_conditions(fake, kubeconfig, cluster, rendered, capsys):
    """Fake API (no Kubernetes API server can run here): status lists every workload with
    desired/ready replicas, the CloudNativePG primary, autoscalers; unready is exit 1."""
    assert _up(cluster, rendered.objects).ok
    fake.update(
        "Cluster", "warehouse", status={"currentPrimary": "warehouse-2", "targetPrimary": "warehouse-2"}
    )
    base = ["status", "--target", "k8s", "-i", str(EXAMPLE), "--kubeconfig", str(kubeconfig)]
    assert main([*base, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["healthy"] and doc["warehouse_primary"] == "warehouse-2"
    rows = {(o["kind"], o["name"]): o for o in doc["objects"]}
    assert rows[("Deployment", "decision")]["desired"] == 3 and rows[("Deployment", "decision")]["ready"] == 3
    assert rows[("StatefulSet", "stream")]["state"] == "ready"
    assert rows[("Cluster", "warehouse")]["component"] == "warehouse"
    assert ("HorizontalPodAutoscaler", "decision") in rows
    fake.update(
        "Deployment",
        "serving-cpu",
        status={
            "availableReplicas": 1,
            "conditions": [
                {
                    "type": "Available",
                    "status": "False",
                    "reason": "MinimumReplicasUnavailable",
                    "message": "not enough",
                }
            ],
        },
    )
    assert main(base) == 1
    out = capsys.readouterr().out
    assert "warehouse primary: warehouse-2" in out
    assert "serving-cpu" in out and "1/2 available" in out and "MinimumReplicasUnavailable" in out
    assert "NOT healthy" in out


def test_down_deletes_in_reverse_order_and_keeps_claims(fake, kubeconfig, cluster, rendered, capsys):
    """Fake API (no Kubernetes API server can run here): down deletes every object in the
    reverse of the apply order, keeps the namespace and the volume claims, and releases
    CloudNativePG's claims from their Cluster so garbage collection would leave them."""
    assert _up(cluster, rendered.objects).ok
    fake.put(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": "warehouse-1",
                "namespace": NS,
                "labels": {"cnpg.io/cluster": "warehouse"},
                "ownerReferences": [
                    {
                        "apiVersion": "postgresql.cnpg.io/v1",
                        "kind": "Cluster",
                        "name": "warehouse",
                        "uid": "u1",
                        "controller": True,
                    }
                ],
            },
        }
    )
    sts_labels = fake.get("StatefulSet", "stream")["spec"]["selector"]["matchLabels"]
    fake.put(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-stream-0", "namespace": NS, "labels": dict(sts_labels)},
        }
    )
    fake.clear_requests()
    assert (
        main(["down", "--target", "k8s", "-i", str(EXAMPLE), "--kubeconfig", str(kubeconfig), "--json"]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    deletes = fake.calls("DELETE")
    expected = [
        f"{o['kind']}/{o['metadata']['name']}" for o in reversed(applier.apply_order(rendered.objects))
    ]
    expected.remove("Namespace/dataplat")
    assert doc["deleted"] == expected
    assert [r.path.rsplit("/", 1)[1] for r in deletes] == [e.split("/", 1)[1] for e in expected]
    assert not any(
        "persistentvolumeclaims" in r.path or r.path.endswith("/namespaces/dataplat") for r in deletes
    )
    assert sorted(doc["kept_claims"]) == [
        "PersistentVolumeClaim/data-stream-0",
        "PersistentVolumeClaim/warehouse-1",
    ]
    assert fake.get("PersistentVolumeClaim", "warehouse-1")["metadata"].get("ownerReferences") is None
    released = fake.calls("PATCH", "/persistentvolumeclaims/warehouse-1")
    assert released and released[0].content_type == "application/merge-patch+json"
    assert fake.get("Namespace", "dataplat") is not None
    assert fake.get("Deployment", "decision") is None and fake.get("Cluster", "warehouse") is None


def test_down_purge_deletes_claims_and_namespace(fake, kubeconfig, cluster, rendered, capsys):
    """Fake API (no Kubernetes API server can run here): --purge deletes the claims and then
    the namespace."""
    assert _up(cluster, rendered.objects).ok
    fake.put(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "warehouse-1", "namespace": NS, "labels": {"cnpg.io/cluster": "warehouse"}},
        }
    )
    assert (
        main(["down", "--target", "k8s", "-i", str(EXAMPLE), "--kubeconfig", str(kubeconfig), "--purge"]) == 0
    )
    paths = [r.path for r in fake.calls("DELETE")]
    assert paths[-1] == "/api/v1/namespaces/dataplat"
    assert "/api/v1/namespaces/dataplat/persistentvolumeclaims/warehouse-1" in paths
    assert fake.get("Namespace", "dataplat") is None and fake.of_kind("PersistentVolumeClaim") == []


def test_k8s_options_need_the_k8s_target_and_a_cluster(tmp_path, monkeypatch, capsys):
    """No API server involved: the local target refuses cluster options; a missing kubeconfig
    and an API server that does not answer are reported as such (exit 2)."""
    assert main(["up", "--dry-run"]) == 2
    assert "--dry-run need --target k8s" in capsys.readouterr().err
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["status", "--target", "k8s", "-i", str(EXAMPLE)]) == 2
    assert "no kubeconfig at" in capsys.readouterr().err
    dead = FakeKubernetes().start()
    kc = dead.write_kubeconfig(tmp_path / "dead")
    dead.stop()
    assert main(["status", "--target", "k8s", "-i", str(EXAMPLE), "--kubeconfig", str(kc)]) == 2
    assert "no Kubernetes API server answers at http://127.0.0.1" in capsys.readouterr().err
    assert (
        main(["status", "--target", "k8s", "-i", str(EXAMPLE), "--kubeconfig", str(kc), "--context", "nope"])
        == 2
    )
    assert "contexts in" in capsys.readouterr().err


def test_a_changed_job_is_recreated(fake, cluster, rendered):
    """Fake API (no Kubernetes API server can run here): a Job's pod template cannot be
    changed, so a Job whose rendered spec changed is deleted, then applied again."""
    assert _up(cluster, rendered.objects).ok
    objects = [dict(o) for o in rendered.objects]
    i = next(n for n, o in enumerate(objects) if o["kind"] == "Job")
    job = json.loads(json.dumps(objects[i]))
    job["spec"]["template"]["spec"]["containers"][0]["image"] = "docker.io/natsio/nats-box:0.99.0"
    objects[i] = job
    fake.clear_requests()
    result = _up(cluster, objects)
    assert (
        result.ok and result.recreated == ["Job/stream-streams"] and result.applied == ["Job/stream-streams"]
    )
    assert [(r.method, r.path.rsplit("/", 1)[1]) for r in fake.writes()] == [
        ("DELETE", "stream-streams"),
        ("PATCH", "stream-streams"),
    ]
    assert fake.get("Job", "stream-streams")["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
        ":0.99.0"
    )
