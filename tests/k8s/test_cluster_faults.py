"""Drill faults injected through the Kubernetes API, and the recovery waits that time them.

Every test here uses the fake API of ``fakeapi.py`` because no Kubernetes API server can
run on this machine. The fake plays the controllers with a timer (a replica promoted, a
pod recreated); the tests check the exact API calls each fault makes and that the wait
measures from the injection to the recovery. How fast CloudNativePG, NATS and the pools
really recover needs a real cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeapi import FakeKubernetes, pod

from dataplat.k8s import faults
from dataplat.k8s.cluster import Cluster, ClusterError, connect

NS = "dataplat"


@pytest.fixture
def fake() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(auto_ready=True) as server:
        yield server


@pytest.fixture
def cluster(fake: FakeKubernetes, tmp_path: Path) -> Cluster:
    return connect(kubeconfig=fake.write_kubeconfig(tmp_path / "kc"), discovery_cache=tmp_path / "cache.json")


def _later(seconds: float, action) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def _warehouse(fake: FakeKubernetes, cluster: Cluster) -> None:
    cluster.apply(
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Cluster",
            "metadata": {"name": "warehouse", "namespace": NS},
            "spec": {"instances": 3},
        }
    )
    for i in (1, 2, 3):
        fake.put(pod(f"warehouse-{i}", {"cnpg.io/cluster": "warehouse"}))


def test_primary_pod_deleted_and_the_failover_timed(fake, cluster):
    """Fake API (no Kubernetes API server can run here): the primary named by
    status.currentPrimary is deleted with grace period 0; the wait ends when the Cluster
    reports another ready primary, and measures the time since the deletion."""
    _warehouse(fake, cluster)
    assert faults.primary_pod(cluster, NS) == "warehouse-1"
    fake.clear_requests()
    injected = faults.delete_primary_pod(cluster, NS)
    deletes = fake.calls("DELETE")
    assert [r.path for r in deletes] == ["/api/v1/namespaces/dataplat/pods/warehouse-1"]
    assert deletes[0].query["gracePeriodSeconds"] == "0"
    assert injected.target == "warehouse-1" and injected.uid

    def promote() -> None:
        fake.update(
            "Cluster", "warehouse", status={"currentPrimary": "warehouse-2", "targetPrimary": "warehouse-2"}
        )

    # a switch in progress (targetPrimary set, currentPrimary not yet) is not a recovery
    fake.update(
        "Cluster", "warehouse", status={"currentPrimary": "warehouse-1", "targetPrimary": "warehouse-2"}
    )
    timer = _later(0.4, promote)
    try:
        recovery = faults.wait_new_primary(cluster, injected, timeout=10)
    finally:
        timer.cancel()
    assert recovery.value == "warehouse-2" and "promoted" in recovery.detail
    assert 0.4 <= recovery.seconds < 3


def test_a_primary_recreated_under_its_name_counts_only_when_it_is_a_new_pod(fake, cluster):
    """Fake API (no Kubernetes API server can run here): if the same instance comes back as
    primary, the wait needs a new pod (another uid) that is ready."""
    _warehouse(fake, cluster)
    injected = faults.delete_primary_pod(cluster, NS)
    fake.put(pod("warehouse-1", {"cnpg.io/cluster": "warehouse"}, ready=False))
    timer = _later(
        0.3,
        lambda: fake.update(
            "Pod", "warehouse-1", status={"conditions": [{"type": "Ready", "status": "True"}]}
        ),
    )
    try:
        recovery = faults.wait_new_primary(cluster, injected, timeout=10)
    finally:
        timer.cancel()
    assert recovery.value == "warehouse-1" and "recreated" in recovery.detail and recovery.seconds >= 0.3


def test_no_recovery_is_a_timeout_naming_what_was_awaited(fake, cluster):
    """Fake API (no Kubernetes API server can run here)."""
    _warehouse(fake, cluster)
    injected = faults.delete_primary_pod(cluster, NS)
    with pytest.raises(ClusterError, match="waiting for a new primary of Cluster warehouse"):
        faults.wait_new_primary(cluster, injected, timeout=0.3)


def test_stream_broker_pod_deleted_and_replaced(fake, cluster):
    """Fake API (no Kubernetes API server can run here): stream-0 of the NATS StatefulSet is
    deleted; the StatefulSet's replacement (same name, new uid, ready) ends the wait."""
    fake.put(pod("stream-0", {"app.kubernetes.io/name": "stream"}))
    injected = faults.delete_stream_pod(cluster, NS)
    assert [r.path for r in fake.calls("DELETE")] == ["/api/v1/namespaces/dataplat/pods/stream-0"]
    timer = _later(0.3, lambda: fake.put(pod("stream-0", {"app.kubernetes.io/name": "stream"})))
    try:
        recovery = faults.wait_pod_replaced(cluster, injected, timeout=10)
    finally:
        timer.cancel()
    assert 0.3 <= recovery.seconds < 3
    with pytest.raises(ClusterError, match="pod stream-5 does not exist"):
        faults.delete_stream_pod(cluster, NS, ordinal=5)


def test_serving_pod_deleted_scaled_and_nodes_cordoned(fake, cluster):
    """Fake API (no Kubernetes API server can run here): a ready pod of a pool's Deployment
    is deleted and the wait ends when the Deployment is available again without it; scaling
    goes through the scale subresource; cordon and uncordon patch spec.unschedulable."""
    labels = {"app.kubernetes.io/name": "serving", "dataplat.io/pool": "cpu"}
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "serving-cpu", "namespace": NS},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}},
            },
        }
    )
    fake.put(pod("serving-cpu-b", labels))
    fake.put(pod("serving-cpu-a", labels, ready=False))
    fake.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}, "spec": {}})
    fake.clear_requests()

    injected = faults.delete_pool_pod(cluster, NS, "serving-cpu")
    assert injected.target == "serving-cpu-b"  # the first *ready* pod
    assert [r.path for r in fake.calls("DELETE")] == ["/api/v1/namespaces/dataplat/pods/serving-cpu-b"]
    fake.update("Deployment", "serving-cpu", status={"availableReplicas": 1})
    timer = _later(0.3, lambda: fake.mark_ready("Deployment", "serving-cpu"))
    try:
        recovery = faults.wait_workload_ready(cluster, injected, "Deployment", "serving-cpu", timeout=10)
    finally:
        timer.cancel()
    assert 0.3 <= recovery.seconds < 3 and recovery.value == "2"

    scaled = faults.scale(cluster, NS, "Deployment", "serving-cpu", 4)
    req = fake.calls("PATCH", "/scale")[-1]
    assert req.path == "/apis/apps/v1/namespaces/dataplat/deployments/serving-cpu/scale"
    assert req.content_type == "application/merge-patch+json" and req.body == {"spec": {"replicas": 4}}
    assert scaled.detail == "replicas 2 -> 4"
    recovery = faults.wait_workload_ready(cluster, scaled, "Deployment", "serving-cpu", timeout=5)
    assert recovery.value == "4"

    faults.cordon(cluster, "node-1")
    assert fake.get("Node", "node-1")["spec"]["unschedulable"] is True
    faults.uncordon(cluster, "node-1")
    assert "unschedulable" not in fake.get("Node", "node-1")["spec"]
    patches = fake.calls("PATCH", "/nodes/node-1")
    assert [r.body for r in patches] == [{"spec": {"unschedulable": True}}, {"spec": {"unschedulable": None}}]
    with pytest.raises(ClusterError, match="no node node-9"):
        faults.cordon(cluster, "node-9")
    assert time.monotonic() - injected.t_mono >= recovery.seconds
